"""The optional parts, wired into a starting gateway: the sandbox (exec and file tools),
memory, the scheduler, and MCP servers. Each start function registers its tools and commands
and pushes its own stop onto the gateway's exit stack."""

from __future__ import annotations

import contextlib
import logging
from typing import TYPE_CHECKING

from bot.commands import CommandContext
from bot.errors import ConversationGone
from bot.messages import Conversation, ConversationKind, OutboundMessage

if TYPE_CHECKING:
    from bot.gateway import Gateway
    from bot.sandbox import PendingApproval
    from bot.store.jobs import Job

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
    gw.services.update(sandbox=backend, workspaces=workspaces, sandbox_config=cfg, approvals=broker)
    for t in sandbox_tools():
        gw.tools.register(t)
    gw.policy = SandboxToolPolicy(cfg)
    _register_approval_commands(gw)


async def start_memory(gw: Gateway, stack: contextlib.AsyncExitStack) -> None:
    from bot.memory import MemoryService, memory_tools, register_memory_commands

    memory = MemoryService(gw.store, gw.config.memory, gw.config.home, redact=gw.redactor.redact)
    await memory.start()
    stack.push_async_callback(memory.stop)
    gw.services["memory"] = memory
    for t in memory_tools():
        gw.tools.register(t)
    register_memory_commands(gw.commands)


async def start_scheduler(gw: Gateway, stack: contextlib.AsyncExitStack) -> None:
    from bot.scheduler import Scheduler, register_scheduler_commands, scheduler_tools

    cfg = gw.config.scheduler
    if "default_timezone" not in cfg.model_fields_set:
        cfg = cfg.model_copy(update={"default_timezone": gw.config.gateway.timezone})
    scheduler = Scheduler(gw.store, _ChannelDeliverer(gw), _TaskRunner(gw), config=cfg)
    gw.services["scheduler"] = scheduler
    for t in scheduler_tools():
        gw.tools.register(t)
    register_scheduler_commands(gw.commands)
    gw.start_after_channels.append(scheduler.start)
    stack.push_async_callback(scheduler.stop)


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


def _register_approval_commands(gw: Gateway) -> None:
    async def decide(ctx: CommandContext, approve: bool) -> str:
        broker = ctx.services["approvals"]
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
