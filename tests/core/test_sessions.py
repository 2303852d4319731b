"""Session workers: a cancellation (the gateway's drain) always ends a worker; the session
cache's bound; the order in which a burst's turns reach the model."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

from bot.gateway import Gateway
from bot.messages import InboundMessage
from bot.providers.base import ChatRequest
from bot.providers.testing import FunctionProvider
from bot.sessions import Session, SessionManager
from bot.store import Store
from tests.fakes.channel import RecordingChannel


async def test_a_cancelled_worker_leaves_a_message_arriving_at_that_moment_queued(
    tmp_path: Path,
) -> None:
    """The drain cancels a worker parked in its wait just as a message arrives: the worker
    ends, and the message stays queued (pending) instead of running after the drain."""
    handled: list[str] = []

    async def handler(session: Session, message: InboundMessage) -> None:
        handled.append(message.text)

    channel = RecordingChannel(console=True)
    for i in range(20):
        sessions = SessionManager(Store(tmp_path / "unused.db"), handler, idle_exit_s=3600)
        first = channel.inbound(f"first {i}", user=f"u{i}")
        sessions.submit(first)
        await sessions.wait_idle()
        session = sessions.get(first.session_key)
        worker = session.worker
        assert worker is not None  # parked, waiting for the next message
        sessions.submit(channel.inbound(f"second {i}", user=f"u{i}"))
        worker.cancel()  # in the same loop iteration as the arrival
        async with asyncio.timeout(10):
            await asyncio.wait([worker])
        assert worker.cancelled()
        assert handled[-1] == f"first {i}", "the message arrived with the cancellation ran"
        assert session.worker is None and session.queue.qsize() == 1


async def test_past_the_cache_size_idle_sessions_are_dropped_and_busy_ones_kept(
    tmp_path: Path,
) -> None:
    async def handler(session: Session, message: InboundMessage) -> None:
        return None

    sessions = SessionManager(Store(tmp_path / "unused.db"), handler, max_cached=3)
    busy = sessions.get("busy")
    busy.busy = True
    for key in ("a", "b"):
        sessions.get(key)
    assert len(sessions) == 3  # at the cap: nothing dropped
    sessions.get("c")
    sessions.get("d")
    assert len(sessions) == 3
    assert sessions.get("busy") is busy, "a busy session is never dropped"
    kept = {s.key for s in sessions._sessions.values()}
    assert kept == {"busy", "c", "d"}, "the least recently used idle ones go first"


async def test_a_burst_reaches_the_model_in_the_order_it_came(make_config: Any) -> None:
    """200 messages stored in one batch: their turns ask the model first come, first asked
    (a tail of late answers can come from turns overtaken on the way, not only from load)."""
    asked: list[str] = []

    async def answer(request: ChatRequest) -> str:
        asked.append(request.messages[-1].content)
        return "ok"

    channel = RecordingChannel(console=True)
    count = 200
    async with Gateway(
        make_config(gateway={"max_concurrent_turns": count}),
        provider=FunctionProvider(answer),
        channels={"test": channel},
    ) as gw:
        burst = [channel.inbound(f"m{i:03d}", user=f"u{i:03d}") for i in range(count)]
        await asyncio.gather(*(gw.handle_inbound(m) for m in burst))
        await channel.wait_for_messages(count, timeout=60)
    assert asked == [f"m{i:03d}" for i in range(count)]


async def test_a_new_session_reads_no_history_and_a_known_one_reads_it_once(
    tmp_path: Path,
) -> None:
    """The row made for a new session has no turns, so its history is not read; a session
    whose row exists (a restart, an evicted cache entry) reads its history once."""
    store = Store(tmp_path / "s.db")
    async with store:
        reads: list[int] = []
        history = store.turns.history

        async def counted(session_id: int, after_row: int, limit: int) -> Any:
            reads.append(session_id)
            return await history(session_id, after_row, limit)

        store.turns.history = counted  # type: ignore[method-assign]

        async def handler(session: Session, message: InboundMessage) -> None:
            return None

        sessions = SessionManager(store, handler)
        fresh = sessions.get("test:dm:new")
        await sessions.load(fresh)
        await sessions.load(fresh)
        assert reads == [] and fresh.history == [] and fresh.row is not None
        assert fresh.row.new
        again = SessionManager(store, handler).get("test:dm:new")
        await SessionManager(store, handler).load(again)
        assert again.row is not None and again.row.id == fresh.row.id and not again.row.new
        assert reads == [fresh.row.id]


async def test_a_message_already_queued_is_taken_without_an_idle_clock(
    tmp_path: Path, monkeypatch: Any
) -> None:
    """A new session's worker starts with its first message queued: it takes it at once and
    sets no idle timer (one per new session in a burst); it waits with one only when the
    queue is empty."""
    import bot.sessions as sessions_module

    clocks: list[float] = []
    real_timeout = asyncio.timeout

    def counted_timeout(delay: float | None) -> Any:
        clocks.append(delay or 0.0)
        return real_timeout(delay)

    monkeypatch.setattr(sessions_module.asyncio, "timeout", counted_timeout)
    handled: list[str] = []

    async def handler(session: Session, message: InboundMessage) -> None:
        handled.append(message.text)

    channel = RecordingChannel(console=True)
    sessions = SessionManager(Store(tmp_path / "unused.db"), handler, idle_exit_s=3600)
    for i in range(50):
        sessions.submit(channel.inbound(f"first {i}", user=f"u{i}"))
    await sessions.wait_idle()
    assert sorted(handled) == sorted(f"first {i}" for i in range(50))
    # each worker, its queue now empty, waits for the next message under one idle clock
    assert clocks == [3600] * 50
    sessions.submit(channel.inbound("second 0", user="u0"))
    await sessions.wait_idle()
    assert handled[-1] == "second 0" and len(clocks) == 51
    await sessions.drain(0)


async def test_past_the_cache_size_with_every_session_busy_no_new_one_walks_them_all(
    tmp_path: Path, monkeypatch: Any
) -> None:
    """More sessions busy at once than the cache holds (a burst bigger than the cache): a
    walk that finds nothing to drop is not made again for every new session until a worker
    ends; once the turns end, the cache comes back to its size."""
    looked = [0]
    real_idle = Session.idle

    def counted_idle(session: Session) -> bool:
        looked[0] += 1
        return bool(real_idle.fget(session))  # type: ignore[attr-defined]

    monkeypatch.setattr(Session, "idle", property(counted_idle))
    release = asyncio.Event()

    async def handler(session: Session, message: InboundMessage) -> None:
        await release.wait()

    channel = RecordingChannel(console=True)
    sessions = SessionManager(
        Store(tmp_path / "unused.db"), handler, max_cached=10, idle_exit_s=0.01
    )
    for i in range(400):
        sessions.submit(channel.inbound(f"m{i}", user=f"u{i:03d}"))
    assert len(sessions) == 400, "a busy session is never dropped"
    assert looked[0] < 400, f"{looked[0]} looks at sessions for 390 new ones past the size"
    release.set()
    await sessions.wait_idle()
    async with asyncio.timeout(10):
        while any(s.worker is not None for s in sessions._sessions.values()):
            await asyncio.sleep(0.01)
    sessions.get("one more")
    assert len(sessions) == 10
    assert sessions.get("one more") is sessions._sessions["one more"]
