from __future__ import annotations

import asyncio
import json
import sqlite3
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from bot.errors import StoreError
from bot.messages import Conversation, Identity, InboundMessage
from bot.providers.base import ChatMessage, ToolCall, Usage
from bot.store import Store, sqlite
from bot.store.migration_runner import migrate
from bot.store.migrations import MIGRATIONS
from bot.store.repos import TurnRecord


def _inbound(i: str) -> InboundMessage:
    return InboundMessage(i, Identity("c", "u"), Conversation("c", "u"), text=f"m{i}")


async def test_migrations_are_ordered_and_idempotent(tmp_path: Path) -> None:
    async with Store(tmp_path / "a.db") as store:
        assert store.migrations_applied == sorted(MIGRATIONS)
    async with Store(tmp_path / "a.db") as store:
        assert store.migrations_applied == []
    conn = sqlite.connect(tmp_path / "a.db")
    assert migrate(conn) == []
    assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    conn.close()


async def test_inbound_dedupe_and_open_deliveries(tmp_path: Path) -> None:
    async with Store(tmp_path / "a.db") as store:
        assert await store.inbound.insert(_inbound("1"))
        assert not await store.inbound.insert(_inbound("1"))
        assert await store.inbound.insert(_inbound("2"))
        await store.inbound.set_status("c", "1", "done")
        pending = await store.inbound.open_deliveries()
        assert [m.id for m in pending] == ["2"]
        assert pending[0].text == "m2" and pending[0].conversation == Conversation("c", "u")


async def test_turns_round_trip_with_tool_calls(tmp_path: Path) -> None:
    async with Store(tmp_path / "a.db") as store:
        row = await store.sessions.current("k")
        call = ToolCall("call1", "current_time", '{"zone": "UTC"}')
        records = [
            TurnRecord("t1", ChatMessage("user", "what time?"), identity_key="c:u"),
            TurnRecord("t1", ChatMessage("assistant", "", (call,))),
            TurnRecord(
                "t1", ChatMessage("tool", "12:00", tool_call_id="call1", name="current_time")
            ),
            TurnRecord(
                "t1",
                ChatMessage("assistant", "It is noon."),
                provider="p",
                model="m",
                usage=Usage(10, 3),
                latency_ms=5.0,
                outcome="ok",
            ),
            TurnRecord("t2", ChatMessage("assistant", "sorry"), outcome="error"),
        ]
        ids = await store.turns.add(row.id, records, inbound_done=None)
        assert len(ids) == 5
        history = await store.turns.history(row.id, 0, 10)
        assert [m for _, m in history] == [r.message for r in records[:4]]
        rows = await store.turns.for_session(row.id)
        assert rows[3]["input_tokens"] == 10 and rows[3]["provider"] == "p"


async def test_a_tool_call_stored_with_fields_this_build_does_not_know_still_loads(
    tmp_path: Path,
) -> None:
    # a row a newer build wrote (before a rollback, or by a newer replica): what this build
    # knows of each call is loaded, the rest left in the row
    async with Store(tmp_path / "a.db") as store:
        row = await store.sessions.current("k")
        call = ToolCall("call1", "current_time", "{}", extra='{"a": 1}', extra_from="gemini")
        await store.turns.add(
            row.id, [TurnRecord("t1", ChatMessage("assistant", "", (call,)))], inbound_done=None
        )
        stored = {"id": "call1", "name": "current_time", "arguments": "{}"}
        newer = json.dumps([stored | {"extra": '{"a": 1}', "extra_from": "gemini", "later": "x"}])
        await store.write(lambda conn: conn.execute("UPDATE turns SET tool_calls = ?", (newer,)))
        [(_, message)] = await store.turns.history(row.id, 0, 10)
    assert message.tool_calls == (call,)


async def test_session_reset_starts_a_new_generation(tmp_path: Path) -> None:
    async with Store(tmp_path / "a.db") as store:
        first = await store.sessions.current("k")
        assert (await store.sessions.current("k")).id == first.id
        fresh = await store.sessions.reset("k")
        assert fresh.id != first.id
        assert (await store.sessions.current("k")).id == fresh.id


async def test_a_failing_write_does_not_undo_others_in_its_batch(tmp_path: Path) -> None:
    async with Store(tmp_path / "a.db") as store:

        def bad(conn: object) -> None:
            raise ValueError("boom")

        results = await asyncio.gather(
            store.kv.set("a", "1"),
            store.write(bad),
            store.kv.set("b", "2"),
            return_exceptions=True,
        )
        assert isinstance(results[1], ValueError)
        assert await store.kv.get("a") == "1" and await store.kv.get("b") == "2"


async def test_r11_sqlite_contention_no_database_locked(tmp_path: Path) -> None:
    """Three adapters and a scheduler write at once, plus a second process-like connection
    holding write locks: every write lands, none surfaces 'database is locked'."""
    path = tmp_path / "a.db"
    async with Store(path) as store:
        other = sqlite.connect(path)

        def hog() -> None:
            for _ in range(20):
                other.execute("BEGIN IMMEDIATE")
                other.execute("INSERT OR REPLACE INTO kv VALUES ('hog', 'x', 0)")
                import time

                time.sleep(0.01)
                other.execute("COMMIT")

        async def adapter(n: int) -> None:
            for i in range(100):
                assert await store.inbound.insert(_inbound(f"{n}-{i}"))

        async def scheduler() -> None:
            for i in range(100):
                await store.kv.set(f"job{i}", "due")

        await asyncio.gather(
            asyncio.to_thread(hog), adapter(1), adapter(2), adapter(3), scheduler()
        )
        other.close()
        count = await store.read(lambda c: c.execute("SELECT count(*) FROM inbound").fetchone()[0])
        assert count == 300
        ok = await store.read(lambda c: c.execute("PRAGMA integrity_check").fetchone()[0])
        assert ok == "ok"


async def test_the_writes_of_one_tick_commit_in_one_transaction_in_order(tmp_path: Path) -> None:
    async with Store(tmp_path / "a.db") as store:
        await store.kv.set("warm", "1")
        before = store.transactions
        order: list[int] = []

        def record(i: int) -> Callable[[Any], int]:
            def op(conn: Any) -> int:
                order.append(i)
                return i

            return op

        results = await asyncio.gather(*(store.write(record(i)) for i in range(50)))

        assert results == list(range(50)) == order
        assert store.transactions == before + 1


async def test_a_lone_failing_write_rolls_back_only_itself_without_a_savepoint(
    tmp_path: Path,
) -> None:
    async with Store(tmp_path / "a.db") as store:
        statements: list[str] = []

        def traced(conn: Any) -> None:
            conn.set_trace_callback(statements.append)
            conn.execute("INSERT INTO kv VALUES ('lost', 'x', 0)")
            raise ValueError("boom")

        with pytest.raises(ValueError, match="boom"):
            await store.write(traced)
        await store.write(lambda conn: conn.set_trace_callback(None))

        assert await store.kv.get("lost") is None
        assert not any(s.startswith(("SAVEPOINT", "RELEASE")) for s in statements)
        await store.kv.set("after", "1")
        assert await store.kv.get("after") == "1"


async def test_a_cheap_read_runs_on_the_loop_and_sees_committed_writes(tmp_path: Path) -> None:
    async with Store(tmp_path / "a.db") as store:
        row = await store.sessions.current("k")
        await store.turns.add(
            row.id, [TurnRecord("t1", ChatMessage("user", "hello"))], inbound_done=None
        )
        threads: list[str] = []

        def op(conn: Any) -> int:
            threads.append(threading.current_thread().name)
            return int(conn.execute("SELECT count(*) FROM turns").fetchone()[0])

        assert await store.peek(op) == 1
        assert threads == [threading.current_thread().name]
        history = await store.turns.history(row.id, 0, 10)
        assert [m.content for _, m in history] == ["hello"]


async def test_a_cheap_write_runs_on_the_loop_but_never_overtakes_the_writer(
    tmp_path: Path,
) -> None:
    async with Store(tmp_path / "a.db") as store:
        seen: list[tuple[str, str]] = []
        gate = threading.Event()
        holding = threading.Event()

        def op(tag: str) -> Callable[[Any], str]:
            def run(conn: Any) -> str:
                if tag == "slow":
                    holding.set()
                    gate.wait(30)
                conn.execute("INSERT INTO kv VALUES (?, 'x', 0)", (tag,))
                seen.append((tag, threading.current_thread().name))
                return tag

            return run

        slow = asyncio.ensure_future(store.write(op("slow")))
        async with asyncio.timeout(30):  # its tick has ended: the writer thread holds it
            while not holding.is_set():
                await asyncio.sleep(0.01)
        after = asyncio.ensure_future(store.write(op("after"), cheap=True))
        await asyncio.sleep(0.05)
        assert not after.done()  # it waits behind the slow write
        gate.set()
        assert (await slow, await after) == ("slow", "after")
        assert await store.write(op("alone"), cheap=True) == "alone"

        loop_thread = threading.current_thread().name
        assert seen == [
            ("slow", "decapod-store-writer"),
            ("after", "decapod-store-writer"),
            ("alone", loop_thread),
        ]
        assert await store.kv.get("alone") == "x"


async def test_a_store_started_again_writes_on_the_loop_again(tmp_path: Path) -> None:
    store = Store(tmp_path / "a.db")
    threads: list[str] = []

    def op(conn: Any) -> None:
        threads.append(threading.current_thread().name)

    for _ in range(2):
        await store.start()
        try:
            await store.write(op, cheap=True)
        finally:
            await store.stop()

    assert threads == [threading.current_thread().name] * 2


def test_processes_opening_a_new_database_together_all_get_in(tmp_path: Path) -> None:
    """Two replicas (or the CLI beside the gateway) opening a database that does not exist
    yet: switching it to WAL is answered "locked" at once, not after the busy timeout."""

    from bot.store import sqlite

    failures: list[BaseException] = []

    def open_it(path: Path) -> None:
        try:
            sqlite.connect(path).close()
        except Exception as exc:
            failures.append(exc)

    for n in range(150):
        path = tmp_path / f"{n}.db"
        threads = [threading.Thread(target=open_it, args=(path,)) for _ in range(3)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
    assert failures == []


async def test_a_write_on_the_loop_never_waits_out_a_lock_after_the_writer_used_the_connection(
    tmp_path: Path,
) -> None:
    """The loop and the writer thread share one connection: the writer waits out another
    process's lock, the loop never does (it hands the batch to the writer instead), however
    often the connection has changed hands."""
    async with Store(tmp_path / "a.db") as store:

        def add(key: str) -> Callable[[Any], object]:
            return lambda c: c.execute("INSERT INTO kv VALUES (?, 'x', 0)", (key,))

        await store.write(add("on the loop"), cheap=True)  # the loop takes the connection
        await store.write(add("heavy"))  # the writer thread takes it back
        writer_began = threading.Event()
        loop_thread = threading.get_ident()

        def traced(sql: str) -> None:
            if sql.startswith("BEGIN") and threading.get_ident() != loop_thread:
                writer_began.set()

        store._conn.set_trace_callback(traced)  # the writer thread is idle: it is the loop's
        other = sqlite.connect(tmp_path / "a.db")
        other.execute("BEGIN IMMEDIATE")  # another process holds the write lock
        try:
            loop = asyncio.get_running_loop()
            start = loop.time()
            pending = asyncio.ensure_future(store.write(add("later"), cheap=True))
            await asyncio.sleep(0.05)  # the loop has tried and handed the write on
            # a loop that waited out the 5 s busy timeout would have slept that long
            assert loop.time() - start < sqlite.BUSY_TIMEOUT_MS / 2000
            # the lock is released only once the writer thread has met it: a loaded machine
            # may not have scheduled the writer yet
            async with asyncio.timeout(30):
                while not writer_began.is_set():
                    await asyncio.sleep(0.01)
            await asyncio.sleep(0.1)  # from the statement's start to the lock: microseconds
            assert not pending.done()  # the writer waits the lock out instead of failing
        finally:
            other.execute("COMMIT")
            other.close()
        await asyncio.wait_for(pending, 30)
        store._conn.set_trace_callback(None)
        assert await store.peek(lambda c: c.execute("SELECT count(*) FROM kv").fetchone()[0]) == 3


async def test_a_cheap_read_uses_the_writers_connection_only_while_the_writer_is_idle(
    tmp_path: Path,
) -> None:
    async with Store(tmp_path / "a.db") as store:
        used: list[int] = []
        gate = threading.Event()
        holding = threading.Event()

        def which(conn: Any) -> None:
            used.append(id(conn))

        def slow(conn: Any) -> None:
            holding.set()
            gate.wait(30)

        await store.peek(which)
        pending = asyncio.ensure_future(store.write(slow))
        try:
            async with asyncio.timeout(30):  # its tick has ended: the writer thread holds it
                while not holding.is_set():
                    await asyncio.sleep(0.01)
            await store.peek(which)
        finally:
            gate.set()
        await pending
        await store.peek(which)
        writer, own = id(store._conn), id(store._loop_conn)
        assert writer != own
        assert used == [writer, own, writer]


async def test_a_transaction_left_open_on_the_writers_connection_is_never_read_then_dropped(
    tmp_path: Path,
) -> None:
    """A ROLLBACK that failed, or a KeyboardInterrupt inside a write made on the loop, can leave
    the writer's connection in a transaction: its rows are nobody's until it commits."""
    async with Store(tmp_path / "a.db") as store:
        conn = store._conn
        conn.execute("BEGIN IMMEDIATE")
        conn.execute("INSERT INTO kv VALUES ('uncommitted', 'x', 0)")
        try:
            count = await store.peek(
                lambda c: c.execute("SELECT count(*) FROM kv WHERE value = 'x'").fetchone()[0]
            )
            # the writes go to the writer thread, which drops what nobody committed
            await store.write(lambda c: c.execute("INSERT INTO kv VALUES ('next', 'x', 0)"))
        finally:
            if conn.in_transaction:
                conn.execute("ROLLBACK")
        assert count == 0
        assert await store.kv.get("uncommitted") is None
        assert await store.kv.get("next") == "x"


@pytest.mark.parametrize("cheap", [True, False], ids=["on the loop", "on the writer thread"])
async def test_a_rollback_that_fails_fails_its_write_and_later_writes_still_complete(
    tmp_path: Path, cheap: bool
) -> None:
    """A write that raises, then a ROLLBACK that fails (its own and the batch's): that write
    fails, the transaction it left open is dropped before the next batch, and the store goes
    on writing, on the loop and on the writer thread alike."""
    refusals = [2]

    def no_rollback(action: int, what: str | None, *_: object) -> int:
        if action == sqlite3.SQLITE_TRANSACTION and what == "ROLLBACK" and refusals[0] > 0:
            refusals[0] -= 1
            return sqlite3.SQLITE_DENY
        return sqlite3.SQLITE_OK

    def insert_then_fail(conn: Any) -> None:
        conn.execute("INSERT INTO kv VALUES ('lost', 'x', 0)")
        conn.set_authorizer(no_rollback)
        raise ValueError("the write went wrong")

    async with Store(tmp_path / "a.db") as store:
        async with asyncio.timeout(30):  # a writer that died would leave these waiting
            with pytest.raises(StoreError, match="write failed: not authorized"):
                await store.write(insert_then_fail, cheap=cheap)
            await store.write(
                lambda c: c.execute("INSERT INTO kv VALUES ('next', 'x', 0)"), cheap=cheap
            )
            assert await store.kv.get("next") == "x"
            assert await store.kv.get("lost") is None
            await store.write(lambda c: c.execute("INSERT INTO kv VALUES ('last', 'x', 0)"))
        assert refusals == [0]
    async with Store(tmp_path / "a.db") as store:
        assert await store.kv.get("lost") is None
        assert await store.kv.get("last") == "x"
