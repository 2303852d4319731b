"""Skills that need an MCP server's tools: MCP servers connect in the background after the
skills have loaded, so such a skill is offered once its server lists the tool, withdrawn
while the server is down, and offered again when it is back."""

from __future__ import annotations

import asyncio
import os
import signal
from pathlib import Path
from typing import Any

from bot.gateway import Gateway
from bot.skills.runtime import SkillsDeps
from tests.fakes.llm import FakeLLM
from tests.mcp.conftest import running, stdio_entry, until
from tests.skills.conftest import write_skill

NEEDS_ECHO = (
    "---\nname: needs-echo\ndescription: Repeat a word back.\n"
    "requires: {tools: [t__echo]}\n---\nCall t__echo.\n"
)


def _offered(gw: Gateway) -> bool:
    skills = gw.deps.skills
    assert isinstance(skills, SkillsDeps)
    return skills.current.get("needs-echo") is not None


async def test_a_skill_needing_an_mcp_tool_follows_its_server(
    gateway_config: Any, fake: FakeLLM, state: Path, home: Path
) -> None:
    write_skill(home / "skills", "needs-echo", NEEDS_ECHO)
    fake.push("hi")
    # no watcher: only the tools changing can bring the skill in
    config = gateway_config({"t": stdio_entry()}, skills={"watch": False})
    async with running(config, "t") as (gw, channel):
        assert gw.mcp is not None
        await until(lambda: _offered(gw))
        await channel.push("hello", user="owner")
        await channel.wait_for_messages(1, timeout=60)
        os.kill(int((state / "pid").read_text()), signal.SIGKILL)
        await until(lambda: not _offered(gw))
        skills = gw.deps.skills
        assert isinstance(skills, SkillsDeps)
        reason = skills.current.unavailable_reason("needs-echo")
        await asyncio.wait_for(gw.mcp.wait_ready("t"), 90)
        await until(lambda: _offered(gw))
    [call] = fake.calls(path="/v1/chat/completions")
    assert "- needs-echo: Repeat a word back." in call.body["messages"][0]["content"]
    assert reason is not None and "t__echo" in reason
