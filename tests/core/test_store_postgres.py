"""The store on PostgreSQL beyond the repositories: the gateway, the scheduler, the command
line and doctor on it, a dropped connection, two processes on one database, and
`decapod migrate --to` from a SQLite home."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path
from typing import Any

import pytest

from bot.providers.base import ChatMessage
from bot.store import Store
from bot.store.config import StoreConfig, open_store
from bot.store.jobs import JobRepo
from bot.store.repos import TurnRecord
from tests.core.test_store_backends import _inbound, _job

# a reminder due while nothing runs is set this far ahead: the first gateway must stop first
DUE_AFTER_DOWN_S = 5


async def test_a_gateway_turn_on_postgresql(
    make_config: Any, pg_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Inbound -> session -> the model (the real openai SDK against the fake) -> reply, every
    row in PostgreSQL; the same message delivered again is not answered twice."""
    from bot.gateway import Gateway
    from bot.store.pg_store import PgStore
    from tests.fakes.channel import RecordingChannel
    from tests.fakes.llm import FakeLLM, Reply

    monkeypatch.setenv("FAKE_LLM_KEY", "sk-test-not-a-secret")
    async with FakeLLM() as fake:
        fake.push(Reply(text="Hello from PostgreSQL."))
        config = make_config(
            providers={"fake": fake.provider(context_window=8000, first_token_timeout_s=5)},
            models={"chat": ["fake:test-model"]},
            store={"url": pg_url},
        )
        channel = RecordingChannel(console=True)
        async with Gateway(config, channels={"test": channel}) as gw:
            assert isinstance(gw.store, PgStore)
            msg = await channel.push("hi")
            assert await channel.wait_for_messages(1) == ["Hello from PostgreSQL."]
            assert channel.sink is not None
            await channel.sink(msg)  # the platform delivers it again
            async with asyncio.timeout(30):  # generous: the machine is shared
                while gw.sessions.active or gw.sessions.queue_depth:
                    await asyncio.sleep(0.01)
            assert channel.texts() == ["Hello from PostgreSQL."]
            assert len(fake.calls(path="/v1/chat/completions")) == 1
            assert await gw.store.inbound.status("test", msg.id) == "done"
            roles = await gw.store.read(
                lambda c: [r[0] for r in c.execute("SELECT role FROM turns ORDER BY id")]
            )
            assert roles == ["user", "assistant"]


async def test_doctor_names_the_postgresql_server(make_config: Any, pg_url: str) -> None:
    from bot.doctor import check_storage

    config = make_config(store={"url": pg_url})
    checks = {name: (ok, detail) for name, ok, detail in await check_storage(config)}
    ok, detail = checks["database"]
    assert ok and detail.startswith("PostgreSQL ") and f" at {pg_url};" in detail
    assert "memory vector search: in-process fallback" in detail


def test_the_cli_uses_the_configured_postgresql_store(
    home: Path, pg_url: str, capsys: pytest.CaptureFixture[str]
) -> None:
    """`decapod migrate` and `decapod pairing` open the store [store] names, not a SQLite
    file in the home folder."""
    from bot.cli import main

    home.mkdir(parents=True, exist_ok=True)
    (home / "config.toml").write_text(f'[store]\nurl = "{pg_url}"\n')
    assert main(["migrate"]) == 0
    assert "m001_core" in capsys.readouterr().out
    assert main(["migrate"]) == 0
    assert "database is up to date" in capsys.readouterr().out
    assert not (home / "decapod.db").exists()


async def test_a_dropped_postgresql_connection_is_opened_again(pg_url: str, tmp_path: Path) -> None:
    """The server ends every connection (a restart, a fail-over): the next write and read
    connect again, and nothing written before is lost."""
    import psycopg

    async with open_store(StoreConfig(url=pg_url), tmp_path) as store:
        await store.kv.set("before", "1")
        assert await store.kv.get("before") == "1"
        with psycopg.connect(pg_url, autocommit=True) as admin:
            ended = admin.execute(
                "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity "
                "WHERE datname = current_database() AND pid <> pg_backend_pid()"
            ).fetchone()
        assert ended is not None and ended[0] >= 2  # the writer's and a reader's
        await store.kv.set("after", "2")
        assert await store.kv.get("after") == "2" and await store.kv.get("before") == "1"


@pytest.mark.parametrize("database", ["pg_url", "pgvector_url"])
async def test_migrate_to_copies_a_sqlite_home_once_and_verifies_counts(
    home: Path,
    database: str,
    request: pytest.FixtureRequest,
    capsys: pytest.CaptureFixture[str],
    tiny_model: Path,
) -> None:
    """Everything of a used SQLite home arrives (turns, deliveries, memory with its vectors,
    a web passkey's bytes); a second run copies nothing twice; the copy works as a store
    (with pgvector too, where the vectors land in a vector column)."""
    pg_url = request.getfixturevalue(database)
    from bot.cli import main
    from bot.memory.service import MemoryService
    from tests.deps import REDACT
    from tests.memory.conftest import memory_config

    async with Store(home / "decapod.db") as sqlite_store:
        row = await sqlite_store.sessions.current("k")
        await sqlite_store.turns.add(
            row.id, [TurnRecord("t1", ChatMessage("user", "hi"))], inbound_done=None
        )
        assert await sqlite_store.inbound.insert(_inbound("1"))
        await sqlite_store.write(
            lambda c: c.execute(
                "INSERT INTO web_passkeys VALUES ('cred', ?, 0, 0, NULL)", (b"\x00\xffkey",)
            )
        )
        memory = MemoryService(sqlite_store, memory_config(tiny_model), home, redact=REDACT)
        await memory.start(watch=False)
        await memory.wait_ready()
        await memory.save("alice", "alice drinks oolong")
        await memory.stop()

    assert main(["migrate", "--to", pg_url]) == 0
    out = capsys.readouterr().out
    assert "turns: 1 rows, 1 there" in out and "memory_vec: 1 rows, 1 there" in out
    assert main(["migrate", "--to", pg_url]) == 0  # again: nothing doubled
    assert "turns: 1 rows, 1 there" in capsys.readouterr().out

    async with open_store(StoreConfig(url=pg_url), home) as pg:
        assert await pg.inbound.status("c", "1") == "pending"
        assert not await pg.inbound.insert(_inbound("1"))  # its dedupe key came along
        passkey = await pg.read(
            lambda c: c.execute("SELECT public_key FROM web_passkeys").fetchone()[0]
        )
        assert bytes(passkey) == b"\x00\xffkey"
        fresh = await pg.sessions.reset("k")  # ids continue after the copied ones
        assert fresh.id > row.id
        memory = MemoryService(pg, memory_config(tiny_model), home, redact=REDACT)
        await memory.start(watch=False)
        await memory.wait_ready()
        near = await memory.search("alice", "matcha", mode="vector")
        assert [h.text for h in near] == ["alice drinks oolong"]
        await memory.stop()


def test_migrate_to_refuses_a_url_with_a_password(
    home: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from bot.cli import main

    assert main(["migrate", "--to", "postgresql://u:pw@h/db"]) == 1
    assert "holds a password" in capsys.readouterr().err


@pytest.mark.parametrize(
    ("args", "secret", "said"),
    [
        (
            ["--to", "postgresql://u@h/db", "--password-env", "s3cr3t-pass!"],
            "s3cr3t-pass!",
            "--password-env: must be the name of the environment variable",
        ),
        (["--to", "postgresql://u:pw-s3cr3t@h/db"], "pw-s3cr3t", "--to: the URL holds a password"),
        (["--to", "mysql://u:pw-s3cr3t@h/db"], "pw-s3cr3t", "--to: "),
    ],
    ids=["secret-as-env-name", "password-in-url", "unknown-scheme"],
)
def test_migrate_to_never_prints_a_secret_it_refuses(
    home: Path, capsys: pytest.CaptureFixture[str], args: list[str], secret: str, said: str
) -> None:
    """A password typed where its variable's name belongs, or one inside the URL, is named as
    the problem without being printed back."""
    from bot.cli import main

    assert main(["migrate", *args]) == 1
    out = capsys.readouterr()
    assert said in out.err
    assert secret not in out.err + out.out


@pytest.fixture(scope="module")
def tiny_model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from tests.memory.conftest import build_tiny_model

    return build_tiny_model(tmp_path_factory.mktemp("models") / "tiny")


def _job_states(conn: Any) -> list[tuple[str, int]]:
    return [(str(r[0]), int(r[1])) for r in conn.execute("SELECT status, runs FROM jobs")]


async def test_a_reminder_fires_once_across_a_restart_on_postgresql(
    make_config: Any, pg_url: str
) -> None:
    """The scheduler on PostgreSQL: a reminder typed in a chat is due while nothing runs and
    is delivered once, marked late, by the next start."""
    from bot.gateway import Gateway
    from bot.providers.testing import ScriptedProvider
    from tests.fakes.channel import RecordingChannel

    config = make_config(store={"url": pg_url}, scheduler={"late_note_after_seconds": 0})
    first = RecordingChannel(console=True)
    async with Gateway(config, provider=ScriptedProvider([]), channels={"test": first}):
        pushed = time.monotonic()
        await first.push(f"/remind in {DUE_AFTER_DOWN_S}s stand up")
        await first.wait_for_messages(1)
    # due while nothing runs: far enough ahead that a busy machine has stopped the first
    # gateway by then
    assert len(first.texts()) == 1, "the reminder came due before the gateway stopped"
    await asyncio.sleep(pushed + DUE_AFTER_DOWN_S + 1.0 - time.monotonic())
    second = RecordingChannel(console=True)
    async with Gateway(config, provider=ScriptedProvider([]), channels={"test": second}) as gw:
        [late] = await second.wait_for_messages(1, timeout=30)
        assert "stand up" in late and "late by" in late
        # the job is marked done just after its message is sent: wait for that
        async with asyncio.timeout(30):
            while await gw.store.read(_job_states) != [("sent", 1)]:
                await asyncio.sleep(0.05)
    assert len(second.texts()) == 1, "delivered once"


async def test_two_stores_on_one_database_share_dedupe_and_claims(
    pg_url: str, tmp_path: Path
) -> None:
    """Two processes' stores on one PostgreSQL database: a delivery is taken by one of them,
    and each due job is claimed by exactly one (the other skips the rows being claimed)."""
    config = StoreConfig(url=pg_url)
    async with open_store(config, tmp_path) as one, open_store(config, tmp_path) as two:
        won = await asyncio.gather(
            *(s.inbound.insert(_inbound(f"d{i}")) for i in range(30) for s in (one, two))
        )
        assert won.count(True) == 30
        now = time.time()
        jobs_one, jobs_two = JobRepo(one), JobRepo(two)
        for i in range(40):
            await jobs_one.insert(_job(f"job {i}", now - 1), max_active=100)

        async def claim(repo: JobRepo) -> list[str]:
            got: list[str] = []
            for _ in range(8):
                batch = await repo.claim_due(now, now + 60, limit=5, overdue_before=0, busy=())
                got += [j.id for j in batch]
            return got

        first, second = await asyncio.gather(claim(jobs_one), claim(jobs_two))
        assert not set(first) & set(second)
        assert len(first) + len(second) == 40


async def test_a_claim_passes_over_jobs_another_replica_is_claiming(
    pg_url: str, tmp_path: Path
) -> None:
    """A job row locked by another replica's claim (its transaction still open) is skipped,
    not waited for: the free job is claimed at once."""
    import psycopg

    async with open_store(StoreConfig(url=pg_url), tmp_path) as store:
        jobs = JobRepo(store)
        now = time.time()
        held = await jobs.insert(_job("held", now - 2), max_active=10)
        free = await jobs.insert(_job("free", now - 1), max_active=10)
        with psycopg.connect(pg_url) as other:  # a transaction, left open
            other.execute("SELECT id FROM jobs WHERE id = %s FOR UPDATE", (held.id,))
            try:
                claimed = await asyncio.wait_for(
                    jobs.claim_due(now, now + 60, limit=10, overdue_before=0, busy=()), 20
                )
            finally:
                other.rollback()
        assert [j.id for j in claimed] == [free.id]


async def test_writes_made_while_a_batch_commits_go_together_as_the_next(
    pg_url: str, tmp_path: Path
) -> None:
    """Group commit: one batch is with the server at a time; the writes of the ticks that pass
    meanwhile share the next transaction (in the order they were made), not one each."""
    async with open_store(StoreConfig(url=pg_url), tmp_path) as store:
        await store.kv.set("warm", "1")
        before = store.transactions
        slow = asyncio.ensure_future(
            store.write(lambda c: c.raw.execute("SELECT pg_sleep(0.5)").fetchone())
        )
        await asyncio.sleep(0.1)  # the slow batch is with the server now
        later = []
        for k in range(10):  # ten loop ticks, one write each
            later.append(asyncio.ensure_future(store.kv.set(f"k{k}", str(k))))
            await asyncio.sleep(0)
        await slow
        await asyncio.gather(*later)
        assert store.transactions - before == 2, "the slow one, then the ten together"
        assert [await store.kv.get(f"k{k}") for k in range(10)] == [str(k) for k in range(10)]


async def test_a_failed_write_whose_rollback_fails_too_leaves_the_store_writable(
    pg_url: str, tmp_path: Path
) -> None:
    """The writer's connection is left in an aborted transaction when even the ROLLBACK
    after a failed write fails: the writes after it must not inherit that state."""
    import psycopg

    from bot.errors import StoreError

    async with open_store(StoreConfig(url=pg_url), tmp_path) as store:
        await store.kv.set("warm", "1")
        conn: Any = store._wconn  # type: ignore[attr-defined]
        real = conn.execute

        def refusing_rollback(sql: str, params: Any = ()) -> Any:
            if sql == "ROLLBACK":
                raise psycopg.OperationalError("rollback refused")
            return real(sql, params)

        conn.execute = refusing_rollback
        with pytest.raises(StoreError):
            await store.write(lambda c: c.execute("SELECT 1 / 0").fetchone())
        conn.execute = real
        await store.kv.set("after", "2")
        assert await store.kv.get("after") == "2"


async def test_a_nul_in_a_message_or_an_answer_is_kept_on_postgresql(
    make_config: Any, pg_url: str
) -> None:
    """PostgreSQL's text cannot hold NUL (SQLite's can): it is stored as U+FFFD. It failed
    the turn's write: the answer went out, then "Something went wrong", and the message
    stayed unfinished, to be answered again at every start."""
    from bot.gateway import Gateway
    from bot.providers.testing import ScriptedProvider
    from tests.fakes.channel import RecordingChannel

    channel = RecordingChannel(console=True)
    provider = ScriptedProvider(["it says a\x00b"])
    config = make_config(store={"url": pg_url})
    async with Gateway(config, provider=provider, channels={"test": channel}) as gw:
        await channel.push("what does a\x00b say?")
        await channel.push("/remind in 1h check a\x00b")
        texts = await channel.wait_for_messages(2)
        async with asyncio.timeout(30):
            while await gw.store.deliveries.unfinished():
                await asyncio.sleep(0.05)
        session = gw.sessions.get("test:dm:u1")
        await gw.sessions.load(session)
        assert session.row is not None
        rows = await gw.store.turns.for_session(session.row.id)
        [job] = await JobRepo(gw.store).listing(include_closed=False)
    assert texts[0] == "it says a\x00b" and texts[1].startswith(f"Reminder {job.id} set")
    assert [(r["role"], r["content"]) for r in rows] == [
        ("user", "what does a\ufffdb say?"),
        ("assistant", "it says a\ufffdb"),
    ]
    assert job.text == "check a\ufffdb"
