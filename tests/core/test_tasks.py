"""cancel_and_wait: a task's own cancellation ends there, the caller's never does; and a
retry loop's pauses."""

from __future__ import annotations

import asyncio

import pytest

from bot.tasks import cancel_and_wait, pause_after


async def _forever() -> None:
    await asyncio.Event().wait()


async def test_the_tasks_own_cancellation_ends_there() -> None:
    first, second = asyncio.create_task(_forever()), asyncio.create_task(_forever())
    await asyncio.sleep(0)
    await cancel_and_wait(first, None, second)
    assert first.cancelled() and second.cancelled()


async def test_an_error_of_the_task_is_raised() -> None:
    async def failing() -> None:
        raise ValueError("broken")

    task = asyncio.create_task(failing())
    await asyncio.sleep(0)
    with pytest.raises(ValueError, match="broken"):
        await cancel_and_wait(task)


async def test_a_cancellation_of_the_caller_while_it_waits_is_raised() -> None:
    cleaning, caller_done = asyncio.Event(), asyncio.Event()

    async def slow_to_stop() -> None:
        try:
            await _forever()
        finally:
            cleaning.set()
            await _forever()  # ends only when cancelled once more

    async def caller(task: asyncio.Task[None]) -> None:
        try:
            await cancel_and_wait(task)
        finally:
            caller_done.set()

    waiting = asyncio.create_task(caller(asyncio.create_task(slow_to_stop())))
    await asyncio.wait_for(cleaning.wait(), 5)
    waiting.cancel()
    await asyncio.wait_for(caller_done.wait(), 5)
    with pytest.raises(asyncio.CancelledError):
        await waiting
    assert waiting.cancelled()


async def test_a_task_that_ignores_the_callers_cancellation_does_not_swallow_it() -> None:
    cleaning = asyncio.Event()

    async def stubborn() -> None:
        try:
            await _forever()
        except asyncio.CancelledError:
            cleaning.set()
            try:
                await _forever()
            except asyncio.CancelledError:
                return  # swallows the second cancellation, the caller's

    waiting = asyncio.create_task(cancel_and_wait(asyncio.create_task(stubborn())))
    await asyncio.wait_for(cleaning.wait(), 5)
    waiting.cancel()
    with pytest.raises(asyncio.CancelledError):
        await waiting


async def test_a_caller_cleaning_up_after_its_own_cancellation_still_waits() -> None:
    stopped: list[asyncio.Task[None]] = []
    ready = asyncio.Event()

    async def caller() -> None:
        background = asyncio.create_task(_forever())
        try:
            ready.set()
            await _forever()
        finally:  # cancelled: the cleanup waits for its task and then lets the cancel go on
            await cancel_and_wait(background)
            stopped.append(background)

    task = asyncio.create_task(caller())
    await asyncio.wait_for(ready.wait(), 5)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert len(stopped) == 1 and stopped[0].cancelled()


def test_the_pauses_go_in_turn_then_the_last_is_repeated() -> None:
    pauses = (0.2, 0.5, 1.0)
    assert [pause_after(pauses, tries) for tries in range(5)] == [0.2, 0.5, 1.0, 1.0, 1.0]
