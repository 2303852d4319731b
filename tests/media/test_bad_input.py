"""Bad input: an oversized file, an unknown type, a damaged PDF or image, empty audio, a
failed download. Each gets a one-line reply naming the problem; the text that came with it is
still answered; nothing crashes, and the delivery ends done."""

from __future__ import annotations

from typing import Any

import pytest

from bot.messages import Attachment
from tests.fakes.llm import FakeLLM
from tests.media.conftest import running, settled
from tests.media.files import png

CASES = [
    (
        Attachment("image", "big", "huge.png", "image/png", 50_000),
        png(10, 10),
        "huge.png is 49 KB; I take files up to 1 KB",
    ),
    (
        Attachment("document", "zip", "backup.zip", "application/zip", 300),
        b"PK\x03\x04" + b"\x00" * 296,
        "I can't open backup.zip: I don't read application/zip files "
        "(I take images, PDFs, text files and voice notes)",
    ),
    (
        Attachment("video", "clip", "clip.mp4", "video/mp4", 200),
        b"\x00" * 200,
        "I can't open clip.mp4: I don't read video/mp4 files "
        "(I take images, PDFs, text files and voice notes)",
    ),
    (
        Attachment("document", "pdf", "broken.pdf", "application/pdf", 40),
        b"%PDF-1.4\n1 0 obj << /Type /Cat",
        "broken.pdf is a damaged PDF; I could not read it",
    ),
    (
        Attachment("image", "jpg", "photo.jpg", "image/jpeg", 30),
        b"\xff\xd8\xff\xe0 this is no jpeg",
        "photo.jpg is not an image I can read (damaged or unknown format)",
    ),
    (
        Attachment("voice", "ogg", "voice.ogg", "audio/ogg", 0),
        b"",
        "voice.ogg is empty (0 seconds of audio)",
    ),
    (
        Attachment("document", "gone", "notes.txt", "text/plain", 10),
        None,
        "I could not download notes.txt: the platform answered 404 for notes.txt",
    ),
]
CONFIG = {
    "models": {"chat": ["oa:gpt-4o-mini"]},
    "transcription": {"chain": ["oa:whisper-1"]},
    "media": {"max_file_mb_by_channel": {"test": 1 / 1024}},
}


def _ids(case: tuple[Attachment, bytes | None, str]) -> str:
    return case[0].name


@pytest.mark.parametrize("case", CASES, ids=_ids)
async def test_each_bad_attachment_gets_its_line_and_the_text_is_answered(
    make_config: Any, fake: FakeLLM, case: tuple[Attachment, bytes | None, str]
) -> None:
    part, data, problem = case
    fake.push("Hello there.")
    async with running(make_config, fake, **CONFIG) as (gw, channel):
        if data is not None:
            channel.files[part.ref] = data
        await channel.push("hi, see attached", parts=(part,))
        texts = await channel.wait_for_messages(2)
        assert await settled(gw) == "done"
    assert texts == [problem, "Hello there."]
    [call] = fake.calls(path="/v1/chat/completions")
    assert call.body["messages"][-1]["content"] == "hi, see attached"
    assert fake.calls(path="/v1/audio/transcriptions") == []


async def test_only_unusable_attachments_get_their_lines_and_no_model_call(
    make_config: Any, fake: FakeLLM
) -> None:
    parts = tuple(part for part, _, _ in CASES)
    async with running(make_config, fake, **CONFIG) as (gw, channel):
        for part, data, _ in CASES:
            if data is not None:
                channel.files[part.ref] = data
        await channel.push("", parts=parts)
        [reply] = await channel.wait_for_messages(1)
        assert await settled(gw) == "done"
    assert reply.split("\n") == [problem for _, _, problem in CASES]
    assert fake.requests == []
