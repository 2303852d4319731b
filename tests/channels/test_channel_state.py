"""What adapters keep between messages lives in the store, on SQLite and on PostgreSQL: the
files an earlier version kept in the home (buttons, Slack threads, Telegram chat moves) are
imported once, renamed, and never written again; a second process (a restart, another
replica) on the same store sees what the first recorded."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from bot.channel_state import ButtonChoice, ButtonMessage
from bot.messages import Choice, Conversation, Identity, OutboundMessage
from bot.store import Store
from bot.store.channel_state import PRUNE_EVERY_S, THREAD_TTL_S
from bot.store.config import StoreConfig, open_store
from channels.buttons import EXPIRED, ButtonBook, Press, Pressed, Refused
from channels.slack_inbound import ThreadMemory
from channels.telegram_inbound import ChatMigrations

UNA = Identity("tg", "u1", "Una")


@pytest.fixture(params=["sqlite", "postgresql"])
async def store(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Store]:
    if request.param == "sqlite":
        config = StoreConfig(url=f"sqlite:///{tmp_path}/decapod.db")
    else:
        config = StoreConfig(url=request.getfixturevalue("pg_url"))
    async with open_store(config, tmp_path) as opened:
        yield opened


def _old_buttons(path: Path, *, used_by: str | None = None, until: float = 0.0) -> None:
    """A button list as an earlier version wrote it."""
    entry = {
        "conversation": {"channel": "tg", "chat_id": "c1", "kind": "dm", "thread_id": None},
        "text": "Pick one",
        "until": until or time.time() + 3600,
        "allowed": ["tg:u1"],
        "choices": [["tok-yes", "Yes", "/yes"], ["tok-no", "No", "/no"]],
        "used_by": used_by,
    }
    path.write_text(json.dumps({"tok-yes": entry}), encoding="utf-8")


async def test_an_old_button_file_is_imported_once_and_not_written_again(
    tmp_path: Path, store: Store
) -> None:
    path = tmp_path / "telegram-tg-buttons.json"
    _old_buttons(path)
    book = ButtonBook(path)
    book.use(store.channel_state, "tg")
    pressed = await book.claim(Press("p1", "tok-no", UNA))
    assert isinstance(pressed, Pressed) and pressed.command == "/no"
    assert pressed.shown == "Pick one\n\n→ No (Una)"
    assert pressed.conversation == Conversation("tg", "c1")
    assert not path.exists() and path.with_name(path.name + ".imported").exists()
    offer = OutboundMessage(Conversation("tg", "c2"), "More?", choices=(Choice("Ok", "/ok"),))
    [button] = await book.issue(offer, offer.text)
    assert not path.exists(), "new buttons go to the store only"
    # another process (a restart, another replica) on the same store
    other = ButtonBook(path)
    other.use(store.channel_state, "tg")
    assert await other.claim(Press("p2", "tok-yes", UNA)) == Refused(EXPIRED), "used up"
    taken = await other.claim(Press("p3", button.token, UNA))
    assert isinstance(taken, Pressed) and taken.command == "/ok"
    # the same press delivered again (a platform's retry) is let through again
    assert isinstance(await other.claim(Press("p3", button.token, UNA)), Pressed)


async def test_an_unreadable_old_button_file_is_left_alone(tmp_path: Path, store: Store) -> None:
    path = tmp_path / "slack-s-buttons.json"
    path.write_text("{not json", encoding="utf-8")
    book = ButtonBook(path)
    book.use(store.channel_state, "s")
    assert await book.claim(Press("p1", "tok-yes", UNA)) == Refused(EXPIRED)
    assert path.read_text(encoding="utf-8") == "{not json", "kept for the operator to look at"


async def test_old_slack_threads_are_imported_and_shared(tmp_path: Path, store: Store) -> None:
    path = tmp_path / "slack-s-threads.json"
    path.write_text(json.dumps([["C1", "100.1"], ["C1", "100.2"]]), encoding="utf-8")
    first = ThreadMemory(path)
    first.use(store.channel_state, "s")
    await first.open()
    assert ("C1", "100.1") in first
    assert path.with_suffix(".json.imported").exists() and not path.exists()
    await first.add("C2", "200.1")
    # another replica learns of both when a reply in the thread reaches it
    second = ThreadMemory(path)
    second.use(store.channel_state, "s")
    await second.open()
    assert ("C1", "100.2") not in second and ("C2", "200.1") not in second
    await second.recall("C1", "100.2")
    await second.recall("C2", "200.1")
    await second.recall("C3", "300.1")
    assert ("C1", "100.2") in second and ("C2", "200.1") in second
    assert ("C3", "300.1") not in second
    assert not path.exists()


async def test_old_telegram_chat_moves_are_imported_and_shared(
    tmp_path: Path, store: Store
) -> None:
    path = tmp_path / "telegram-tg-chats.json"
    path.write_text(json.dumps({"-1004000001": -4000001}), encoding="utf-8")
    first = ChatMigrations(path)
    first.use(store.channel_state, "tg")
    await first.open()
    assert first.current(-4000001) == -1004000001
    assert first.original(-1004000001) == -4000001
    assert not path.exists() and path.with_suffix(".json.imported").exists()
    second = ChatMigrations(path)
    second.use(store.channel_state, "tg")
    await second.open()
    first.record(-5000001, -1005000001)  # seen by the first replica only
    await first.saved()
    assert second.original(-1005000001) == -1005000001
    first_message = {"message": {"chat": {"id": -1005000001, "type": "supergroup"}}}
    await second.recall_for(first_message)  # the supergroup's first message here
    assert second.original(-1005000001) == -5000001
    assert second.current(-4000001) == -1004000001
    assert not path.exists()


async def test_buttons_are_taken_once_and_expired_ones_pruned(store: Store) -> None:
    repo = store.channel_state
    now = time.time()

    def message(key: str, expires_at: float) -> ButtonMessage:
        choice = ButtonChoice(key, "Yes", "/yes")
        return ButtonMessage(key, Conversation("tg", "c1"), "Pick", expires_at, (), (choice,))

    await repo.put_buttons("tg", [message("live", now + 60), message("old", now - 1)])
    racing = [repo.use_buttons("tg", "live", f"press{i}", now) for i in range(5)]
    assert sorted(await asyncio.gather(*racing)) == [False] * 4 + [True]
    assert not await repo.use_buttons("tg", "old", "press9", now), "expired"
    repo._next_prune = 0.0  # the next write prunes
    await repo.put_buttons("tg", [message("new", now + 60)])
    assert await repo.find_buttons("tg", "old") is None
    found = await repo.find_buttons("tg", "live")
    assert found is not None and found.used_by is not None
    assert await repo.find_buttons("slack", "live") is None, "per channel"


async def test_old_threads_are_pruned(store: Store, monkeypatch: pytest.MonkeyPatch) -> None:
    repo = store.channel_state
    monkeypatch.setattr(time, "time", lambda: 1_000_000.0)
    await repo.add_threads("s", [("C1", "1.0")])
    monkeypatch.setattr(time, "time", lambda: 1_000_000.0 + THREAD_TTL_S + PRUNE_EVERY_S + 1)
    await repo.add_threads("s", [("C1", "2.0")])
    assert not await repo.has_thread("s", "C1", "1.0")
    assert await repo.has_thread("s", "C1", "2.0")
