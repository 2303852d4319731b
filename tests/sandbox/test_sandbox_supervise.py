"""The watch beside a running command (bot/sandbox/base.py: supervise) ends with it."""

from __future__ import annotations

import asyncio

import pytest

from bot.sandbox.base import supervise


async def test_a_command_cancelled_twice_leaves_no_watchdog_running() -> None:
    """A command cancelled while its watchdog cleans up (the quota watch reaps its `find`),
    and cancelled again (a /stop on top of a timeout): the cancellation is raised, and the
    watchdog has ended by then, not left running beside whatever comes next."""
    started, cleaning = asyncio.Event(), asyncio.Event()
    watching: list[asyncio.Task[object]] = []

    async def watchdog() -> str:
        task = asyncio.current_task()
        assert task is not None
        watching.append(task)
        started.set()
        try:
            await asyncio.Event().wait()  # the workspace never grows past its quota
        finally:
            cleaning.set()
            await asyncio.Event().wait()  # a cleanup slow to finish
        return "unreachable"

    never_exits: asyncio.Future[int] = asyncio.get_running_loop().create_future()
    supervising = asyncio.create_task(supervise(never_exits, 3600, watchdog))
    async with asyncio.timeout(30):
        await started.wait()
        supervising.cancel()
        await cleaning.wait()
    supervising.cancel()
    with pytest.raises(asyncio.CancelledError):
        async with asyncio.timeout(30):
            await supervising
    assert watching[0].done()
