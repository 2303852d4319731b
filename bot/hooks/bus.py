"""The hook bus: events in, each hook called with a timeout behind its own circuit breaker.

Every event is queued per hook and delivered by that hook's own task, so each hook sees
events in the order they happened. Only `before_tool` is waited for (a hook may block the
call, with a reason the model reads); the rest are not, so a slow or dead hook never delays
a turn. A hook that fails (raises, times out, answers
nonsense) `failure_threshold` times in a row is switched off for `cooldown_s`, and the owner
is told once; after the cooldown one call is let through, and success switches it back on.
A failing hook never fails a turn. A `before_tool` hook is a guard, so it fails closed: when
it fails, is switched off or is too far behind, the call is not run (the model reads that the
hook failed, never its output) unless the hook is marked `fail_open` (advisory).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import time
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from bot.hooks.config import HookEventName, HooksConfig
from bot.hooks.events import MAX_TEXT_CHARS, HookEvent, HookFailure, HookReply, redact_values
from bot.hooks.runners import Hook
from bot.providers.breaker import Breaker, BreakerSettings, BreakerState
from bot.tasks import cancelled_from_outside

if TYPE_CHECKING:
    from bot.messages import InboundMessage
    from bot.store.jobs import Job
    from bot.tools import ToolContext, ToolResult

log = logging.getLogger("decapod.hooks")

Notify = Callable[[str], Awaitable[None]]
STATE_FILE = "hooks-state.json"
_E = HookEventName


@dataclass(frozen=True, slots=True)
class HookState:
    name: str
    kind: str
    events: tuple[str, ...]
    target: str
    #: closed: on; open: switched off after failures; half_open: the next call is a trial
    state: str
    consecutive_failures: int
    last_error: str | None
    #: wall-clock time the cooldown ends (0 when on)
    off_until: float


@dataclass(frozen=True, slots=True)
class HookFailed:
    """A hook that gave no answer: why, in words the model may read (never the hook's own
    output, which could carry what it read)."""

    why: str


Outcome = HookReply | HookFailed
_STOPPED = HookFailed("the gateway is stopping")


class _Slot:
    def __init__(self, hook: Hook, breaker: Breaker, queue_size: int) -> None:
        self.hook = hook
        self.breaker = breaker
        #: events, each with the future a waiting before_tool call reads the outcome from
        self.queue: asyncio.Queue[tuple[HookEvent, asyncio.Future[Outcome] | None]]
        self.queue = asyncio.Queue(queue_size)
        self.worker: asyncio.Task[None] | None = None
        self.dropped = 0


class HookBus:
    def __init__(
        self,
        hooks: list[Hook],
        config: HooksConfig,
        *,
        redact: Callable[[str], str],
        notify: Notify | None = None,
        state_file: Path | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        settings = BreakerSettings(
            failure_threshold=config.failure_threshold,
            failure_rate_min_calls=1 << 30,  # consecutive failures only
            base_cooldown_s=config.cooldown_s,
            max_cooldown_s=config.cooldown_s,
        )
        self._slots = [_Slot(h, Breaker(settings, clock), config.queue_size) for h in hooks]
        self._by_event: dict[HookEventName, list[_Slot]] = {
            e: [s for s in self._slots if e in s.hook.events] for e in HookEventName
        }
        self._redact = redact
        self._notify = notify
        self._state_file = state_file
        self._clock = clock
        self._cooldown_s = config.cooldown_s
        self._notices: set[asyncio.Task[None]] = set()
        self._stopped = False

    # lifecycle -----------------------------------------------------------------------------
    async def start(self) -> None:
        for slot in self._slots:
            slot.worker = asyncio.create_task(self._drain(slot), name=f"hook-{slot.hook.name}")
        self._save_state()

    async def stop(self, grace_s: float = 2.0) -> None:
        """Deliver what is queued for a moment, then stop the workers."""
        # join(), not empty(): an event a worker has taken but not finished is not queued
        # any more, and its outcome (a failure counted) would be lost to the cancel
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(asyncio.gather(*(s.queue.join() for s in self._slots)), grace_s)
        self._stopped = True
        for slot in self._slots:
            if slot.worker is not None:
                slot.worker.cancel()
        await asyncio.gather(
            *(s.worker for s in self._slots if s.worker is not None), return_exceptions=True
        )
        for slot in self._slots:
            # a before_tool call still waiting behind the queue gets its answer: not run
            while not slot.queue.empty():
                _, answer = slot.queue.get_nowait()
                if answer is not None and not answer.done():
                    answer.set_result(_STOPPED)
        if self._notices:
            await asyncio.wait(set(self._notices), timeout=grace_s)

    def wants(self, event: HookEventName) -> bool:
        return bool(self._by_event[event])

    # the events ----------------------------------------------------------------------------
    def message_received(self, message: InboundMessage) -> None:
        if self.wants(_E.MESSAGE_RECEIVED):
            data = {
                "text": message.text,
                "command": message.command.name if message.command else None,
                "attachments": len(message.parts),
            }
            self.emit(
                HookEvent(
                    _E.MESSAGE_RECEIVED,
                    message.session_key,
                    message.identity.key,
                    message.conversation.channel,
                    data,
                )
            )

    def before_model(self, ctx: ToolContext, *, step: int, messages: int, tools: int) -> None:
        if self.wants(_E.BEFORE_MODEL):
            data = {"step": step, "messages": messages, "tools": tools}
            self.emit(_event(_E.BEFORE_MODEL, ctx, data))

    async def before_tool(
        self, ctx: ToolContext, tool: str, arguments: Mapping[str, Any]
    ) -> str | None:
        """The reason a hook blocks this call, or None to let it run. A hook that gives no
        answer blocks it too, unless it is marked fail_open."""
        slots = self._by_event[_E.BEFORE_TOOL]
        if not slots:
            return None
        event = self._redacted(_event(_E.BEFORE_TOOL, ctx, {"tool": tool, "arguments": arguments}))
        loop = asyncio.get_running_loop()
        for slot in slots:
            outcome: Outcome
            if self._stopped:
                outcome = _STOPPED
            else:
                answer: asyncio.Future[Outcome] = loop.create_future()
                try:
                    # behind the events already queued for this hook: it sees them in order
                    slot.queue.put_nowait((event, answer))
                except asyncio.QueueFull:
                    # waiting for room could take queue_size timeouts: this is a failure
                    outcome = HookFailed("its queue is full")
                else:
                    outcome = await answer
            name = slot.hook.name
            if isinstance(outcome, HookReply):
                if outcome.block:
                    # a deliberate block's reason may be a program's stderr: redacted, like
                    # everything else the model reads
                    reason = self._redact(outcome.block)
                    log.info("hook %s blocked %s: %s", name, tool, reason)
                    return f"{reason} (hook {name})"
            elif slot.hook.fail_open:
                log.info(
                    "hook %s failed on %s (%s); fail_open: the call runs", name, tool, outcome.why
                )
            else:
                log.warning(
                    "hook %s failed on %s (%s): the call is not run", name, tool, outcome.why
                )
                return f"hook {name} failed ({outcome.why}), so the call it guards is not run"
        return None

    def after_tool(self, ctx: ToolContext, result: ToolResult) -> None:
        if self.wants(_E.AFTER_TOOL):
            data = {
                "tool": result.name,
                "ok": result.ok,
                "elapsed_ms": round(result.elapsed_ms, 1),
                "result": result.content[:MAX_TEXT_CHARS],
            }
            self.emit(_event(_E.AFTER_TOOL, ctx, data))

    def reply_sent(self, ctx: ToolContext, text: str, outcome: str) -> None:
        if self.wants(_E.REPLY_SENT):
            self.emit(_event(_E.REPLY_SENT, ctx, {"text": text, "outcome": outcome}))

    def session_reset(self, session_key: str) -> None:
        if self.wants(_E.SESSION_RESET):
            self.emit(HookEvent(_E.SESSION_RESET, session_key))

    def job_fired(self, job: Job, *, late_by_s: float) -> None:
        if self.wants(_E.JOB_FIRED):
            data = {
                "job": job.id,
                "kind": job.kind.value,
                "text": job.text,
                "late_by_s": round(late_by_s, 3),
            }
            self.emit(
                HookEvent(
                    _E.JOB_FIRED,
                    "",
                    job.identity_key,
                    job.conversation.channel,
                    data,
                )
            )

    def emit(self, event: HookEvent) -> None:
        """Queue `event` for every hook that wants it; never waits."""
        slots = self._by_event[event.name]
        if not slots:
            return
        event = self._redacted(event)
        for slot in slots:
            try:
                slot.queue.put_nowait((event, None))
            except asyncio.QueueFull:
                slot.dropped += 1
                if slot.dropped == 1 or slot.dropped % 100 == 0:
                    log.warning(
                        "hook %s is behind; %d events dropped", slot.hook.name, slot.dropped
                    )

    # state -----------------------------------------------------------------------------------
    def state(self) -> list[HookState]:
        now_wall = time.time()
        out = []
        for slot in self._slots:
            snap = slot.breaker.snapshot(slot.hook.name)
            remaining = snap["cooldown_remaining_s"]
            out.append(
                HookState(
                    name=slot.hook.name,
                    kind=slot.hook.kind,
                    events=tuple(sorted(e.value for e in slot.hook.events)),
                    target=slot.hook.describe(),
                    state=snap["state"],
                    consecutive_failures=snap["consecutive_failures"],
                    last_error=snap["last_error"],
                    off_until=now_wall + remaining if remaining else 0.0,
                )
            )
        return out

    # plumbing --------------------------------------------------------------------------------
    async def _drain(self, slot: _Slot) -> None:
        while True:
            event, answer = await slot.queue.get()
            try:
                outcome = await self._call(slot, event)
                if answer is not None and not answer.done():
                    answer.set_result(outcome)
            finally:
                if answer is not None and not answer.done():
                    answer.set_result(_STOPPED)  # stopped meanwhile: no answer, not run
                slot.queue.task_done()

    async def _call(self, slot: _Slot, event: HookEvent) -> Outcome:
        """One call of one hook: its reply, or why there is none (switched off, failed)."""
        breaker, hook = slot.breaker, slot.hook
        permit = breaker.try_acquire()
        if permit is None:
            return HookFailed("it is switched off after repeated failures")
        was_on = not permit.probe
        try:
            reply = await asyncio.wait_for(hook.run(event), hook.timeout_s)
        except TimeoutError:
            error = summary = f"timed out after {hook.timeout_s:g}s"
        except HookFailure as exc:
            error, summary = str(exc), exc.summary
        except asyncio.CancelledError:
            if cancelled_from_outside():
                raise  # the bus stops
            # left to end this worker, every later before_tool would wait for it for good
            error = summary = "raised CancelledError without a cancellation"
        except Exception as exc:
            log.exception("hook %s raised on %s", hook.name, event.name.value)
            error = f"raised {type(exc).__name__}: {exc}"[:300]
            summary = f"raised {type(exc).__name__}"
        else:
            if permit.probe:
                log.info("hook %s works again", hook.name)
            breaker.record_success()
            if permit.probe:
                self._save_state()
            return reply
        log.warning("hook %s failed on %s: %s", hook.name, event.name.value, error)
        breaker.record_failure(permit, error)
        if breaker.snapshot(hook.name)["state"] == BreakerState.OPEN.value:
            self._save_state()
            if was_on:
                guards = _E.BEFORE_TOOL in hook.events and not hook.fail_open
                self._tell_owner(
                    f"Hook {hook.name} failed {breaker.consecutive_failures} times in a row "
                    f"(last: {error}); it is off for {self._cooldown_s:g} s. "
                    + (
                        "The tool calls it guards are blocked meanwhile."
                        if guards
                        else "Turns go on without it."
                    )
                )
        return HookFailed(summary)

    def _redacted(self, event: HookEvent) -> HookEvent:
        data = redact_values(event.data, self._redact)
        return HookEvent(
            event.name, event.session_key, event.identity, event.channel, data, event.at
        )

    def _tell_owner(self, text: str) -> None:
        log.error("%s", text)
        if self._notify is None:
            return
        task = asyncio.create_task(self._send(text), name="hook-notice")
        self._notices.add(task)
        task.add_done_callback(self._notices.discard)

    async def _send(self, text: str) -> None:
        assert self._notify is not None
        try:
            await self._notify(text)
        except Exception:
            log.exception("could not tell the owner about a failing hook")

    def _save_state(self) -> None:
        """For `decapod hooks list` and doctor, which run in another process."""
        if self._state_file is None:
            return
        data = {s.name: _state_dict(s) for s in self.state()}
        tmp = self._state_file.with_name(f".{self._state_file.name}.tmp")
        try:
            fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_NOFOLLOW, 0o600)
            with os.fdopen(fd, "w") as f:
                json.dump(data, f)
            os.replace(tmp, self._state_file)
        except OSError as exc:
            log.warning("could not write %s: %s", self._state_file, exc)


def _event(name: HookEventName, ctx: ToolContext, data: Mapping[str, Any]) -> HookEvent:
    return HookEvent(name, ctx.session_key, ctx.identity.key, ctx.conversation.channel, data)


def _state_dict(s: HookState) -> dict[str, Any]:
    return {
        "state": s.state,
        "consecutive_failures": s.consecutive_failures,
        "last_error": s.last_error,
        "off_until": s.off_until,
    }


def read_saved_state(path: Path) -> dict[str, dict[str, Any]]:
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}
