"""The gateway owns every component's lifecycle and routes inbound -> session -> agent -> reply
(the way in, from a channel to a session's queue, is bot/inbound.py).

Start-up enters each component through one AsyncExitStack, so a failed start stops what had
started. A stop first lets running turns finish (up to `gateway.shutdown_grace_s`), except
those still reading attachments, which end at once; what is still unfinished stays pending
in the inbound table and runs again at the next start, except that an answer the person has
partly seen is never asked of the model again (bot/delivery.py).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any

from bot.agent import Agent
from bot.approvals import ApprovalDesk
from bot.builtin import VERSION_LINE, builtin_tools, register_builtin_commands
from bot.cluster.node import ClusterNode
from bot.commands import CommandTable, Reply
from bot.config import Config
from bot.delivery import Deliveries
from bot.deps import Deps
from bot.errors import DecapodError
from bot.gateway_start import (
    begin_sandbox_choice,
    build_agent,
    publish_commands_after_warm_up,
    secure_home_files,
    start_channels,
    start_features,
    start_http,
    start_providers,
    start_turn_processes,
)
from bot.inbound import InboundRouter
from bot.media.outbound import ChannelFiles
from bot.messages import Choice, InboundMessage, OutboundMessage
from bot.metrics import Metrics
from bot.model_choice import ModelChoices, register_model_command
from bot.providers.base import Provider
from bot.security.access import (
    AccessControl,
    build_access,
    register_access_commands,
)
from bot.security.redact import default_redactor
from bot.sessions import SessionManager
from bot.stop import RunningTurns, register_stop_command
from bot.store import Store
from bot.store.config import open_store
from bot.tools import ToolPolicy, ToolRegistry
from bot.turns import TurnRunner
from bot.usage import UsageReport, register_usage_command
from bot.warmup import WarmUp
from channels import Channel, create_channel

if TYPE_CHECKING:
    from bot.cluster.bus import Bus
    from bot.cluster.replica import Replica
    from bot.features import SandboxChoice
    from bot.http import HttpServer
    from bot.mcp.manager import McpManager
    from bot.media.intake import MediaIntake
    from bot.media.voice import VoiceAnswers
    from bot.providers.build import ProviderSet
    from bot.scaleout.pool import TurnProcesses

log = logging.getLogger("decapod.gateway")
turn_log = logging.getLogger("decapod.turn")


class Gateway:
    def __init__(
        self,
        config: Config,
        *,
        provider: Provider | None = None,
        channels: dict[str, Channel] | None = None,
        tools: ToolRegistry | None = None,
        deliver_scheduled: bool = True,
        share: tuple[int, int] | None = None,
    ) -> None:
        self.config = config
        #: False in a one-shot process (`decapod ask`): it lacks the other channels, so it
        #: would pause their reminders as undeliverable; the running gateway delivers them
        self.deliver_scheduled = deliver_scheduled
        #: (index, count) in a turn process: the sessions it owns, whose unfinished deliveries
        #: it resumes at start (bot/scaleout)
        self.share = share
        #: the deliveries resumed at start, as (channel, id)
        self.resumed_at_start: set[tuple[str, str]] = set()
        #: with `gateway.turn_processes` > 1, stored deliveries go to the turn processes
        self.turn_processes: TurnProcesses | None = None
        #: this process as one of several replicas on a PostgreSQL store (None on SQLite)
        self.replica: Replica | None = None
        #: this process's LISTEN connection to the other replicas (PostgreSQL only): the
        #: replica's, or the receiver's of turn processes, which runs no turns but keeps the
        #: channels (the web chat's answers pass through it)
        self.bus: Bus | None = None
        self.store: Store = open_store(config.store, config.home)
        #: this replica's id and role among the replicas on one database (bot/cluster)
        self.cluster = ClusterNode(config, self.store)
        self.metrics = Metrics()
        self.redactor = default_redactor()
        self.commands = CommandTable()
        register_builtin_commands(self.commands, self)
        register_access_commands(self.commands)
        #: the model each person (or, by the owner, everyone) picked with /model
        self.model_choices = ModelChoices(self.store, config.models)
        register_model_command(self.commands, self.model_choices)
        #: the turn running in each session, for /stop
        self.running = RunningTurns()
        register_stop_command(self.commands, self.running)
        report = UsageReport(self.store, config.usage, config.gateway.timezone)
        register_usage_command(self.commands, report)
        #: /approve and /deny for whatever waits for the owner (sandbox commands, skill drafts)
        self.approvals = ApprovalDesk(self.commands)
        self.tools = tools or ToolRegistry(builtin_tools())
        self.channels: dict[str, Channel] = dict(channels or {})
        self._provider_override = provider
        self.providers: ProviderSet | None = None  # built at start
        self.media: MediaIntake | None = None  # built at start
        self.provider: Provider | None = provider
        self.agent: Agent | None = None
        self.policy = ToolPolicy()
        self.sandbox_status = "off (sandbox.backend = none)"
        #: the sandbox's choice, begun at start and awaited by start_features
        self.sandbox_choice: asyncio.Task[SandboxChoice] | None = None
        self.mcp: McpManager | None = None
        self.access: AccessControl = build_access(config, self.store, self.channels)
        self.http: HttpServer | None = None
        #: printed to the terminal by `decapod run` until an admin credential exists
        self.setup_code: str | None = None
        self.turns = TurnRunner(self)
        #: the way from a channel to a session: stored, deduplicated, admitted, queued
        self.router = InboundRouter(self)
        self.deliveries = Deliveries(
            self.store.deliveries,
            accept=self.router.accept,
            notify=self.notify_owner,
        )
        self.sessions = SessionManager(
            self.store,
            self.turns.run,
            max_concurrent=config.gateway.max_concurrent_turns,
            history_limit=config.gateway.history_messages,
        )
        #: what tools and commands reach; the optional parts are added as they start
        self.deps = Deps(
            store=self.store, redact=self.redactor.redact, files=ChannelFiles(self.channels)
        )
        #: `/voice` and the spoken copies of answers to voice notes (set at start)
        self.voice: VoiceAnswers | None = None
        self._stack = contextlib.AsyncExitStack()
        #: when the gateway was made (time.monotonic()), for its uptime
        self.started = time.monotonic()
        self._persons: dict[str, str] = {}
        #: steps begun once the channels are up (scheduler, memory, skills); turns wait for them
        self.warmup = WarmUp()
        #: parts told once the channels are up (the MCP servers' notices)
        self.start_after_channels: list[Callable[[], Awaitable[None]]] = []

    # lifecycle -----------------------------------------------------------------------------
    async def start(self) -> Gateway:
        try:
            await self._start()
        except BaseException:
            await self._stack.aclose()
            raise
        return self

    async def _start(self) -> None:
        cfg = self.config
        self._register_secrets()
        secure_home_files(cfg)
        self.sandbox_choice = begin_sandbox_choice(self, self._stack)
        await self.store.start()
        self._stack.push_async_callback(self.store.stop)
        if self.store.backend == "postgresql":
            from bot.cluster.replica import start_replica

            self.replica = await start_replica(self, self._stack)
        if self._provider_override is None:
            await start_providers(self, self._stack)
        assert self.provider is not None
        # before the features: importing the channels' SDKs is most of the start, and the
        # sandbox's probes, begun above, run meanwhile
        for name, ch_cfg in cfg.channels.items():
            if name not in self.channels:
                self.channels[name] = create_channel(name, ch_cfg, cfg)
        await start_features(self, self._stack)
        self.agent = build_agent(self)
        from bot.media.intake import start_media

        self.media = await start_media(cfg, self.providers, self._stack)
        if cfg.http.enabled:
            if cfg.webui.enabled and "web" not in self.channels:
                from bot.webui import WebChannelConfig

                self.channels["web"] = create_channel("web", WebChannelConfig(), cfg)
            await start_http(self, self._stack)
        starting = start_turn_processes(self, self._stack)
        await start_channels(self, self._stack)
        # ready (/health ok): what no turn needs before now runs from here
        self.warmup.begin()
        publish_commands_after_warm_up(self, self._stack)
        for start in self.start_after_channels if self.deliver_scheduled else ():
            await start()
        # runs first on close: turns finish while channels can still send their replies
        self._stack.push_async_callback(self._drain)
        # and before it, another replica takes over receiving (bot/cluster)
        self._stack.push_async_callback(self.cluster.leave)
        # and before it, the tries of failed sends waiting for their time stop waiting
        self._stack.callback(self.deliveries.stop)
        if starting is not None and self.turn_processes is not None:
            # first on close: the turn processes finish while the channels still send
            self._stack.push_async_callback(self.turn_processes.stop)
            await starting
            return  # each turn process resumes its own share of what is unfinished
        if self.replica is not None:
            self.router.accepting = True
            await self.replica.resume()  # only the sessions whose lease it gets
        else:
            await self.router.resume_unfinished()
        if self.providers is not None:
            # the SDKs load now that everything is up, so the start does not wait for them
            warming = asyncio.create_task(self.providers.warm_up(), name="providers-warm-up")
            self._stack.callback(warming.cancel)

    async def stop(self) -> None:
        await self._stack.aclose()

    async def accept_stored(self, message: InboundMessage) -> None:
        """A delivery the receiver stored, handed to this turn process."""
        await self.router.accept(message)

    def _register_secrets(self) -> None:
        """Every secret the process holds goes into the redactor before anything can log it."""
        from bot.security.redact import default_registry

        names = list(self.config.security.secret_env)
        for provider in self.config.providers.values():
            names += [env for _, env in provider.key_env_names()]
        for channel in self.config.channels.values():
            # the channels read their secrets again when made; registered here, a line logged
            # before that (the sandbox's choice runs meanwhile) does not cost another index
            names += [v for k, v in channel if k.endswith("_env") and isinstance(v, str) and v]
        default_registry.add_env(names)

    async def __aenter__(self) -> Gateway:
        return await self.start()

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()

    async def _drain(self) -> None:
        self.router.accepting = False
        if self.media is not None:
            # a download or a transcription in flight would hold the stop up for as long as
            # it takes; nothing of such a turn was shown yet, and it runs again at the start
            self.media.stop_taking()
        if not await self.sessions.drain(self.config.gateway.shutdown_grace_s):
            log.warning("stopped with turns unfinished; they run again at the next start")

    # inbound -------------------------------------------------------------------------------
    async def handle_inbound(self, message: InboundMessage) -> None:
        """The sink every channel hands messages to (bot/inbound.py)."""
        await self.router.handle(message)

    async def admit(self, message: InboundMessage) -> bool:
        """Whether the sender may be answered; a refusal is recorded and said here, once."""
        return await self.router.admit(message)

    async def person_of(self, message: InboundMessage) -> str:
        key = message.identity.key
        person = self._persons.get(key)
        if person is None:
            person = self._persons[key] = await self.store.identities.touch(message.identity)
        return person

    def forget_persons(self) -> None:
        """Identities were linked: look their canonical person up again."""
        self._persons.clear()

    async def say(self, message: InboundMessage, text: str | Reply) -> None:
        reply = text if isinstance(text, Reply) else Reply(text)
        channel = self.channels[message.conversation.channel]
        await channel.send(
            OutboundMessage(
                message.conversation,
                reply.text,
                choices=reply.choices,
                # the buttons answer the person who asked, not whoever sees them
                choices_for=(message.identity.key,) if reply.choices else (),
                reply_to=message.platform_message_id,
                meta=message.meta,
            )
        )

    # services for commands, the scheduler and the owner ------------------------------------
    async def reset_session(self, key: str) -> None:
        await self.sessions.reset(self.sessions.get(key))
        if self.deps.hooks is not None:
            self.deps.hooks.session_reset(key)

    async def notify_owner(
        self, text: str, choices: tuple[Choice, ...] = (), until: float | None = None
    ) -> None:
        """Tell the owner something once (a provider that stays down, say): log + DM.
        `choices` become buttons only the owners' presses count on, until `until`."""
        from bot.features import owner_dm

        # notices quote errors (a provider's, a hook's), which may quote a secret
        text = self.redactor.redact(text)
        log.warning("owner notice: %s", text)
        owners = tuple(self.config.gateway.owners)
        for owner in owners:
            conversation = owner_dm(owner)
            channel = self.channels.get(conversation.channel)
            if channel is not None:
                notice = OutboundMessage(
                    conversation, text, choices=choices, choices_for=owners, choices_until=until
                )
                with contextlib.suppress(DecapodError):
                    await channel.send(notice)

    async def health(self) -> dict[str, Any]:
        channels = {name: ch.health() for name, ch in self.channels.items()}
        providers = self.providers.state() if self.providers is not None else []
        # degraded: a channel is down, no model of the chat chain would be tried now, or a
        # start-up step run after ready failed (turns wait for a restart)
        ok = (
            all(c.get("running", False) for c in channels.values())
            and (not providers or any(p["state"] != "open" for p in providers))
            and not self.warmup.failed
        )
        return {
            "status": "ok" if ok else "degraded",
            "version": VERSION_LINE,
            "uptime_s": round(time.monotonic() - self.started, 1),
            "channels": channels,
            "providers": providers,
            "sandbox": self.sandbox_status,
            "warm_up": self.warmup.state(),
            "cluster": await self.cluster.health(),
            "sessions": len(self.sessions),
            "active_turns": self.sessions.active,
            "queue_depth": self.sessions.queue_depth,
        }
