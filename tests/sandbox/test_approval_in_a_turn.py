"""The owner's approval inside a turn: the wait is held back from the turn's deadline once per
turn, overlapping waits do not undo each other, and a turn whose request was denied or not
answered asks no more."""

from __future__ import annotations

import asyncio

import pytest
from conftest import make_ctx

from bot.errors import ToolDenied
from bot.sandbox.approval import InMemoryApprovalBroker, PendingApproval, ask_owner
from bot.tools.turn_clock import TurnClock


async def test_waits_for_a_person_are_held_back_one_window_per_turn() -> None:
    async with asyncio.timeout(60) as deadline:
        clock = TurnClock(deadline, 60)
        before = deadline.when()
        assert before is not None
        for _ in range(3):  # three requests in one turn, each waited out in full
            with clock.waiting_for_a_person(0.1):
                await asyncio.sleep(0.2)
        after = deadline.when()
    # one window of 0.1 s, not three: N requests must not hold the session N times
    assert after == pytest.approx(before + 0.1)


async def test_overlapping_waits_share_one_hold_and_do_not_undo_each_other() -> None:
    async with asyncio.timeout(60) as deadline:
        clock = TurnClock(deadline, 60)
        before = deadline.when()
        assert before is not None
        first = clock.waiting_for_a_person(600)
        first.__enter__()
        with clock.waiting_for_a_person(600):
            first.__exit__(None, None, None)
            # the second wait still runs: its hold stands
            assert deadline.when() == pytest.approx(before + 600)
            await asyncio.sleep(0.05)
        after = deadline.when()
    assert after is not None and before + 0.05 <= after < before + 60


async def test_after_a_request_went_unanswered_the_turn_asks_no_more() -> None:
    asked: list[PendingApproval] = []

    async def notify(pending: PendingApproval) -> None:
        asked.append(pending)

    broker = InMemoryApprovalBroker(notify)
    ctx = make_ctx(redact=lambda text: text.replace("hunter2", "[REDACTED]"))
    async with asyncio.timeout(60) as deadline:
        ctx.turn_clock = TurnClock(deadline, 60)
        assert not await ask_owner(ctx, broker, "Ada wants to run: echo hunter2", 0.05)
        with pytest.raises(ToolDenied, match="not asked"):
            await ask_owner(ctx, broker, "Ada wants to run: echo again", 0.05)
    # the summary the owner reads is redacted, for every part that asks (exec, save_as)
    assert [p.summary for p in asked] == ["Ada wants to run: echo [REDACTED]"]


async def test_a_denial_also_ends_the_asking_but_an_approval_does_not() -> None:
    async def notify(pending: PendingApproval) -> None:
        answer = broker.approve if "yes" in pending.summary else broker.deny
        asyncio.get_running_loop().call_soon(answer, pending.id)

    broker = InMemoryApprovalBroker(notify)
    ctx = make_ctx()
    async with asyncio.timeout(60) as deadline:
        ctx.turn_clock = TurnClock(deadline, 60)
        assert await ask_owner(ctx, broker, "yes one", 30)
        assert await ask_owner(ctx, broker, "yes two", 30)
        assert not await ask_owner(ctx, broker, "no", 30)
        with pytest.raises(ToolDenied, match="not asked"):
            await ask_owner(ctx, broker, "yes three", 30)
