"""Media from Discord end to end: an attachment is downloaded from its CDN URL and reaches
the model (the real OpenAI SDK against the fake LLM): an image as an image part, a PDF as its
text, a voice message as its transcript; a file that cannot be used gets its one line."""

from __future__ import annotations

import base64
import shutil
from typing import Any

import openai  # noqa: F401  (loaded before any clock starts)
import pytest

from bot.gateway import Gateway
from tests.channels.discord.conftest import channel_table, settle
from tests.fakes.discord import ALICE, FakeDiscord
from tests.fakes.llm import FakeLLM
from tests.media.files import image_size, pdf, png, wav_silence


@pytest.fixture(autouse=True)
def _llm_key(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("LLM_KEY", "sk-discord-media")


def _config(make_config: Any, fake: FakeDiscord, llm: FakeLLM, **sections: Any) -> Any:
    return make_config(
        channels={"discord": channel_table(fake, access={"dm_policy": "open"})},
        providers={
            "oa": {
                "base_url": llm.base_url + "/v1",
                "api_key_env": "LLM_KEY",
                "health_probe": False,
            }
        },
        models={"chat": ["oa:gpt-4.1-mini"]},
        **sections,
    )


async def test_a_discord_image_is_fetched_from_the_cdn_and_reaches_the_model(
    make_config: Any, fake: FakeDiscord
) -> None:
    async with FakeLLM() as llm:
        llm.push("A yellow banner.")
        async with Gateway(_config(make_config, fake, llm)) as gw:
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


@pytest.mark.skipif(shutil.which("bwrap") is None, reason="bubblewrap is not installed")
async def test_a_discord_pdf_s_text_reaches_the_model_and_the_workspace(
    make_config: Any, fake: FakeDiscord
) -> None:
    report = pdf("Quarterly revenue 7 million")
    dm = fake.dm_channel_id(ALICE)
    async with FakeLLM() as llm:
        llm.push("Seven million.")
        async with Gateway(_config(make_config, fake, llm, sandbox={"backend": "bwrap"})) as gw:
            await fake.send_message("how much?", dm=True, attachments={"q3.pdf": report})
            await fake.wait_for("POST", f"/channels/{dm}/messages")
            await settle(gw)
            assert gw.deps.sandbox is not None
            saved = list(gw.deps.sandbox.workspaces.root.glob("*/inbox/q3.pdf"))
            assert [p.read_bytes() for p in saved] == [report]
        [call] = llm.calls(path="/v1/chat/completions")
    assert fake.texts_in(dm) == ["Seven million."]
    content = call.body["messages"][-1]["content"]
    assert content.startswith("how much?") and "Quarterly revenue 7 million" in content


async def test_a_discord_voice_message_is_transcribed_and_answered(
    make_config: Any, fake: FakeDiscord
) -> None:
    audio = wav_silence(0.5)
    dm = fake.dm_channel_id(ALICE)
    async with FakeLLM() as llm:
        llm.push("Milk and eggs.")
        config = _config(make_config, fake, llm, transcription={"chain": ["oa:whisper-1"]})
        async with Gateway(config) as gw:
            note = fake.message("", dm=True, attachments={"voice-message.ogg": audio})
            note["flags"] = 1 << 13  # IS_VOICE_MESSAGE, as the Discord client sends it
            note["attachments"][0].update(
                content_type="audio/ogg", duration_secs=0.5, waveform="AAAA"
            )
            await fake.dispatch("MESSAGE_CREATE", note)
            await fake.until(lambda: len(fake.texts_in(dm)) == 2, 20)
            await settle(gw)
        [heard] = llm.calls(path="/v1/audio/transcriptions")
        [call] = llm.calls(path="/v1/chat/completions")
    assert fake.texts_in(dm) == ['🎤 "what is on my shopping list"', "Milk and eggs."]
    assert heard.body["file_bytes"] == len(audio) and heard.body["file_type"] == "audio/ogg"
    assert call.body["messages"][-1]["content"] == "what is on my shopping list"


async def test_discord_files_that_cannot_be_used_get_one_line_each_and_the_text_is_answered(
    make_config: Any, fake: FakeDiscord
) -> None:
    """A file over the channel's cap (refused before any download), an unknown type and a
    damaged image: one line each, then the answer to what was typed."""
    dm = fake.dm_channel_id(ALICE)
    files = {
        "notes.txt": b"x" * 2048,
        "backup.zip": b"PK\x03\x04" + b"\x00" * 60,
        "shot.png": b"\x89PNG\r\n\x1a\n broken",
    }
    async with FakeLLM() as llm:
        llm.push("Hello there.")
        media = {"max_file_mb_by_channel": {"discord": 1 / 1024}}
        async with Gateway(_config(make_config, fake, llm, media=media)) as gw:
            await fake.send_message("hi, see attached", dm=True, attachments=files)
            await fake.until(lambda: len(fake.texts_in(dm)) == 2, 20)
            await settle(gw)
        [call] = llm.calls(path="/v1/chat/completions")
    assert fake.texts_in(dm) == [
        "notes.txt is 2 KB; I take files up to 1 KB\n"
        "I can't open backup.zip: I don't read application/zip files "
        "(I take images, PDFs, text files and voice notes)\n"
        "shot.png is not an image I can read (damaged or unknown format)",
        "Hello there.",
    ]
    assert call.body["messages"][-1]["content"] == "hi, see attached"
