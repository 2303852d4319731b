"""`/attach PATH [text]` in `decapod chat`: a local file goes with the text (or with the next
message), through the same intake as a platform's files."""

from __future__ import annotations

import asyncio
import io
from pathlib import Path
from typing import Any

from bot.gateway import Gateway
from channels.console import ConsoleChannel
from tests.fakes.llm import FakeLLM
from tests.media.conftest import providers
from tests.media.files import png


async def test_attach_sends_a_local_image_with_the_text_or_the_next_message(
    make_config: Any, fake: FakeLLM, tmp_path: Path
) -> None:
    (tmp_path / "chart one.png").write_bytes(png(200, 100))
    (tmp_path / "notes.txt").write_text("call the plumber on friday")
    fake.push("A chart.", "Friday.")
    lines = (
        f'/attach "{tmp_path}/chart one.png" what is this?\n'
        f"/attach {tmp_path}/notes.txt\n"
        "/attach /no/such/file.txt\n"
        "when?\n"
    )
    out = io.StringIO()
    console = ConsoleChannel("console", stdin=io.StringIO(lines), stdout=out, user="owner")
    config = make_config(providers=providers(fake), models={"chat": ["oa:gpt-4o"]})
    async with Gateway(config, channels={"console": console}):
        await asyncio.wait_for(console.closed.wait(), 20)
    text = out.getvalue()
    assert "bot> A chart." in text and "bot> Friday." in text
    assert "bot> attached notes.txt; it goes with your next message" in text
    assert "bot> /attach: /no/such/file.txt is not a file" in text
    first, second = fake.calls(path="/v1/chat/completions")
    parts = first.body["messages"][-1]["content"]
    assert parts[0]["text"].startswith("what is this?") and "chart one.png" in parts[0]["text"]
    assert parts[1]["image_url"]["url"].startswith("data:image/jpeg;base64,")
    user = second.body["messages"][-1]["content"]
    assert user.startswith("when?") and "call the plumber on friday" in user
