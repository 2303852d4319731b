"""R6: an update is stored before Telegram is told it arrived; a redelivered update_id runs
once; a batch out of update_id order is stored whole, in id order; after kill -9 the
unfinished update runs once and a finished one never again; a graceful stop never confirms
an update it has not stored."""

from __future__ import annotations

import asyncio
import os
import signal
import sys
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest

import channels.telegram
from bot.errors import StoreError
from bot.gateway import Gateway
from bot.messages import InboundMessage
from bot.providers.testing import ScriptedProvider
from bot.store import sqlite
from channels.telegram import TelegramChannel
from tests.channels.telegram.conftest import ALICE, TOKEN_ENV, settled, until
from tests.fakes.llm import FakeLLM, RecordedRequest, Reply
from tests.fakes.telegram import TOKEN, FakeTelegram

BOB = 43


class BlockingSink:
    """Stores at once, except the messages it is told to hold until released."""

    def __init__(self, hold: str) -> None:
        self.hold = hold
        self.stored: list[str] = []
        self.holding = asyncio.Event()
        self.release = asyncio.Event()

    async def __call__(self, message: InboundMessage) -> None:
        if message.text == self.hold:
            self.holding.set()
            await self.release.wait()
        self.stored.append(message.text)


async def test_r6_redelivered_update_id_is_answered_once(
    fake: FakeTelegram, tg_config: Callable[..., Any]
) -> None:
    provider = ScriptedProvider(["the one answer"])
    update = fake.push_private("hello once", user_id=ALICE)
    async with Gateway(tg_config(), provider=provider) as gw:
        await until(lambda: fake.texts(ALICE) == ["the one answer"])
        await settled(gw)
    # Telegram sends it again (a confirmation it never saw) to the next process
    fake.push_update(update)
    async with Gateway(tg_config(), provider=provider) as gw:
        await until(lambda: not fake.pending and fake.confirmed_below() > update["update_id"])
        await settled(gw)
        assert gw.metrics.duplicates.labels("tg")._value.get() == 1
    assert len(provider.requests) == 1
    assert fake.texts(ALICE) == ["the one answer"]


async def test_r6_an_out_of_order_batch_is_stored_whole_in_id_order(
    fake: FakeTelegram, start_channel: Callable[..., Awaitable[TelegramChannel]]
) -> None:
    one, two, three = (fake.push_private(t) for t in ("one", "two", "three"))
    # Telegram hands over [three, one, two] (and [three, two] when asked again)
    rank = {three["update_id"]: 0, one["update_id"]: 1, two["update_id"]: 2}
    fake.batch_order = lambda batch: sorted(batch, key=lambda u: rank[u["update_id"]])
    attempts: list[str] = []
    stored: list[str] = []
    told_before: dict[str, list[int | None]] = {}  # the offsets Telegram had when each was stored

    async def sink(message: InboundMessage) -> None:
        attempts.append(message.text)
        if message.text == "two" and attempts.count("two") == 1:
            raise StoreError("database is locked")  # "two" cannot be stored the first time
        stored.append(message.text)
        told_before[message.text] = list(fake.offsets)

    await start_channel(sink)
    await until(lambda: len(stored) == 3)
    await until(lambda: fake.confirmed_below() > three["update_id"] and not fake.pending)
    assert stored == ["one", "two", "three"]
    assert attempts == ["one", "two", "two", "three"]
    # Telegram was never told to forget "two" before it was stored
    assert all(o is None or o <= two["update_id"] for o in told_before["two"])


async def test_r6_graceful_stop_never_acknowledges_unstored_updates(
    fake: FakeTelegram, start_channel: Callable[..., Awaitable[TelegramChannel]]
) -> None:
    first, second, third = (fake.push_private(t) for t in ("one", "two", "three"))
    sink = BlockingSink(hold="two")
    channel = await start_channel(sink)
    await asyncio.wait_for(sink.holding.wait(), 5)
    stopping = asyncio.create_task(channel.stop())
    await asyncio.sleep(0.2)
    sink.release.set()  # "two" is stored while the channel stops
    await stopping
    assert sink.stored == ["one", "two"]
    # confirmed: one and two; "three" was fetched but never stored, so Telegram keeps it
    assert fake.confirmed_below() == second["update_id"] + 1
    assert [u["update_id"] for u in fake.pending] == [third["update_id"]]

    again = BlockingSink(hold="")
    await start_channel(again)
    await until(lambda: again.stored == ["three"])
    assert first["update_id"] < second["update_id"] < third["update_id"]


async def test_r6_a_stop_that_cannot_wait_confirms_nothing_unstored(
    fake: FakeTelegram,
    start_channel: Callable[..., Awaitable[TelegramChannel]],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(channels.telegram, "_STOP_GRACE_S", 0.2)
    first, second = fake.push_private("one"), fake.push_private("two")
    sink = BlockingSink(hold="two")  # never released: storing hangs
    channel = await start_channel(sink)
    await asyncio.wait_for(sink.holding.wait(), 5)
    await channel.stop()
    assert sink.stored == ["one"]
    assert fake.confirmed_below() <= second["update_id"]
    assert [u["update_id"] for u in fake.pending] == [second["update_id"]]
    assert first["update_id"] < second["update_id"]


def _write_config(home: Path, telegram: FakeTelegram, llm: FakeLLM) -> None:
    home.mkdir(parents=True, exist_ok=True)
    (home / "config.toml").write_text(
        f"""
[gateway]
shutdown_grace_s = 1

[http]
enabled = false

[memory]
enabled = false

[sandbox]
backend = "none"

[providers.fake]
base_url = "{llm.base_url}/v1"
api_key_env = "FAKE_LLM_KEY"

[models]
chat = ["fake:m"]

[channels.tg]
type = "telegram"
token_env = "{TOKEN_ENV}"
api_base_url = "{telegram.base_url}"
file_base_url = "{telegram.file_base_url}"
chat_interval_s = 0

[channels.tg.access]
dm_policy = "open"
"""
    )


async def _run(home: Path) -> asyncio.subprocess.Process:
    env = {**os.environ, "DECAPOD_HOME": str(home), "FAKE_LLM_KEY": "sk-test", TOKEN_ENV: TOKEN}
    return await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "bot",
        "run",
        env=env,
        stdout=asyncio.subprocess.DEVNULL,
        stderr=asyncio.subprocess.DEVNULL,
    )


def _statuses(db: Path) -> dict[str, str]:
    conn = sqlite.connect(db)
    try:
        return dict(conn.execute("SELECT delivery_id, status FROM inbound").fetchall())
    finally:
        conn.close()


def _asked(llm: FakeLLM, who: str) -> int:
    return sum(
        1
        for r in llm.calls(path="/v1/chat/completions")
        if r.body["messages"][-1]["content"] == f"question from {who}"
    )


async def test_r6_telegram_duplicate_and_out_of_order_updates(
    fake: FakeTelegram, tmp_path: Path
) -> None:
    home = tmp_path / "home"
    crashed = False

    def answer(request: RecordedRequest) -> Reply:
        question = request.body["messages"][-1]["content"]
        if question == "question from A" and not crashed:
            return Reply(hang=True)  # A's turn is still running when the process dies
        return Reply(text=f"answer to {question}")

    async with FakeLLM() as llm:
        llm.reply_fn = answer
        _write_config(home, fake, llm)
        from_a = fake.push_private("question from A", user_id=ALICE)
        from_b = fake.push_private("question from B", user_id=BOB, first_name="Bob")
        a_id, b_id = str(from_a["update_id"]), str(from_b["update_id"])

        proc = await _run(home)
        try:
            # B (the later update) finishes while A (the earlier one) is still running
            await fake.wait_for("sendMessage", chat_id=BOB, timeout=30)
            await until(lambda: _statuses(home / "decapod.db").get(b_id) == "done", 10)
            await until(lambda: _asked(llm, "A") == 1, 10)
            proc.send_signal(signal.SIGKILL)
            await proc.wait()
        finally:
            if proc.returncode is None:
                proc.kill()
        assert _statuses(home / "decapod.db") == {a_id: "pending", b_id: "done"}

        crashed = True
        fake.push_update(from_a)  # Telegram delivers both again
        fake.push_update(from_b)
        proc = await _run(home)
        try:
            await fake.wait_for("sendMessage", chat_id=ALICE, timeout=30)
            await until(lambda: _statuses(home / "decapod.db") == {a_id: "done", b_id: "done"})
            await until(lambda: not fake.pending and fake.confirmed_below() > int(b_id), 10)
            proc.send_signal(signal.SIGTERM)
            assert await asyncio.wait_for(proc.wait(), 20) == 0
        finally:
            if proc.returncode is None:
                proc.kill()

    assert _asked(llm, "A") == 2, "once killed mid-turn, once to the end"
    assert _asked(llm, "B") == 1, "finished before the crash: never again"
    assert fake.texts(ALICE) == ["answer to question from A"]
    assert fake.texts(BOB) == ["answer to question from B"]
