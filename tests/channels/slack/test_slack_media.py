"""Media from Slack end to end: files are downloaded from `url_private` with the bot token
(the fake refuses any other caller) and reach the model (the real OpenAI SDK against the fake
LLM): an image as an image part, a PDF as its text, an audio clip as its transcript."""

from __future__ import annotations

import base64
import shutil
from typing import Any

import openai  # noqa: F401  (loaded before any clock starts)
import pytest

from bot.gateway import Gateway
from channels.slack_api import SlackApi
from channels.slack_inbound import Normalizer, ThreadMemory
from tests.channels.slack.conftest import slack_settings
from tests.fakes.forward_proxy import environment_proxy, thread_hops
from tests.fakes.llm import FakeLLM
from tests.fakes.slack import FakeSlack
from tests.media.files import image_size, pdf, png, slack_clip, wav_silence


@pytest.fixture(autouse=True)
def _llm_key(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("LLM_KEY", "sk-slack-media")


def _file(fake: FakeSlack, name: str, data: bytes, mime: str) -> dict[str, Any]:
    url = fake.add_file(name, data, mime)
    return {"id": "F0009", "name": name, "mimetype": mime, "size": len(data),
            "url_private": url, "url_private_download": url}  # fmt: skip


def _config(
    make_config: Any, fake: FakeSlack, llm: FakeLLM, slack: Any = None, **sections: Any
) -> Any:
    provider = {"base_url": llm.base_url + "/v1", "api_key_env": "LLM_KEY", "health_probe": False}
    return make_config(
        channels={"slack": slack or slack_settings(fake)},
        providers={"oa": provider},
        models={"chat": ["oa:gpt-4o"]},
        **sections,
    )


async def test_a_slack_image_is_fetched_with_the_bot_token_and_reaches_the_model(
    make_config: Any, fake: FakeSlack
) -> None:
    async with FakeLLM() as llm:
        llm.push("A blue square.")
        async with Gateway(_config(make_config, fake, llm)):
            await fake.wait_connected()
            body = fake.event(
                "file_share", files=[_file(fake, "shot.png", png(64, 64), "image/png")]
            )
            await fake.socket_send("events_api", body)
            posted = await fake.wait_for("chat.postMessage")
        [call] = llm.calls(path="/v1/chat/completions")
    assert posted["text"] == "A blue square."
    text, image = call.body["messages"][-1]["content"]
    assert text["text"].startswith("what does this say?")
    pixels = base64.b64decode(image["image_url"]["url"].split(",", 1)[1])
    assert image_size(pixels) == (64, 64)
    assert fake.bot_token not in str(call.body)


async def test_files_events_and_answers_go_through_the_proxy_from_the_environment(
    make_config: Any, fake: FakeSlack, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The download is the adapter's own request (slack_sdk makes the API calls): it takes
    the proxy of the environment too, and so does the model's stream."""
    async with environment_proxy(monkeypatch) as proxy, FakeLLM() as llm:
        llm.push("A blue square.")
        async with Gateway(_config(make_config, fake, llm)):
            await fake.wait_connected()
            shot = _file(fake, "shot.png", png(64, 64), "image/png")
            await fake.socket_send("events_api", fake.event("file_share", files=[shot]))
            posted = await fake.wait_for("chat.postMessage")
    assert posted["text"] == "A blue square."
    assert shot["url_private"] in proxy.targets
    assert f"{llm.base_url}/v1/chat/completions" in proxy.targets
    assert any(t.endswith("/chat.postMessage") for t in proxy.targets), proxy.targets


async def test_posts_and_downloads_through_the_proxy_take_no_thread_hop_each(
    fake: FakeSlack, monkeypatch: pytest.MonkeyPatch
) -> None:
    """aiohttp's trust_env looked ~/.netrc (and, for the adapter's own requests, the proxy)
    up in worker-thread round trips on every post, edit and download; slack_sdk names its
    proxy itself, and the downloads' and response_urls' is looked up once for Slack's
    address."""
    url = fake.add_file("notes.txt", b"buy apples", "text/plain")
    respond_to = fake.response_url()
    async with environment_proxy(monkeypatch) as proxy:
        api = SlackApi(fake.bot_token, fake.api_url, lambda seconds: None)
        try:
            with thread_hops(monkeypatch) as hops:
                for n in range(3):
                    await api.call("chat.postMessage", channel="C0001", text=f"post {n}")
                    assert await api.download(url, 100, "notes.txt") == b"buy apples"
                    await api.respond(respond_to, {"text": f"answer {n}"})
        finally:
            await api.close()
    assert fake.texts("C0001") == ["post 0", "post 1", "post 2"]
    assert proxy.targets.count(f"{fake.api_url}chat.postMessage") == 3, proxy.targets
    assert proxy.targets.count(url) == 3
    assert [call.params["text"] for call in fake.responses] == ["answer 0", "answer 1", "answer 2"]
    assert proxy.targets.count(respond_to) == 3, proxy.targets
    assert len(hops) == 1, hops  # the one lookup for the downloads and response_urls


@pytest.mark.skipif(shutil.which("bwrap") is None, reason="bubblewrap is not installed")
async def test_a_slack_pdf_s_text_reaches_the_model(make_config: Any, fake: FakeSlack) -> None:
    report = pdf("Quarterly revenue 7 million")
    async with FakeLLM() as llm:
        llm.push("Seven million.")
        config = _config(make_config, fake, llm, sandbox={"backend": "bwrap"})
        async with Gateway(config) as gw:
            await fake.wait_connected()
            files = [_file(fake, "q3.pdf", report, "application/pdf")]
            await fake.socket_send("events_api", fake.event("file_share", files=files))
            await fake.wait_for("chat.postMessage")
            assert gw.deps.sandbox is not None
            saved = [p for p in gw.deps.sandbox.workspaces.root.glob("*/inbox/q3.pdf")]
            assert [p.read_bytes() for p in saved] == [report]
        [call] = llm.calls(path="/v1/chat/completions")
    assert "Quarterly revenue 7 million" in call.body["messages"][-1]["content"]


def clip(fake: FakeSlack, data: bytes) -> dict[str, Any]:
    return slack_clip(fake.add_file("audio_message.webm", data, "audio/webm"), len(data))


async def test_a_slack_audio_clip_is_a_voice_note_transcribed_and_answered(
    make_config: Any, fake: FakeSlack
) -> None:
    audio = wav_silence(0.5)
    async with FakeLLM() as llm:
        llm.push("Milk and eggs.")
        config = _config(make_config, fake, llm, transcription={"chain": ["oa:whisper-1"]})
        async with Gateway(config):
            await fake.wait_connected()
            body = fake.event("file_share", text="", files=[clip(fake, audio)], blocks=None)
            await fake.socket_send("events_api", body)
            await fake.wait_for("chat.postMessage", text="Milk and eggs.", timeout=20)
        [heard] = llm.calls(path="/v1/audio/transcriptions")
        [call] = llm.calls(path="/v1/chat/completions")
    assert fake.texts("D0001") == ['🎤 "what is on my shopping list"', "Milk and eggs."]
    assert heard.body["file_bytes"] == len(audio) and heard.body["file_type"] == "audio/webm"
    assert call.body["messages"][-1]["content"] == "what is on my shopping list"


def test_only_a_recorded_slack_clip_is_a_voice_note(fake: FakeSlack) -> None:
    """The clip's file has subtype slack_audio (at times labelled video/mp4); an uploaded
    audio file shares the player (media_display_type) but stays an audio file."""
    recorded = clip(fake, b"\x1aE\xdf\xa3") | {"mimetype": "video/mp4"}
    url = fake.add_file("song.mp3", b"ID3", "audio/mpeg")
    uploaded = {"id": "F00C2", "name": "song.mp3", "mimetype": "audio/mpeg", "size": 3,
                "media_display_type": "audio", "url_private": url}  # fmt: skip
    normalizer = Normalizer("slack", "UBOT", ThreadMemory(None))
    found = normalizer.event(fake.event("file_share", files=[recorded, uploaded]))
    assert found is not None
    assert [part.kind for part in found[0].parts] == ["voice", "audio"]


async def test_slack_files_that_cannot_be_used_get_one_line_each_and_the_text_is_answered(
    make_config: Any, fake: FakeSlack
) -> None:
    """A file over the channel's cap (refused before any download), a damaged image and an
    empty clip: one line each, then the answer to what was typed."""
    big = _file(fake, "big.pdf", b"%PDF-1.4", "application/pdf") | {"size": 5_000_000}
    broken = _file(fake, "shot.png", b"\x89PNG\r\n\x1a\n broken", "image/png")
    empty = clip(fake, b"")
    async with FakeLLM() as llm:
        llm.push("Hello there.")
        config = _config(
            make_config,
            fake,
            llm,
            slack_settings(fake, max_file_mb=1),
            transcription={"chain": ["oa:whisper-1"]},
        )
        async with Gateway(config):
            await fake.wait_connected()
            body = fake.event("file_share", text="hi, see attached", files=[big, broken, empty])
            await fake.socket_send("events_api", body)
            await fake.wait_for("chat.postMessage", text="Hello there.", timeout=20)
        [call] = llm.calls(path="/v1/chat/completions")
    assert fake.texts("D0001") == [
        "I could not download big.pdf: big.pdf is 4.8 MB; the limit is 1.0 MB\n"
        "shot.png is not an image I can read (damaged or unknown format)\n"
        "audio_message.webm is empty (0 seconds of audio)",
        "Hello there.",
    ]
    assert call.body["messages"][-1]["content"] == "hi, see attached"
    assert llm.calls(path="/v1/audio/transcriptions") == []
    assert len(fake.file_requests) == 2  # the image and the clip; not the file over the cap


async def test_a_download_answered_with_broken_http_names_the_failure_not_the_bot_token(
    make_config: Any, fake: FakeSlack
) -> None:
    """aiohttp's error for a response that is not HTTP carries the request's headers in its
    repr, the bot token's Authorization among them: the person's line must not."""
    shot = _file(fake, "shot.png", png(8, 8), "image/png")
    fake.garbled_files.add("shot.png")
    async with FakeLLM() as llm:
        llm.push("Hello there.")
        async with Gateway(_config(make_config, fake, llm)):
            await fake.wait_connected()
            body = fake.event("file_share", text="hi, see attached", files=[shot])
            await fake.socket_send("events_api", body)
            await fake.wait_for("chat.postMessage", text="Hello there.", timeout=20)
        [call] = llm.calls(path="/v1/chat/completions")
    problem, answer = fake.texts("D0001")
    assert fake.bot_token not in problem and "Bearer" not in problem
    assert problem.startswith("I could not download shot.png: slack file download failed")
    assert answer == "Hello there."
    assert fake.bot_token not in str(call.body)
