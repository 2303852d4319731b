"""Voice in: a voice note is transcribed by the first transcription server that answers;
the transcript is the user message, and the person sees one quoted line of it first."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from typing import Any

import pytest

from bot.messages import Attachment, InboundMessage
from bot.store import Store
from tests.fakes.channel import RecordingChannel
from tests.fakes.llm import FakeLLM, Reply
from tests.media.conftest import providers, running, settled
from tests.media.files import wav_silence

NOTE = Attachment("voice", "voice-1", "voice-1.wav", "audio/wav", None)


async def test_a_voice_note_s_transcript_is_the_user_message(
    make_config: Any, fake: FakeLLM
) -> None:
    fake.push("Milk, eggs and bread.")
    audio = wav_silence(1.0)
    async with running(
        make_config,
        fake,
        models={"chat": ["oa:gpt-4o-mini"]},
        transcription={"chain": ["oa:whisper-1"]},
    ) as (gw, channel):
        channel.files["voice-1"] = audio
        await channel.push("", parts=(NOTE,))
        texts = await channel.wait_for_messages(2)
        assert await settled(gw) == "done"
    assert texts == ['🎤 "what is on my shopping list"', "Milk, eggs and bread."]
    [heard] = fake.calls(path="/v1/audio/transcriptions")
    assert heard.body["model"] == "whisper-1" and heard.body["file_bytes"] == len(audio)
    assert heard.body["file_name"] == "voice-1.wav"
    assert heard.headers["Authorization"] == "Bearer sk-media-test"
    [chat] = fake.calls(path="/v1/chat/completions")
    assert chat.body["messages"][-1] == {"role": "user", "content": "what is on my shopping list"}


async def test_a_heard_line_that_cannot_be_sent_does_not_cost_the_answer(
    make_config: Any, fake: FakeLLM
) -> None:
    """The quoted line is a courtesy: when the platform fails it (after the channel's own
    retries), the voice note is still answered, not given up as a failed delivery."""
    fake.push("Milk, eggs and bread.")
    async with running(
        make_config,
        fake,
        models={"chat": ["oa:gpt-4o-mini"]},
        transcription={"chain": ["oa:whisper-1"]},
    ) as (gw, channel):
        channel.retry_backoff_s = 0.01
        channel.files["voice-1"] = wav_silence(0.5)
        channel.failing_sends = channel.max_transient_attempts  # the 🎤 line fails
        await channel.push("", parts=(NOTE,))
        texts = await channel.wait_for_messages(1)
        assert await settled(gw) == "done"
    assert texts == ["Milk, eggs and bread."]
    [chat] = fake.calls(path="/v1/chat/completions")
    assert chat.body["messages"][-1]["content"] == "what is on my shopping list"


def _unavailable(fake: FakeLLM) -> None:
    fake.transcript_replies.extend([Reply.error(503), Reply.error(503)])  # the SDK retries once


def _error_page(fake: FakeLLM) -> None:
    fake.transcript_bodies.append(("<html><body>502 Bad Gateway</body></html>", "text/html"))


def _no_transcript(fake: FakeLLM) -> None:
    fake.transcript_bodies.append(('{"segments": []}', "application/json"))


@pytest.mark.parametrize(
    "fault",
    [
        pytest.param(_unavailable, id="unavailable"),
        pytest.param(_error_page, id="a proxy's error page"),
        pytest.param(_no_transcript, id="JSON without a transcript"),
    ],
)
async def test_transcription_fails_over_to_the_next_server_and_no_false_one_is_the_message(
    make_config: Any, fake: FakeLLM, fault: Callable[[FakeLLM], None]
) -> None:
    """An answer that is no transcript came back from the SDK as a string or as text=None:
    the person was told "something went wrong" without the backup being asked, or was heard
    to say "None"."""
    async with FakeLLM() as backup:
        backup.transcript_text = "call mum at six"
        fault(fake)
        extra = {"backup": {"base_url": backup.base_url + "/v1", "health_probe": False}}
        async with running(
            make_config,
            fake,
            providers=providers(fake, **extra),
            models={"chat": ["oa:gpt-4o-mini"]},
            transcription={"chain": ["oa:whisper-1", "backup:whisper-large-v3"]},
        ) as (_gw, channel):
            channel.files["voice-1"] = wav_silence(0.5)
            await channel.push("", parts=(NOTE,))
            texts = await channel.wait_for_messages(2)
        assert len(backup.calls(path="/v1/audio/transcriptions")) == 1
    assert texts[0] == '🎤 "call mum at six"'
    [chat] = fake.calls(path="/v1/chat/completions")
    assert chat.body["messages"][-1]["content"] == "call mum at six"


async def test_without_a_transcriber_the_reply_says_how_to_enable_it(
    make_config: Any, fake: FakeLLM
) -> None:
    fake.push("Hi!")
    async with running(make_config, fake, models={"chat": ["oa:gpt-4o-mini"]}) as (gw, channel):
        channel.files["voice-1"] = wav_silence(0.5)
        await channel.push("hello", parts=(NOTE,))
        texts = await channel.wait_for_messages(2)
        assert await settled(gw) == "done"
    assert "voice notes" in texts[0] and "[transcription] chain" in texts[0]
    assert "\n" not in texts[0]
    assert texts[1] == "Hi!"  # the text that came with it is still answered
    assert fake.calls(path="/v1/audio/transcriptions") == []
    assert channel.fetched == []  # nothing downloaded that nobody can use


async def _push_while_transcribing(channel: RecordingChannel, fake: FakeLLM) -> InboundMessage:
    """A voice note with its question, once the transcription server has it."""
    channel.files["voice-1"] = wav_silence(0.5)
    message = await channel.push("is bread on the list?", parts=(NOTE,))
    async with asyncio.timeout(20):
        while not fake.calls(path="/v1/audio/transcriptions"):
            await asyncio.sleep(0.01)
    return message


def _hanging(make_config: Any, fake: FakeLLM, intake_timeout_s: float) -> Any:
    """A gateway whose one transcription server takes the audio and never answers (each try
    would wait its 60 s timeout, and the SDK tries twice)."""
    fake.transcript_replies.extend([Reply(hang=True), Reply(hang=True)])
    return running(
        make_config,
        fake,
        models={"chat": ["oa:gpt-4o-mini"]},
        transcription={"chain": ["oa:whisper-1"]},
        media={"intake_timeout_s": intake_timeout_s},
    )


async def test_a_transcription_that_hangs_is_given_up_at_the_intake_deadline(
    make_config: Any, fake: FakeLLM
) -> None:
    """At the intake's deadline the person is told once which voice note was not
    transcribed, and the text that came with it is answered."""
    fake.push("Bread is on it.")
    async with _hanging(make_config, fake, 2.0) as (gw, channel):
        channel.files["voice-1"] = wav_silence(0.5)
        started = time.monotonic()
        await channel.push("is bread on the list?", parts=(NOTE,))
        texts = await channel.wait_for_messages(2, timeout=50)
        took = time.monotonic() - started
        assert await settled(gw) == "done"
    assert texts == [
        "I could not transcribe voice-1.wav in time (I gave up after 2 seconds); "
        "please send it again or type it",
        "Bread is on it.",
    ]
    assert took < 20, "well before the transcription server's own timeout (60 s)"
    [chat] = fake.calls(path="/v1/chat/completions")
    assert chat.body["messages"][-1]["content"] == "is bread on the list?"


async def test_a_voice_note_alone_not_transcribed_in_time_is_said_and_not_run_again(
    make_config: Any, fake: FakeLLM
) -> None:
    async with _hanging(make_config, fake, 1.0) as (gw, channel):
        channel.files["voice-1"] = wav_silence(0.5)
        await channel.push("", parts=(NOTE,))
        texts = await channel.wait_for_messages(1, timeout=50)
        assert await settled(gw) == "done"
    assert texts == [
        "I could not transcribe voice-1.wav in time (I gave up after 1 second); "
        "please send it again or type it"
    ]
    assert fake.calls(path="/v1/chat/completions") == []


async def test_a_stop_during_a_hanging_transcription_leaves_the_message_pending_unsaid(
    make_config: Any, fake: FakeLLM
) -> None:
    """The gateway stops while a voice note is being transcribed (the server never answers):
    the stop does not wait for the transcription, nothing is said to the person, and the
    delivery stays pending for the next start, which reads the note again."""
    fake.push("Bread is on it.")
    async with _hanging(make_config, fake, 120.0) as (gw, channel):
        message = await _push_while_transcribing(channel, fake)
        started = time.monotonic()
        await gw.stop()
        took = time.monotonic() - started
    async with Store(gw.store.path) as store:
        status = await store.inbound.status("test", message.id)
    assert took < 8, "the stop ended the transcription, not its grace (10 s) or timeout"
    assert status == "pending"
    assert channel.texts() == []
    assert fake.calls(path="/v1/chat/completions") == []


async def test_stop_while_a_voice_note_is_transcribed_ends_that_turn(
    make_config: Any, fake: FakeLLM
) -> None:
    """/stop while the voice note is still being transcribed (the server never answers)
    ends the turn at once, as during the answer: the model is never asked, and the
    delivery is done, not read again at the next start."""
    async with _hanging(make_config, fake, 120.0) as (gw, channel):
        message = await _push_while_transcribing(channel, fake)
        await channel.push("/stop")
        texts = await channel.wait_for_messages(2, timeout=20)
        assert await settled(gw, delivery=message.id) == "done"
    assert sorted(texts) == ["Stopped.", "Stopping it."]
    assert fake.calls(path="/v1/chat/completions") == []
