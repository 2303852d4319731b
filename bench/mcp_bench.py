"""MCP tool-call overhead: the same echo through the ToolRegistry as an in-process tool (how
the built-in tools run) and as an MCP server's tool over stdio, on the host and, when
bubblewrap works here, inside the sandbox. Interleaved samples on warm connections; p50 and
p95 of each, and the difference of the p50s.

    python -m bench.mcp_bench [--quick]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import shutil
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from bench.common import median, pct
from bot.config import parse_config
from bot.deps import Deps
from bot.mcp.manager import McpManager
from bot.messages import Conversation, ConversationKind, Identity
from bot.providers.base import ToolCall
from bot.store import Store
from bot.tools import ToolContext, ToolRegistry, tool

SERVER = Path(__file__).resolve().parent / "mcp_echo_server.py"


@tool(name="echo")
async def _echo(ctx: ToolContext, text: str) -> str:
    """Repeat the text."""
    return text


def _servers() -> dict[str, Any]:
    servers: dict[str, Any] = {
        "host": {
            "transport": "stdio",
            "command": sys.executable,
            "args": [str(SERVER)],
            "run_in_sandbox": False,
            "startup_timeout_s": 120,
        }
    }
    if shutil.which("bwrap") and Path("/usr/bin/python3").exists():
        import mcp

        site = Path(mcp.__file__).resolve().parents[1]
        servers["boxed"] = {
            "transport": "stdio",
            "command": "/usr/bin/python3",
            "args": ["/opt/srv/" + SERVER.name],
            "env": ["PYTHONPATH"],
            "ro_binds": [f"{site}:/opt/site", f"{SERVER.parent}:/opt/srv"],
            "startup_timeout_s": 120,
        }
    return servers


async def _ms(registry: ToolRegistry, ctx: ToolContext, name: str, policy: Any) -> float:
    call = ToolCall("b1", name, '{"text": "ping"}')
    start = time.perf_counter()
    result = await registry.call(call, ctx, policy)
    elapsed = (time.perf_counter() - start) * 1000
    if result.content != "ping":
        raise RuntimeError(f"{name} answered {result.content[:100]!r}")
    return elapsed


async def _measure(samples: int) -> dict[str, Any]:
    import os

    from bot.mcp.tools import McpToolPolicy
    from bot.tools import ToolPolicy

    with tempfile.TemporaryDirectory(prefix="decapod-mcp-bench-") as home:
        config = parse_config({"mcp": {"servers": _servers()}}, Path(home))
        registry = ToolRegistry([_echo])
        saved = os.environ.get("PYTHONPATH")
        os.environ["PYTHONPATH"] = "/opt/site"  # only the sandboxed server names it
        manager = McpManager(
            config.mcp,
            home=config.home,
            sandbox=config.sandbox,
            registry=registry,
            redact=lambda text: text,
        )
        manager.start()
        try:
            names = ["echo"]
            for server in config.mcp.servers:
                try:
                    await asyncio.wait_for(manager.wait_ready(server), 120)
                    names.append(f"{server}__echo")
                except TimeoutError:
                    print(f"MCP bench: server {server} did not start: {manager.states()}")
            ctx = ToolContext(
                identity=Identity("bench", "owner"),
                conversation=Conversation("bench", "owner", ConversationKind.DM),
                session_key="bench:dm:owner",
                deps=Deps(store=Store(Path("/nonexistent/unused.db")), redact=str),
                role="owner",
            )
            policy = McpToolPolicy(ToolPolicy())
            timings: dict[str, list[float]] = {name: [] for name in names}
            for _ in range(30):  # warm-up: imports, validators, pipes
                for name in names:
                    await _ms(registry, ctx, name, policy)
            for _ in range(samples):
                for name in names:
                    timings[name].append(await _ms(registry, ctx, name, policy))
        finally:
            await manager.stop()
            if saved is None:
                os.environ.pop("PYTHONPATH", None)
            else:
                os.environ["PYTHONPATH"] = saved
    builtin = timings.pop("echo")
    out: dict[str, Any] = {
        "samples": samples,
        "builtin_p50_ms": round(median(builtin), 3),
        "builtin_p95_ms": round(pct(builtin, 95), 3),
    }
    for name, values in timings.items():
        kind = name.split("__")[0]
        out[f"{kind}_p50_ms"] = round(median(values), 3)
        out[f"{kind}_p95_ms"] = round(pct(values, 95), 3)
        out[f"{kind}_overhead_p50_ms"] = round(median(values) - median(builtin), 3)
    return out


def run(quick: bool = False) -> dict[str, Any]:
    result = asyncio.run(_measure(100 if quick else 500))
    line = (
        f"MCP: echo p50 {result['builtin_p50_ms']} ms in-process, "
        f"{result.get('host_p50_ms', '-')} ms over stdio"
    )
    if "boxed_p50_ms" in result:
        line += f", {result['boxed_p50_ms']} ms over stdio in the sandbox"
    print(line)
    return {"mcp": result}


def main() -> None:
    parser = argparse.ArgumentParser(description="MCP tool-call overhead")
    parser.add_argument("--quick", action="store_true")
    args = parser.parse_args()
    print(json.dumps(run(args.quick), indent=2))


if __name__ == "__main__":
    main()
