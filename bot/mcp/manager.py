"""All configured MCP servers of a gateway: started in the background, their tools kept in
step with the ToolRegistry, an outage told to the owner once, and their state for /status.

`start()` returns at once: the SDK is imported in a worker thread and each server connects
in its own task, so neither a slow import nor a server that never answers delays the
gateway's readiness. A server's tools are registered when it has listed them and withdrawn
whenever it is down.
"""

from __future__ import annotations

import asyncio
import functools
import importlib
import logging
from collections import Counter
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import TYPE_CHECKING

from bot.mcp.config import HttpServerConfig, McpConfig, StdioServerConfig
from bot.sandbox.config import SandboxConfig
from bot.tools import Tool, ToolRegistry

if TYPE_CHECKING:
    from bot.mcp.build import ServerBuilder
    from bot.mcp.connection import McpConnection
    from bot.mcp.tools import McpTool

log = logging.getLogger("decapod.mcp")

Notify = Callable[[str], Awaitable[None]]


class McpManager:
    def __init__(
        self,
        config: McpConfig,
        *,
        home: Path,
        sandbox: SandboxConfig,
        registry: ToolRegistry,
        redact: Callable[[str], str],
        notify: Notify | None = None,
    ) -> None:
        self.config = config
        self.home = home
        self.sandbox_config = sandbox
        self.registry = registry
        self.redact = redact
        self.notify = notify
        self.connections: dict[str, McpConnection] = {}
        #: set once channels run: a notice sent earlier could not reach the owner
        self.channels_up = asyncio.Event()
        self._builder: ServerBuilder | None = None
        self._registered: dict[str, dict[str, McpTool]] = {}
        #: server -> its tools left out because another tool has the same name: the name ->
        #: the problem shown
        self._clashes: dict[str, dict[str, str]] = {}
        #: set by `stop`: servers going down then hand no names on to each other
        self._stopping = False
        self._noticed: set[str] = set()
        #: server -> how many of its tools the `max_tools` cap left out
        self._over_cap: dict[str, int] = {}
        self._tasks: list[asyncio.Task[None]] = []
        self._notices: set[asyncio.Task[None]] = set()
        self._starting: asyncio.Task[None] | None = None
        self._import_error: str | None = None
        self._created = asyncio.Event()
        #: called after the registered tools changed (skills check their `tools` again)
        self.on_tools_changed: Callable[[], None] | None = None
        # applied where a request's tools are gathered, not at registration: built-in tools
        # registered after a server listed its own count too
        registry.limit = self._within_cap

    def enabled(self) -> dict[str, StdioServerConfig | HttpServerConfig]:
        return {name: e for name, e in self.config.servers.items() if e.enabled}

    # lifecycle -------------------------------------------------------------------------------
    def start(self) -> None:
        if self.enabled():
            self._starting = asyncio.create_task(self._start_all(), name="mcp-start")

    async def _start_all(self) -> None:
        try:
            await self._connect_all()
        finally:
            self._created.set()

    async def _connect_all(self) -> None:
        try:
            # 1-2 s of imports: in a thread, so the event loop keeps starting the gateway
            await asyncio.to_thread(importlib.import_module, "bot.mcp.build")
            await asyncio.to_thread(importlib.import_module, "bot.mcp.connection")
        except ImportError as exc:
            self._import_error = f"the MCP SDK is not installed ({exc}): pip install 'decapod[mcp]'"
            log.error("mcp: %s", self._import_error)
            return
        from bot.mcp.build import ServerBuilder
        from bot.mcp.connection import McpConnection

        self._builder = builder = ServerBuilder(self.home, self.sandbox_config, self.redact)
        for name, entry in self.enabled().items():
            conn = McpConnection(
                name,
                entry,
                self.config,
                functools.partial(builder.opener, name, entry),
                on_change=self._sync,
                on_outage=self._outage,
            )
            self.connections[name] = conn
            task = asyncio.create_task(conn.run(), name=f"mcp-{name}")
            task.add_done_callback(functools.partial(self._ended, conn))
            self._tasks.append(task)

    def _ended(self, conn: McpConnection, task: asyncio.Task[None]) -> None:
        """A connection's task ends only when stopped or failed for good; anything else is a
        bug, which takes that server down, never the gateway."""
        if task.cancelled() or task.exception() is None:
            return
        log.error("mcp server %s stopped by an error", conn.name, exc_info=task.exception())
        conn.fail(f"internal error: {task.exception()!r}")

    async def stop(self) -> None:
        self._stopping = True
        running = [t for t in (self._starting, *self._tasks, *self._notices) if t is not None]
        for task in running:
            task.cancel()
        # each stdio server gets its shutdown sequence (stdin closed, TERM, KILL), in parallel
        await asyncio.gather(*running, return_exceptions=True)
        for conn in self.connections.values():
            conn.stopped()
        if self._builder is not None:
            await self._builder.aclose()

    async def wait_ready(self, name: str) -> McpConnection:
        """Until the server is ready (the caller bounds the wait); KeyError if it never ran."""
        await self._created.wait()
        conn = self.connections[name]
        await conn.ready.wait()
        return conn

    # the registry ------------------------------------------------------------------------------
    def _sync(self, conn: McpConnection) -> None:
        """Register the tools a ready server lists; withdraw any it no longer has, and all of
        them when it is down. A name it gave up may be one another ready server was refused
        for (the same prefixed name): that server's tools are registered again at once, not
        only when it next lists them (and not while the gateway stops)."""
        changed, freed = self._sync_one(conn)
        if freed and not self._stopping:
            for other in self.connections.values():
                refused = self._clashes.get(other.name, {}).keys()
                if other is not conn and other.state == "ready" and freed & refused:
                    changed = self._sync_one(other)[0] or changed
        if changed and self.on_tools_changed is not None:
            self.on_tools_changed()

    def _sync_one(self, conn: McpConnection) -> tuple[bool, set[str]]:
        """Bring one server's registered tools in step with its state and list: (whether its
        set of names changed, the names it withdrew)."""
        from bot.mcp.tools import McpTool

        mine = self._registered.setdefault(conn.name, {})
        before = set(mine)
        wanted = {t.name: t for t in conn.tools} if conn.state == "ready" else {}
        clashes = self._clashes[conn.name] = {}
        for name, tool in list(mine.items()):
            if wanted.get(name) != tool.listed:
                self.registry.unregister(name)
                del mine[name]
        for name, listed in wanted.items():
            if name in mine:
                continue
            if name in self.registry:
                # server `a__b` tool `c` and server `a` tool `b__c` are both `a__b__c`
                other = self.registry.get(name)
                owner = f"server {other.server.name}'s" if isinstance(other, McpTool) else "a"
                clashes[name] = f"{listed.remote_name}: its name clashes with {owner} tool {name}"
                log.warning("mcp server %s: tool left out: %s", conn.name, clashes[name])
                continue
            mine[name] = McpTool(
                listed,
                conn,
                conn.entry,
                max_result_chars=self.config.max_result_chars,
                redact=self.redact,
            )
            self.registry.register(mine[name])
        if conn.state == "ready":
            self._noticed.discard(conn.name)  # a later outage is news again
        return set(mine) != before, before - set(mine)

    def _within_cap(self, tools: list[Tool]) -> list[Tool]:
        """Every request offers each tool it is given; past `max_tools` a provider refuses the
        whole request (OpenAI: more than 128). Built-in tools all stay; MCP tools fill the
        room left, servers in the order configured, each server's tools as it listed them."""
        self._note_cap()
        over = self._over_cap_of(tools)
        return [t for t in tools if t.name not in over] if over else tools

    def _all_tools(self) -> list[Tool]:
        return [t for n in self.registry.names() if (t := self.registry.get(n)) is not None]

    def _over_cap_of(self, tools: list[Tool]) -> dict[str, str]:
        """tool name -> its server, for the MCP tools of `tools` past the cap."""
        from bot.mcp.tools import McpTool

        offered = {t.name for t in tools if isinstance(t, McpTool)}
        room = self.config.max_tools - (len(tools) - len(offered))
        over: dict[str, str] = {}
        for server in self.config.servers:
            for name in self._registered.get(server, {}):
                if name not in offered:
                    continue
                if room > 0:
                    room -= 1
                else:
                    over[name] = server
        return over

    def _note_cap(self) -> None:
        """What the cap leaves out of all registered tools, per server: logged once, and
        again when it changes."""
        counts = dict(Counter(self._over_cap_of(self._all_tools()).values()))
        if counts == self._over_cap:
            return
        for server in set(counts) | set(self._over_cap):
            count = counts.get(server, 0)
            if count and count != self._over_cap.get(server, 0):
                log.warning(
                    "mcp server %s: %d of its tools left out: a request may offer at most "
                    "[mcp] max_tools = %d tools, built-in and MCP together",
                    server,
                    count,
                    self.config.max_tools,
                )
        self._over_cap = counts

    # the owner ---------------------------------------------------------------------------------
    def _outage(self, conn: McpConnection, reason: str) -> None:
        if conn.name in self._noticed:
            return
        self._noticed.add(conn.name)
        if conn.state == "failed":
            text = f"MCP server {conn.name} cannot start: {reason}. It stays off until fixed."
        else:
            text = (
                f"MCP server {conn.name} is down: {reason}. Its tools are withdrawn until it "
                "is back; it is restarted by itself."
            )
        if self.notify is not None:
            task = asyncio.create_task(self._send(text), name=f"mcp-notice-{conn.name}")
            self._notices.add(task)
            task.add_done_callback(self._notices.discard)

    async def _send(self, text: str) -> None:
        assert self.notify is not None
        await self.channels_up.wait()
        try:
            await self.notify(text)
        except Exception:
            log.exception("could not tell the owner about an MCP server")

    async def channels_started(self) -> None:
        self.channels_up.set()

    # status ------------------------------------------------------------------------------------
    def states(self) -> list[tuple[str, str, str]]:
        """(server, state, detail) of each configured server."""
        rows = []
        for name, entry in self.config.servers.items():
            conn = self.connections.get(name)
            if not entry.enabled:
                rows.append((name, "disabled", ""))
            elif self._import_error:
                rows.append((name, "failed", self._import_error))
            elif conn is None:
                rows.append((name, "starting", ""))
            elif conn.state == "ready":
                self._note_cap()
                tools = len(self._registered.get(name, {})) - self._over_cap.get(name, 0)
                again = f", restarted {conn.restarts}x" if conn.restarts else ""
                rows.append(
                    (
                        name,
                        "ready",
                        f"{tools} tools{self._left_out(name)}, {conn.describe()}{again}",
                    )
                )
            else:
                rows.append((name, conn.state, conn.detail))
        return rows

    def _left_out(self, name: str) -> str:
        conn = self.connections[name]
        refused = conn.problems + list(self._clashes.get(name, {}).values())
        parts = [conn.paging] if conn.paging else []
        if refused:
            parts.append(f"{len(refused)} refused: " + "; ".join(refused))
        if self._over_cap.get(name):
            cap = self.config.max_tools
            parts.append(f"{self._over_cap[name]} left out over the cap of {cap} tools")
        return "".join(f" ({p})" for p in parts)

    def status_lines(self) -> list[str]:
        return [
            f"mcp {name}: {state}" + (f" ({detail})" if detail else "")
            for name, state, detail in self.states()
        ]
