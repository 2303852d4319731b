"""A disk that refuses writes during a turn (SQLite's own SQLITE_FULL and SQLITE_READONLY,
brought about with PRAGMA max_page_count and query_only on the writer's connection): the
person is told, the delivery stays pending, and the gateway keeps serving."""

from __future__ import annotations

import asyncio
import io
import logging
import os
from collections.abc import AsyncIterator
from typing import Any

import pytest

from bot import delivery
from bot.errors import StorageUnavailable
from bot.gateway import Gateway
from bot.providers.base import ChatRequest, Finish, TextDelta
from bot.providers.testing import FunctionProvider
from channels.console import ConsoleChannel
from tests.fakes.channel import RecordingChannel

LONG_ANSWER = "a long answer. " * 2_000  # more than the free pages of a young database


def _fill_up(conn: Any) -> None:
    pages = conn.execute("PRAGMA page_count").fetchone()[0]
    conn.execute(f"PRAGMA max_page_count = {pages}")


def _room_again(conn: Any) -> None:
    conn.execute("PRAGMA max_page_count = 1073741823")


def _read_only(conn: Any) -> None:
    conn.execute("PRAGMA query_only = ON")


async def test_full_disk_during_a_turn_tells_the_person_and_finishes_once_there_is_room(
    make_config: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The answer is shown whole while the disk is full; the turn that could not be stored
    is stored once there is room again, without a restart, the model asked once."""
    monkeypatch.setattr(delivery, "STORAGE_RETRY_DELAYS_S", (0.2, 0.4))
    gateway: Gateway
    asked: list[str] = []

    async def answer(request: ChatRequest) -> str:
        asked.append(str(request.messages[-1].content))
        if request.messages[-1].content == "first":
            await gateway.store.write(_fill_up)  # the disk fills up while the model answers
            return LONG_ANSWER
        return "second answer"

    channel = RecordingChannel(console=True)
    async with Gateway(
        make_config(), provider=FunctionProvider(answer), channels={"test": channel}
    ) as gateway:
        first = await channel.push("first")
        await _until(lambda: any("storage is full" in t for t in channel.texts()))
        assert "You have my answer above" in channel.texts()[-1]
        assert "try it again" not in channel.texts()[-1], "no second answer is coming"
        shown = "".join(channel.texts()[:-1]).replace(" ", "")  # cut at spaces
        assert shown == LONG_ANSWER.replace(" ", ""), "the answer is shown whole"
        await asyncio.sleep(1.0)  # tries while the disk is still full
        assert await gateway.store.inbound.status("test", first.id) == "pending"

        await gateway.store.write(_room_again)
        await _until_done(gateway, first.id)
        second = await channel.push("second")
        await _until(lambda: channel.texts()[-1] == "second answer")
        await gateway.sessions.wait_idle()
        assert await gateway.store.inbound.status("test", second.id) == "done"
        session = gateway.sessions.get(first.session_key)
        history = [str(m.content).strip() for m in session.messages()]
    assert asked == ["first", "second"]
    assert history == ["first", LONG_ANSWER.strip(), "second", "second answer"]
    told = [t for t in channel.texts() if "storage is full" in t]
    assert len(told) == 1
    # nothing is left for the next start
    rerun = RecordingChannel(console=True)
    async with Gateway(
        make_config(), provider=FunctionProvider(answer), channels={"test": rerun}
    ) as gateway:
        await gateway.sessions.wait_idle()
    assert rerun.texts() == [] and asked == ["first", "second"]


async def test_read_only_database_during_a_turn_is_said_and_the_next_message_is_refused_plainly(
    make_config: Any,
) -> None:
    gateway: Gateway

    async def answer(request: ChatRequest) -> str:
        await gateway.store.write(_read_only)
        return "an answer that cannot be saved"

    channel = RecordingChannel(console=True)
    async with Gateway(
        make_config(), provider=FunctionProvider(answer), channels={"test": channel}
    ) as gateway:
        first = await channel.push("first")
        texts = await channel.wait_for_messages(2)
        assert texts[0] == "an answer that cannot be saved"
        assert "storage is read-only" in texts[1]
        assert await gateway.store.inbound.status("test", first.id) == "pending"
        # a new delivery cannot be stored: the adapter learns it plainly (and does not
        # acknowledge it upstream), and the gateway is still up
        with pytest.raises(StorageUnavailable) as refused:
            await channel.push("second")
        assert refused.value.reason == "read-only"
        assert (await gateway.health())["status"] == "ok"


async def test_chat_says_storage_is_full_and_stays_open(make_config: Any) -> None:
    read_fd, write_fd = os.pipe()
    out = io.StringIO()
    with os.fdopen(read_fd) as stdin, os.fdopen(write_fd, "w") as typed:
        console = ConsoleChannel("console", stdin=stdin, stdout=out, user="owner")
        provider = FunctionProvider(lambda request: "hello back")
        async with Gateway(make_config(), provider=provider, channels={"console": console}) as gw:
            await gw.store.write(_fill_up)
            typed.write("hello " + "padding " * 2000 + "\n")
            typed.flush()
            await _until(lambda: "storage is full" in out.getvalue())
            await gw.store.write(_room_again)
            typed.write("hello again\n")
            typed.flush()
            await _until(lambda: "bot> hello back" in out.getvalue())
            assert not console.closed.is_set()


def _locked(gateway: Gateway) -> Any:
    """Another connection holding the database's write lock (as a CLI command or a backup
    would), with the store's own SQLite library: two copies in one process would not see
    each other's locks."""
    from bot.store import sqlite as store_sqlite

    other = store_sqlite.sqlite_module().connect(str(gateway.store.path), isolation_level=None)
    other.execute("BEGIN EXCLUSIVE")
    return other


async def _until(predicate: Any, timeout: float = 15.0) -> None:
    async with asyncio.timeout(timeout):
        while not predicate():
            await asyncio.sleep(0.01)


async def _until_done(gateway: Gateway, delivery_id: str, timeout: float = 15.0) -> None:
    async with asyncio.timeout(timeout):
        while await gateway.store.inbound.status("test", delivery_id) != "done":
            await asyncio.sleep(0.05)


async def test_a_database_locked_by_another_process_mid_turn_is_said_and_finished_later(
    make_config: Any, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    """Another process (a CLI command, a backup) holds the write lock past the busy timeout
    while a turn is saved: the person is told once, plainly, the delivery stays pending
    while the lock is held, and once it is released the turn is stored without a restart,
    once: the model is asked once, the answer shown once, and the turn counted once."""
    caplog.set_level(logging.INFO, logger="decapod.turn")
    from bot.store import sqlite as store_sqlite

    monkeypatch.setattr(store_sqlite, "BUSY_TIMEOUT_MS", 200)  # the test waits less
    monkeypatch.setattr(delivery, "STORAGE_RETRY_DELAYS_S", (0.2, 0.3))
    gateway: Gateway
    holder: list[Any] = []

    async def answer(request: ChatRequest) -> str:
        holder.append(_locked(gateway))  # held until the person was told
        return "an answer that cannot be saved yet"

    channel = RecordingChannel(console=True)
    try:
        async with Gateway(
            make_config(), provider=FunctionProvider(answer), channels={"test": channel}
        ) as gateway:
            first = await channel.push("first")
            await _until(lambda: any("storage is busy" in t for t in channel.texts()))
            assert "You have my answer above" in channel.texts()[-1]
            await asyncio.sleep(1.5)  # several tries while the lock is held
            assert await gateway.store.inbound.status("test", first.id) == "pending"
            holder[0].execute("ROLLBACK")
            await _until_done(gateway, first.id)
            await gateway.sessions.wait_idle()
            session = gateway.sessions.get(first.session_key)
            assert [m.content for m in session.messages()] == [
                "first",
                "an answer that cannot be saved yet",
            ]
        told = [t for t in channel.texts() if "storage is busy" in t]
        assert len(told) == 1
        assert channel.texts().count("an answer that cannot be saved yet") == 1
        assert len(holder) == 1, "the model was asked again"
        counted = [r for r in caplog.records if r.name == "decapod.turn" and r.msg == "turn"]
        assert len(counted) == 1, "the turn is counted (and logged) once, when it is stored"
    finally:
        for conn in holder:
            conn.close()


async def test_a_try_refused_by_the_store_waits_no_longer_than_the_stop(
    make_config: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A turn pausing before its next try after a refusal does not hold the stop up: the
    stop ends the pause, and the turn and the message queued behind it stay pending for the
    next start, which runs them in order."""
    monkeypatch.setattr(delivery, "STORAGE_RETRY_DELAYS_S", (300.0,))
    asked: list[str] = []

    async def answer(request: ChatRequest) -> str:
        asked.append(str(request.messages[-1].content))
        if asked == ["first"]:
            await channel.push("second")  # queued behind the first in its session
            await gateway.store.write(_read_only)
        return f"answer {len(asked)}"

    channel = RecordingChannel(console=True)
    # the stop does not wait out its grace for the turn, nor for the message behind it
    config = make_config(gateway={"shutdown_grace_s": 60})
    async with Gateway(
        config, provider=FunctionProvider(answer), channels={"test": channel}
    ) as gateway:
        first = await channel.push("first")
        await _until(lambda: any("storage is read-only" in t for t in channel.texts()))
        await _until(lambda: gateway.sessions.retries_waiting == 1)
        async with asyncio.timeout(10):  # far less than the try's pause and the grace
            await gateway.stop()
        assert gateway.sessions.retries_waiting == 0
    assert asked == ["first"], "the second waits for the first"
    # the store took nothing of them: the next start runs them whole, in order
    rerun = RecordingChannel(console=True)
    async with Gateway(
        make_config(), provider=FunctionProvider(answer), channels={"test": rerun}
    ) as gateway:
        await _until_done(gateway, first.id)
        await gateway.sessions.wait_idle()
    assert asked == ["first", "first", "second"]


async def test_a_refused_turn_is_tried_again_before_the_next_message_of_its_session(
    make_config: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The store is busy when the first message's turn is stored, and a second message of
    the same session is queued behind it: once the lock is gone, the first is stored and
    answered before the second runs (the model sees the first in the history), each once,
    and the person is told once."""
    from bot.store import sqlite as store_sqlite

    monkeypatch.setattr(store_sqlite, "BUSY_TIMEOUT_MS", 200)
    monkeypatch.setattr(delivery, "STORAGE_RETRY_DELAYS_S", (0.2, 0.3))
    gateway: Gateway
    holder: list[Any] = []
    seen: list[list[str]] = []

    async def answer(request: ChatRequest) -> str:
        said = [str(m.content) for m in request.messages if m.role == "user"]
        seen.append(said)
        if said[-1] == "A":
            await channel.push("B")  # stored and queued while A's turn runs
            holder.append(_locked(gateway))
        return f"answer to {said[-1]}"

    channel = RecordingChannel(console=True)
    try:
        async with Gateway(
            make_config(), provider=FunctionProvider(answer), channels={"test": channel}
        ) as gateway:
            first = await channel.push("A")
            await _until(lambda: any("storage is busy" in t for t in channel.texts()))
            await asyncio.sleep(1.0)  # several tries while the lock is held
            assert seen == [["A"]], "B waits for A"
            holder[0].execute("ROLLBACK")
            await _until(lambda: "answer to B" in channel.texts())
            await gateway.sessions.wait_idle()
            assert await gateway.store.inbound.status("test", first.id) == "done"
            session = gateway.sessions.get(first.session_key)
            history = [str(m.content) for m in session.messages()]
        assert seen == [["A"], ["A", "B"]]
        assert history == ["A", "answer to A", "B", "answer to B"]
        # the stored order, read from the database by a new start
        async with Gateway(
            make_config(),
            provider=FunctionProvider(answer),
            channels={"test": RecordingChannel(console=True)},
        ) as again:
            stored = again.sessions.get(first.session_key)
            await again.sessions.load(stored)
            assert [str(m.content) for m in stored.messages()] == history
        assert channel.texts().count("answer to A") == 1
        assert channel.texts().count("answer to B") == 1
        assert len([t for t in channel.texts() if "storage is busy" in t]) == 1
    finally:
        for conn in holder:
            conn.close()


class NotingChannel(RecordingChannel):
    """Once it sent the note on an answer a restart cut off, another process locks the
    database (as in the test above) until `release`."""

    gateway: Gateway | None = None
    lock: Any = None

    async def _send_text(self, message: Any, text: str) -> Any:
        ref = await super()._send_text(message, text)
        if text == delivery.INTERRUPTED_NOTE and self.gateway is not None and self.lock is None:
            from bot.store import sqlite as store_sqlite

            path = str(self.gateway.store.path)
            self.lock = store_sqlite.sqlite_module().connect(path, isolation_level=None)
            self.lock.execute("BEGIN EXCLUSIVE")
        return ref

    def release(self) -> None:
        self.lock.execute("ROLLBACK")
        self.lock.close()


async def test_the_note_on_a_cut_off_answer_is_said_once_while_the_store_refuses_it(
    make_config: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    from bot.store import sqlite as store_sqlite

    monkeypatch.setattr(store_sqlite, "BUSY_TIMEOUT_MS", 200)
    monkeypatch.setattr(delivery, "STORAGE_RETRY_DELAYS_S", (0.2,))

    async def slowly(request: ChatRequest) -> AsyncIterator[Any]:
        for i in range(200):
            await asyncio.sleep(0.02)
            yield TextDelta(f"word{i}" if i == 0 else f" word{i}")
        yield Finish()

    config = make_config(gateway={"shutdown_grace_s": 0.1})
    first = RecordingChannel(console=True)
    async with Gateway(config, provider=FunctionProvider(slowly), channels={"test": first}):
        message = await first.push("tell me a long story")
        await _until(lambda: first.texts() and len(first.texts()[0].split()) >= 3)

    second = NotingChannel(console=True)
    provider = FunctionProvider(slowly)
    second.gateway = gateway = Gateway(config, provider=provider, channels={"test": second})
    try:
        async with gateway:
            await _until(lambda: any("storage is busy" in t for t in second.texts()))
            await asyncio.sleep(1.5)  # tries while the lock is held
            assert await gateway.store.inbound.status("test", message.id) == "pending"
            second.release()
            await _until_done(gateway, message.id)
            await gateway.sessions.wait_idle()
    finally:
        if second.lock is not None:
            second.lock.close()
    assert second.texts().count(delivery.INTERRUPTED_NOTE) == 1
    assert len(second.texts()) == 2, "the note, and the storage notice once"


async def test_progress_is_not_recorded_again_in_a_try_once_the_store_refused_it(
    tmp_path: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Each record of progress waits out the busy timeout while the store is locked: after
    the first refusal the try asks no more of it (the turn's own write records what was
    shown), so the rest of the answer is not sent in bursts."""
    from bot.delivery import Outbox
    from bot.messages import Conversation, SentRef
    from bot.store import Store
    from bot.store import sqlite as store_sqlite
    from bot.store.deliveries import DeliveryRepo, DeliveryState

    monkeypatch.setattr(store_sqlite, "BUSY_TIMEOUT_MS", 200)
    asked: list[int] = []

    class CountedRepo(DeliveryRepo):
        async def save(self, key: Any, state: DeliveryState) -> None:
            asked.append(len(state.refs))
            await super().save(key, state)

    async with Store(tmp_path / "a.db") as store:
        outbox = Outbox(CountedRepo(store), ("test", "1"), DeliveryState())
        lock = store_sqlite.sqlite_module().connect(str(store.path), isolation_level=None)
        lock.execute("BEGIN EXCLUSIVE")
        try:
            where = Conversation("test", "chat")
            refs = [SentRef(where, str(i)) for i in range(4)]
            for upto in range(1, 5):  # a new message each time: each would be recorded
                await outbox.shown(refs[:upto], upto * 10)
        finally:
            lock.execute("ROLLBACK")
            lock.close()
    assert asked == [1]
    assert outbox.state.refs == ["0", "1", "2", "3"], "what was shown is still kept"
