"""Media from Telegram end to end: a photo, a voice note and a PDF are downloaded through
getFile and the file URL (python-telegram-bot against the fake Bot API), then reach the model
(the real OpenAI SDK against the fake LLM) as an image part, the transcript and the text; a
file that cannot be used gets its one line and the caption is still answered."""

from __future__ import annotations

import base64
import shutil
import time
from collections.abc import Callable
from typing import Any

import openai  # noqa: F401  (loaded before any clock starts)
import pytest

from bot.gateway import Gateway
from tests.channels.telegram.conftest import ALICE, payload, settled, until
from tests.fakes.llm import FakeLLM
from tests.fakes.telegram import TOKEN, FakeTelegram
from tests.media.files import image_size, jpeg, pdf, wav_silence


@pytest.fixture(autouse=True)
def _llm_key(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("LLM_KEY", "sk-telegram-media")


def _with_llm(config: Any, llm: FakeLLM, **sections: Any) -> Any:
    data = config.model_dump()
    data["providers"] = {
        "oa": {"base_url": llm.base_url + "/v1", "api_key_env": "LLM_KEY", "health_probe": False}
    }
    data["models"] = {"chat": ["oa:gpt-4o-mini"]}
    data.update(sections)
    data.pop("home")
    from bot.config import parse_config

    return parse_config(data, config.home)


async def test_a_telegram_photo_reaches_the_model_as_an_image_part(
    fake: FakeTelegram, tg_config: Callable[..., Any]
) -> None:
    photo = jpeg(1280, 960)
    update = payload("photo")
    update["message"]["photo"][-1].update(file_id=fake.add_file(photo), file_size=len(photo))
    async with FakeLLM() as llm:
        llm.push("A photo of noise.")
        async with Gateway(_with_llm(tg_config(), llm)) as gw:
            fake.push_update(update)
            await until(lambda: fake.texts(ALICE) == ["A photo of noise."], timeout=20)
            await settled(gw)
        [call] = llm.calls(path="/v1/chat/completions")
    text, image = call.body["messages"][-1]["content"]
    assert text["text"].startswith("what is this?")  # the caption
    url = image["image_url"]["url"]
    assert image_size(base64.b64decode(url.removeprefix("data:image/jpeg;base64,"))) == (
        1280,
        960,
    )
    [asked] = fake.calls_of("getFile")
    assert asked.params["file_id"] == update["message"]["photo"][-1]["file_id"]
    assert TOKEN not in str(call.body)


async def test_a_telegram_voice_note_is_transcribed_and_answered(
    fake: FakeTelegram, tg_config: Callable[..., Any]
) -> None:
    audio = wav_silence(0.5)
    update = payload("voice")
    update["message"]["voice"].update(file_id=fake.add_file(audio), file_size=len(audio))
    async with FakeLLM() as llm:
        llm.push("Milk and eggs.")
        config = _with_llm(tg_config(), llm, transcription={"chain": ["oa:whisper-1"]})
        async with Gateway(config) as gw:
            fake.push_update(update)
            await until(lambda: len(fake.texts(ALICE)) == 2, timeout=20)
            await settled(gw)
        [heard] = llm.calls(path="/v1/audio/transcriptions")
        [call] = llm.calls(path="/v1/chat/completions")
    assert fake.texts(ALICE) == ['🎤 "what is on my shopping list"', "Milk and eggs."]
    assert heard.body["file_bytes"] == len(audio) and heard.body["file_type"] == "audio/ogg"
    assert call.body["messages"][-1]["content"] == "what is on my shopping list"


async def test_a_telegram_file_over_the_channel_s_cap_gets_one_line(
    fake: FakeTelegram, tg_config: Callable[..., Any]
) -> None:
    update = payload("photo")
    update["message"]["photo"][-1].update(file_id=fake.add_file(b"x" * 10), file_size=3_000_000)
    async with FakeLLM() as llm:
        llm.push("Sure.")
        async with Gateway(_with_llm(tg_config(max_download_mb=2), llm)) as gw:
            fake.push_update(update)
            await until(lambda: len(fake.texts(ALICE)) == 2, timeout=20)
            await settled(gw)
    name = update["message"]["photo"][-1]["file_unique_id"]
    assert fake.texts(ALICE) == [
        f"I could not download photo-{name}.jpg: photo-{name}.jpg is 2.9 MB; the limit is 2.0 MB",
        "Sure.",
    ]
    assert fake.calls_of("getFile") == []  # refused on the size Telegram reported


@pytest.mark.skipif(shutil.which("bwrap") is None, reason="bubblewrap is not installed")
async def test_a_telegram_pdf_s_text_reaches_the_model_and_the_workspace(
    fake: FakeTelegram, tg_config: Callable[..., Any]
) -> None:
    report = pdf("Quarterly revenue 7 million")
    update = payload("document")
    update["message"]["caption"] = "how much?"
    update["message"]["document"].update(file_id=fake.add_file(report), file_size=len(report))
    async with FakeLLM() as llm:
        llm.push("Seven million.")
        config = _with_llm(tg_config(), llm, sandbox={"backend": "bwrap"})
        async with Gateway(config) as gw:
            fake.push_update(update)
            await until(lambda: fake.texts(ALICE) == ["Seven million."], timeout=20)
            await settled(gw)
            assert gw.deps.sandbox is not None
            saved = list(gw.deps.sandbox.workspaces.root.glob("*/inbox/report.pdf"))
            assert [p.read_bytes() for p in saved] == [report]
        [call] = llm.calls(path="/v1/chat/completions")
    content = call.body["messages"][-1]["content"]
    assert content.startswith("how much?") and "Quarterly revenue 7 million" in content


async def test_a_damaged_telegram_pdf_gets_one_line_and_the_caption_is_answered(
    fake: FakeTelegram, tg_config: Callable[..., Any]
) -> None:
    broken = b"%PDF-1.4\n1 0 obj << /Type /Cat"
    update = payload("document")
    update["message"]["caption"] = "summarise it"
    update["message"]["document"].update(file_id=fake.add_file(broken), file_size=len(broken))
    async with FakeLLM() as llm:
        llm.push("I could not see the file.")
        async with Gateway(_with_llm(tg_config(), llm)) as gw:
            fake.push_update(update)
            await until(lambda: len(fake.texts(ALICE)) == 2, timeout=20)
            await settled(gw)
        [call] = llm.calls(path="/v1/chat/completions")
    assert fake.texts(ALICE) == [
        "report.pdf is a damaged PDF; I could not read it",
        "I could not see the file.",
    ]
    assert call.body["messages"][-1]["content"] == "summarise it"


async def test_a_download_in_flight_at_a_stop_does_not_hold_it_and_the_photo_is_kept(
    fake: FakeTelegram, tg_config: Callable[..., Any]
) -> None:
    """The gateway stops while a photo trickles in: the stop does not wait for the download
    (whose read timeout is 30 s, and the turns' grace here 60 s), nothing is said or marked
    done, and the next start downloads the photo again and answers it."""
    import channels.telegram_outbound as outbound

    photo = jpeg(64, 48)
    update = payload("photo")
    update["message"]["photo"][-1].update(file_id=fake.add_file(photo), file_size=len(photo))
    fake.stall_files = True
    async with FakeLLM() as llm:
        llm.push("A small photo.")
        config = _with_llm(tg_config(gateway={"shutdown_grace_s": 60.0}), llm)
        gw = await Gateway(config).start()
        try:
            fake.push_update(update)
            await until(lambda: fake.calls_of("getFile"), timeout=20)
            await until(lambda: gw.channels["tg"]._reading, timeout=20)
        finally:
            started = time.monotonic()
            await gw.stop()
            took = time.monotonic() - started
        assert took < outbound._DOWNLOAD_TIMEOUT.sock_read / 3
        assert fake.texts(ALICE) == [] and llm.calls(path="/v1/chat/completions") == []
        fake.stall_files = False
        async with Gateway(config) as again:
            await until(lambda: fake.texts(ALICE) == ["A small photo."], timeout=20)
            await settled(again)
            [(status,)] = await again.store.read(
                lambda c: c.execute("SELECT status FROM inbound").fetchall()
            )
        assert status == "done"
        assert len(llm.calls(path="/v1/chat/completions")) == 1
