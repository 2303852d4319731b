"""A disk that refuses writes during a turn (SQLite's own SQLITE_FULL and SQLITE_READONLY,
brought about with PRAGMA max_page_count and query_only on the writer's connection): the
person is told, the delivery stays pending, and the gateway keeps serving."""

from __future__ import annotations

import asyncio
import io
import os
from typing import Any

import pytest

from bot.errors import StorageUnavailable
from bot.gateway import Gateway
from bot.providers.base import ChatRequest
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


async def test_full_disk_during_a_turn_tells_the_person_and_keeps_the_message(
    make_config: Any,
) -> None:
    gateway: Gateway
    filled: list[bool] = []

    async def answer(request: ChatRequest) -> str:
        if request.messages[-1].content == "first":
            if not filled:  # the disk fills up while the model answers, once
                filled.append(True)
                await gateway.store.write(_fill_up)
            return LONG_ANSWER
        return "second answer"

    channel = RecordingChannel()
    async with Gateway(
        make_config(), provider=FunctionProvider(answer), channels={"test": channel}
    ) as gateway:
        first = await channel.push("first")
        await _until(lambda: any("storage is full" in t for t in channel.texts()))
        assert "Your message is kept" in channel.texts()[-1]
        await gateway.sessions.wait_idle()
        assert await gateway.store.inbound.status("test", first.id) == "pending"

        await gateway.store.write(_room_again)
        second = await channel.push("second")
        await _until(lambda: channel.texts()[-1] == "second answer")
        await gateway.sessions.wait_idle()
        assert await gateway.store.inbound.status("test", second.id) == "done"
    # the delivery that was not saved runs again at the next start
    rerun = RecordingChannel()
    async with Gateway(
        make_config(), provider=FunctionProvider(answer), channels={"test": rerun}
    ) as gateway:
        await _until(lambda: any("a long answer." in t for t in rerun.texts()))
        await gateway.sessions.wait_idle()
        assert await gateway.store.inbound.status("test", first.id) == "done"


async def test_read_only_database_during_a_turn_is_said_and_the_next_message_is_refused_plainly(
    make_config: Any,
) -> None:
    gateway: Gateway

    async def answer(request: ChatRequest) -> str:
        await gateway.store.write(_read_only)
        return "an answer that cannot be saved"

    channel = RecordingChannel()
    async with Gateway(
        make_config(), provider=FunctionProvider(answer), channels={"test": channel}
    ) as gateway:
        first = await channel.push("first")
        texts = await channel.wait_for_messages(2)
        assert texts[0] == "an answer that cannot be saved"
        assert "storage is read-only" in texts[1]
        await gateway.sessions.wait_idle()
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


async def _until(predicate: Any, timeout: float = 15.0) -> None:
    async with asyncio.timeout(timeout):
        while not predicate():
            await asyncio.sleep(0.01)


async def test_a_database_locked_by_another_process_mid_turn_is_said_and_kept_for_later(
    make_config: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Another process (a CLI command, a backup) holds the write lock past the busy timeout
    while a turn is saved: the person is told once, plainly, and the delivery stays pending
    instead of the turn dying silently in the session worker."""
    from bot.store import sqlite as store_sqlite

    monkeypatch.setattr(store_sqlite, "BUSY_TIMEOUT_MS", 200)  # the test waits less
    gateway: Gateway
    holder: list[Any] = []

    async def answer(request: ChatRequest) -> str:
        # the store's own SQLite library: two copies in one process would not see each
        # other's locks
        other = store_sqlite.sqlite_module().connect(str(gateway.store.path), isolation_level=None)
        other.execute("BEGIN EXCLUSIVE")  # held until the person was told
        holder.append(other)
        return "an answer that cannot be saved yet"

    channel = RecordingChannel()
    try:
        async with Gateway(
            make_config(), provider=FunctionProvider(answer), channels={"test": channel}
        ) as gateway:
            first = await channel.push("first")
            await _until(lambda: any("storage is busy" in t for t in channel.texts()))
            assert "Your message is kept" in channel.texts()[-1]
            await gateway.sessions.wait_idle()
            holder[0].execute("ROLLBACK")
            assert await gateway.store.inbound.status("test", first.id) == "pending"
            told = [t for t in channel.texts() if "storage is busy" in t]
            assert len(told) == 1
    finally:
        for conn in holder:
            conn.close()
