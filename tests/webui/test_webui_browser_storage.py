"""The chat page in a real headless Chromium while storage refuses writes: the page says its
message waits, and says so no more once the message is stored."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from playwright.async_api import Browser, Page, expect

from bot.gateway import Gateway
from tests.fakes.llm import FakeLLM, Reply
from tests.webui.conftest import CHROMIUM, gateway_config
from tests.webui.test_webui_browser import _set_up

pytestmark = [
    pytest.mark.skipif(
        CHROMIUM is None, reason="the browser tests need Chromium: apt-get install chromium"
    ),
    pytest.mark.slow,
]


async def _send_while_storage_is_busy(page: Page, gw: Gateway, text: str) -> None:
    """Send `text` from the page while another connection holds the database's write lock,
    until the page says the message waits; the lock is let go on return."""
    from tests.core.test_storage_failures import _locked

    holder = _locked(gw)
    try:
        await page.fill("#input", text)
        await page.press("#input", "Enter")
        await expect(page.locator("#status")).to_contain_text("busy", timeout=30_000)
    finally:
        holder.execute("ROLLBACK")
        holder.close()


async def test_the_storage_wait_note_ends_when_the_message_is_stored(
    browser: Browser, make_config: Any, fake_llm: FakeLLM, tmp_path: Path, monkeypatch: Any
) -> None:
    from bot.store import sqlite as store_sqlite

    monkeypatch.setattr(store_sqlite, "BUSY_TIMEOUT_MS", 200)  # the test waits less
    async with Gateway(gateway_config(make_config, fake_llm)) as gw:
        page = await browser.new_page()
        await _set_up(page, gw, tmp_path)
        fake_llm.push(Reply(text="Noted.", delay_s=1.0))
        await _send_while_storage_is_busy(page, gw, "note this")
        # stored (the ack) before the answer is done: the note goes with the ack
        await expect(page.locator("#status")).to_have_text("connected", timeout=30_000)
        await expect(page.locator(".msg.assistant.done")).to_have_count(1, timeout=30_000)


async def test_a_refused_message_does_not_keep_the_storage_note(
    browser: Browser, make_config: Any, fake_llm: FakeLLM, tmp_path: Path, monkeypatch: Any
) -> None:
    """A message refused for good (its file is gone) is acknowledged with its error: only a
    message that waits for storage holds the note, and it clears once that one is stored."""
    from bot.store import sqlite as store_sqlite

    monkeypatch.setattr(store_sqlite, "BUSY_TIMEOUT_MS", 200)  # the test waits less
    async with Gateway(gateway_config(make_config, fake_llm)) as gw:
        page = await browser.new_page()
        await _set_up(page, gw, tmp_path)
        note = tmp_path / "note.txt"
        note.write_text("hello")
        await page.set_input_files("#file", note)
        await expect(page.locator("#files li")).to_have_count(1, timeout=30_000)
        for kept in (gw.config.home / "webui-uploads").iterdir():
            kept.unlink()  # pruned before the message is sent
        await page.fill("#input", "the note")
        await page.press("#input", "Enter")
        await expect(page.locator("#status")).to_have_text("unknown file", timeout=30_000)
        # its bubble does not look sent: the typed text is not silently lost
        refused = page.locator(".msg.user.not-sent")
        await expect(refused).to_have_count(1, timeout=30_000)
        await expect(refused).to_contain_text("the note")
        await expect(refused).to_contain_text("not sent")
        fake_llm.push(Reply(text="Noted.", delay_s=1.0))
        await _send_while_storage_is_busy(page, gw, "note this")
        await expect(page.locator("#status")).to_have_text("connected", timeout=30_000)
        await expect(page.locator(".msg.assistant.done")).to_have_count(1, timeout=30_000)
        await expect(refused).to_have_count(1)  # the message that waited was sent
