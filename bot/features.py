"""The optional parts, wired into a starting gateway: the sandbox (exec and file tools),
memory, the scheduler, the web tools and MCP servers. Each start function registers its
tools and commands and pushes its own stop onto the gateway's exit stack."""

from __future__ import annotations

import contextlib
import dataclasses
import logging
from typing import TYPE_CHECKING

from bot.commands import CommandContext
from bot.deps import SandboxDeps
from bot.errors import ConfigError, ConversationGone
from bot.messages import Conversation, ConversationKind, OutboundMessage

if TYPE_CHECKING:
    from bot.gateway import Gateway
    from bot.sandbox import InMemoryApprovalBroker, PendingApproval
    from bot.store.jobs import Job
    from bot.web.save import WorkspaceSaver

log = logging.getLogger("decapod.gateway")


async def start_sandbox(gw: Gateway, stack: contextlib.AsyncExitStack) -> None:
    from bot.sandbox import (
        InMemoryApprovalBroker,
        SandboxToolPolicy,
        sandbox_tools,
        select_backend,
        workspace_manager,
    )

    cfg = gw.config.sandbox
    backend, gw.sandbox_status = await select_backend(cfg, gw.config.home)
    if backend is not None:
        stack.push_async_callback(backend.aclose)
    broker = InMemoryApprovalBroker(notify=lambda pending: ask_approval(gw, pending))
    workspaces = workspace_manager(cfg, gw.config.home)
    pruned = workspaces.prune(cfg.workspace_max_age_days * 86400)
    if pruned:
        log.info(
            "removed %d workspaces unused for %d days", len(pruned), cfg.workspace_max_age_days
        )
    gw.deps = dataclasses.replace(
        gw.deps, sandbox=SandboxDeps(cfg, workspaces, backend, approvals=broker)
    )
    for t in sandbox_tools():
        gw.tools.register(t)
    gw.policy = SandboxToolPolicy(cfg)
    _register_approval_commands(gw, broker)


async def start_memory(gw: Gateway, stack: contextlib.AsyncExitStack) -> None:
    from bot.memory import MemoryService, memory_tools, register_memory_commands

    memory = MemoryService(gw.store, gw.config.memory, gw.config.home, redact=gw.redactor.redact)
    await memory.start()
    stack.push_async_callback(memory.stop)
    gw.deps = dataclasses.replace(gw.deps, memory=memory)
    for t in memory_tools():
        gw.tools.register(t)
    register_memory_commands(gw.commands, on_linked=gw.forget_persons)


async def start_scheduler(gw: Gateway, stack: contextlib.AsyncExitStack) -> None:
    from bot.scheduler import Scheduler, register_scheduler_commands, scheduler_tools

    cfg = gw.config.scheduler
    if "default_timezone" not in cfg.model_fields_set:
        cfg = cfg.model_copy(update={"default_timezone": gw.config.gateway.timezone})
    scheduler = Scheduler(gw.store, _ChannelDeliverer(gw), _TaskRunner(gw), config=cfg)
    gw.deps = dataclasses.replace(gw.deps, scheduler=scheduler)
    for t in scheduler_tools():
        gw.tools.register(t)
    register_scheduler_commands(gw.commands)
    gw.start_after_channels.append(scheduler.start)
    stack.push_async_callback(scheduler.stop)


async def start_web(gw: Gateway, stack: contextlib.AsyncExitStack) -> None:
    """web_fetch (behind the address guard) when the extractor is installed, web_search when
    a provider is configured. Runs after start_sandbox: save_as needs its workspaces, and
    the web policy wraps the sandbox's."""
    from bot.config import secret_from_env
    from bot.web import net
    from bot.web.extract import extractor_installed
    from bot.web.fetch import Fetcher
    from bot.web.guard import AddressGuard
    from bot.web.search import SearchChain, build_provider
    from bot.web.tools import WebTools

    cfg = gw.config.web
    network = net.system_network()
    fetcher = None
    if extractor_installed():
        guard = AddressGuard(allow_private=cfg.allow_private, allow_hosts=cfg.allow_hosts)
        session = net.open_session(network, user_agent=cfg.user_agent, guard=guard)
        stack.push_async_callback(session.close)
        fetcher = Fetcher(cfg, session, guard)
    elif "enabled" in cfg.model_fields_set:
        raise ConfigError("web_fetch needs trafilatura: pip install 'decapod[web]'", "web.enabled")
    else:
        log.warning("web_fetch is off: trafilatura is not installed (pip install 'decapod[web]')")
    search = None
    if cfg.search:
        keys = [
            secret_from_env(p.api_key_env, f"web.search[{i}].api_key_env")
            if p.api_key_env
            else None
            for i, p in enumerate(cfg.search)
        ]
        # no address guard here: these are endpoints the operator chose (SearXNG is often
        # on this machine), never URLs from a chat
        api = net.open_session(network, user_agent=cfg.user_agent)
        stack.push_async_callback(api.close)
        providers = [build_provider(p, api, key) for p, key in zip(cfg.search, keys, strict=True)]
        search = SearchChain(providers, cfg.search_cooldown_s)
    else:
        log.info("web_search is off: no search provider is configured ([[web.search]])")
    web = WebTools(
        cfg, fetcher=fetcher, search=search, redact=gw.redactor.redact, saver=_workspace_saver(gw)
    )
    for t in web.tools():
        gw.tools.register(t)
    gw.policy = web.policy(gw.policy)


def _workspace_saver(gw: Gateway) -> WorkspaceSaver | None:
    """The one place the web tools reach into the sandbox feature: its workspaces, config
    and approval broker, for web_fetch(save_as=...)."""
    sandbox = gw.deps.sandbox
    if sandbox is None:
        return None
    from bot.web.save import WorkspaceSaver

    return WorkspaceSaver(sandbox.workspaces, sandbox.config, sandbox.approvals)


async def start_mcp(gw: Gateway, stack: contextlib.AsyncExitStack) -> None:
    """MCP servers connect in the background; their tools join the registry as they list
    them. Runs after the sandbox, whose policy the MCP policy wraps."""
    from bot.mcp.manager import McpManager
    from bot.mcp.tools import McpToolPolicy

    manager = McpManager(
        gw.config.mcp,
        home=gw.config.home,
        sandbox=gw.config.sandbox,
        registry=gw.tools,
        redact=gw.redactor.redact,
        notify=gw.notify_owner,
    )
    gw.mcp = manager
    gw.policy = McpToolPolicy(gw.policy)
    manager.start()
    stack.push_async_callback(manager.stop)
    gw.start_after_channels.append(manager.channels_started)


class _ChannelDeliverer:
    """Reminders leave through the channel's normal send path (chunking, pacing, retries)."""

    def __init__(self, gw: Gateway) -> None:
        self.gw = gw

    async def deliver(self, conversation: Conversation, text: str) -> str:
        channel = self.gw.channels.get(conversation.channel)
        if channel is None:
            raise ConversationGone(f"channel {conversation.channel!r} is not configured")
        ref = await channel.send(OutboundMessage(conversation, text))
        return ref.message_id


class _TaskRunner:
    def __init__(self, gw: Gateway) -> None:
        self.gw = gw

    async def run_task(self, job: Job) -> str:
        return await self.gw.turns.answer_task(job)


async def ask_approval(gw: Gateway, pending: PendingApproval) -> None:
    """Ask the owner: in the conversation the request came from when the owner asked there
    themselves, otherwise in the owner's DMs."""
    minutes = max(1, round((pending.expires_at - pending.created_at) / 60))
    text = (
        f"Approval needed for {pending.requester}: {pending.summary}\n"
        f"Reply /approve {pending.id} or /deny {pending.id} (expires in {minutes} min)."
    )
    session = gw.sessions.get(pending.session_key)
    if gw.access.role_of_key(pending.requester) == "owner" and session.conversation is not None:
        channel = gw.channels[session.conversation.channel]
        await channel.send(OutboundMessage(session.conversation, text))
        return
    if not gw.config.gateway.owners:
        raise RuntimeError("no owner is configured to approve commands")
    await gw.notify_owner(text)


def _register_approval_commands(gw: Gateway, broker: InMemoryApprovalBroker) -> None:
    async def decide(ctx: CommandContext, approve: bool) -> str:
        approval_id = ctx.args.strip()
        if not approval_id:
            waiting = broker.pending()
            if not waiting:
                return "Nothing is waiting for approval."
            return "\n".join(f"{p.id}: {p.summary}" for p in waiting)
        done = broker.approve(approval_id) if approve else broker.deny(approval_id)
        if not done:
            return f"No pending request {approval_id} (it may have expired)."
        return "Approved." if approve else "Denied."

    @gw.commands.add(
        "approve",
        "Approve a command waiting for you",
        usage="<id>",
        arg_name="id",
        owner_only=True,
        immediate=True,
    )
    async def approve(ctx: CommandContext) -> str:
        return await decide(ctx, True)

    @gw.commands.add(
        "deny",
        "Refuse a command waiting for you",
        usage="<id>",
        arg_name="id",
        owner_only=True,
        immediate=True,
    )
    async def deny(ctx: CommandContext) -> str:
        return await decide(ctx, False)


def owner_dm(owner_key: str) -> Conversation:
    channel, _, user_id = owner_key.partition(":")
    return Conversation(channel, user_id, ConversationKind.DM)
