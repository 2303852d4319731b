"""MCP servers inside a running gateway: their tools reach the model with their schemas, a
call runs end to end through the agent loop (fake LLM, real openai SDK, real SDK server over
stdio and streamable HTTP), and allowlists and roles decide who gets what."""

from __future__ import annotations

import json
from typing import Any

import pytest

from bot.messages import ConversationKind
from bot.providers.base import ToolCall
from tests.fakes.llm import FakeLLM, Reply
from tests.mcp.conftest import running, stdio_entry


def _tools(request: Any) -> dict[str, dict[str, Any]]:
    return {t["function"]["name"]: t["function"] for t in request.body.get("tools", [])}


async def test_tools_appear_with_their_schemas_and_a_call_runs_through_the_agent_loop(
    gateway_config: Any, fake: FakeLLM, state: Any
) -> None:
    fake.push(
        Reply(tool_calls=[ToolCall("c1", "calc__add", json.dumps({"a": 2, "b": 40}))]),
        Reply(text="The sum is 42."),
    )
    config = gateway_config({"calc": stdio_entry()})
    async with running(config, "calc") as (_, channel):
        await channel.push("what is 2 + 40?", user="owner")
        [reply] = await channel.wait_for_messages(1, timeout=60)
    assert reply == "The sum is 42."
    first, second = fake.calls(path="/v1/chat/completions")
    add = _tools(first)["calc__add"]
    assert add["description"] == "Add two integers."
    schema = add["parameters"]
    assert schema["type"] == "object" and schema["required"] == ["a", "b"]
    assert schema["properties"]["a"]["type"] == "integer"
    result = second.body["messages"][-1]
    assert result["role"] == "tool" and result["content"] == "42"


async def test_streamable_http_server_with_a_header_from_the_environment(
    gateway_config: Any, fake: FakeLLM, http_server: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("MCP_TEST_TOKEN", "Bearer test-token-123")
    fake.push(
        Reply(tool_calls=[ToolCall("c1", "web__header", json.dumps({"name": "authorization"}))]),
        Reply(text="ok"),
    )
    entry = {
        "transport": "http",
        "url": http_server,
        "headers_env": {"Authorization": "MCP_TEST_TOKEN"},
    }
    async with running(gateway_config({"web": entry}), "web") as (gw, channel):
        await channel.push("which header?", user="owner")
        await channel.wait_for_messages(1, timeout=60)
        assert gw.mcp is not None
        [(name, state, detail)] = gw.mcp.states()
    assert (name, state) == ("web", "ready") and "streamable HTTP" in detail
    second = fake.calls(path="/v1/chat/completions")[1]
    # the value is a registered secret: the model sees the header arrive, never the token
    content = second.body["messages"][-1]["content"]
    assert "test-token-123" not in content and "REDACTED" in content


async def test_sse_server(gateway_config: Any, fake: FakeLLM, sse_server: str) -> None:
    fake.push(
        Reply(tool_calls=[ToolCall("c1", "old__echo", json.dumps({"text": "over sse"}))]),
        Reply(text="ok"),
    )
    entry = {"transport": "sse", "url": sse_server}
    async with running(gateway_config({"old": entry}), "old") as (gw, channel):
        await channel.push("echo", user="owner")
        await channel.wait_for_messages(1, timeout=60)
        assert gw.mcp is not None
        [(_, state, detail)] = gw.mcp.states()
    assert state == "ready" and detail.endswith(f"SSE {sse_server}")
    assert fake.calls()[1].body["messages"][-1]["content"] == "over sse"


async def test_allowlist_and_exclude_decide_which_tools_are_registered(
    gateway_config: Any, state: Any
) -> None:
    entry = stdio_entry(tools=["echo", "add", "slow"], exclude=["slow"])
    async with running(gateway_config({"t": entry}), "t") as (gw, _):
        names = {n for n in gw.tools.names() if n.startswith("t__")}
    assert names == {"t__echo", "t__add"}


@pytest.mark.parametrize(
    ("user", "kind", "roles", "in_groups", "offered"),
    [
        ("owner", ConversationKind.DM, ["owner"], False, True),
        ("someone", ConversationKind.DM, ["owner"], False, False),
        ("op", ConversationKind.DM, ["owner"], False, False),
        ("op", ConversationKind.DM, ["owner", "operator"], False, True),
        ("owner", ConversationKind.GROUP, ["owner"], False, False),
        ("owner", ConversationKind.GROUP, ["owner"], True, True),
        ("someone", ConversationKind.GROUP, ["owner", "user"], True, True),
    ],
)
async def test_roles_and_groups_decide_who_is_offered_the_tools_and_who_may_call_them(
    gateway_config: Any,
    fake: FakeLLM,
    state: Any,
    user: str,
    kind: ConversationKind,
    roles: list[str],
    in_groups: bool,
    offered: bool,
) -> None:
    # the model calls the tool whether or not it was offered: the call is checked too
    fake.push(
        Reply(tool_calls=[ToolCall("c1", "t__echo", json.dumps({"text": "hi"}))]),
        Reply(text="done"),
    )
    config = gateway_config({"t": stdio_entry(roles=roles, in_groups=in_groups)})
    chat = "group1" if kind is ConversationKind.GROUP else None
    async with running(config, "t") as (_, channel):
        await channel.push("echo hi", user=user, chat=chat, kind=kind)
        await channel.wait_for_messages(1, timeout=60)
    first, second = fake.calls(path="/v1/chat/completions")
    assert ("t__echo" in _tools(first)) is offered
    result = second.body["messages"][-1]["content"]
    assert result == "hi" if offered else "not available" in result


async def test_status_shows_each_server_and_its_state(gateway_config: Any, state: Any) -> None:
    servers = {"t": stdio_entry(), "off": stdio_entry(enabled=False)}
    async with running(gateway_config(servers), "t") as (_, channel):
        await channel.push("/status", user="owner")
        [reply] = await channel.wait_for_messages(1, timeout=30)
    assert "mcp t: ready (" in reply and "tools, stdio, host process)" in reply
    assert "mcp off: disabled" in reply


async def test_status_shows_the_servers_only_to_the_owner_in_a_dm(
    gateway_config: Any, http_server: str
) -> None:
    """A server's address (some carry their key in the path) and its errors are the owner's
    setup: another person's /status, and the owner's in a group, leave them out."""
    entry = {"transport": "http", "url": http_server}
    async with running(gateway_config({"web": entry}), "web") as (_, channel):
        await channel.push("/status", user="owner")
        await channel.push("/status", user="someone")
        await channel.push("/status", user="owner", chat="group1", kind=ConversationKind.GROUP)
        # three sessions, answered in any order
        [owner_dm] = await channel.wait_for_messages(1, timeout=30, chat_id="owner")
        [other_dm] = await channel.wait_for_messages(1, timeout=30, chat_id="someone")
        [owner_group] = await channel.wait_for_messages(1, timeout=30, chat_id="group1")
    assert "mcp web: ready (" in owner_dm and http_server in owner_dm
    for reply in (other_dm, owner_group):
        assert reply.startswith("Decapod ") and "session: " in reply
        assert "mcp" not in reply and http_server not in reply
