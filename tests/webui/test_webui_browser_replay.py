"""The chat page in a real headless Chromium, back on a process that has answers buffered
which the page shows from its history (another replica, or numbers it cannot place): it
takes none of them twice."""

from __future__ import annotations

from pathlib import Path

import pytest
from playwright.async_api import Browser, expect

from bot.gateway import Gateway
from bot.messages import Conversation, ConversationKind, OutboundMessage
from bot.providers.base import ChatMessage
from bot.store.repos import TurnRecord
from tests.fakes.llm import FakeLLM, Reply
from tests.webui.conftest import CHROMIUM
from tests.webui.test_webui_browser import _ask, _set_up_with_sockets, gw

__all__ = ["gw"]  # the fixture

pytestmark = [
    pytest.mark.skipif(
        CHROMIUM is None, reason="the browser tests need Chromium: apt-get install chromium"
    ),
    pytest.mark.slow,
]


async def test_answers_shown_from_the_history_are_not_shown_again(
    browser: Browser, gw: Gateway, fake_llm: FakeLLM, tmp_path: Path
) -> None:
    page, routes = await _set_up_with_sockets(browser, gw, tmp_path)
    fake_llm.push(Reply(text="First answer."))
    await _ask(page, "hi")
    web = gw.channels["web"]
    conversation = Conversation("web", "owner", ConversationKind.DM)
    await web.send(OutboundMessage(conversation, "⏰ feed the cat"))
    answers = page.locator(".msg.assistant")
    await expect(answers).to_have_count(2, timeout=30_000)
    # loaded again: both answers come from the history
    await page.reload()
    await expect(page.locator("#status")).to_have_text("connected", timeout=30_000)
    await expect(answers).to_have_count(2)
    # back on a process the page's number is not of: all it has buffered is replayed
    web.process_id = "another-process"
    await routes[-1].close()
    await expect(page.locator("#status")).to_have_text("connected", timeout=30_000)
    # after the replay (events keep their order): only this one is new
    await web.send(OutboundMessage(conversation, "🌱 water the plants"))
    await expect(answers.last).to_have_text("🌱 water the plants", timeout=30_000)
    await expect(answers).to_have_text(["First answer.", "⏰ feed the cat", "🌱 water the plants"])


async def test_an_answer_of_several_rows_from_the_history_is_replaced_whole(
    browser: Browser, gw: Gateway, fake_llm: FakeLLM, tmp_path: Path
) -> None:
    """The history shows an answer stored in two rows as two bubbles; the same answer sent
    whole from the start (another replica's catch-up: `replace`) leaves one bubble with its
    text once, not the first row's text above the whole."""
    page, _routes = await _set_up_with_sockets(browser, gw, tmp_path)
    fake_llm.push(Reply(text="First answer."))
    await _ask(page, "hi")
    session = await gw.store.sessions.current(
        Conversation("web", "owner", ConversationKind.DM).session_key
    )
    turn_id = "web:owner:msg-00000077"
    await gw.store.turns.add(
        session.id,
        [
            TurnRecord(turn_id, ChatMessage("user", "look it up"), identity_key="web:owner"),
            TurnRecord(turn_id, ChatMessage("assistant", "Let me look. ")),
            TurnRecord(turn_id, ChatMessage("assistant", "Found it.")),
        ],
        inbound_done=None,
    )
    await page.reload()
    rows = page.locator('.msg.assistant[data-answer="msg-00000077"]')
    await expect(rows).to_have_count(2, timeout=30_000)
    await expect(page.locator("#status")).to_have_text("connected", timeout=30_000)
    whole = "Let me look. Found it."
    gw.channels["web"].relayed(  # type: ignore[attr-defined]
        {"id": "msg-00000077", "chat": "owner", "re": "msg-00000077", "text": whole}
    )
    await expect(rows).to_have_text([whole], timeout=30_000)
    await expect(page.locator(".msg.assistant")).to_have_text(["First answer.", whole])
