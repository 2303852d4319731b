"""Calls and listings at their edges: arguments named like the gateway's own parameters, a
tool whose schema the checker cannot read, a server's error with a code the SDK also uses
for its own failures, a call past its timeout and a call stopped by /stop (the server is
told, and the same process serves the next call)."""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

import pytest

from bot.providers.base import ToolCall
from tests.fakes.llm import FakeLLM, Reply
from tests.mcp.conftest import running, stdio_entry, until


def _tool_results(fake: FakeLLM, call: int) -> list[str]:
    messages = fake.calls(path="/v1/chat/completions")[call].body["messages"]
    return [m["content"] for m in messages if m["role"] == "tool"]


def _slow_call_then_an_echo(fake: FakeLLM) -> None:
    """A call that would take two minutes, then (in the next turn or round) a quick one."""
    fake.push(
        Reply(tool_calls=[ToolCall("c1", "t__slow", json.dumps({"seconds": 120}))]),
        Reply(tool_calls=[ToolCall("c2", "t__echo", json.dumps({"text": "still here"}))]),
        Reply(text="done"),
    )


async def test_arguments_named_ctx_or_self_reach_the_server(
    gateway_config: Any, fake: FakeLLM, state: Path
) -> None:
    fake.push(
        Reply(tool_calls=[ToolCall("c1", "t__note", json.dumps({"ctx": "a", "self": "b"}))]),
        Reply(text="done"),
    )
    async with running(gateway_config({"t": stdio_entry()}), "t") as (_, channel):
        await channel.push("take a note", user="owner")
        await channel.wait_for_messages(1, timeout=60)
    assert _tool_results(fake, 1) == ["note: a b"]


async def test_a_schema_the_checker_cannot_read_refuses_that_tool_only(
    gateway_config: Any,
    fake: FakeLLM,
    state: Path,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    monkeypatch.setenv("MCP_TEST_EXTRA", "odd-id")
    config = gateway_config({"t": stdio_entry(env=["MCP_TEST_STATE", "MCP_TEST_EXTRA"])})
    with caplog.at_level(logging.WARNING, logger="decapod"):
        async with running(config, "t") as (gw, _):
            assert gw.mcp is not None
            [(_, state_name, detail)] = gw.mcp.states()
            conn = gw.mcp.connections["t"]
            names = gw.tools.names()
    # listed at the first try: the server was not restarted over one tool's schema
    assert state_name == "ready" and conn.restarts == 0
    assert "t__echo" in names and "t__odd" not in names
    assert "1 refused: odd: its input schema cannot be read" in detail
    [left_out] = [r.getMessage() for r in caplog.records if "tool left out" in r.getMessage()]
    assert left_out.startswith("mcp server t: tool left out: odd: its input schema cannot be read")


async def test_a_call_past_its_timeout_is_cancelled_on_the_server_which_keeps_serving(
    gateway_config: Any, fake: FakeLLM, state: Path
) -> None:
    _slow_call_then_an_echo(fake)
    config = gateway_config({"t": stdio_entry(timeout_s=2)})
    async with running(config, "t") as (gw, channel):
        assert gw.mcp is not None
        pid = (state / "pid").read_text()
        await channel.push("wait", user="owner")
        await channel.wait_for_messages(1, timeout=60)
        await until(lambda: (state / "slow-cancelled").exists(), 30)
        assert gw.mcp.connections["t"].restarts == 0
    timed_out, echoed = _tool_results(fake, 2)
    assert timed_out == "error: t did not answer within 2 s"
    assert echoed == "still here" and (state / "pid").read_text() == pid


async def test_a_call_stopped_by_stop_is_cancelled_on_the_server_which_keeps_serving(
    gateway_config: Any, fake: FakeLLM, state: Path
) -> None:
    _slow_call_then_an_echo(fake)
    async with running(gateway_config({"t": stdio_entry()}), "t") as (gw, channel):
        assert gw.mcp is not None
        pid = (state / "pid").read_text()
        await channel.push("wait", user="owner")
        await until(lambda: (state / "slow-started").exists())
        await channel.push("/stop", user="owner")
        await until(lambda: (state / "slow-cancelled").exists(), 30)
        await gw.sessions.wait_idle()
        await channel.push("again", user="owner")
        await until(lambda: len(fake.calls(path="/v1/chat/completions")) == 3, 60)
        assert gw.mcp.connections["t"].restarts == 0
    assert _tool_results(fake, 2)[-1] == "still here" and (state / "pid").read_text() == pid


async def test_a_server_error_with_the_codes_the_sdk_uses_itself_keeps_its_message(
    gateway_config: Any, fake: FakeLLM, state: Path
) -> None:
    # -32000 is also the SDK's "connection closed", -32001 its "request timed out"
    fake.push(
        Reply(
            tool_calls=[
                ToolCall("c1", "t__reject", json.dumps({"code": -32000, "message": "quota"})),
                ToolCall("c2", "t__reject", json.dumps({"code": -32001, "message": "no auth"})),
            ]
        ),
        Reply(text="done"),
    )
    async with running(gateway_config({"t": stdio_entry()}), "t") as (gw, channel):
        assert gw.mcp is not None
        await channel.push("try", user="owner")
        await channel.wait_for_messages(1, timeout=60)
        [(_, state_name, _)] = gw.mcp.states()
        assert state_name == "ready" and gw.mcp.connections["t"].restarts == 0
    assert _tool_results(fake, 1) == [
        "error: t refused the call: quota",
        "error: t refused the call: no auth",
    ]
