"""A command typed as the caption of a photo or a document (python-telegram-bot against the
fake Bot API, the OpenAI SDK against the fake LLM): `/ask` asks about the attachment, any
other command runs on its text and its answer says the attachment was not used. Nothing
sent is lost without a word."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import openai  # noqa: F401  (loaded before any clock starts)
import pytest

from bot.gateway import Gateway
from tests.channels.command_attachments import REMIND, assert_set_without, the_reminder_set
from tests.channels.telegram.conftest import ALICE, payload, settled, until
from tests.channels.telegram.test_telegram_media import _with_llm
from tests.fakes.llm import FakeLLM
from tests.fakes.telegram import FakeTelegram
from tests.media.files import jpeg


@pytest.fixture(autouse=True)
def _llm_key(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("LLM_KEY", "sk-telegram-captions")


def _photo_captioned(fake: FakeTelegram, caption: str) -> Any:
    photo = jpeg(64, 48)
    update = payload("photo")
    update["message"]["photo"][-1].update(file_id=fake.add_file(photo), file_size=len(photo))
    update["message"]["caption"] = caption
    return update


async def test_a_remind_caption_on_a_photo_sets_the_reminder_and_says_the_photo_was_not_used(
    fake: FakeTelegram, tg_config: Callable[..., Any]
) -> None:
    async with FakeLLM() as llm, Gateway(_with_llm(tg_config(), llm)) as gw:
        fake.push_update(_photo_captioned(fake, REMIND))
        await until(lambda: fake.texts(ALICE), timeout=20)
        await settled(gw)
        job = await the_reminder_set(gw)
    [answer] = fake.texts(ALICE)
    assert_set_without(answer, job, llm, "photo-AQADlarge.jpg")
    assert "call mum" in answer and "/ask" in answer


async def test_an_ask_caption_alone_on_a_photo_asks_about_the_photo(
    fake: FakeTelegram, tg_config: Callable[..., Any]
) -> None:
    async with FakeLLM() as llm:
        llm.push("A small photo.")
        async with Gateway(_with_llm(tg_config(), llm)) as gw:
            fake.push_update(_photo_captioned(fake, "/ask"))
            await until(lambda: fake.texts(ALICE), timeout=20)
            await settled(gw)
        [call] = llm.calls(path="/v1/chat/completions")
    assert fake.texts(ALICE) == ["A small photo."]
    kinds = [part["type"] for part in call.body["messages"][-1]["content"]]
    assert kinds == ["text", "image_url"]
