"""The gateway owns every component's lifecycle and routes inbound -> session -> agent -> reply.

Start-up enters each component through one AsyncExitStack, so a failed start stops what had
started. A stop first lets running turns finish (up to `gateway.shutdown_grace_s`); what is
still unfinished stays pending in the inbound table and runs again at the next start.
"""

from __future__ import annotations

import contextlib
import logging
import time
from collections.abc import AsyncIterator
from typing import Any

from bot.agent import Agent, AgentSettings, TurnDone, TurnResult
from bot.agent.context import needs_compaction, split_for_compaction, summarize
from bot.builtin import VERSION_LINE, builtin_tools, register_builtin_commands, uptime_text
from bot.commands import CommandContext, CommandTable
from bot.config import Config
from bot.errors import ContextTooLong, DecapodError
from bot.logging import log_fields
from bot.messages import Conversation, ConversationKind, InboundMessage, OutboundMessage
from bot.metrics import Metrics
from bot.providers.base import ChatMessage, Provider, TextDelta
from bot.security.access import AccessControl, build_access, register_access_commands
from bot.security.redact import default_redactor
from bot.sessions import Session, SessionManager
from bot.store import Store
from bot.store.repos import TurnRecord
from bot.tools import ToolContext, ToolRegistry
from channels import Channel, create_channel

log = logging.getLogger("decapod.gateway")
turn_log = logging.getLogger("decapod.turn")

_FAILED = ("error", "timeout")


class Gateway:
    def __init__(
        self,
        config: Config,
        *,
        provider: Provider | None = None,
        channels: dict[str, Channel] | None = None,
        tools: ToolRegistry | None = None,
    ) -> None:
        self.config = config
        self.store = Store(config.db_path)
        self.metrics = Metrics()
        self.redactor = default_redactor()
        self.commands = CommandTable()
        register_builtin_commands(self.commands)
        register_access_commands(self.commands)
        self.tools = tools or ToolRegistry(builtin_tools())
        self.channels: dict[str, Channel] = dict(channels or {})
        self._provider_override = provider
        self.providers: Any = None  # a ProviderSet, built at start
        self.provider: Provider | None = provider
        self.agent: Agent | None = None
        self.access: AccessControl = build_access(config, self.store)
        self.http: Any = None
        self.sessions = SessionManager(
            self.store,
            self._turn,
            max_concurrent=config.gateway.max_concurrent_turns,
            history_limit=config.gateway.history_messages,
        )
        self.services: dict[str, Any] = {
            "gateway": self,
            "store": self.store,
            "redact": self.redactor.redact,
        }
        self._stack = contextlib.AsyncExitStack()
        self._accepting = False
        self._started = time.monotonic()
        self._persons: dict[str, str] = {}

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
        cfg.home.mkdir(parents=True, exist_ok=True, mode=0o700)
        await self.store.start()
        self._stack.push_async_callback(self.store.stop)
        if self._provider_override is None:
            from bot.providers.build import ProviderSet

            self.providers = ProviderSet(cfg.providers, cfg.models, notify=self.notify_owner)
            await self.providers.start()
            self._stack.push_async_callback(self.providers.aclose)
            self.provider = self.providers.for_purpose("chat")
        assert self.provider is not None
        self.agent = Agent(
            self.provider,
            self.tools,
            AgentSettings(
                system_prompt=cfg.agent.system_prompt,
                max_output_tokens=cfg.agent.max_output_tokens,
                temperature=cfg.agent.temperature,
                max_tool_iterations=cfg.gateway.max_tool_iterations,
                turn_deadline_s=cfg.gateway.turn_deadline_s,
            ),
            redact=self.redactor.redact,
        )
        if cfg.http.enabled:
            from bot.http import HttpServer

            self.http = HttpServer(cfg.http.host, cfg.http.port, self.health, self.metrics.render)
            await self.http.start()
            self._stack.push_async_callback(self.http.stop)
        for name, ch_cfg in cfg.channels.items():
            if name not in self.channels:
                self.channels[name] = create_channel(name, ch_cfg, cfg)
        for channel in self.channels.values():
            await channel.start(self.handle_inbound)
            self._stack.push_async_callback(channel.stop)
        # runs first on close: turns finish while channels can still send their replies
        self._stack.push_async_callback(self._drain)
        self._accepting = True
        for message in await self.store.inbound.open_deliveries():
            if message.conversation.channel in self.channels:
                await self._accept(message)

    async def stop(self) -> None:
        await self._stack.aclose()

    async def __aenter__(self) -> Gateway:
        return await self.start()

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()

    async def _drain(self) -> None:
        self._accepting = False
        if not await self.sessions.drain(self.config.gateway.shutdown_grace_s):
            log.warning("stopped with turns unfinished; they run again at the next start")

    # inbound -------------------------------------------------------------------------------
    async def handle_inbound(self, message: InboundMessage) -> None:
        """The sink every channel hands messages to. Stores the delivery first, so nothing is
        lost to a crash, and drops a delivery seen before, so nothing runs twice."""
        if not await self.store.inbound.insert(message):
            self.metrics.duplicates.labels(message.conversation.channel).inc()
            return
        if self._accepting:
            await self._accept(message)

    async def _accept(self, message: InboundMessage) -> None:
        decision = await self.access.decide(message)
        if not decision.allowed:
            self.metrics.denied.labels(message.conversation.channel).inc()
            await self.store.inbound.set_status(
                message.conversation.channel, message.id, "denied", decision.reason
            )
            if decision.reply:
                await self._say(message, decision.reply)
            return
        self.sessions.submit(message)
        self.metrics.queue_depth.set(self.sessions.queue_depth)

    async def _person(self, message: InboundMessage) -> str:
        key = message.identity.key
        person = self._persons.get(key)
        if person is None:
            person = self._persons[key] = await self.store.identities.touch(message.identity)
        return person

    async def _say(self, message: InboundMessage, text: str) -> None:
        channel = self.channels[message.conversation.channel]
        await channel.send(
            OutboundMessage(
                message.conversation, text, reply_to=message.platform_message_id, meta=message.meta
            )
        )

    # the turn ------------------------------------------------------------------------------
    async def _turn(self, session: Session, message: InboundMessage) -> None:
        started = time.perf_counter()
        channel_name, delivery = (
            message.conversation.channel,
            (
                message.conversation.channel,
                message.id,
            ),
        )
        self.metrics.active_turns.inc()
        try:
            person = await self._person(message)
            role = self.access.role_of(message.identity)
            text = message.text
            if message.command is not None:
                reply, text = await self._command(message, person, role)
                if reply is not None:
                    await self._say(message, reply)
                    await self.store.inbound.set_status(*delivery, "done")
                    return
            problem = self._check_text(text, message)
            if problem:
                await self._say(message, problem)
                await self.store.inbound.set_status(*delivery, "done")
                return
            await self.sessions.load(session)
            ctx = ToolContext(
                identity=message.identity,
                conversation=message.conversation,
                session_key=session.key,
                person_id=person,
                role=role,
                timezone=await self._timezone(message),
                services=self.services,
            )
            user = ChatMessage("user", self.redactor.redact(text))
            result = await self._run_and_reply(session, message, user, ctx)
            await self._persist(session, message, user, result)
            self.metrics.observe_turn(
                channel_name, result.outcome, time.perf_counter() - started, result.usage
            )
            log_fields(
                turn_log,
                "turn",
                session=session.key,
                channel=channel_name,
                provider=result.provider,
                model=result.model,
                latency_ms=round((time.perf_counter() - started) * 1000, 1),
                tokens_in=result.usage.input_tokens,
                tokens_out=result.usage.output_tokens,
                outcome=result.outcome,
            )
        finally:
            self.metrics.active_turns.dec()
            self.metrics.queue_depth.set(self.sessions.queue_depth)

    async def _command(
        self, message: InboundMessage, person: str, role: str
    ) -> tuple[str | None, str]:
        """(reply, text): a reply ends the turn; otherwise `text` goes to the model."""
        assert message.command is not None
        spec = self.commands.get(message.command.name)
        if spec is None:
            return f"Unknown command /{message.command.name}. /help lists the commands.", ""
        if spec.owner_only and role != "owner":
            return "Only the owner can use that command.", ""
        ctx = CommandContext(message, message.command.args, person, role, self.services)
        return await spec.handler(ctx), message.command.args

    def _check_text(self, text: str, message: InboundMessage) -> str | None:
        if not text.strip() and not message.parts:
            return "I got an empty message. Write me some text and I will answer."
        limit = self.config.gateway.max_message_chars
        if len(text) > limit:
            return (
                f"That message is {len(text):,} characters long; I take at most {limit:,}. "
                "Please send it in parts or attach it as a file."
            )
        return None

    async def _timezone(self, message: InboundMessage) -> str:
        zone = await self.store.identities.timezone(message.identity.key)
        return zone or self.config.gateway.timezone

    async def _run_and_reply(
        self, session: Session, message: InboundMessage, user: ChatMessage, ctx: ToolContext
    ) -> TurnResult:
        holder: list[TurnResult] = []
        channel = self.channels[message.conversation.channel]
        template = OutboundMessage(
            message.conversation, "", reply_to=message.platform_message_id, meta=message.meta
        )
        await channel.reply(template, self._reply_stream(session, user, ctx, holder))
        return holder[-1]

    async def _reply_stream(
        self, session: Session, user: ChatMessage, ctx: ToolContext, holder: list[TurnResult]
    ) -> AsyncIterator[str]:
        """The agent's text, redacted so that no prefix ever shows what the final redaction
        would change, followed by a short note when the turn did not end well."""
        assert self.agent is not None and session.row is not None
        stream = self.redactor.stream()
        for attempt in range(2):
            await self._maybe_compact(session, ctx, force=attempt > 0)
            async for event in self.agent.run(
                session.messages(), user, ctx, summary=session.row.summary
            ):
                if isinstance(event, TextDelta):
                    out = stream.feed(event.text)
                    if out:
                        yield out
                elif isinstance(event, TurnDone):
                    holder.append(event.result)
            result = holder[-1]
            if not (isinstance(result.error, ContextTooLong) and not stream.emitted):
                break
        tail = stream.flush()
        if tail:
            yield tail
        result = holder[-1]
        if result.outcome in _FAILED:
            self.metrics.provider_errors.labels(type(result.error).__name__).inc()
            log.warning("turn failed in %s: %s", session.key, result.error)
            note = _user_message(result.error, result.outcome)
            yield f"\n\n{note}" if stream.emitted else note
        elif result.outcome == "interrupted":
            yield " … (the answer was interrupted)"
        elif result.outcome == "max_iterations":
            yield "\n\n(I stopped after too many tool steps.)"
        elif not stream.emitted:
            yield "(no answer)"

    async def _maybe_compact(self, session: Session, ctx: ToolContext, *, force: bool) -> None:
        assert self.agent is not None and session.row is not None and session.history is not None
        window = self._context_window()
        system_tokens = (len(self.agent.system_prompt(session.row.summary)) + 3) // 4
        messages = session.messages()
        if not force and not needs_compaction(
            system_tokens, messages, window, self.config.agent.compaction_threshold
        ):
            return
        older, _recent = split_for_compaction(messages, self.config.agent.keep_recent_messages)
        if not older:
            return
        provider = (
            self.providers.for_purpose("compaction") if self.providers else self.agent.provider
        )
        summary = await summarize(provider, session.row.summary, older)
        upto = session.history[len(older) - 1][0]
        await self.store.sessions.set_summary(session.row.id, summary, upto)
        session.row.summary, session.row.summary_upto = summary, upto
        del session.history[: len(older)]
        log.info("compacted %d messages of %s", len(older), session.key)

    def _context_window(self) -> int:
        provider_name = self.config.models.chat[0].partition(":")[0]
        return self.config.providers[provider_name].context_window

    async def _persist(
        self, session: Session, message: InboundMessage, user: ChatMessage, result: TurnResult
    ) -> None:
        assert session.row is not None
        turn_id = f"{message.conversation.channel}:{message.id}"
        records = [TurnRecord(turn_id, user, identity_key=message.identity.key)]
        records += [TurnRecord(turn_id, m) for m in result.messages]
        if result.outcome in _FAILED or not result.messages:
            note = ChatMessage("assistant", _user_message(result.error, result.outcome))
            records.append(TurnRecord(turn_id, note))
        last = records[-1]
        last.provider, last.model, last.usage = result.provider, result.model, result.usage
        last.latency_ms, last.outcome = result.latency_ms, result.outcome
        ids = await self.store.turns.add(
            session.row.id,
            records,
            inbound_done=(message.conversation.channel, message.id),
        )
        kept = [
            (row_id, rec.message)
            for row_id, rec in zip(ids, records, strict=True)
            if rec.outcome not in _FAILED
        ]
        self.sessions.remember(session, kept)

    # services for commands, the scheduler and the owner ------------------------------------
    async def reset_session(self, key: str) -> None:
        await self.sessions.reset(self.sessions.get(key))

    async def status_text(self, key: str) -> str:
        session = self.sessions.get(key)
        await self.sessions.load(session)
        lines = [
            VERSION_LINE,
            f"model: {', '.join(self.config.models.chat)}",
            f"session: {key} ({len(session.history or [])} recent messages)",
            f"uptime: {uptime_text(self._started)}; active turns: {self.sessions.active}",
        ]
        return "\n".join(lines)

    async def notify_owner(self, text: str) -> None:
        """Tell the owner something once (a provider that stays down, say): log + DM."""
        log.warning("owner notice: %s", text)
        for owner in self.config.gateway.owners:
            channel_name, _, user_id = owner.partition(":")
            channel = self.channels.get(channel_name)
            if channel is None:
                continue
            conversation = Conversation(channel_name, user_id, ConversationKind.DM)
            with contextlib.suppress(DecapodError):
                await channel.send(OutboundMessage(conversation, text))

    async def health(self) -> dict[str, Any]:
        channels = {name: ch.health() for name, ch in self.channels.items()}
        providers = self.providers.state() if self.providers is not None else {}
        ok = all(c.get("running", False) for c in channels.values())
        return {
            "status": "ok" if ok else "degraded",
            "version": VERSION_LINE,
            "uptime_s": round(time.monotonic() - self._started, 1),
            "channels": channels,
            "providers": providers,
            "sessions": len(self.sessions),
            "active_turns": self.sessions.active,
            "queue_depth": self.sessions.queue_depth,
        }


def _user_message(error: BaseException | None, outcome: str) -> str:
    if outcome == "timeout":
        return "Sorry, that took too long and I had to stop. Please try again."
    if isinstance(error, DecapodError):
        return error.user_message
    return DecapodError.user_message
