"""Text files in whatever encoding people's programs save: the text reaches the model as it
was written, not refused and not garbled."""

from __future__ import annotations

import codecs
from typing import Any

import pytest

from bot.messages import Attachment
from tests.fakes.llm import FakeLLM
from tests.media.conftest import running, settled

TABLE = "name\tcity\nJürgen\tKöln\nZoë\tŁódź\n"


@pytest.mark.parametrize(
    "data",
    [
        # Windows' "Unicode" text and Excel's "Unicode Text" export
        codecs.BOM_UTF16_LE + TABLE.encode("utf-16-le"),
        codecs.BOM_UTF16_BE + TABLE.encode("utf-16-be"),
        codecs.BOM_UTF32_LE + TABLE.encode("utf-32-le"),
        codecs.BOM_UTF8 + TABLE.encode(),
    ],
    ids=["utf-16-le", "utf-16-be", "utf-32", "utf-8-bom"],
)
async def test_a_unicode_text_file_with_a_byte_order_mark_is_read(
    make_config: Any, fake: FakeLLM, data: bytes
) -> None:
    fake.push("Two people.")
    part = Attachment("document", "doc-u", "people.txt", "text/plain", len(data))
    async with running(make_config, fake, models={"chat": ["oa:gpt-4o-mini"]}) as (gw, channel):
        channel.files["doc-u"] = data
        await channel.push("who is in it?", parts=(part,))
        assert await channel.wait_for_messages(1) == ["Two people."]
        assert await settled(gw) == "done"
    [call] = fake.calls(path="/v1/chat/completions")
    user = call.body["messages"][-1]["content"]
    assert f"<<<\n{TABLE}\n>>>" in user
