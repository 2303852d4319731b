"""`decapod mcp list | test NAME`, and the doctor's MCP checks: each server started the way
the gateway starts it, listed, and stopped again.

    decapod mcp list                                     # every server: state and tools
    decapod mcp test files                               # one server, with its tool schemas
    decapod mcp test files --call list_directory --args '{"path": "/notes"}'
"""

from __future__ import annotations

import argparse
import asyncio
import json
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from bot.config import Config
    from bot.mcp.build import ServerBuilder
    from bot.mcp.config import HttpServerConfig, StdioServerConfig
    from bot.mcp.schema import ListedTool

Check = tuple[str, bool, str]


def add_subparsers(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = sub.add_parser("mcp", help="MCP servers: their state and tools")
    actions = parser.add_subparsers(dest="mcp_command", required=True)
    actions.add_parser("list", help="start each server, show its state and tools, stop it")
    test = actions.add_parser("test", help="start one server, list its tools, call one")
    test.add_argument("name", help="the server's name in [mcp.servers]")
    test.add_argument("--call", metavar="TOOL", help="a tool to call (its own name)")
    test.add_argument("--args", default="{}", help="the call's arguments as JSON")


@dataclass
class Probe:
    name: str
    ok: bool
    detail: str
    tools: list[ListedTool] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)
    #: the text of a tool call's result, and whether the server called it an error
    result: str | None = None
    call_failed: bool = False


def run(args: argparse.Namespace, config: Config) -> int:
    if args.mcp_command == "list":
        return asyncio.run(_list(config))
    if args.name not in config.mcp.servers:
        known = ", ".join(config.mcp.servers) or "none configured"
        print(f"no MCP server {args.name!r} in the config (servers: {known})")
        return 2
    call: tuple[str, dict[str, Any]] | None = None
    if args.call:
        try:
            arguments = json.loads(args.args)
        except ValueError as exc:
            print(f"--args is not valid JSON: {exc}")
            return 2
        if not isinstance(arguments, dict):
            print("--args must be a JSON object")
            return 2
        call = (args.call, arguments)
    return asyncio.run(_test(config, args.name, call))


async def probe_all(config: Config) -> list[Probe]:
    """Every configured server, started and listed in parallel (disabled ones are not)."""
    builder = _builder(config)
    try:
        return list(
            await asyncio.gather(
                *(
                    probe(config, name, entry, builder) if entry.enabled else _disabled(name)
                    for name, entry in config.mcp.servers.items()
                )
            )
        )
    finally:
        await builder.aclose()


async def probe(
    config: Config,
    name: str,
    entry: StdioServerConfig | HttpServerConfig,
    builder: ServerBuilder,
    call: tuple[str, dict[str, Any]] | None = None,
) -> Probe:
    from bot.errors import ToolError
    from bot.mcp.connection import McpConnection
    from bot.mcp.results import result_text

    conn = McpConnection(name, entry, config.mcp, lambda: builder.opener(name, entry))
    try:
        async with conn.connect() as client:
            found = Probe(name, True, conn.describe(), conn.tools, conn.problems)
            if call is not None:
                conn.set_ready(client)
                try:
                    result = await conn.call(call[0].removeprefix(f"{name}__"), call[1])
                except ToolError as exc:
                    if conn.ended:
                        return Probe(name, False, str(exc))  # the server went away
                    # a refusal (an unknown tool, bad arguments) or no answer in time: an
                    # answer of a server that works, to a call that did not
                    found.result, found.call_failed = str(exc), True
                    return found
                text = result_text(result, config.mcp.max_result_chars, redact=builder.redact)
                found.result, found.call_failed = text, bool(result.is_error)
            return found
    except Exception as exc:
        return Probe(name, False, conn.explain(exc))


async def doctor_checks(config: Config) -> list[Check]:
    if not config.mcp.servers:
        return []
    checks: list[Check] = []
    for p in await probe_all(config):
        detail = (
            p.detail if not p.ok or p.detail == "disabled" else f"{len(p.tools)} tools, {p.detail}"
        )
        checks.append((f"mcp {p.name}", p.ok, detail))
    return checks


async def _list(config: Config) -> int:
    if not config.mcp.servers:
        print("no MCP servers configured ([mcp.servers.<name>] in config.toml)")
        return 0
    failed = 0
    for p in await probe_all(config):
        state = "ready" if p.ok and p.detail != "disabled" else ("disabled" if p.ok else "FAIL")
        failed += not p.ok
        print(f"{p.name:<16} {state:<9} {p.detail if p.detail != 'disabled' else ''}".rstrip())
        for t in p.tools:
            print(f"  {t.name:<40} {t.description[:70]}")
        for problem in p.problems:
            print(f"  left out: {problem}")
    return 1 if failed else 0


async def _test(config: Config, name: str, call: tuple[str, dict[str, Any]] | None) -> int:
    builder = _builder(config)
    try:
        p = await probe(config, name, config.mcp.servers[name], builder, call)
    finally:
        await builder.aclose()
    print(f"{name}: {'ready' if p.ok else 'FAIL'}: {p.detail}")
    for t in p.tools:
        print(f"  {t.name}  ({len(json.dumps(t.schema))} chars of schema)  {t.description}")
    for problem in p.problems:
        print(f"  left out: {problem}")
    if p.result is not None:
        print(("error: " if p.call_failed else "") + p.result)
    return 0 if p.ok and not p.call_failed else 1


async def _disabled(name: str) -> Probe:
    return Probe(name, True, "disabled")


def _builder(config: Config) -> ServerBuilder:
    from bot.mcp.build import ServerBuilder
    from bot.security.redact import default_redactor

    return ServerBuilder(config.home, config.sandbox, default_redactor().redact)
