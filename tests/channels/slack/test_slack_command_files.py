"""A file shared with a command as its text (slack_sdk's Socket Mode against the fake): the
command runs, as typed commands do on the other platforms; `/ask` asks about the file; any
other command's answer says the file was not used; `/decapod ask` reads as the slash command
does, and a "/word" that is no command is chat. Nothing shared is lost without a word."""

from __future__ import annotations

from typing import Any

import openai  # noqa: F401  (loaded before any clock starts)
import pytest

from bot.gateway import Gateway
from tests.channels.command_attachments import REMIND, assert_set_without, the_reminder_set
from tests.channels.slack.test_slack_media import _config, _file
from tests.fakes.llm import FakeLLM
from tests.fakes.slack import FakeSlack
from tests.media.files import png


@pytest.fixture(autouse=True)
def _llm_key(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("LLM_KEY", "sk-slack-command-files")


async def test_a_remind_shared_with_a_file_sets_the_reminder_and_says_the_file_was_not_used(
    make_config: Any, fake: FakeSlack
) -> None:
    async with FakeLLM() as llm, Gateway(_config(make_config, fake, llm)) as gw:
        await fake.wait_connected()
        shot = _file(fake, "shot.png", png(32, 32), "image/png")
        body = fake.event("file_share", text=REMIND, files=[shot])
        await fake.socket_send("events_api", body)
        posted = await fake.wait_for("chat.postMessage")
        job = await the_reminder_set(gw)
    assert_set_without(posted["text"], job, llm, "shot.png")


@pytest.mark.parametrize(
    ("typed", "asked"),
    [
        ("/ask what is this", "what is this"),
        # the configured slash command typed out reads as the slash command does
        ("/decapod ask what is this", "what is this"),
        # no command by that name: chat, as the person meant it, not "Unknown command"
        ("/tmp is full, see", "/tmp is full, see"),
    ],
)
async def test_a_question_shared_with_a_file_asks_about_it(
    make_config: Any, fake: FakeSlack, typed: str, asked: str
) -> None:
    async with FakeLLM() as llm:
        llm.push("A small square.")
        async with Gateway(_config(make_config, fake, llm)):
            await fake.wait_connected()
            shot = _file(fake, "shot.png", png(32, 32), "image/png")
            body = fake.event("file_share", text=typed, files=[shot])
            await fake.socket_send("events_api", body)
            posted = await fake.wait_for("chat.postMessage")
        [call] = llm.calls(path="/v1/chat/completions")
    assert posted["text"] == "A small square."
    text, image = call.body["messages"][-1]["content"]
    assert text["text"].startswith(asked) and image["type"] == "image_url"
