"""A server's tool listing, made fit for the model: a valid tool name, a checked argument
schema small enough for the prompt, and a bounded description.

Providers accept function names matching ^[a-zA-Z0-9_-]{1,64}$, and every tool's schema is
sent with every request, so one server's 40 KB schema must not crowd out the conversation.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from bot.errors import describe_error

if TYPE_CHECKING:
    from referencing._core import Resolver

_NOT_NAME = re.compile(r"[^a-zA-Z0-9_-]")
_MAX_NAME = 64
#: keys a model does not need to call a tool well; dropped first when a schema is too big
_NOISE = ("title", "examples", "$comment", "$schema", "$id", "deprecated", "readOnly")
#: keys whose values are instance data, never schemas: a "$ref" in them refers to nothing
_DATA = frozenset({"enum", "const", "default", "examples"})
#: keys mapping names to schemas
_SCHEMA_MAPS = frozenset(
    {"properties", "patternProperties", "$defs", "definitions", "dependentSchemas"}
)
TRIMMED_NOTE = " [argument schema trimmed to fit; nested details omitted]"


@dataclass(frozen=True, slots=True)
class ListedTool:
    """One tool as the gateway registers it."""

    name: str  # <server>__<tool>, sanitized
    remote_name: str  # the server's own name, used for the call
    description: str
    schema: dict[str, Any]  # what the model sees (possibly trimmed)
    full_schema: dict[str, Any]  # what arguments are checked against


class SchemaProblem(ValueError):
    pass


def tool_name(server: str, remote: str) -> str:
    return (f"{server}__" + _NOT_NAME.sub("_", remote))[:_MAX_NAME]


def check_schema(schema: Any) -> dict[str, Any]:
    """The tool's input schema, if it is a valid JSON Schema for an object; else SchemaProblem."""
    if not isinstance(schema, dict):
        raise SchemaProblem("the input schema is not a JSON object")
    if schema.get("type", "object") != "object":
        raise SchemaProblem(f"the input schema has type {schema.get('type')!r}, not 'object'")
    from jsonschema import SchemaError, validators

    try:
        validator = validators.validator_for(schema)
        validator.check_schema(schema)
        dangling = _dangling_ref(schema, validator.META_SCHEMA["$schema"])
    except SchemaError as exc:
        raise SchemaProblem(f"invalid input schema: {exc.message}") from None
    except Exception as exc:
        # jsonschema and referencing raise what they meet (AttributeError for a "$schema"
        # that is not a string, ValueError for an "$id" that is no URL): one tool's fault,
        # which must not fail the listing of all the server's tools
        raise SchemaProblem(f"its input schema cannot be read ({describe_error(exc)})") from None
    if dangling is not None:
        # checking arguments would fail on every call, before the call reaches the server
        raise SchemaProblem(f"its input schema refers to {dangling!r}, which does not resolve")
    return {"type": "object", **schema}


def _dangling_ref(schema: dict[str, Any], dialect: str) -> str | None:
    """The first `$ref` of the schema that names nothing in it (nor anything known offline:
    remote schemas are never fetched), or None."""
    from jsonschema_specifications import REGISTRY as SPECIFICATIONS
    from referencing.exceptions import Unresolvable
    from referencing.jsonschema import DRAFT202012, specification_with

    spec = specification_with(dialect, default=DRAFT202012)

    def walk(node: Any, resolver: Resolver[Any]) -> str | None:
        children: list[Any] = []
        if isinstance(node, list):
            children = node
        elif isinstance(node, dict):
            if isinstance(spec.id_of(node), str):
                resolver = resolver.in_subresource(spec.create_resource(node))
            for key, child in node.items():
                if key in _DATA or (key == "$ref" and isinstance(child, str)):
                    if key == "$ref":
                        try:
                            resolver.lookup(child)
                        except Unresolvable:
                            return str(child)
                elif key in _SCHEMA_MAPS and isinstance(child, dict):
                    children.extend(child.values())  # names are data, values are schemas
                else:
                    children.append(child)
        for child in children:
            found = walk(child, resolver)
            if found is not None:
                return found
        return None

    # the standard metaschemas are known offline, as the call-time validator knows them
    return walk(schema, SPECIFICATIONS.resolver_with_root(spec.create_resource(schema)))


def fit_schema(schema: dict[str, Any], max_chars: int) -> tuple[dict[str, Any], bool]:
    """(schema, trimmed): the schema itself when it fits `max_chars` of JSON, else the most
    of it that does. Steps: drop noise keys, then nested descriptions, then keep only each
    top-level property's type and description, then only the property names."""
    if _size(schema) <= max_chars:
        return schema, False
    steps = (
        lambda s: _strip(s, _NOISE, depth_for_descriptions=None),
        lambda s: _strip(s, _NOISE, depth_for_descriptions=1),
        _shallow,
        _names_only,
    )
    for step in steps:
        schema = step(schema)
        if _size(schema) <= max_chars:
            return schema, True
    return {"type": "object", "additionalProperties": True}, True


def fit_description(text: str | None, max_chars: int) -> str:
    text = " ".join((text or "").split())
    return text if len(text) <= max_chars else text[: max_chars - 1].rstrip() + "…"


def _size(schema: dict[str, Any]) -> int:
    return len(json.dumps(schema, separators=(",", ":"), ensure_ascii=False))


def _strip(value: Any, keys: tuple[str, ...], *, depth_for_descriptions: int | None) -> Any:
    """A copy without `keys`; descriptions only down to `depth_for_descriptions` levels of
    properties (None keeps them all)."""

    def walk(node: Any, depth: int) -> Any:
        if isinstance(node, list):
            return [walk(v, depth) for v in node]
        if not isinstance(node, dict):
            return node
        out = {}
        for key, child in node.items():
            if key in keys:
                continue
            if (
                key == "description"
                and depth_for_descriptions is not None
                and depth > depth_for_descriptions
            ):
                continue
            # the names under "properties" are data, not keywords
            if key == "properties" and isinstance(child, dict):
                out[key] = {name: walk(sub, depth + 1) for name, sub in child.items()}
            else:
                out[key] = walk(child, depth)
        return out

    return walk(value, 0)


def _shallow(schema: dict[str, Any]) -> dict[str, Any]:
    properties = {}
    for name, prop in (schema.get("properties") or {}).items():
        if isinstance(prop, dict):
            properties[name] = {k: prop[k] for k in ("type", "description", "enum") if k in prop}
        else:
            properties[name] = {}
    return _object(schema, properties)


def _names_only(schema: dict[str, Any]) -> dict[str, Any]:
    return _object(schema, {name: {} for name in schema.get("properties") or {}})


def _object(schema: dict[str, Any], properties: dict[str, Any]) -> dict[str, Any]:
    out: dict[str, Any] = {"type": "object", "properties": properties}
    if schema.get("required"):
        out["required"] = list(schema["required"])
    return out


def listed_tools(
    server: str,
    remote: list[Any],
    *,
    allow: list[str],
    exclude: list[str],
    max_schema_chars: int,
    max_description_chars: int,
) -> tuple[list[ListedTool], list[str]]:
    """The tools of a server's `tools/list` answer (SDK Tool objects) that the entry offers,
    each made fit for the model; and a note for each tool left out for a fault of its own."""
    tools: list[ListedTool] = []
    problems: list[str] = []
    seen: set[str] = set()
    for t in remote:
        if (allow and t.name not in allow) or t.name in exclude:
            continue
        name = tool_name(server, t.name)
        if name in seen:
            problems.append(f"{t.name}: its name clashes with another tool's as {name}")
            continue
        try:
            full = check_schema(t.input_schema)
        except SchemaProblem as exc:
            problems.append(f"{t.name}: {exc}")
            continue
        seen.add(name)
        schema, trimmed = fit_schema(full, max_schema_chars)
        note = TRIMMED_NOTE if trimmed else ""
        description = fit_description(t.description or t.title or t.name, max_description_chars)
        tools.append(ListedTool(name, t.name, description + note, schema, full))
    return tools, problems
