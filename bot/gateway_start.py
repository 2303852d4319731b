"""Start-up steps of the gateway that need none of its routing state: the home's
permissions, the providers, the agent built from config, the HTTP server (admin auth, web UI,
webhook routes) and the turn processes. Like bot/features.py, each start pushes its own stop
onto the gateway's exit stack, so a start that fails later still stops what these started."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from typing import TYPE_CHECKING

from bot.agent import Agent, AgentSettings
from bot.config import Config
from bot.errors import ConfigError

if TYPE_CHECKING:
    from bot import features
    from bot.commands import CommandSpec
    from bot.gateway import Gateway
    from channels import Channel

log = logging.getLogger("decapod.gateway")


def secure_home_files(cfg: Config) -> None:
    from bot.security.files import secure_home

    repaired = secure_home(cfg.home, [cfg.log_file])
    if repaired:
        log.warning(
            "other users could read %s; made private (files 0600, folders 0700)",
            ", ".join(str(p) for p in repaired),
        )


async def start_providers(gw: Gateway, stack: contextlib.AsyncExitStack) -> None:
    from bot.providers.build import ProviderSet

    cfg = gw.config
    gw.providers = ProviderSet(
        cfg.providers,
        cfg.models,
        notify=gw.notify_owner,
        max_concurrent_turns=cfg.gateway.max_concurrent_turns,
    )
    await gw.providers.start()
    stack.push_async_callback(gw.providers.aclose)
    gw.metrics.watch_providers(gw.providers)
    gw.provider = gw.providers.for_purpose("chat")


def build_agent(gw: Gateway) -> Agent:
    cfg = gw.config
    assert gw.provider is not None
    return Agent(
        gw.provider,
        gw.tools,
        AgentSettings(
            system_prompt=cfg.agent.system_prompt,
            max_output_tokens=cfg.agent.max_output_tokens,
            temperature=cfg.agent.temperature,
            max_tool_iterations=cfg.gateway.max_tool_iterations,
            turn_deadline_s=cfg.gateway.turn_deadline_s,
        ),
        policy=gw.policy,
        redact=gw.redactor.redact,
    )


async def start_http(gw: Gateway, stack: contextlib.AsyncExitStack) -> None:
    """The gateway's HTTP server, with the web UI when it is on. Every channel, the web UI's
    included, must be in `gw.channels` already: their webhook routes are mounted here."""
    from bot.http import HttpServer
    from bot.security.http_auth import AdminAuth

    cfg = gw.config
    auth = AdminAuth(gw.store)
    gw.setup_code = await auth.start()
    gw.http = HttpServer(cfg.http.host, cfg.http.port, gw.health, gw.metrics.render, auth)
    if cfg.webui.enabled:
        from bot.webui import start_webui

        await start_webui(gw, gw.http)
    mounted: dict[tuple[str, str], str] = {}
    for name, channel in gw.channels.items():
        # webhook-mode adapters serve their platform's callbacks on our server
        for method, path, handler in channel.http_routes():
            if (method, path) in mounted:
                # one path can serve one channel only: the second would never be called
                raise ConfigError(
                    f"{method} {path} is already channel {mounted[method, path]}'s; give "
                    "each channel a path of its own (webhook_path, interactions_path)",
                    key=f"channels.{name}",
                )
            mounted[method, path] = name
            gw.http.add_route(method, path, handler, public=True)
    await gw.http.start()
    stack.push_async_callback(gw.http.stop)


def wants_sandbox(cfg: Config) -> bool:
    return cfg.sandbox.backend != "none" or cfg.sandbox.allow_host_exec


def begin_sandbox_choice(
    gw: Gateway, stack: contextlib.AsyncExitStack
) -> asyncio.Task[features.SandboxChoice] | None:
    """Begin choosing the sandbox at the start of the start, so that its probes run while
    the channels' SDKs are imported; start_features awaits it, before the gateway is ready.
    A start that fails before then cancels it and closes what it chose."""
    if not wants_sandbox(gw.config):
        return None
    from bot import features

    choosing = features.begin_sandbox_choice(gw)

    async def abandon() -> None:
        if gw.sandbox_choice is None:
            return  # start_sandbox took it, and stops its backend itself
        choosing.cancel()
        try:
            backend, _ = await choosing
        except BaseException:  # cancelled, or failed: nothing was chosen
            return
        if backend is not None:
            await backend.aclose()

    stack.push_async_callback(abandon)
    return choosing


async def start_features(gw: Gateway, stack: contextlib.AsyncExitStack) -> None:
    """The optional parts, in the order their tool policies wrap each other. The scheduler,
    memory and the skills, which no policy wraps and nothing needs before ready, become
    warm-up steps."""
    from bot import features

    await features.start_hooks(gw, stack)
    if wants_sandbox(gw.config):
        choosing, gw.sandbox_choice = gw.sandbox_choice, None
        await features.start_sandbox(gw, stack, choosing)
    # the scheduler, memory and the skills start after ready (bot/warmup.py), in this
    # order; what they started stops here, among the parts started with them
    stack.push_async_callback(gw.warmup.aclose)
    # first: a reminder due at the start waits for no other step (the channels are up)
    gw.warmup.add(
        "scheduler",
        lambda steps: features.start_scheduler(gw, steps),
        imports=(
            "bot.scheduler.service",
            "bot.scheduler.commands",
            "bot.scheduler.tools",
            "bot.checkins",
        ),
    )
    if gw.config.memory.enabled:
        gw.warmup.add(
            "memory",
            lambda steps: features.start_memory(gw, steps),
            imports=("bot.memory.service", "bot.memory.commands", "bot.memory.tools"),
        )
    from bot.media.voice import start_media_out

    await start_media_out(gw, stack)
    # the web and MCP policies each wrap the policy before them, so both start after
    # the sandbox, which sets its own
    if gw.config.web.enabled:
        await features.start_web(gw, stack)
    if gw.config.mcp.servers:
        await features.start_mcp(gw, stack)
    if gw.config.skills.enabled:
        # last: a skill's `tools` requirement sees every tool registered before it
        gw.warmup.add(
            "skills",
            lambda steps: features.start_skills(gw, steps),
            imports=("bot.skills.commands", "bot.skills.runtime", "bot.skills.tools"),
        )


def start_turn_processes(
    gw: Gateway, stack: contextlib.AsyncExitStack
) -> asyncio.Task[None] | None:
    """In the receiver of `gateway.turn_processes` > 1: start them (each resumes its
    share of what is unfinished, then takes the deliveries stored from then on; those
    stored meanwhile are held, so none is lost or run twice). This process keeps the
    channels and stores inbound."""
    if gw.config.gateway.turn_processes == 1 or gw.share is not None:
        return None
    from bot.scaleout.pool import TurnProcesses

    pool = gw.turn_processes = TurnProcesses(gw.config, gw.channels)
    pool.choices_changed = gw.model_choices.forget
    stack.push_async_callback(pool.stop)  # a start that fails stops them too
    return asyncio.create_task(pool.start(), name="turn-processes-start")


async def start_channels(gw: Gateway, stack: contextlib.AsyncExitStack) -> None:
    """All channels at once, for sending at least: each start is mostly waiting on its
    platform (handshakes, a websocket). A start that fails does not cut the others short (a
    start interrupted half-way could not be undone); those that started are stopped with the
    rest of the gateway, and the first failure is raised.

    With replicas on PostgreSQL, the channels that may receive on one replica only receive
    on the elected leader (bot/cluster/node.py). A turn process or a one-shot process has no
    part in that: it receives nothing itself."""
    alone = gw.share is not None or not gw.deliver_scheduled

    async def start(channel: Channel) -> None:
        await channel.start(gw.handle_inbound)
        stack.push_async_callback(channel.stop)

    for channel in gw.channels.values():
        channel.commands = list(gw.commands)
        channel.publish_on_start = False  # offered once, after the warm-up (below)
        channel.use_state(gw.store.channel_state)
        if not alone:
            gw.cluster.hold(channel)
    results = await asyncio.gather(
        *(start(c) for c in gw.channels.values()), return_exceptions=True
    )
    for result in results:
        if isinstance(result, BaseException):
            raise result
    if not alone:
        await gw.cluster.start(stack)  # its stop runs first: receiving stops, then channels


#: a channel that could not offer the warm-up's commands tries again after these pauses: a
#: blip just then would otherwise leave them out of its menu until a restart
PUBLISH_RETRY_S = (5.0, 30.0)


def publish_commands_after_warm_up(gw: Gateway, stack: contextlib.AsyncExitStack) -> None:
    """The scheduler's, memory's and the skills' commands register in the warm-up, after the
    channels started (without offering theirs: `publish_on_start`). Once it is over, each
    channel offers the whole table (Telegram's menu, Discord's slash commands), each on its
    own: the platform's list is set once per start."""
    from bot.tasks import cancel_and_wait
    from bot.warmup import StartUpStepFailed

    async def offer(name: str, channel: Channel, commands: list[CommandSpec]) -> None:
        for retry_in in (*PUBLISH_RETRY_S, None):
            try:
                await channel.publish_commands(commands)
                return
            except Exception as exc:  # the commands still work as text: a notice is enough
                if retry_in is None:
                    log.warning("channel %s: new commands not offered: %s", name, exc)
                    return
                log.info(
                    "channel %s: new commands not offered (%s); again in %g s", name, exc, retry_in
                )
            await asyncio.sleep(retry_in)

    async def publish() -> None:
        # a failed step is said and shown already; the commands registered so far are offered
        with contextlib.suppress(StartUpStepFailed):
            await gw.warmup.wait()
        commands = list(gw.commands)
        await asyncio.gather(*(offer(n, c, commands) for n, c in gw.channels.items()))

    task = asyncio.create_task(publish(), name="publish-commands")
    stack.push_async_callback(cancel_and_wait, task)
