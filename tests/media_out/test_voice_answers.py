"""Voice answers: `/voice on`, then the answer to a voice note also comes back spoken,
made by an OpenAI-compatible /v1/audio/speech server (the fake LLM's): a voice message
(OGG/Opus, sendVoice) on Telegram, an MP3 file on Discord and Slack. A speech chain fails over; with
every speech server down the text answer still arrives, once."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from typing import Any

import pytest

from bot.errors import ConfigError
from bot.gateway import Gateway
from bot.media.speech import speakable
from bot.providers.testing import ScriptedProvider
from tests.channels.slack.conftest import idle
from tests.channels.telegram.conftest import payload, settled, until
from tests.fakes.discord import ALICE as DISCORD_ALICE
from tests.fakes.discord import FakeDiscord
from tests.fakes.llm import FakeLLM, speech_audio
from tests.fakes.slack import FakeSlack
from tests.fakes.telegram import FakeTelegram
from tests.media.files import slack_clip
from tests.media_out.conftest import ALICE, SPEECH_KEY_ENV, speech_sections

ANSWER = "The **answer** is 42. See [the guide](https://example.com/guide)."
SPOKEN = "The answer is 42. See the guide."
SPEECH_PATH = "/v1/audio/speech"


def push_voice_note(fake: FakeTelegram, caption: str = "") -> None:
    message = dict(payload("voice")["message"])
    message.update(message_id=int(time.time() * 1000) % 10**9, date=int(time.time()))
    if caption:
        message["caption"] = caption
    fake.push_update({"message": message})


async def voice_on(fake: FakeTelegram) -> None:
    fake.push_private("/voice on", user_id=ALICE)
    await until(lambda: any("Voice answers on" in t for t in fake.texts(ALICE)))


def tg_config(make: Callable[..., Any], *servers: FakeLLM) -> Any:
    return make(sandbox={"backend": "none"}, **speech_sections(*servers))


def test_speakable_drops_markup_and_cuts_at_a_sentence() -> None:
    assert speakable(ANSWER, 4000) == SPOKEN
    assert speakable("Run this:\n```sh\nrm -rf /\n```\nDone.", 4000) == "Run this: Done."
    long = "One sentence here. " * 20
    cut = speakable(long, 100)
    assert len(cut) <= 100 and cut.endswith("here.")


async def test_telegram_answers_a_voice_note_with_a_voice_message(
    tg: FakeTelegram, tg_gateway_config: Callable[..., Any], speech_server: FakeLLM
) -> None:
    provider = ScriptedProvider([ANSWER])
    async with Gateway(tg_config(tg_gateway_config, speech_server), provider=provider) as gw:
        await voice_on(tg)
        push_voice_note(tg, caption="what is the answer?")
        await until(lambda: bool(tg.uploads))
        await settled(gw)
    assert tg.texts(ALICE)[-1] == "The answer is 42. See the guide."  # the text, as always
    [upload] = tg.uploads
    assert (upload.method, upload.chat_id, upload.name) == ("sendVoice", ALICE, "answer.ogg")
    assert upload.data == speech_audio(SPOKEN, "opus")
    [request] = speech_server.calls(path=SPEECH_PATH)
    assert request.body == {
        "model": "tts-1",
        "voice": "nova",
        "input": SPOKEN,
        "response_format": "opus",
    }
    assert request.headers["Authorization"] == "Bearer sk-speech-test-key-0123456789"


async def test_only_voice_notes_get_voice_and_only_for_who_asked(
    tg: FakeTelegram, tg_gateway_config: Callable[..., Any], speech_server: FakeLLM
) -> None:
    provider = ScriptedProvider(["Typed answer.", "Voice note answer."])
    async with Gateway(tg_config(tg_gateway_config, speech_server), provider=provider) as gw:
        tg.push_private("a typed question", user_id=ALICE)
        await until(lambda: "Typed answer." in tg.texts(ALICE))
        push_voice_note(tg, caption="a spoken question")  # voice answers are still off
        await until(lambda: "Voice note answer." in tg.texts(ALICE))
        await settled(gw)
    assert tg.uploads == [] and speech_server.calls(path=SPEECH_PATH) == []


async def test_the_choice_is_kept_across_a_restart(
    tg: FakeTelegram, tg_gateway_config: Callable[..., Any], speech_server: FakeLLM
) -> None:
    config = tg_config(tg_gateway_config, speech_server)
    async with Gateway(config, provider=ScriptedProvider([])):
        await voice_on(tg)
    async with Gateway(config, provider=ScriptedProvider([ANSWER])) as gw:
        tg.push_private("/voice", user_id=ALICE)
        await until(lambda: "Voice answers are on. Usage: /voice on|off" in tg.texts(ALICE))
        push_voice_note(tg, caption="again")
        await until(lambda: bool(tg.uploads))
        tg.push_private("/voice off", user_id=ALICE)
        await until(lambda: any("Voice answers off" in t for t in tg.texts(ALICE)))
        await settled(gw)
    assert [u.method for u in tg.uploads] == ["sendVoice"]


def _unavailable(server: FakeLLM) -> None:
    server.speech_status = 503


def _error_page(server: FakeLLM) -> None:
    server.speech_body = ("<html><body>502 Bad Gateway</body></html>", "text/html")


def _json_error(server: FakeLLM) -> None:
    server.speech_body = ('{"error": {"message": "voice not found"}}', "application/json")


@pytest.mark.parametrize(
    "fault",
    [
        pytest.param(_unavailable, id="unavailable"),
        pytest.param(_error_page, id="an error page with 200"),
        pytest.param(_json_error, id="a JSON error with 200"),
    ],
)
async def test_a_speech_chain_fails_over_to_the_next_server_and_never_sends_what_is_no_audio(
    tg: FakeTelegram,
    tg_gateway_config: Callable[..., Any],
    speech_server: FakeLLM,
    fault: Callable[[FakeLLM], None],
) -> None:
    """An error page or JSON sent with 200 is not audio: it must not go out as the voice
    message (the person would get a file that does not play), the next server speaks."""
    async with FakeLLM() as second:
        fault(speech_server)
        config = tg_config(tg_gateway_config, speech_server, second)
        async with Gateway(config, provider=ScriptedProvider([ANSWER])) as gw:
            await voice_on(tg)
            push_voice_note(tg, caption="q")
            await until(lambda: bool(tg.uploads))
            await settled(gw)
    assert len(speech_server.calls(path=SPEECH_PATH)) == 1
    assert len(second.calls(path=SPEECH_PATH)) == 1
    [upload] = tg.uploads
    assert upload.data == speech_audio(SPOKEN, "opus")


async def test_with_the_speech_server_down_the_text_answer_arrives_once(
    tg: FakeTelegram,
    tg_gateway_config: Callable[..., Any],
    speech_server: FakeLLM,
    caplog: pytest.LogCaptureFixture,
) -> None:
    speech_server.speech_status = 503
    provider = ScriptedProvider([ANSWER])
    async with Gateway(tg_config(tg_gateway_config, speech_server), provider=provider) as gw:
        await voice_on(tg)
        push_voice_note(tg, caption="what is the answer?")
        await until(lambda: bool(speech_server.calls(path=SPEECH_PATH)))
        await settled(gw)
        # the turn is done: nothing is pending to run (and answer) again
        assert await gw.store.deliveries.unfinished() == []
    assert tg.texts(ALICE).count(SPOKEN) == 1
    assert tg.uploads == [] and not tg.calls_of("sendVoice")
    assert len(provider.requests) == 1
    # a missing spoken copy is worth a warning, not a failed turn
    assert not [r for r in caplog.records if r.levelno >= logging.ERROR]
    assert any("no voice answer" in r.getMessage() for r in caplog.records)


async def test_voice_on_without_a_speech_server_says_how_to_enable_it(
    tg: FakeTelegram, tg_gateway_config: Callable[..., Any]
) -> None:
    async with Gateway(
        tg_gateway_config(sandbox={"backend": "none"}), provider=ScriptedProvider([])
    ):
        tg.push_private("/voice on", user_id=ALICE)
        await until(lambda: bool(tg.texts(ALICE)))
        tg.push_private("/voice", user_id=ALICE)
        await until(lambda: len(tg.texts(ALICE)) == 2)
    how, state = tg.texts(ALICE)
    assert how.startswith("Voice answers are not set up on this gateway.")
    assert "[speech]" in how and "config.toml" in how
    assert state == "Voice answers are off. Usage: /voice on|off"


async def test_discord_answers_a_voice_message_with_an_mp3_file(
    discord_fake: FakeDiscord,
    discord_gateway_config: Callable[..., Any],
    speech_server: FakeLLM,
) -> None:
    provider = ScriptedProvider([ANSWER])
    dm_channel = discord_fake.dm_channel_id(DISCORD_ALICE)
    config = discord_gateway_config(**speech_sections(speech_server))
    async with Gateway(config, provider=provider) as gw:
        await discord_fake.until(lambda: discord_fake.connected)
        await discord_fake.send_message("/voice on", dm=True)
        await discord_fake.until(
            lambda: any("Voice answers on" in t for t in discord_fake.texts_in(dm_channel))
        )
        note = discord_fake.message("", dm=True, attachments={"voice-message.ogg": b"OggS.."})
        note["flags"] = 1 << 13  # IS_VOICE_MESSAGE
        note["attachments"][0]["content_type"] = "audio/ogg"
        await discord_fake.dispatch("MESSAGE_CREATE", note)

        def audio_files() -> list[tuple[str, str, bytes]]:
            posts = discord_fake.calls_to("POST", f"/channels/{dm_channel}/messages")
            return [f for call in posts for f in call.files]

        await discord_fake.until(lambda: bool(audio_files()), 10)
        await idle(gw)
    assert ANSWER in discord_fake.texts_in(dm_channel)
    [(name, _mime, data)] = audio_files()
    assert (name, data) == ("answer.mp3", speech_audio(SPOKEN, "mp3"))
    [request] = speech_server.calls(path=SPEECH_PATH)
    assert request.body["response_format"] == "mp3"


@pytest.mark.parametrize(
    ("providers", "problem"),
    [
        ({"local": {"preset": "ollama"}}, "not in \\[providers\\]"),
        (
            {"local": {"preset": "ollama"}, "tts0": {"type": "anthropic"}},
            "needs an OpenAI-compatible provider",
        ),
    ],
)
def test_a_speech_chain_must_name_openai_compatible_providers(
    make_config: Callable[..., Any], providers: dict[str, Any], problem: str
) -> None:
    with pytest.raises(ConfigError, match=problem):
        make_config(providers=providers, speech={"chain": ["tts0:tts-1"]})


async def test_a_missing_speech_key_is_a_start_up_error(
    tg: FakeTelegram,
    tg_gateway_config: Callable[..., Any],
    speech_server: FakeLLM,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.delenv(SPEECH_KEY_ENV)
    config = tg_config(tg_gateway_config, speech_server)
    with pytest.raises(ConfigError, match=SPEECH_KEY_ENV):
        async with Gateway(config, provider=ScriptedProvider([])):
            pass


async def test_slack_answers_a_recorded_clip_with_an_mp3_file(
    slack: FakeSlack, make_config: Callable[..., Any], speech_server: FakeLLM
) -> None:
    provider = ScriptedProvider([ANSWER])
    table = {"type": "slack", "api_url": slack.api_url, "access": {"dm_policy": "open"}}
    config = make_config(
        channels={"slack": table},
        memory={"enabled": False},
        sandbox={"backend": "none"},
        **speech_sections(speech_server),
    )
    async with Gateway(config, provider=provider) as gw:
        await slack.wait_connected()
        dm = {"channel_id": "D0001", "channel_name": "directmessage"}
        await slack.socket_send("slash_commands", slack.slash("voice on", **dm))
        [chosen] = await slack.wait_for_responses(1)
        assert chosen.params["text"].startswith("Voice answers on")
        url = slack.add_file("audio_message.webm", b"\x1aE\xdf\xa3 webm", "audio/webm")
        files = [slack_clip(url, 9)]
        await slack.socket_send("events_api", slack.event("file_share", text="", files=files))
        await until(lambda: bool(slack.uploads), 10)
        await idle(gw)
    assert slack.texts("D0001") == [
        '🎤 "what is on my shopping list"',
        "The *answer* is 42. See <https://example.com/guide|the guide>.",
    ]
    [upload] = slack.uploads
    assert (upload.channel, upload.name) == ("D0001", "answer.mp3")
    assert upload.data == speech_audio(SPOKEN, "mp3")
