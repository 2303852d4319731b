"""A tool that fails in a way nobody planned for (an OS error, a bug) still ends in an
answer: the model reads an error result, the person gets a reply, and the delivery is done,
so a restart does not run the same crash again."""

from __future__ import annotations

import asyncio
import errno
import json
import logging
import shutil
import time
from typing import Any

import pytest

from bot.builtin import builtin_tools
from bot.gateway import Gateway
from bot.messages import InboundMessage
from bot.providers.base import ChatRequest, ToolCall
from bot.providers.testing import ScriptedProvider
from bot.tools import ToolContext, ToolRegistry, tool
from tests.fakes.channel import RecordingChannel


def _answer_with_what_the_tool_said(request: ChatRequest) -> str:
    return "The tool said: " + request.messages[-1].content


async def _delivery_status(gw: Gateway, message: InboundMessage) -> str | None:
    """The delivery's status once its turn is stored (the reply goes out just before)."""
    deadline = time.monotonic() + 10
    while True:
        status = await gw.store.inbound.status(message.conversation.channel, message.id)
        if status != "pending" or time.monotonic() > deadline:
            return status
        await asyncio.sleep(0.02)


@pytest.mark.skipif(shutil.which("bwrap") is None, reason="bubblewrap is not installed")
async def test_write_file_with_a_300_character_name_answers_and_finishes(
    make_config: Any,
) -> None:
    long_name = "n" * 300 + ".txt"
    provider = ScriptedProvider(
        [
            [ToolCall("w1", "write_file", json.dumps({"path": long_name, "content": "x"}))],
            _answer_with_what_the_tool_said,
        ]
    )
    channel = RecordingChannel(console=True)
    config = make_config(sandbox={"backend": "bwrap", "approval": "never"})
    async with Gateway(config, provider=provider, channels={"test": channel}) as gw:
        message = await channel.push("save a note under a very long name")
        [reply] = await channel.wait_for_messages(1, timeout=20)
        assert await _delivery_status(gw, message) == "done"
        assert await gw.store.inbound.open_deliveries() == []  # nothing for a restart to redo
    seen = provider.requests[1].messages[-1]
    assert seen.role == "tool" and seen.name == "write_file"
    assert seen.content == "error: write_file failed: File name too long"
    assert reply == "The tool said: error: write_file failed: File name too long"


@pytest.mark.parametrize(
    "exc",
    [
        RuntimeError("walked into a broken invariant"),
        FileExistsError(errno.EEXIST, "File exists", "/var/lib/decapod/workspaces/ab12"),
    ],
    ids=["RuntimeError", "FileExistsError"],
)
async def test_an_unexpected_exception_in_a_tool_still_answers(
    make_config: Any, exc: Exception, caplog: pytest.LogCaptureFixture
) -> None:
    @tool
    async def tidy(ctx: ToolContext) -> str:
        """Tidy the workspace."""
        raise exc

    provider = ScriptedProvider([[ToolCall("t1", "tidy", "{}")], _answer_with_what_the_tool_said])
    channel = RecordingChannel(console=True)

    def tools() -> ToolRegistry:  # a gateway registers its optional parts' tools into it
        return ToolRegistry([*builtin_tools(), tidy])

    caplog.set_level(logging.ERROR, "decapod.tools")
    async with Gateway(
        make_config(), provider=provider, channels={"test": channel}, tools=tools()
    ) as gw:
        message = await channel.push("tidy up")
        [reply] = await channel.wait_for_messages(1, timeout=10)
        assert await _delivery_status(gw, message) == "done"
    assert provider.remaining == 0 and len(provider.requests) == 2
    seen = provider.requests[1].messages[-1]
    assert seen.role == "tool" and seen.content.startswith("error: tidy failed: ")
    assert reply.startswith("The tool said: error: tidy failed: ")
    assert any(r.exc_info and r.exc_info[1] is exc for r in caplog.records), "traceback logged"

    # A restart runs no turn again (a replayed one would finish before the stop returns, and
    # would find the script used up).
    again = RecordingChannel(console=True)
    async with Gateway(make_config(), provider=provider, channels={"test": again}, tools=tools()):
        pass
    assert len(provider.requests) == 2 and again.texts() == []


async def test_a_cancelled_error_a_library_raised_in_a_tool_is_a_failure_not_a_stop(
    make_config: Any,
) -> None:
    """Some libraries end an internal wait with CancelledError while nobody cancelled the
    turn: it is the tool's failure, read by the model, not a stop of the whole turn (which
    would end the session's worker and leave the person without an answer)."""

    @tool
    async def fetch_status(ctx: ToolContext) -> str:
        """Ask a remote service for its status."""
        raise asyncio.CancelledError  # as a library's own timeout does

    provider = ScriptedProvider(
        [[ToolCall("t1", "fetch_status", "{}")], _answer_with_what_the_tool_said, "second"]
    )
    channel = RecordingChannel(console=True)
    tools = ToolRegistry([*builtin_tools(), fetch_status])
    async with Gateway(
        make_config(), provider=provider, channels={"test": channel}, tools=tools
    ) as gw:
        message = await channel.push("what is the status?")
        [reply] = await channel.wait_for_messages(1, timeout=10)
        assert await _delivery_status(gw, message) == "done"
        assert reply.startswith("The tool said: error: fetch_status failed: ")
        # the session still answers
        await channel.push("and now?")
        texts = await channel.wait_for_messages(2, timeout=10)
        assert texts[-1] == "second"


async def test_a_turn_that_fails_outside_any_tool_tells_the_person_once(
    make_config: Any,
) -> None:
    """A failure no layer below planned for (here a provider plugin's own exception) ends the
    turn with one plain message instead of silence, and the session answers the next one."""
    from bot.providers.testing import FunctionProvider

    def answer(request: ChatRequest) -> str:
        if request.messages[-1].content == "first":
            raise RuntimeError("a provider plugin's bug")
        return "second answer"

    channel = RecordingChannel(console=True)
    async with Gateway(
        make_config(), provider=FunctionProvider(answer), channels={"test": channel}
    ):
        await channel.push("first")
        [told] = await channel.wait_for_messages(1, timeout=10)
        assert told == "Something went wrong on my side. Please try again."
        assert "plugin" not in told
        await channel.push("second")
        texts = await channel.wait_for_messages(2, timeout=10)
        assert texts[-1] == "second answer"


async def test_a_cancelled_error_a_library_raised_mid_turn_is_told_like_any_failure(
    make_config: Any,
) -> None:
    """Nobody cancelled the turn; a library ended its own wait with CancelledError. That is
    a failure like any other: said once, and the session's worker lives on."""
    from bot.providers.testing import FunctionProvider

    def answer(request: ChatRequest) -> str:
        if request.messages[-1].content == "first":
            raise asyncio.CancelledError
        return "second answer"

    channel = RecordingChannel(console=True)
    provider = FunctionProvider(answer)
    async with Gateway(make_config(), provider=provider, channels={"test": channel}) as gw:
        first = await channel.push("first")
        [told] = await channel.wait_for_messages(1, timeout=10)
        assert told == "Something went wrong on my side. Please try again."
        await channel.push("second")
        texts = await channel.wait_for_messages(2, timeout=10)
        assert texts[-1] == "second answer"
        assert await gw.store.inbound.status("test", first.id) == "pending"


@pytest.mark.skipif(shutil.which("bwrap") is None, reason="bubblewrap is not installed")
async def test_file_names_a_command_made_of_odd_bytes_are_listed_and_answered_once(
    make_config: Any,
) -> None:
    # A name that is not UTF-8 came back with a lone surrogate, which the store cannot encode:
    # the person got the reply and then "Something went wrong". A newline in a name made a
    # second, made-up entry.
    make = """touch "$(printf 'bad\\377name')" "$(printf 'a\\nfake.txt (5 bytes)')" """
    provider = ScriptedProvider(
        [
            [ToolCall("e1", "exec", json.dumps({"command": make}))],
            [ToolCall("l1", "list_files", "{}")],
            _answer_with_what_the_tool_said,
        ]
    )
    channel = RecordingChannel(console=True)
    config = make_config(sandbox={"backend": "bwrap", "approval": "never"})
    async with Gateway(config, provider=provider, channels={"test": channel}) as gw:
        message = await channel.push("make two files and list them")
        [reply] = await channel.wait_for_messages(1, timeout=20)
        assert await _delivery_status(gw, message) == "done"
        await asyncio.sleep(0.2)  # an error notice would follow the reply at once
    assert channel.texts() == [reply]
    listed = provider.requests[2].messages[-1].content
    assert listed.splitlines() == [
        '"a\\u000afake.txt (5 bytes)" (0 bytes)',
        '"bad\\udcffname" (0 bytes)',
    ]


async def test_a_tool_result_that_is_not_well_formed_text_is_stored_and_answered(
    make_config: Any,
) -> None:
    @tool
    async def peek(ctx: ToolContext) -> str:
        """Show what a server sent."""
        return "half an emoji: \ud83d, raw byte: \udcff"

    provider = ScriptedProvider([[ToolCall("p1", "peek", "{}")], _answer_with_what_the_tool_said])
    channel = RecordingChannel(console=True)
    tools = ToolRegistry([*builtin_tools(), peek])
    async with Gateway(make_config(), provider=provider, channels={"test": channel}, tools=tools):
        await channel.push("peek")
        [reply] = await channel.wait_for_messages(1, timeout=10)
        await asyncio.sleep(0.2)
    assert channel.texts() == [reply]
    assert provider.requests[1].messages[-1].content == "half an emoji: \ufffd, raw byte: \ufffd"
