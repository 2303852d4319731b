"""An MCP server for the tests, built with the SDK's MCPServer (FastMCP in mcp 1.x).

    python mcp_test_server.py            # stdio
    python mcp_test_server.py --http N   # streamable HTTP on 127.0.0.1:N (path /mcp)
    python mcp_test_server.py --sse N    # SSE on 127.0.0.1:N (path /sse)
    python mcp_test_server.py --hang     # never answers, not even initialize
    python mcp_test_server.py --hang --babble  # the same, after one line that is not JSON

With MCP_TEST_STATE naming a folder, the server writes `pid` there when it starts and
`slow-started` when a `slow` call begins, so a test can kill it mid-call; while a file `down`
is there, it exits as it starts, so a test keeps it down as long as it needs.
Standalone on purpose: it also runs inside the sandbox, on the system's Python.
"""

from __future__ import annotations

import asyncio
import base64
import json
import os
import resource
import socket
import sys
import time
from pathlib import Path
from typing import Any

if os.environ.get("MCP_TEST_STATE") and Path(os.environ["MCP_TEST_STATE"], "down").exists():
    sys.exit(3)

if "--hang" in sys.argv:
    if "--babble" in sys.argv:
        print("starting up, please wait", flush=True)
    if os.environ.get("MCP_TEST_STATE"):
        # written aside, then renamed: a test polling for the pid never reads it half written
        aside = Path(os.environ["MCP_TEST_STATE"], ".pid")
        aside.write_text(str(os.getpid()))
        aside.replace(aside.with_name("pid"))
    time.sleep(3600)
    sys.exit(0)

from mcp.server.mcpserver import Context, MCPServer
from mcp.server.mcpserver.exceptions import ToolError
from mcp.shared.exceptions import MCPError
from mcp.types import ImageContent, ListToolsResult, TextContent


class _TestServer(MCPServer):
    async def _handle_list_tools(self, ctx: Any, params: Any) -> ListToolsResult:
        """MCP_TEST_EXTRA "stuck-cursor": every page says there is a next one, the same."""
        page = await super()._handle_list_tools(ctx, params)
        if "stuck-cursor" in os.environ.get("MCP_TEST_EXTRA", "").split(","):
            page.next_cursor = "page-2"
        return page


app = _TestServer("decapod-test")
STATE = Path(os.environ["MCP_TEST_STATE"]) if os.environ.get("MCP_TEST_STATE") else None


def _mark(name: str, text: str = "") -> None:
    if STATE is not None:
        # written aside, then renamed: a test polling for the file never reads it half written
        aside = STATE / f".{name}"
        aside.write_text(text)
        aside.replace(STATE / name)


@app.tool()
def echo(text: str, times: int = 1) -> str:
    """Repeat the text."""
    return text * times


@app.tool()
def add(a: int, b: int) -> int:
    """Add two integers."""
    return a + b


@app.tool()
async def slow(seconds: float) -> str:
    """Wait, then answer."""
    _mark("slow-started", str(os.getpid()))
    try:
        await asyncio.sleep(seconds)
    except asyncio.CancelledError:
        _mark("slow-cancelled")  # the client sent notifications/cancelled
        raise
    return "slept"


@app.tool()
def note(ctx: str, self: str = "") -> str:
    """Arguments named like a method's own parameters."""
    return f"note: {ctx} {self}".rstrip()


@app.tool()
def max_processes() -> str:
    """This process's soft RLIMIT_NPROC ("unlimited" when none is set)."""
    soft, _ = resource.getrlimit(resource.RLIMIT_NPROC)
    return "unlimited" if soft == resource.RLIM_INFINITY else str(soft)


@app.tool()
def environment() -> str:
    """The server's environment variables, as JSON."""
    return json.dumps(dict(os.environ), sort_keys=True)


@app.tool()
def peek(path: str) -> str:
    """Whether this server can read a path, and what it found."""
    try:
        if os.path.isdir(path):
            return "listed: " + ", ".join(sorted(os.listdir(path)))
        with open(path, "rb") as f:
            return f"read {len(f.read())} bytes"
    except OSError as exc:
        return f"cannot read: {exc.strerror}"


@app.tool()
def connect(port: int) -> str:
    """Whether a TCP connection to 127.0.0.1:port succeeds."""
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=5):
            return "connected"
    except OSError as exc:
        return f"cannot connect: {exc.strerror or exc}"


@app.tool()
def picture() -> list[ImageContent | TextContent]:
    """A small picture and a caption."""
    data = base64.b64encode(b"\x89PNG" + b"\0" * 2044).decode()
    return [
        TextContent(type="text", text="a grey square"),
        ImageContent(type="image", data=data, mime_type="image/png"),
    ]


@app.tool()
def fail(reason: str) -> str:
    """Always fails, saying why."""
    raise ToolError(reason)


@app.tool()
def reject(code: int, message: str) -> str:
    """Answers with a JSON-RPC error of this code, as a protocol error (not a tool result)."""
    raise MCPError(code=code, message=message)


@app.tool()
def big(chars: int) -> str:
    """A long text."""
    return "x" * chars


@app.tool()
def header(ctx: Context, name: str) -> str:
    """A header of the HTTP request that carried this call."""
    request = ctx.request_context.request
    headers = getattr(request, "headers", None)
    return str(headers.get(name)) if headers is not None else "(not over HTTP)"


@app.tool()
async def grow(ctx: Context) -> str:
    """Add the tool `extra` and tell the client its tool list changed."""

    def extra(word: str) -> str:
        """A tool that appeared later."""
        return f"extra {word}"

    app.add_tool(extra, name="extra")
    await ctx.request_context.session.send_tool_list_changed()
    return "grown"


def _extra_tools(spec: str) -> None:
    """MCP_TEST_EXTRA: "dangling" adds a tool whose schema refers to a definition it lacks;
    "odd-id" one whose "$id" is not a URL; "bulk=N" adds N tools bulk_000, bulk_001, ...;
    "alias=NAME" lists `echo` a second time as NAME; "stuck-cursor": see _TestServer."""
    for item in filter(None, spec.split(",")):
        if item == "dangling":

            def dangling(path: str) -> str:
                """Its schema names a definition it does not have."""
                return path

            tool = app._tool_manager.add_tool(dangling)
            tool.parameters = {
                "type": "object",
                "properties": {"path": {"$ref": "#/$defs/Path"}},
                "required": ["path"],
            }
        elif item == "odd-id":

            def odd(path: str) -> str:
                """Its schema's "$id" is not a URL."""
                return path

            tool = app._tool_manager.add_tool(odd)
            tool.parameters = {"$id": "http://[odd", "type": "object", "properties": {}}
        elif item.startswith("alias="):
            app.add_tool(echo, name=item.removeprefix("alias="))
        elif item.startswith("bulk="):
            for n in range(int(item.removeprefix("bulk="))):
                app.add_tool(_numbered(n), name=f"bulk_{n:03d}")


def _numbered(n: int) -> Any:
    def bulk() -> str:
        """One of many."""
        return str(n)

    return bulk


if __name__ == "__main__":
    _mark("pid", str(os.getpid()))
    _extra_tools(os.environ.get("MCP_TEST_EXTRA", ""))
    if "--http" in sys.argv:
        port = int(sys.argv[sys.argv.index("--http") + 1])
        app.run("streamable-http", host="127.0.0.1", port=port)
    elif "--sse" in sys.argv:
        port = int(sys.argv[sys.argv.index("--sse") + 1])
        app.run("sse", host="127.0.0.1", port=port)
    else:
        app.run("stdio")
