"""Hooks: the owner's programs and installed Python packages told about what the gateway
does (a message came in, a tool is about to run, a reply went out, ...).

    hooks, unloaded = build_hooks(config.hooks)
    bus = HookBus(hooks, config.hooks, redact=redactor.redact, notify=gateway.notify_owner)
    await bus.start(); ...; reason = await bus.before_tool(ctx, "exec", arguments)

Parts reach the bus as `deps.hooks` (None when no hook is configured: nothing to do).
"""
