"""What a server lists that the model must not be offered: a tool whose schema refers to a
definition it lacks (every argument check would fail), and more tools than one request may
carry (OpenAI refuses a request with more than 128, every turn)."""

from __future__ import annotations

import asyncio
import json
import logging
import os
import signal
from pathlib import Path
from typing import Any

import pytest

from bot.mcp.tools import McpTool
from bot.providers.base import ToolCall
from bot.tools import ToolContext, tool
from tests.fakes.llm import OPENAI_MAX_TOOLS, FakeLLM, Reply
from tests.mcp.conftest import START_S, running, stdio_entry, until


def _offered(fake: FakeLLM) -> list[str]:
    first = fake.calls(path="/v1/chat/completions")[0]
    return [t["function"]["name"] for t in first.body.get("tools", [])]


async def test_a_tool_whose_schema_refers_to_nothing_is_refused_at_listing(
    gateway_config: Any,
    fake: FakeLLM,
    state: Any,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    monkeypatch.setenv("MCP_TEST_EXTRA", "dangling")
    fake.push(
        Reply(tool_calls=[ToolCall("c1", "t__dangling", json.dumps({"path": "/x"}))]),
        Reply(text="done"),
    )
    config = gateway_config({"t": stdio_entry(env=["MCP_TEST_STATE", "MCP_TEST_EXTRA"])})
    with caplog.at_level(logging.WARNING, logger="decapod"):
        async with running(config, "t") as (gw, channel):
            await channel.push("use it", user="owner")
            await channel.wait_for_messages(1, timeout=60)
            assert gw.mcp is not None
            [(_, state_name, detail)] = gw.mcp.states()
    offered = _offered(fake)
    assert "t__dangling" not in offered and "t__echo" in offered  # the others still register
    assert state_name == "ready"
    assert "1 refused: dangling: its input schema refers to '#/$defs/Path'" in detail
    notes = [r.getMessage() for r in caplog.records if "dangling" in r.getMessage()]
    assert notes == [
        "mcp server t: tool left out: dangling: its input schema refers to '#/$defs/Path', "
        "which does not resolve"
    ]
    # a model that calls it anyway is told it does not exist, never an internal error
    result = fake.calls(path="/v1/chat/completions")[1].body["messages"][-1]["content"]
    assert result.startswith("error: unknown tool") and "Referencing" not in result
    assert not [r for r in caplog.records if r.exc_info]


async def test_tools_past_the_cap_are_left_out_and_every_turn_still_runs(
    gateway_config: Any,
    fake: FakeLLM,
    state: Any,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    monkeypatch.setenv("MCP_TEST_EXTRA", "bulk=200")
    config = gateway_config({"many": stdio_entry(env=["MCP_TEST_STATE", "MCP_TEST_EXTRA"])})
    with caplog.at_level(logging.WARNING, logger="decapod"):
        async with running(config, "many") as (gw, channel):
            # a built-in tool registered after the server listed its tools (as the scheduler,
            # memory and skills may be, whichever finishes first): it counts against the cap too
            gw.tools.register(tool(_late_builtin))
            await channel.push("hello", user="owner")
            [reply] = await channel.wait_for_messages(1, timeout=60)
            assert gw.mcp is not None
            [(_, _, detail)] = gw.mcp.states()
            builtins = [n for n in gw.tools.names() if not n.startswith("many__")]
    assert reply == "Hello from the fake model"  # the request was not refused
    offered = _offered(fake)
    assert len(offered) == OPENAI_MAX_TOOLS
    assert set(builtins) <= set(offered) and "_late_builtin" in offered  # built-ins all stay
    mine = [n for n in offered if n.startswith("many__")]
    assert len(mine) == OPENAI_MAX_TOOLS - len(builtins)
    # the first ones as the server listed them (its 14 own tools, then bulk_000, ...)
    assert mine[-1] == f"many__bulk_{len(mine) - 15:03d}"
    left_out = 14 + 200 - len(mine)
    assert f"{len(mine)} tools ({left_out} left out over the cap of 128 tools)" in detail
    notes = [r.getMessage() for r in caplog.records if "max_tools" in r.getMessage()]
    assert notes[-1] == (
        f"mcp server many: {left_out} of its tools left out: a request may offer at most "
        "[mcp] max_tools = 128 tools, built-in and MCP together"
    )


async def _late_builtin(ctx: ToolContext) -> str:
    """A built-in tool registered late."""
    return "ok"


async def test_the_cap_is_configurable(
    gateway_config: Any, fake: FakeLLM, state: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    config = gateway_config({"t": stdio_entry()}, mcp={"max_tools": 1})
    async with running(config, "t") as (gw, _):
        assert gw.mcp is not None
        [(_, _, detail)] = gw.mcp.states()
        assert not [t for t in gw.tools.available(_owner_ctx(gw)) if t.name.startswith("t__")]
    assert detail.startswith("0 tools (14 left out over the cap of 1 tools)")


def _owner_ctx(gw: Any) -> ToolContext:
    from bot.messages import Conversation, ConversationKind, Identity

    return ToolContext(
        identity=Identity("tg", "owner", "Owner"),
        conversation=Conversation("tg", "owner", ConversationKind.DM),
        session_key="tg:owner",
        deps=gw.deps,
        role="owner",
    )


async def test_a_tool_whose_prefixed_name_clashes_with_another_servers_is_shown_refused(
    gateway_config: Any, state: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Server `a__b`'s tool `echo` and server `a`'s tool `b__echo` are both `a__b__echo`: one
    is registered, the other is refused and said so in /status (which one: whichever server
    listed its tools first)."""
    monkeypatch.setenv("MCP_TEST_EXTRA", "alias=b__echo")
    entry = stdio_entry(env=["MCP_TEST_STATE", "MCP_TEST_EXTRA"])
    async with running(gateway_config({"a__b": entry, "a": entry}), "a__b", "a") as (gw, _):
        assert gw.mcp is not None
        registered = gw.tools.get("a__b__echo")
        details = {name: detail for name, _, detail in gw.mcp.states()}
        lines = gw.mcp.status_lines()
    assert isinstance(registered, McpTool)
    winner = registered.server.name
    loser, remote = ("a", "b__echo") if winner == "a__b" else ("a__b", "echo")
    refused = f"1 refused: {remote}: its name clashes with server {winner}'s tool a__b__echo"
    assert refused in details[loser]
    assert "refused" not in details[winner]
    assert any(line.startswith(f"mcp {loser}: ready") and refused in line for line in lines)


async def test_a_clashing_tool_is_offered_once_the_server_holding_its_name_goes_down(
    gateway_config: Any, state: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """When the server whose tool took the shared name goes down, the other server's tool of
    that name is registered at once (not only when that server lists its tools again), and
    keeps it when the first comes back, which is then the one refused."""
    monkeypatch.setenv("MCP_TEST_EXTRA", "alias=b__echo")
    servers = {
        "a__b": stdio_entry(env=["MCP_TEST_STATE"]),
        "a": stdio_entry(env=["MCP_TEST_STATE", "MCP_TEST_EXTRA"]),
    }
    async with running(gateway_config(servers), "a__b", "a") as (gw, _):
        assert gw.mcp is not None

        def holder() -> str | None:
            registered = gw.tools.get("a__b__echo")
            return registered.server.name if isinstance(registered, McpTool) else None

        winner = holder()
        assert winner in servers
        loser = "a" if winner == "a__b" else "a__b"
        os.kill(
            _server_pid(state, given="MCP_TEST_EXTRA" if winner == "a" else None), signal.SIGKILL
        )
        await until(lambda: gw.mcp is not None and gw.mcp.connections[winner].state != "ready")
        assert holder() == loser, "offered as soon as the name is free"
        await asyncio.wait_for(gw.mcp.wait_ready(winner), START_S)
        details = {name: detail for name, _, detail in gw.mcp.states()}
        assert holder() == loser
    assert f"server {loser}'s tool a__b__echo" in details[winner]
    assert "refused" not in details[loser]


async def test_a_withdrawn_tool_does_not_repeat_an_unrelated_clash(
    gateway_config: Any,
    state: Path,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """A server going down frees its own names only: a server refused another name is not
    synced again, and does not say again that its tool was left out."""
    monkeypatch.setenv("MCP_TEST_EXTRA", "alias=b__echo")
    monkeypatch.setenv("MCP_TEST_MARK", "c")
    servers = {
        "a__b": stdio_entry(env=["MCP_TEST_STATE"]),
        "a": stdio_entry(env=["MCP_TEST_STATE", "MCP_TEST_EXTRA"]),
        "c": stdio_entry(env=["MCP_TEST_STATE", "MCP_TEST_MARK"]),
    }

    def left_out() -> list[str]:
        return [r.getMessage() for r in caplog.records if "tool left out" in r.getMessage()]

    with caplog.at_level(logging.WARNING, logger="decapod"):
        async with running(gateway_config(servers), "a__b", "a", "c") as (gw, _):
            assert gw.mcp is not None and len(left_out()) == 1
            assert "c__echo" in gw.tools
            os.kill(_server_pid(state, given="MCP_TEST_MARK"), signal.SIGKILL)
            # withdrawn in the same step as any server synced again after it
            await until(lambda: "c__echo" not in gw.tools)
            assert len(left_out()) == 1, left_out()


def _server_pid(state: Path, *, given: str | None) -> int:
    """The test server given this `state` folder and the variable `given` (None: neither
    MCP_TEST_EXTRA nor MCP_TEST_MARK); they all write their pid to the same file."""
    marks = {b"MCP_TEST_EXTRA", b"MCP_TEST_MARK"}
    for environ in Path("/proc").glob("[0-9]*/environ"):
        try:
            names = environ.read_bytes().split(b"\0")
        except OSError:
            continue
        passed = {n.partition(b"=")[0] for n in names} & marks
        if f"MCP_TEST_STATE={state}".encode() in names and passed == (
            {given.encode()} if given else set()
        ):
            return int(environ.parent.name)
    raise AssertionError("no such test server running")


async def test_a_server_paging_in_a_circle_is_read_once_with_one_note(
    gateway_config: Any, state: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Every page of its tool list names the same next page: read 50 times, its tools made
    50 pages of duplicates, each one a "refused" note in /status."""
    monkeypatch.setenv("MCP_TEST_EXTRA", "stuck-cursor")
    config = gateway_config({"t": stdio_entry(env=["MCP_TEST_STATE", "MCP_TEST_EXTRA"])})
    async with running(config, "t") as (gw, _):
        assert gw.mcp is not None
        [(_, state_name, detail)] = gw.mcp.states()
        offered = [n for n in gw.tools.names() if n.startswith("t__")]
    assert state_name == "ready" and "t__echo" in offered
    assert detail.startswith(f"{len(offered)} tools (its tool list gave the page cursor")
    assert detail.count("page cursor 'page-2' again") == 1
    assert "refused" not in detail
