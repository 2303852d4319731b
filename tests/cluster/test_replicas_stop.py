"""A replica's stop cancelled on the way (a shutdown out of time): the LISTEN connection is
still closed and the session leases still freed, for the other replicas at once."""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Coroutine
from typing import Any

import psycopg
import pytest

from bot.cluster.bus import Bus
from bot.gateway import Gateway
from tests.cluster.harness import Model, until
from tests.fakes.channel import RecordingChannel

pytestmark = pytest.mark.replicas


async def _cancelled(stop: Callable[[], Coroutine[Any, Any, None]]) -> None:
    """Runs `stop` and cancels it as soon as it waits for its tasks; the cancellation is
    raised, not swallowed."""
    stopping = asyncio.create_task(stop())
    await asyncio.sleep(0)  # stop() has cancelled its tasks and waits for them
    stopping.cancel()
    with pytest.raises(asyncio.CancelledError):
        await stopping


async def test_a_cancelled_bus_stop_still_closes_the_listen_connection(pg_url: str) -> None:
    bus = Bus(pg_url, None)
    await bus.start()
    pid = bus.backend_pid
    await _cancelled(bus.stop)
    assert bus.backend_pid is None and not bus.listening.is_set()

    def gone() -> bool:
        with psycopg.connect(pg_url, autocommit=True) as admin:
            row = admin.execute("SELECT count(*) FROM pg_stat_activity WHERE pid = %s", (pid,))
            return row.fetchone() == (0,)

    await until(gone)


async def test_a_cancelled_turns_stop_still_frees_the_leases(
    replica: Callable[..., Gateway],
) -> None:
    async with replica(Model(), RecordingChannel(console=True)) as gw:
        assert gw.replica is not None
        leases = gw.replica.leases
        assert await leases.acquire("test:dm:u1")
        assert await leases.holder("test:dm:u1") == leases.replica_id
        await _cancelled(gw.replica.turns.stop)
        assert await leases.holder("test:dm:u1") is None
