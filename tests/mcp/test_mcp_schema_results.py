"""A server's listing made fit for the model (names, schema checks, trimming), and its results
as text (capped, binary described), also end to end through a turn."""

from __future__ import annotations

import base64
import json
from typing import Any

import mcp_types as types
import pytest

from bot.mcp.results import REDACT_AHEAD, result_text
from bot.mcp.schema import TRIMMED_NOTE, fit_schema, listed_tools
from bot.providers.base import ToolCall
from tests.fakes.llm import FakeLLM, Reply
from tests.mcp.conftest import running, stdio_entry


def _as_is(text: str) -> str:
    return text


def _wide_schema(properties: int) -> dict[str, Any]:
    nested = {
        "type": "object",
        "description": "a nested option " * 10,
        "properties": {"deep": {"type": "string", "description": "deep detail " * 20}},
        "examples": [{"deep": "x" * 50}],
    }
    return {
        "type": "object",
        "title": "wide",
        "properties": {
            f"field_{i}": {
                "type": "string",
                "description": f"what field {i} means " * 5,
                "title": "F",
            }
            | ({"items": nested} if i % 2 else {})
            for i in range(properties)
        },
        "required": ["field_0"],
    }


def _tool(name: str, schema: Any, description: str = "Does a thing.") -> types.Tool:
    return types.Tool.model_construct(
        name=name, title=None, description=description, input_schema=schema
    )


def _listing(tools: list[types.Tool], **kw: Any) -> tuple[list[Any], list[str]]:
    options: dict[str, Any] = {
        "allow": [],
        "exclude": [],
        "max_schema_chars": 4000,
        "max_description_chars": 200,
    }
    options.update(kw)
    return listed_tools("srv", tools, **options)


def test_a_schema_that_fits_is_kept_as_it_is() -> None:
    schema = {"type": "object", "properties": {"a": {"type": "integer", "title": "A"}}}
    assert fit_schema(schema, 4000) == (schema, False)


@pytest.mark.parametrize("cap", [6000, 2500, 600, 200])
def test_an_oversized_schema_is_trimmed_below_the_cap_keeping_what_it_can(cap: int) -> None:
    schema = _wide_schema(30)
    trimmed, was_trimmed = fit_schema(schema, cap)
    assert was_trimmed and len(json.dumps(trimmed, separators=(",", ":"))) <= cap
    assert trimmed["type"] == "object"
    if cap >= 600:  # room for the property names at least
        assert set(trimmed["properties"]) == set(schema["properties"])
        assert trimmed["required"] == ["field_0"]


def test_listing_names_checks_trims_and_notes() -> None:
    tools = [
        _tool("get.page", {"type": "object", "properties": {"url": {"type": "string"}}}),
        _tool("wide", _wide_schema(30), description="Wide. " * 100),
        _tool("scalar", {"type": "string"}),
        _tool("broken", {"type": "object", "properties": 5}),
        _tool("get_page", {"type": "object"}),
        _tool("secret_admin", {"type": "object"}),
    ]
    listed, problems = _listing(tools, exclude=["secret_admin"])
    by_name = {t.name: t for t in listed}
    assert set(by_name) == {"srv__get_page", "srv__wide"}
    assert by_name["srv__get_page"].remote_name == "get.page"
    wide = by_name["srv__wide"]
    assert wide.description.endswith(TRIMMED_NOTE)
    assert len(wide.description) <= 200 + len(TRIMMED_NOTE)
    assert wide.full_schema == {**_wide_schema(30)} and wide.schema != wide.full_schema
    assert any(p.startswith("scalar: ") and "'string'" in p for p in problems)
    assert any(p.startswith("broken: invalid input schema") for p in problems)
    assert any(p.startswith("get_page: its name clashes") for p in problems)


def test_an_allowlist_offers_only_the_named_tools() -> None:
    tools = [_tool(n, {"type": "object"}) for n in ("a", "b", "c")]
    listed, _ = _listing(tools, allow=["a", "c"], exclude=["c"])
    assert [t.name for t in listed] == ["srv__a"]


def test_results_become_text_with_binary_content_described_and_a_cap() -> None:
    png = base64.b64encode(b"\x89PNG" + b"\0" * 3068).decode()
    result = types.CallToolResult(
        content=[
            types.TextContent(type="text", text="caption"),
            types.ImageContent(type="image", data=png, mime_type="image/png"),
            types.EmbeddedResource(
                type="resource",
                resource=types.TextResourceContents(uri="file:///a.txt", text="inside"),
            ),
            types.ResourceLink(type="resource_link", name="b.bin", uri="file:///b.bin", size=10),
        ]
    )
    text = result_text(result, 10_000, redact=_as_is)
    assert text.splitlines() == [
        "caption",
        "[image: image/png, 3 KB]",
        "[resource file:///a.txt]",
        "inside",
        "[resource: b.bin <file:///b.bin>, 10 bytes]",
    ]
    assert png[:40] not in text
    structured = types.CallToolResult(content=[], structured_content={"n": 1})
    assert result_text(structured, 100, redact=_as_is) == '{"n": 1}'
    long = types.CallToolResult(content=[types.TextContent(type="text", text="y" * 500)])
    assert result_text(long, 200, redact=_as_is) == "y" * 200 + "\n[… 300 more characters cut]"


async def test_results_in_a_turn_are_described_capped_checked_and_redacted(
    gateway_config: Any, fake: FakeLLM, state: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    secret = "correct-horse-battery-staple-fortytwo-alpha"
    monkeypatch.setenv("SERVER_SIDE_SECRET", secret)
    # the cap (1000) falls 40 characters into the secret: redacted before the cut, or the
    # model would read all of it but its last three characters
    cut_through = "y" * 960 + secret + " and more after it"
    fake.push(
        Reply(
            tool_calls=[
                ToolCall("c1", "t__picture", "{}"),
                ToolCall("c2", "t__fail", json.dumps({"reason": "disk full"})),
                ToolCall("c3", "t__big", json.dumps({"chars": 5000})),
                ToolCall("c4", "t__echo", json.dumps({"text": f"key={secret}"})),
                ToolCall("c5", "t__add", json.dumps({"a": "two", "b": 3})),
                ToolCall("c6", "t__echo", json.dumps({"text": cut_through})),
            ]
        ),
        Reply(text="done"),
    )
    config = gateway_config(
        {"t": stdio_entry()},
        mcp={"max_result_chars": 1000},
        security={"secret_env": ["SERVER_SIDE_SECRET"]},
    )
    async with running(config, "t") as (_, channel):
        await channel.push("try everything", user="owner")
        await channel.wait_for_messages(1, timeout=60)
    results = [m["content"] for m in fake.calls()[1].body["messages"] if m["role"] == "tool"]
    picture, failed, big, echoed, invalid, cut = results
    assert picture == "a grey square\n[image: image/png, 2 KB]"
    assert failed.startswith("error: fail failed: ") and "disk full" in failed
    assert big == "x" * 1000 + "\n[… 4,000 more characters cut]"
    assert secret not in echoed and "REDACTED" in echoed
    assert invalid.startswith("error: invalid arguments for t__add: a: 'two' is not of type")
    assert cut.startswith("y" * 960 + "[REDACTED") and secret[:12] not in cut


def test_a_huge_result_is_redacted_only_as_far_as_the_cap_can_show() -> None:
    secret = "S" * 1000
    redacted: list[int] = []

    def redact(text: str) -> str:
        redacted.append(len(text))
        return text.replace(secret, "[R]")

    huge = "y" * 5_000_000
    result = types.CallToolResult(content=[types.TextContent(type="text", text=huge)])
    assert result_text(result, 1000, redact=redact) == (
        "y" * 1000 + "\n[… 4,999,000 more characters cut]"
    )
    assert redacted == [1000 + REDACT_AHEAD]
    # redactions that shorten the head so far that its cut end would show: more is redacted
    redacted.clear()
    dense = (secret + " ") * 40
    result = types.CallToolResult(content=[types.TextContent(type="text", text=dense)])
    text = result_text(result, 200, redact=redact)
    assert text == "[R] " * 40
    assert redacted == [200 + REDACT_AHEAD, 2 * (200 + REDACT_AHEAD), len(dense)]


@pytest.mark.parametrize(
    ("schema", "dangling"),
    [
        ({"properties": {"a": {"$ref": "#/$defs/gone"}}}, "#/$defs/gone"),
        (
            {"properties": {"a": {"$ref": "https://schemas.test/a.json"}}},
            "https://schemas.test/a.json",
        ),
        ({"properties": {"a": {"$ref": "#/$defs/ok"}}, "$defs": {"ok": {"type": "string"}}}, None),
        ({"properties": {"tree": {"$ref": "#"}}}, None),
        # a property named "$ref", and a "$ref" inside data: neither is a reference
        ({"properties": {"$ref": {"type": "string"}}, "default": {"$ref": "#/no"}}, None),
        (
            {
                "$schema": "http://json-schema.org/draft-07/schema#",
                "properties": {"a": {"$ref": "#/definitions/ok"}},
                "definitions": {"ok": {"type": "integer"}},
            },
            None,
        ),
        (  # a standard metaschema: known offline, as the call-time check knows it
            {"properties": {"s": {"$ref": "http://json-schema.org/draft-07/schema#"}}},
            None,
        ),
        (  # a subschema with its own $id: its references resolve against it
            {
                "properties": {"s": {"$ref": "https://schemas.test/sub"}},
                "$defs": {
                    "sub": {
                        "$id": "https://schemas.test/sub",
                        "properties": {"q": {"$ref": "#/$defs/inner"}},
                        "$defs": {"inner": {"type": "string"}},
                    }
                },
            },
            None,
        ),
    ],
)
def test_a_reference_that_resolves_to_nothing_refuses_the_tool(
    schema: dict[str, Any], dangling: str | None
) -> None:
    listed, problems = _listing([_tool("t", {"type": "object", **schema})])
    if dangling is None:
        assert [t.name for t in listed] == ["srv__t"] and problems == []
    else:
        assert listed == []
        assert problems == [f"t: its input schema refers to {dangling!r}, which does not resolve"]
