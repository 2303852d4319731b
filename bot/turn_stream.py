"""A turn's answer as text to stream: the agent run (compacted and asked once more when the
history did not fit), redacted so that no prefix ever shows what the final redaction would
change, and a short note when the turn did not end well.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncGenerator
from typing import TYPE_CHECKING

from bot.agent import TurnDone, TurnResult
from bot.compaction import maybe_compact
from bot.errors import ContextTooLong, DecapodError
from bot.providers.base import ChatMessage, TextDelta
from bot.sessions import Session
from bot.stop import STOPPED_NOTE, RunningTurn, TurnStopped, stoppable, stopped_result
from bot.tools import ToolContext

if TYPE_CHECKING:
    from bot.gateway import Gateway

log = logging.getLogger("decapod.gateway")

#: the outcomes of a turn whose model call failed: the person gets a note, not an answer
FAILED = ("error", "timeout")
CUT_OFF_NOTE = "(My answer reached the output limit and was cut off here.)"


async def reply_stream(
    gw: Gateway,
    session: Session,
    user: ChatMessage,
    ctx: ToolContext,
    holder: list[TurnResult],
    running: RunningTurn,
    max_output_tokens: int | None = None,
) -> AsyncGenerator[str, None]:
    """The agent's text, redacted so that no prefix ever shows what the final redaction
    would change, followed by a short note when the turn did not end well. `running`: the
    turn /stop ends, tracked by the caller (a chat's turn from its attachments on, a
    scheduled task for its whole answer)."""
    from contextlib import aclosing

    from bot.security.redact import Released, release_on_time

    assert gw.agent is not None and session.row is not None
    stream = gw.redactor.stream()
    recalled = await _recall(gw, ctx, user.content)
    produced_text = False
    chosen = await gw.model_choices.provider_for(ctx.person_id, gw.providers)
    written: list[str] = []
    try:
        for attempt in range(2):
            shorter = await maybe_compact(gw, session, ctx, force=attempt > 0)
            if attempt and not shorter:
                break  # the same history would not fit again: the refusal stands
            run = gw.agent.run(
                session.messages(),
                user,
                ctx,
                summary=session.row.summary,
                extra_system=recalled,
                provider=chosen,
                max_output_tokens=max_output_tokens,
            )
            # A slow model's text is shown as it becomes safe, not only every
            # STREAM_BATCH chars.
            events = release_on_time(stream, stoppable(run, running))
            async with aclosing(events) as timed:
                async for event in timed:
                    if isinstance(event, Released):
                        yield event.text
                    elif isinstance(event, TextDelta):
                        produced_text = True
                        written.append(event.text)
                        out = stream.feed(event.text)
                        if out:
                            yield out
                    elif isinstance(event, TurnDone):
                        holder.append(event.result)
            result = holder[-1]
            # too long for the window before any text: compact and ask once more
            if not (isinstance(result.error, ContextTooLong) and not produced_text):
                break
    except TurnStopped:
        holder.append(stopped_result(written, gw.redactor.redact))
    running.finished = True
    tail = stream.flush()
    if tail:
        yield tail
    result = holder[-1]
    if result.outcome == "stopped":
        yield f"\n\n{STOPPED_NOTE}" if stream.emitted else STOPPED_NOTE
    elif result.outcome in FAILED:
        gw.metrics.provider_errors.labels(type(result.error).__name__).inc()
        log.warning("turn failed in %s: %s", session.key, result.error)
        note = failure_note(result.error, result.outcome)
        yield f"\n\n{note}" if stream.emitted else note
    elif result.outcome == "interrupted":
        yield " … (the answer was interrupted)"
    elif result.outcome == "length":
        yield f"\n\n{CUT_OFF_NOTE}" if stream.emitted else CUT_OFF_NOTE
    elif result.outcome == "max_iterations":
        yield "\n\n(I stopped after too many tool steps.)"
    elif not stream.emitted:
        yield "(no answer)"


async def _recall(gw: Gateway, ctx: ToolContext, text: str) -> str:
    """What this person (never anyone else) told us before in this place (a group recalls
    only what was said in it, never a DM's facts), plus shared knowledge."""
    memory = gw.deps.memory
    if memory is None:
        return ""
    from bot.memory import render_recall
    from bot.memory.tools import memory_place

    hits = await memory.recall(ctx.person_id, text, include_shared=True, place=memory_place(ctx))
    return render_recall(hits)


def failure_note(error: BaseException | None, outcome: str) -> str:
    if outcome == "timeout":
        return "Sorry, that took too long and I had to stop. Please try again."
    if isinstance(error, DecapodError):
        return error.user_message
    return DecapodError.user_message
