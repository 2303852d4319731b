"""A message with an attachment and a typed command (discord.py against the fake gateway and
REST API): `/ask` asks about the attachment; any other command runs on its text and its
answer says the attachment was not used. Nothing sent is lost without a word."""

from __future__ import annotations

from typing import Any

import openai  # noqa: F401  (loaded before any clock starts)
import pytest

from bot.gateway import Gateway
from tests.channels.command_attachments import REMIND, assert_set_without, the_reminder_set
from tests.channels.discord.conftest import settle
from tests.channels.discord.test_discord_media import _config
from tests.fakes.discord import ALICE, FakeDiscord
from tests.fakes.llm import FakeLLM
from tests.media.files import png


@pytest.fixture(autouse=True)
def _llm_key(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("LLM_KEY", "sk-discord-command-attachments")


async def test_a_remind_with_an_attachment_sets_the_reminder_and_says_it_was_not_used(
    make_config: Any, fake: FakeDiscord
) -> None:
    dm = fake.dm_channel_id(ALICE)
    async with FakeLLM() as llm, Gateway(_config(make_config, fake, llm)) as gw:
        await fake.send_message(REMIND, dm=True, attachments={"list.png": png(32, 32)})
        await fake.wait_for("POST", f"/channels/{dm}/messages")
        await settle(gw)
        job = await the_reminder_set(gw)
    [answer] = fake.texts_in(dm)
    assert_set_without(answer, job, llm, "list.png")


async def test_an_ask_with_an_attachment_asks_about_it(make_config: Any, fake: FakeDiscord) -> None:
    dm = fake.dm_channel_id(ALICE)
    async with FakeLLM() as llm:
        llm.push("A small square.")
        async with Gateway(_config(make_config, fake, llm)) as gw:
            await fake.send_message("/ask", dm=True, attachments={"list.png": png(32, 32)})
            await fake.wait_for("POST", f"/channels/{dm}/messages")
            await settle(gw)
        [call] = llm.calls(path="/v1/chat/completions")
    assert fake.texts_in(dm) == ["A small square."]
    kinds = [part["type"] for part in call.body["messages"][-1]["content"]]
    assert kinds == ["text", "image_url"]
