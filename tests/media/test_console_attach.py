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


async def test_a_command_with_an_attached_file_runs_as_on_the_platforms(
    make_config: Any, fake: FakeLLM, tmp_path: Path
) -> None:
    """A typed command goes with an attached file as on the platforms: `/remind` sets the
    reminder (the model never sees it) and says the file was not used; `/ask` asks about
    the file."""
    (tmp_path / "list.png").write_bytes(png(32, 32))
    fake.push("A small square.")
    lines = (
        f"/attach {tmp_path}/list.png /remind tomorrow 9am call mum\n"
        f"/attach {tmp_path}/list.png /ask\n"
    )
    out = io.StringIO()
    console = ConsoleChannel("console", stdin=io.StringIO(lines), stdout=out, user="owner")
    config = make_config(providers=providers(fake), models={"chat": ["oa:gpt-4o"]})
    async with Gateway(config, channels={"console": console}) as gw:
        await asyncio.wait_for(console.closed.wait(), 20)
        assert gw.deps.scheduler is not None
        [job] = await gw.deps.scheduler.jobs.listing(include_closed=False)
    text = out.getvalue()
    assert job.text == "call mum"
    assert "bot> Reminder " in text and "Not used: list.png" in text
    assert "bot> A small square." in text
    [call] = fake.calls(path="/v1/chat/completions")
    kinds = [part["type"] for part in call.body["messages"][-1]["content"]]
    assert kinds == ["text", "image_url"]
