"""The optional parts, wired into a starting gateway: hooks, the sandbox (exec and file
tools), memory, the scheduler, the web tools, MCP servers and skills. Each start function
registers its tools and commands and pushes its own stop onto the gateway's exit stack."""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
import os
from pathlib import Path
from typing import TYPE_CHECKING

from bot.approvals import Waiting, approval_choices
from bot.deps import SandboxDeps
from bot.errors import ConfigError, ConversationGone
from bot.messages import Conversation, ConversationKind, OutboundMessage

if TYPE_CHECKING:
    from bot.gateway import Gateway
    from bot.sandbox import InMemoryApprovalBroker, PendingApproval, SandboxBackend
    from bot.skills.catalog import SkillSet
    from bot.store.jobs import Job
    from bot.web.save import WorkspaceSaver

log = logging.getLogger("decapod.gateway")

#: seconds after the skills load that their folder is watched for edits
SKILLS_WATCH_AFTER_S = 2.0


SandboxChoice = tuple["SandboxBackend | None", str]


def begin_sandbox_choice(gw: Gateway) -> asyncio.Task[SandboxChoice]:
    """Choose the sandbox backend in a task of its own: its probes (bwrap's test runs, the
    Docker daemon's answers) are other processes, which work while this one imports."""
    from bot.sandbox import select_backend

    choice = select_backend(gw.config.sandbox, gw.config.home, _skills_mount(gw))
    return asyncio.create_task(choice, name="sandbox-choice")


async def start_sandbox(
    gw: Gateway,
    stack: contextlib.AsyncExitStack,
    choosing: asyncio.Task[SandboxChoice] | None = None,
) -> None:
    """`choosing`: the choice begun earlier (begin_sandbox_choice), awaited here: what
    it chose, or why nothing runs commands, is settled before the gateway is ready, and a
    failure of the choice fails the start as before."""
    from bot.cluster.approvals import approval_broker
    from bot.sandbox import SandboxToolPolicy, sandbox_tools, workspace_manager

    cfg = gw.config.sandbox
    mounts = _skills_mount(gw)
    backend, gw.sandbox_status = await (choosing or begin_sandbox_choice(gw))
    if backend is not None:
        stack.push_async_callback(backend.aclose)
    broker = approval_broker(gw, lambda pending: ask_approval(gw, pending))
    workspaces = workspace_manager(cfg, gw.config.home, mounts)
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
    gw.approvals.add(_CommandApprovals(broker))


def _skills_mount(gw: Gateway) -> dict[str, Path]:
    """The owner's skills, read-only at /skills in every command's sandbox. Not when the
    gateway runs as root: commands then run as the sandbox uid, which cannot read the
    owner's private folder (the packaged service runs as its own user)."""
    from bot.skills.config import SANDBOX_SKILLS_DIR

    skills = gw.config.skills
    if not skills.enabled:
        return {}
    if os.geteuid() == 0:
        log.info("skills' files are not mounted into the sandbox: the gateway runs as root")
        return {}
    return {SANDBOX_SKILLS_DIR: gw.config.home / skills.dir}


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

    def fired(job: Job, late_by: float) -> None:
        if gw.deps.hooks is not None:
            gw.deps.hooks.job_fired(job, late_by_s=late_by)

    from bot.checkins import Checkins, register_checkin_command

    checkins = Checkins(gw, gw.config.checkins)
    scheduler = Scheduler(
        gw.store,
        _ChannelDeliverer(gw),
        _TaskRunner(gw),
        config=cfg,
        on_fired=fired,
        checkins=checkins,
        may_deliver=gw.turns.job_may_deliver,
    )
    gw.deps = dataclasses.replace(gw.deps, scheduler=scheduler)
    for t in scheduler_tools():
        gw.tools.register(t)
    register_scheduler_commands(gw.commands)
    register_checkin_command(gw.commands, checkins)
    await checkins.apply_config()
    # a warm-up step, begun once the channels are up: what is due (missed while stopped
    # included) is delivered from here; a one-shot process delivers none
    stack.push_async_callback(scheduler.stop)
    if gw.replica is not None:
        # before the start: a job another replica announces meanwhile wakes it too
        gw.replica.wake_on_new_jobs(scheduler)
    if gw.deliver_scheduled:
        await scheduler.start()


async def start_hooks(gw: Gateway, stack: contextlib.AsyncExitStack) -> None:
    """The configured and installed hooks; with none, `deps.hooks` stays None."""
    cfg = gw.config.hooks
    if not cfg.commands and not cfg.entry_points:
        return  # none configured: the hooks' modules (~10 ms of a start) are not loaded
    from bot.hooks.bus import STATE_FILE, HookBus
    from bot.hooks.runners import build_hooks

    hooks, _unloaded = build_hooks(cfg)  # what did not load is logged, and shown by doctor
    if not hooks:
        return
    bus = HookBus(
        hooks,
        cfg,
        redact=gw.redactor.redact,
        notify=gw.notify_owner,
        state_file=gw.config.home / STATE_FILE,
    )
    await bus.start()
    stack.push_async_callback(bus.stop)
    gw.deps = dataclasses.replace(gw.deps, hooks=bus)
    log.info("hooks: %s", ", ".join(h.name for h in hooks))


async def start_skills(gw: Gateway, stack: contextlib.AsyncExitStack) -> None:
    from bot.skills.commands import SkillDraftApprovals, register_skill_commands
    from bot.skills.library import SkillLibrary
    from bot.skills.runtime import SkillRuntime, SkillsDeps
    from bot.skills.tools import skill_tools

    cfg = gw.config.skills
    for t in skill_tools():
        gw.tools.register(t)

    def swap_in(current: SkillSet) -> None:
        # turns that already began keep the Deps (and so the skills) they started with
        gw.deps = dataclasses.replace(gw.deps, skills=SkillsDeps(runtime, current))

    runtime = SkillRuntime(
        SkillLibrary(cfg, gw.config.home),
        config=gw.config,
        tool_names=gw.tools.names,
        on_reload=swap_in,
    )
    stack.push_async_callback(runtime.stop)
    if gw.mcp is not None:
        # MCP servers connect in the background: a skill that needs one of their tools
        # becomes available when the server lists it, and not while it is down (hooked up
        # before the first load, so a server ready meanwhile is not missed)
        gw.mcp.on_tools_changed = runtime.tools_changed
    # the watch (watchfiles, its thread and its probe, ~40 ms of a start's CPU) begins once
    # the gateway is up: what it is for, edits, can wait a second, and none is missed
    current = await runtime.start(watch=cfg.watch, watch_after_s=SKILLS_WATCH_AFTER_S)
    register_skill_commands(gw.commands, runtime)
    gw.approvals.add(SkillDraftApprovals(runtime))
    log.info(
        "skills: %d available, %d unavailable, %d broken",
        len(current.available),
        len(current.unavailable),
        len(current.broken),
    )


async def start_web(gw: Gateway, stack: contextlib.AsyncExitStack) -> None:
    """web_fetch (behind the address guard) when the extractor is installed, web_search when
    a provider is configured. Runs after start_sandbox: save_as needs its workspaces, and
    the web policy wraps the sandbox's."""
    from bot.config import secret_from_env
    from bot.proxy_env import check_proxy_env
    from bot.web import extractor_installed, net
    from bot.web.fetch import Fetcher
    from bot.web.guard import AddressGuard
    from bot.web.tools import WebTools

    cfg = gw.config.web
    check_proxy_env()  # the web tools take the environment's proxy too
    network = net.system_network()
    fetcher = None
    if extractor_installed():
        guard = AddressGuard(allow_private=cfg.allow_private, allow_hosts=cfg.allow_hosts)
        session = net.open_session(network, user_agent=cfg.user_agent, guard=guard)
        stack.push_async_callback(session.close)
        routes = net.proxy_routes(network, session, guard, user_agent=cfg.user_agent)
        stack.push_async_callback(routes.close)
        fetcher = Fetcher(cfg, session, guard, routes)
    elif "enabled" in cfg.model_fields_set:
        raise ConfigError("web_fetch needs trafilatura: pip install 'decapod[web]'", "web.enabled")
    else:
        log.warning("web_fetch is off: trafilatura is not installed (pip install 'decapod[web]')")
    search = None
    if cfg.search:
        # the search APIs' module (and its HTML parser) only when one is configured
        from bot.proxy_env import ProxyLookup
        from bot.web.search import SearchChain, build_provider

        keys = [
            None
            if (secret := p.secret_env()) is None
            else secret_from_env(secret[1], f"web.search[{i}].{secret[0]}")
            for i, p in enumerate(cfg.search)
        ]
        # no address guard here: these are endpoints the operator chose (SearXNG is often
        # on this machine), never URLs from a chat
        api = net.open_session(network, user_agent=cfg.user_agent)
        stack.push_async_callback(api.close)
        proxies = ProxyLookup()  # the environment's, as the gateway's other sessions take it
        providers = [
            build_provider(p, api, key, proxies) for p, key in zip(cfg.search, keys, strict=True)
        ]
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
        answer, _result = await self.gw.turns.answer_task(job)
        return answer


async def ask_approval(gw: Gateway, pending: PendingApproval) -> None:
    """Ask the owner, with Approve / Deny buttons (typed commands where a platform has
    none): in the conversation the request came from when the owner asked there
    themselves, otherwise in the owner's DMs. Only the owners' presses count."""
    seconds = pending.expires_at - pending.created_at
    # a turn's later request may have less than its own window left: say so exactly, never
    # more than there is (170 s rounded to "3 min" promised 10 s too many)
    minutes, rest = divmod(int(seconds), 60)
    if seconds < 120:
        expiry = f"{int(seconds)} s" if seconds >= 1 else "under 1 s"  # floored, never more
    else:
        expiry = f"{minutes} min" + (f" {rest} s" if rest else "")
    text = (
        f"Approval needed for {pending.requester}: {pending.summary}\n"
        f"(request {pending.id}, expires in {expiry})"
    )
    choices = approval_choices(pending.id)
    session = gw.sessions.get(pending.session_key)
    if gw.access.role_of_key(pending.requester) == "owner" and session.conversation is not None:
        channel = gw.channels[session.conversation.channel]
        ask = OutboundMessage(
            session.conversation,
            text,
            choices=choices,
            choices_for=tuple(gw.config.gateway.owners) or (pending.requester,),
            choices_until=pending.expires_at,
        )
        await channel.send(ask)
        return
    if not gw.config.gateway.owners:
        raise RuntimeError("no owner is configured to approve commands")
    await gw.notify_owner(text, choices, pending.expires_at)


class _CommandApprovals:
    """The sandbox's commands waiting for the owner, for /approve and /deny."""

    def __init__(self, broker: InMemoryApprovalBroker) -> None:
        self.broker = broker

    async def waiting(self) -> list[Waiting]:
        return [Waiting(p.id, p.summary) for p in await self.broker.waiting()]

    async def decide(self, key: str, approve: bool) -> str | None:
        done = await self.broker.decide(key, approve)
        if not done:
            return None
        return "Approved." if approve else "Denied."


def owner_dm(owner_key: str) -> Conversation:
    channel, _, user_id = owner_key.partition(":")
    return Conversation(channel, user_id, ConversationKind.DM)
