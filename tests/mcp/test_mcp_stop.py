"""A stop is bounded whatever a stdio server does, also when the stop itself is cancelled
again and again (a second signal, a caller bounding its own stop), and leaves no server
process and no task reading a pipe behind.

The server here prints one line that is not JSON and then never answers. A stop cancelled
again while the SDK stopped it broke into the SDK's shielded teardown before the kill, and
the SDK's stdout reader then waited on the live server's pipe until the server exited by
itself (an hour here)."""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
from pathlib import Path
from typing import Any

import pytest

from bot.errors import ToolError
from bot.mcp.manager import McpManager
from tests.mcp.conftest import SERVER, START_S, alive, running, stdio_entry, until

#: generous for a busy machine; the teardown takes ~2 s here
STOP_BOUND_S = 20.0


async def _pid(state: Path, other_than: int | None = None) -> int:
    """The pid the server wrote at its start (a newer one than `other_than`)."""

    def written() -> int | None:
        with contextlib.suppress(OSError, ValueError):
            pid = int((state / "pid").read_text())
            return pid if pid != other_than else None
        return None

    await until(lambda: written() is not None)
    pid = written()
    assert pid is not None
    return pid


async def _stop_cancelled_again_and_again(manager: McpManager) -> float:
    """How long the manager's stop took while its caller cancelled it every 0.1 s."""
    loop = asyncio.get_running_loop()
    began = loop.time()
    stopping = asyncio.create_task(manager.stop())
    async with asyncio.timeout(STOP_BOUND_S):
        while not stopping.done():
            await asyncio.sleep(0.1)
            stopping.cancel()
    return loop.time() - began


def _pipe_readers() -> list[asyncio.Task[Any]]:
    return [t for t in asyncio.all_tasks() if "stdout_reader" in repr(t.get_coro())]


@pytest.mark.parametrize("phase", ["starting", "restarting", "mid-call"])
async def test_a_stop_cancelled_again_ends_in_bounded_time_and_leaves_nothing_behind(
    gateway_config: Any, state: Path, phase: str
) -> None:
    if phase == "mid-call":
        entry = stdio_entry()
    else:  # "restarting": the first attempt's startup bound runs out, the stop hits the second
        bound = START_S if phase == "starting" else 3.0
        entry = stdio_entry(args=[str(SERVER), "--hang", "--babble"], startup_timeout_s=bound)
    pids: list[int] = []
    async with running(gateway_config({"s": entry})) as (gw, _):
        assert gw.mcp is not None
        try:
            pids.append(await _pid(state))
            conn = gw.mcp.connections["s"]  # it wrote its pid: the connection exists
            call: asyncio.Task[Any] | None = None
            if phase == "restarting":
                pids.append(await _pid(state, other_than=pids[0]))
                assert conn.restarts >= 1
            elif phase == "mid-call":
                await asyncio.wait_for(gw.mcp.wait_ready("s"), START_S)
                call = asyncio.create_task(conn.call("slow", {"seconds": 600}))
                await until(lambda: (state / "slow-started").exists())
            tasks = list(gw.mcp._tasks)
            took = await _stop_cancelled_again_and_again(gw.mcp)
            assert all(task.done() for task in tasks)
            assert not _pipe_readers()
            await until(lambda: not any(alive(pid) for pid in pids), 5)
            if call is not None:
                with pytest.raises(ToolError, match="stopped during the call"):
                    await call
        finally:
            for pid in pids:  # a failed run must not leave its server (nor the stop) hanging
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(pid, signal.SIGKILL)
    assert took < STOP_BOUND_S
