"""The owner's approval inside a turn: the wait is held back from the turn's deadline once per
turn, a later request is announced with what is left of that window (or not made), a turn
whose request was denied or not answered asks no more, and every refusal says what was not
done and why."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest
from conftest import make_ctx

from bot.errors import ToolDenied
from bot.providers.base import ToolCall
from bot.sandbox import SandboxConfig, sandbox_tools, workspace_manager
from bot.sandbox.approval import InMemoryApprovalBroker, PendingApproval, ask_owner
from bot.tools import ToolContext, ToolRegistry
from bot.tools.turn_clock import TurnClock


async def _ask(ctx: ToolContext, broker: InMemoryApprovalBroker, summary: str, wait: float) -> None:
    await ask_owner(ctx, broker, summary, wait, why="it deletes files", refused="not run")


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
    assert after is not None and after - before == pytest.approx(0.1)


async def test_waits_for_a_person_never_overlap() -> None:
    async with asyncio.timeout(60) as deadline:
        clock = TurnClock(deadline, 60)
        first, second = clock.waiting_for_a_person(600), clock.waiting_for_a_person(600)
        with first, pytest.raises(RuntimeError, match="one person"), second:
            pass


async def test_a_later_request_is_announced_with_what_is_left_of_the_window() -> None:
    announced: list[tuple[float, float]] = []

    async def notify(pending: PendingApproval) -> None:
        left = deadline.when() - asyncio.get_running_loop().time()  # type: ignore[operator]
        announced.append((pending.expires_at - pending.created_at, left))
        asyncio.get_running_loop().call_soon(broker.deny, pending.id)

    broker = InMemoryApprovalBroker(notify)
    ctx = make_ctx()
    async with asyncio.timeout(10) as deadline:
        ctx.turn_clock = TurnClock(deadline, 10)
        # an earlier request, answered at once, made the turn's one window 45 s: ~0 s used,
        # 45 s stay; less the 5 s grace, the later request waits 40 s
        with ctx.turn_clock.waiting_for_a_person(45):
            pass
        with pytest.raises(ToolDenied, match="not given within 40 seconds"):
            await _ask(ctx, broker, "rm -rf build", 300)
    [(expires_in, turn_left)] = announced
    # what the owner reads is true: the turn outlives the request it announced
    assert 39 < expires_in <= 40 and turn_left > expires_in


async def test_no_request_is_made_when_the_turns_approval_time_is_used_up() -> None:
    asked: list[PendingApproval] = []

    async def notify(pending: PendingApproval) -> None:
        asked.append(pending)

    ctx = make_ctx()
    async with asyncio.timeout(60) as deadline:
        ctx.turn_clock = TurnClock(deadline, 60)
        # the turn's window is the first request's, 5.8 s (~0 s used): less the 5 s grace,
        # 0.8 s stay, too few to ask the owner
        with ctx.turn_clock.waiting_for_a_person(5.8):
            pass
        with pytest.raises(ToolDenied, match=r"^not run: .* not asked: this turn's time for app"):
            await _ask(ctx, InMemoryApprovalBroker(notify), "rm -rf build", 300)
    assert asked == []


async def test_after_a_request_went_unanswered_the_turn_asks_no_more() -> None:
    asked: list[PendingApproval] = []

    async def notify(pending: PendingApproval) -> None:
        asked.append(pending)

    broker = InMemoryApprovalBroker(notify)
    ctx = make_ctx(redact=lambda text: text.replace("hunter2", "[REDACTED]"))
    async with asyncio.timeout(60) as deadline:
        ctx.turn_clock = TurnClock(deadline, 60)
        with pytest.raises(ToolDenied, match=r"^not run: .*denied or not given within 0\.05 s"):
            await _ask(ctx, broker, "Ada wants to run: echo hunter2", 0.05)
        # says what was not done, and that the owner was not asked this time
        with pytest.raises(ToolDenied, match=r"^not run: .*, and it was not asked: the owner"):
            await _ask(ctx, broker, "Ada wants to run: echo again", 0.05)
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
        await _ask(ctx, broker, "yes one", 30)
        await _ask(ctx, broker, "yes two", 30)
        with pytest.raises(ToolDenied, match="denied or not given"):
            await _ask(ctx, broker, "no", 30)
        with pytest.raises(ToolDenied, match="not asked"):
            await _ask(ctx, broker, "yes three", 30)


async def test_an_owner_who_could_not_be_asked_is_not_blamed() -> None:
    async def unreachable(pending: PendingApproval) -> None:
        raise RuntimeError("the owner's chat is unreachable")

    async def approve(pending: PendingApproval) -> None:
        asyncio.get_running_loop().call_soon(reachable.approve, pending.id)

    reachable = InMemoryApprovalBroker(approve)
    ctx = make_ctx()
    async with asyncio.timeout(60) as deadline:
        ctx.turn_clock = TurnClock(deadline, 60)
        with pytest.raises(ToolDenied, match=r"^not saved: .*, and the owner could not be asked"):
            await ask_owner(
                ctx, InMemoryApprovalBroker(unreachable), "save", 30, why="x", refused="not saved"
            )
        await _ask(ctx, reachable, "the next request is asked", 30)


async def test_a_write_is_not_asked_for_when_the_turn_has_no_time_left(home: Path) -> None:
    asked: list[PendingApproval] = []

    async def notify(pending: PendingApproval) -> None:
        asked.append(pending)

    config = SandboxConfig(approval="ask", approval_timeout_s=0.2)
    ctx = make_ctx(
        workspaces=workspace_manager(config, home),
        sandbox_config=config,
        approvals=InMemoryApprovalBroker(notify),
        tainted=True,  # a write then needs the owner's approval
    )
    arguments = '{"path": "a.txt", "content": "x"}'
    async with asyncio.timeout(1.5) as deadline:
        ctx.turn_clock = TurnClock(deadline, 4)  # 1 s is kept to answer: 0.5 s to write
        result = await ToolRegistry(sandbox_tools()).call(
            ToolCall("c1", "write_file", arguments), ctx
        )
    assert not result.ok and result.content.startswith("error: not written: this turn has")
    assert asked == []
