"""Answers across replicas beyond the plain case: one announced while a replica's LISTEN
connection is down reaches the pages open there once it is back (once), and one made by the
turn processes of a receiver (`gateway.turn_processes` > 1) is announced like any other."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import psycopg
import pytest

from bot.gateway import Gateway
from tests.fakes.llm import FakeLLM, Reply
from tests.webui.conftest import client, until_event
from tests.webui.test_webui_replicas import open_chat, replica_config, signed_in_csrf

pytestmark = [pytest.mark.replicas]


def _text(events: list[dict[str, Any]]) -> str:
    return "".join(e["text"] for e in events if e["type"] == "delta")


async def _until(check: Any, timeout: float = 30.0) -> None:
    async with asyncio.timeout(timeout):  # generous: the machine is shared
        while not check():
            await asyncio.sleep(0.05)


async def test_an_answer_announced_while_a_replicas_listen_connection_is_down_reaches_its_pages(
    tmp_path: Path, pg_url: str, fake_llm: FakeLLM
) -> None:
    """The database takes no new connections while B's LISTEN connection is cut, so B cannot
    listen again before A's answer is announced; once it can, B's open page gets that
    answer from the history, and only once."""
    fake_llm.push(Reply(text="Said while you were away."))
    async with (
        Gateway(replica_config(tmp_path / "a", pg_url, fake_llm)) as a,
        Gateway(replica_config(tmp_path / "b", pg_url, fake_llm)) as b,
        client() as http,
    ):
        csrf = await signed_in_csrf(http, a)
        on_b = await open_chat(http, b, csrf)
        on_a = await open_chat(http, a, csrf)
        assert b.bus is not None
        db = pg_url.rsplit("/", 1)[1]
        admin = await psycopg.AsyncConnection.connect(
            pg_url.rsplit("/", 1)[0] + "/postgres", autocommit=True
        )
        try:
            await admin.execute(f'ALTER DATABASE "{db}" ALLOW_CONNECTIONS false')
            await admin.execute("SELECT pg_terminate_backend(%s)", (b.bus.backend_pid,))
            await _until(lambda: not b.bus.listening.is_set())  # type: ignore[union-attr]
            await on_a.send_json({"type": "send", "id": "msg-00000010", "text": "tell me"})
            await until_event(on_a, "done")
            await _until(lambda: not a.channels["web"]._relays)  # type: ignore[attr-defined]
        finally:
            await admin.execute(f'ALTER DATABASE "{db}" ALLOW_CONNECTIONS true')
            await admin.close()
        events = await until_event(on_b, "done")
        assert _text(events) == "Said while you were away."
        assert events[-1]["id"] == "msg-00000010"
        assert b.bus.reconnects == 1
        with pytest.raises(TimeoutError):  # not a second time
            await on_b.receive_json(timeout=1.0)
        await on_b.close()
        await on_a.close()


async def test_an_answer_made_by_a_receivers_turn_processes_reaches_a_page_on_another_replica(
    tmp_path: Path, pg_url: str, fake_llm: FakeLLM
) -> None:
    """And the other way: an answer made on the other replica reaches the receiver's page."""
    fake_llm.push(Reply(text="From a turn process."))
    fake_llm.push(Reply(text="From the other replica."))
    spread = replica_config(tmp_path / "a", pg_url, fake_llm)
    spread = spread.model_copy(
        update={"gateway": spread.gateway.model_copy(update={"turn_processes": 2})}
    )
    async with (
        Gateway(spread) as receiver,
        Gateway(replica_config(tmp_path / "b", pg_url, fake_llm)) as other,
        client() as http,
    ):
        assert receiver.turn_processes is not None
        csrf = await signed_in_csrf(http, receiver)
        on_other = await open_chat(http, other, csrf)
        on_receiver = await open_chat(http, receiver, csrf)
        await on_receiver.send_json({"type": "send", "id": "msg-00000011", "text": "one"})
        assert _text(await until_event(on_receiver, "done")) == "From a turn process."
        assert _text(await until_event(on_other, "done")) == "From a turn process."
        await on_other.send_json({"type": "send", "id": "msg-00000012", "text": "two"})
        assert _text(await until_event(on_other, "done")) == "From the other replica."
        assert _text(await until_event(on_receiver, "done")) == "From the other replica."
        await on_other.close()
        await on_receiver.close()
