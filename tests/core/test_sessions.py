"""Session workers: a cancellation (the gateway's drain) always ends a worker."""

from __future__ import annotations

import asyncio
from pathlib import Path

from bot.messages import InboundMessage
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

    channel = RecordingChannel()
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
