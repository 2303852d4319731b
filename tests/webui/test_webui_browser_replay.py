"""The chat page in a real headless Chromium, back on a process that has answers buffered
which the page shows from its history (another replica, or numbers it cannot place): it
takes none of them twice."""

from __future__ import annotations

from pathlib import Path

import pytest
from playwright.async_api import Browser, expect

from bot.gateway import Gateway
from bot.messages import Conversation, ConversationKind, OutboundMessage
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
