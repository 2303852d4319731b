"""What a turn leaves behind: its rows in the store (the history the next turn's model sees,
its cost, the note of a failure) and its metrics and log line, for TurnRunner (bot/turns.py);
a scheduled job's failed try is recorded here too, without becoming history."""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

from bot.logging import log_fields
from bot.providers.base import ChatMessage
from bot.store.repos import TurnRecord
from bot.turn_stream import FAILED, failure_note

if TYPE_CHECKING:
    from bot.agent import TurnResult
    from bot.gateway import Gateway
    from bot.sessions import Session
    from bot.store.deliveries import DeliveryUpdate

turn_log = logging.getLogger("decapod.turn")


def count_turn(
    gw: Gateway, session: Session, channel: str, result: TurnResult, latency_s: float, tainted: bool
) -> None:
    gw.metrics.observe_turn(channel, result.outcome, latency_s, result.usage)
    log_fields(
        turn_log,
        "turn",
        session=session.key,
        channel=channel,
        provider=result.provider,
        model=result.model,
        latency_ms=round(latency_s * 1000, 1),
        tokens_in=result.usage.input_tokens,
        tokens_out=result.usage.output_tokens,
        outcome=result.outcome,
        tainted=tainted,
    )


async def record_broken_try(
    gw: Gateway, session: Session, turn_id: str, identity_key: str, result: TurnResult
) -> None:
    """A scheduled turn that failed or broke off is tried again later: its cost is
    recorded, but neither its prompt nor its half answer becomes the job's history, so
    the next run's model sees the history as it was before this one."""
    assert session.row is not None
    note = ChatMessage("assistant", failure_note(result.error, result.outcome))
    record = TurnRecord(turn_id, note, identity_key=identity_key)
    record.provider, record.model, record.usage = result.provider, result.model, result.usage
    # "error" also for a broken-off answer: a failed reply is never history
    record.latency_ms = result.latency_ms
    record.outcome = result.outcome if result.outcome in FAILED else "error"
    await gw.store.turns.add(session.row.id, [record], inbound_done=None)


async def record_turn(
    gw: Gateway,
    session: Session,
    turn_id: str,
    identity_key: str,
    user: ChatMessage,
    result: TurnResult,
    inbound_done: tuple[str, str] | None,
    delivery: DeliveryUpdate | None = None,
) -> None:
    assert session.row is not None
    # the pixels stay with this turn; the history keeps the line that names the image
    records = [TurnRecord(turn_id, user.without_images(), identity_key=identity_key)]
    records += [TurnRecord(turn_id, m) for m in result.messages]
    if result.outcome in FAILED or not result.messages:
        note = ChatMessage("assistant", failure_note(result.error, result.outcome))
        records.append(TurnRecord(turn_id, note))
    last = records[-1]
    last.provider, last.model, last.usage = result.provider, result.model, result.usage
    last.latency_ms, last.outcome = result.latency_ms, result.outcome
    ids = await gw.store.turns.add(
        session.row.id, records, inbound_done=inbound_done, delivery=delivery
    )
    kept = [
        (row_id, rec.message)
        for row_id, rec in zip(ids, records, strict=True)
        if rec.outcome not in FAILED
    ]
    gw.sessions.remember(session, kept)
