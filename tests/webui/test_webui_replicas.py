"""The web UI of two replicas on one PostgreSQL database, as compose.scale.yaml runs them
behind a balancer that sends each request anywhere: an upload made through one is sent with a
message that reaches the other, an answer made on one reaches a page open on the other, and
a chat message sent while PostgreSQL refuses writes for a moment waits and is not lost."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import psycopg
import pytest

from bot.config import parse_config
from bot.errors import ChannelError
from bot.gateway import Gateway
from bot.webui.uploads import KEEP_S
from tests.fakes.llm import FakeLLM, Reply
from tests.webui.conftest import (
    base_url,
    client,
    gateway_config,
    page_csrf,
    record_inbound,
    set_up,
    until_event,
)

pytestmark = [pytest.mark.replicas]

DATA = b"the minutes of the meeting\n" * 100


def replica_config(home: Path, pg_url: str, fake: FakeLLM, **webui: Any) -> Any:
    def make(**sections: Any) -> Any:
        return parse_config({"logging": {"file": ""}, **sections}, home)

    return gateway_config(
        make,
        fake,
        store={"url": pg_url},
        gateway={"shutdown_grace_s": 0.5, "session_lease_s": 3},
        scheduler={"poll_seconds": 3600},
        **({"webui": webui} if webui else {}),
    )


@contextlib.asynccontextmanager
async def replicas(
    tmp_path: Path, pg_url: str, fake: FakeLLM
) -> AsyncIterator[tuple[Gateway, Gateway]]:
    """Two gateways, each with a home of its own, on one database."""
    async with (
        Gateway(replica_config(tmp_path / "a", pg_url, fake)) as a,
        Gateway(replica_config(tmp_path / "b", pg_url, fake)) as b,
    ):
        yield a, b


@contextlib.asynccontextmanager
async def signed_in_replicas(
    tmp_path: Path, pg_url: str, fake: FakeLLM
) -> AsyncIterator[tuple[Gateway, Gateway, aiohttp.ClientSession, str]]:
    """`replicas`, and a client whose owner was set up through the first, with its session's
    token."""
    async with replicas(tmp_path, pg_url, fake) as (a, b), client() as http:
        yield a, b, http, await signed_in_csrf(http, a)


async def signed_in_csrf(http: aiohttp.ClientSession, gw: Gateway) -> str:
    """Set the owner up through `gw`; the session's token (its cookie opens every replica)."""
    await set_up(http, gw)
    async with http.get(base_url(gw) + "/") as resp:
        return page_csrf(await resp.text())


async def open_chat(http: aiohttp.ClientSession, gw: Gateway, csrf: str) -> Any:
    base = base_url(gw)
    ws = await http.ws_connect(f"{base}/ws?csrf={csrf}", headers={"Origin": base})
    await ws.send_json({"type": "hello", "after": None, "have": {}})
    await until_event(ws, "ready")
    return ws


async def test_a_file_uploaded_through_one_replica_goes_with_a_message_sent_to_the_other(
    tmp_path: Path, pg_url: str, fake_llm: FakeLLM
) -> None:
    fake_llm.push(Reply(text="Read it."))
    async with signed_in_replicas(tmp_path, pg_url, fake_llm) as (a, b, http, csrf):
        form = aiohttp.FormData()
        form.add_field("file", DATA, filename="minutes.txt", content_type="text/plain")
        async with http.post(
            base_url(a) + "/upload", data=form, headers={"X-CSRF-Token": csrf}
        ) as resp:
            assert resp.status == 200, await resp.text()
            upload = await resp.json()
        seen = record_inbound(b)
        ws = await open_chat(http, b, csrf)
        send = {"type": "send", "id": "msg-00000001", "text": "read this"}
        await ws.send_json(send | {"files": [upload["id"]]})
        events = await until_event(ws, "ack")
        assert [e for e in events if e["type"] == "error"] == []  # not "unknown file"
        [message] = seen
        [part] = message.parts
        assert (part.name, part.size) == ("minutes.txt", len(DATA))
        web_b = b.channels["web"]
        assert await web_b.fetch(part, 1 << 20) == DATA  # type: ignore[attr-defined]
        await until_event(ws, "done")
        await ws.close()

        # a day on, any replica removes it from the database
        uploads = web_b.uploads  # type: ignore[attr-defined]
        assert await uploads.prune(time.time() + KEEP_S + 1) == 1
        with pytest.raises(ChannelError, match="no longer available"):
            await web_b.fetch(part, 1 << 20)  # type: ignore[attr-defined]


async def test_uploads_still_streaming_count_against_the_persons_quota(
    tmp_path: Path, pg_url: str, fake_llm: FakeLLM
) -> None:
    """Two uploads at once that together pass the quota: the second is refused while the
    first still streams in (else each would fit the room left, and both be held at once)."""
    config = replica_config(tmp_path, pg_url, fake_llm, upload_quota_mb=1)
    held, part_size = asyncio.Event(), 700_000
    async with Gateway(config) as gw, client() as http:
        csrf = await signed_in_csrf(http, gw)
        boundary = "b0und4ry"
        head = (
            f'--{boundary}\r\nContent-Disposition: form-data; name="file"; filename="a.bin"'
            "\r\nContent-Type: application/octet-stream\r\n\r\n"
        ).encode()

        async def slow_body() -> AsyncIterator[bytes]:
            yield head + b"a" * part_size
            await held.wait()  # the rest only once the second upload was answered
            yield f"\r\n--{boundary}--\r\n".encode()

        headers = {
            "X-CSRF-Token": csrf,
            "Content-Type": f"multipart/form-data; boundary={boundary}",
        }
        first = asyncio.ensure_future(
            http.post(base_url(gw) + "/upload", data=slow_body(), headers=headers)
        )
        uploads = gw.channels["web"].uploads  # type: ignore[attr-defined]
        for _ in range(200):
            if uploads._inflight.get("owner", 0) >= part_size:
                break
            await asyncio.sleep(0.05)
        form = aiohttp.FormData()
        form.add_field("file", b"b" * part_size, filename="b.bin")
        async with http.post(
            base_url(gw) + "/upload", data=form, headers={"X-CSRF-Token": csrf}
        ) as resp:
            assert resp.status == 413, await resp.text()
        held.set()
        async with await first as resp:
            assert resp.status == 200, await resp.text()


async def test_a_replica_removes_expired_upload_rows_and_the_homes_old_upload_files_at_start(
    tmp_path: Path, pg_url: str, fake_llm: FakeLLM
) -> None:
    config = replica_config(tmp_path, pg_url, fake_llm)
    async with Gateway(config):
        pass  # the tables made
    async with await psycopg.AsyncConnection.connect(pg_url, autocommit=True) as admin:
        await admin.execute(
            "INSERT INTO web_uploads VALUES ('old', 'owner', 'a.txt', 'text/plain', 1, "
            "'document', %s, %s)",
            (time.time() - KEEP_S - 60, b"x"),
        )
        old_files = tmp_path / "webui-uploads"  # kept there while the store was SQLite
        old_files.mkdir()
        (old_files / "abc.bin").write_bytes(b"y")
        async with Gateway(config):
            cur = await admin.execute("SELECT count(*) FROM web_uploads")
            assert (await cur.fetchone()) == (0,)
            assert not old_files.exists()


async def test_an_answer_made_on_one_replica_reaches_a_page_open_on_the_other(
    tmp_path: Path, pg_url: str, fake_llm: FakeLLM
) -> None:
    long_answer = "Here it is:" + " é and ✓" * 900  # several notifications' worth
    fake_llm.push(Reply(text=long_answer))
    async with signed_in_replicas(tmp_path, pg_url, fake_llm) as (a, b, http, csrf):
        on_b = await open_chat(http, b, csrf)
        on_a = await open_chat(http, a, csrf)
        await on_a.send_json({"type": "send", "id": "msg-00000002", "text": "tell me"})
        await until_event(on_a, "done")
        events = await until_event(on_b, "done")
        text = "".join(e["text"] for e in events if e["type"] == "delta")
        assert text == long_answer
        assert events[-1] == {
            "type": "done",
            "id": "msg-00000002",
            "re": "msg-00000002",
            "at": len(long_answer),
        }
        await on_b.close()
        await on_a.close()


async def test_a_chat_message_sent_while_postgresql_refuses_writes_waits_and_is_answered(
    tmp_path: Path, pg_url: str, fake_llm: FakeLLM
) -> None:
    fake_llm.push(Reply(text="Stored after all."))
    async with (
        signed_in_replicas(tmp_path, pg_url, fake_llm) as (a, _b, http, csrf),
        await psycopg.AsyncConnection.connect(pg_url, autocommit=True) as admin,
    ):
        ws = await open_chat(http, a, csrf)
        try:
            await _read_only(admin, True)
            await ws.send_json({"type": "send", "id": "msg-00000003", "text": "keep this"})
            waiting = await until_event(ws, "error")
            assert waiting[-1]["wait"] is True and "read-only" in waiting[-1]["text"]
            await _read_only(admin, False)
            events = await until_event(ws, "done")
        finally:
            await _read_only(admin, False)
        assert {"type": "ack", "id": "msg-00000003"} in events
        assert "".join(e["text"] for e in events if e["type"] == "delta") == "Stored after all."
        assert await a.store.inbound.status("web", "owner:msg-00000003") is not None
        await ws.close()


async def test_a_chat_message_whose_login_cannot_be_read_for_a_moment_waits_and_is_answered(
    tmp_path: Path, pg_url: str, fake_llm: FakeLLM
) -> None:
    """The login asked for each message is a read: one PostgreSQL refuses (here a lock held
    past the lock timeout) is waited for as a refused write is, not the end of the socket."""
    fake_llm.push(Reply(text="Read after all."))
    async with (
        signed_in_replicas(tmp_path, pg_url, fake_llm) as (a, _b, http, csrf),
        await psycopg.AsyncConnection.connect(pg_url, autocommit=True) as admin,
    ):
        ws = await open_chat(http, a, csrf)
        try:
            await _lock_timeout(admin, "200ms")
            await admin.execute("BEGIN")
            await admin.execute("LOCK TABLE web_sessions IN ACCESS EXCLUSIVE MODE")
            await ws.send_json({"type": "send", "id": "msg-00000004", "text": "read this"})
            waiting = await until_event(ws, "error")
            assert waiting[-1]["wait"] is True and "busy" in waiting[-1]["text"]
            await admin.execute("COMMIT")
            events = await until_event(ws, "done")
        finally:
            if admin.info.transaction_status:
                await admin.execute("ROLLBACK")
            await _lock_timeout(admin, "0")
        assert {"type": "ack", "id": "msg-00000004"} in events
        assert "".join(e["text"] for e in events if e["type"] == "delta") == "Read after all."
        await ws.close()


async def _read_only(admin: Any, on: bool) -> None:
    """Make the database read-only (or writable again) for every connection."""
    await _for_every_session(admin, "default_transaction_read_only", "on" if on else "off")


async def _lock_timeout(admin: Any, value: str) -> None:
    await _for_every_session(admin, "lock_timeout", f"'{value}'")


async def _for_every_session(admin: Any, setting: str, value: str) -> None:
    """A setting of the database's: it holds for new sessions, so the others are cut and
    open themselves again."""
    db = (await (await admin.execute("SELECT current_database()")).fetchone())[0]
    await admin.execute(f'ALTER DATABASE "{db}" SET {setting} = {value}')
    await admin.execute(
        "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
        "WHERE datname = current_database() AND pid <> pg_backend_pid()"
    )
