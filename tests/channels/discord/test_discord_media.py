"""Media from Discord end to end: an attachment is downloaded from its CDN URL and reaches
the model (the real OpenAI SDK against the fake LLM) as an image part."""

from __future__ import annotations

import base64
from typing import Any

import openai  # noqa: F401  (loaded before any clock starts)
import pytest

from bot.gateway import Gateway
from tests.channels.discord.conftest import TOKEN_ENV, settle
from tests.fakes.discord import ALICE, FakeDiscord
from tests.fakes.llm import FakeLLM
from tests.media.files import image_size, png


@pytest.fixture(autouse=True)
def _llm_key(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("LLM_KEY", "sk-discord-media")


async def test_a_discord_image_is_fetched_from_the_cdn_and_reaches_the_model(
    make_config: Any, fake: FakeDiscord
) -> None:
    async with FakeLLM() as llm:
        llm.push("A yellow banner.")
        config = make_config(
            channels={
                "discord": {
                    "type": "discord",
                    "token_env": TOKEN_ENV,
                    "api_base_url": fake.api_base,
                    "gateway_url": fake.gateway_url,
                    "access": {"dm_policy": "open"},
                }
            },
            providers={
                "oa": {
                    "base_url": llm.base_url + "/v1",
                    "api_key_env": "LLM_KEY",
                    "health_probe": False,
                }
            },
            models={"chat": ["oa:gpt-4.1-mini"]},
        )
        async with Gateway(config) as gw:
            await fake.send_message(
                "what is on it?", dm=True, attachments={"banner.png": png(300, 100, (250, 220, 0))}
            )
            await fake.wait_for("POST", f"/channels/{fake.dm_channel_id(ALICE)}/messages")
            await settle(gw)
        [call] = llm.calls(path="/v1/chat/completions")
    assert fake.texts_in(fake.dm_channel_id(ALICE)) == ["A yellow banner."]
    text, image = call.body["messages"][-1]["content"]
    assert text["text"].startswith("what is on it?")
    pixels = base64.b64decode(image["image_url"]["url"].split(",", 1)[1])
    assert image_size(pixels) == (300, 100)
