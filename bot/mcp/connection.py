"""One configured server, kept connected: start, list tools, watch, restart with backoff.

    starting ──listed──▶ ready ──crash / EOF / no pong / relist fails──▶ restarting ─▶ starting
        └── failed: a problem no restart fixes (a variable is unset, the sandbox cannot run)

A connection runs in its own task and holds the SDK client for its whole life (anyio wants a
task group left in the task that entered it); tool calls come from turn tasks and travel
through the client's streams. The startup bound covers launch, `initialize` and `tools/list`.
While calls are running no ping is sent: a server busy with a long call may not answer one,
and each call has its own timeout, after which the server is pinged.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import anyio
import mcp_types as types
from mcp import Client, MCPError
from pydantic import ValidationError

from bot import __version__
from bot.errors import ToolError
from bot.mcp.config import HttpServerConfig, McpConfig, StdioServerConfig
from bot.mcp.schema import ListedTool, listed_tools
from bot.mcp.transport import TransportOpener
from bot.tasks import cancelled_from_outside

log = logging.getLogger("decapod.mcp")

CLIENT_INFO = types.Implementation(name="decapod", version=__version__)
_MAX_PAGES = 50
#: a connection that stayed up this long starts its next backoff from 1 s again
_STABLE_S = 60.0
#: how long a stop waits for the SDK's teardown, whose own waits add up to ~9 s at most
_STOP_BOUND_S = 15.0


class PermanentProblem(Exception):
    """A reason no restart can fix; the server stays down until the config changes."""


class StartTimeout(TimeoutError):
    pass


class McpConnection:
    def __init__(
        self,
        name: str,
        entry: StdioServerConfig | HttpServerConfig,
        settings: McpConfig,
        make_opener: Callable[[], Awaitable[TransportOpener]],
        *,
        on_change: Callable[[McpConnection], None] = lambda c: None,
        on_outage: Callable[[McpConnection, str], None] = lambda c, why: None,
    ) -> None:
        self.name = name
        self.entry = entry
        self.settings = settings
        self._make_opener = make_opener
        self._opener: TransportOpener | None = None
        self.on_change = on_change
        self.on_outage = on_outage
        #: starting | ready | restarting | failed | stopped
        self.state = "starting"
        self.detail = ""
        self.last_error: tuple[float, str] | None = None
        self.tools: list[ListedTool] = []
        self.problems: list[str] = []
        #: why listing its tools stopped before the last page ("" when it did not)
        self.paging = ""
        self.restarts = 0
        self.client: Client | None = None
        self._poke = asyncio.Event()
        self._ended = False
        self._relist = False
        self._inflight = 0
        self._attempt: object = None
        self.ready = asyncio.Event()

    @property
    def ended(self) -> bool:
        """Whether the current connection's stream has ended (the server went away)."""
        return self._ended

    def describe(self) -> str:
        return self._opener.describe() if self._opener is not None else self.entry.transport

    # the supervised life ---------------------------------------------------------------------
    async def run(self) -> None:
        """Until cancelled: connect, serve, and after each loss wait and connect again.

        The supervision runs in a task of its own that a stop cancels once, through an anyio
        scope. The SDK stops a stdio server (stdin closed, TERM, then KILL of its process
        group) in a shielded scope, which anyio's cancellation respects but another asyncio
        `Task.cancel()` breaks into: a stop cancelled again (a second signal, a caller that
        bounds its own stop) skipped the kill, and the SDK's stdout reader, shielded too,
        then waited on a pipe the live server held open until the server exited by itself.
        Here further cancellations wait for the one teardown, bounded by _STOP_BOUND_S.
        """
        scope = anyio.CancelScope()

        async def supervised() -> None:
            with scope:
                await self._supervise()

        life = asyncio.create_task(supervised(), name=f"mcp-life-{self.name}")
        try:
            await asyncio.shield(life)
        except asyncio.CancelledError:
            if not life.done():
                scope.cancel()
                await self._await_teardown(life)
            raise

    async def _await_teardown(self, life: asyncio.Task[None]) -> None:
        deadline = time.monotonic() + _STOP_BOUND_S
        while not life.done() and (left := deadline - time.monotonic()) > 0:
            with contextlib.suppress(asyncio.CancelledError):  # a repeated stop: still ending
                await asyncio.wait([life], timeout=left)
        if not life.done():
            log.error("mcp server %s: not stopped within %g s", self.name, _STOP_BOUND_S)
            life.cancel()
        elif not life.cancelled() and life.exception() is not None:
            log.warning("mcp server %s: error while stopping: %r", self.name, life.exception())

    async def _supervise(self) -> None:
        failures = 0
        while True:
            up_since: float | None = None
            try:
                async with self.connect() as client:
                    up_since = time.monotonic()
                    self.set_ready(client)
                    reason = await self._watch(client)
            except PermanentProblem as exc:
                self._down("failed", str(exc))
                self.on_outage(self, str(exc))
                return
            except Exception as exc:
                reason = self.explain(exc)
            if cancelled_from_outside():
                # the stop's cancellation, which the SDK's teardown replaced with an error or
                # an ending of its own (a dead HTTP server's refused connection): no outage
                raise asyncio.CancelledError
            if up_since is not None and time.monotonic() - up_since >= _STABLE_S:
                failures = 0
            delay = min(self.settings.restart_backoff_max_s, 2.0**failures)
            failures += 1
            self.restarts += 1
            log.warning("mcp server %s: %s; restarting in %.0f s", self.name, reason, delay)
            self._down("restarting", f"{reason}; next try in {delay:.0f} s")
            self.on_outage(self, reason)
            await asyncio.sleep(delay)
            self.state, self.detail = "starting", ""

    @contextlib.asynccontextmanager
    async def connect(self) -> AsyncIterator[Client]:
        """A client with the tools listed, within the startup bound (else StartTimeout)."""
        if self._opener is None:
            try:
                self._opener = await self._make_opener()
            except Exception as exc:
                raise PermanentProblem(str(exc)) from exc
        # a fresh start: nothing a previous connection left behind wakes this one
        self._ended, self._relist = False, False
        self._poke.clear()
        this = self._attempt = object()
        bound = self.entry.startup_timeout_s
        with anyio.CancelScope(deadline=anyio.current_time() + bound) as startup:
            async with Client(
                self._opener.open(lambda: self._end(this)),
                mode="legacy",
                cache=None,
                client_info=CLIENT_INFO,
                message_handler=self._on_message,
            ) as client:
                await self._list(client)
                startup.deadline = math.inf
                yield client
        if startup.cancelled_caught:
            raise StartTimeout(f"no tools listed within {bound:g} s of the start")

    async def _watch(self, client: Client) -> str:
        """Returns why the connection is no longer usable."""
        while True:
            with anyio.move_on_after(self.settings.ping_interval_s):
                await self._poke.wait()
            self._poke.clear()
            if self._ended:
                return "the server closed the connection (it exited or crashed)"
            if self._relist:
                self._relist = False
                try:
                    with anyio.fail_after(self.entry.startup_timeout_s):
                        await self._list(client)
                except (TimeoutError, MCPError, ValidationError) as exc:
                    return f"listing its tools again failed: {self.explain(exc)}"
                self.on_change(self)
                continue
            if self._inflight:
                continue
            try:
                with anyio.fail_after(self.settings.ping_timeout_s):
                    await client.session.send_ping()
            except TimeoutError:
                return f"no answer to a ping within {self.settings.ping_timeout_s:g} s"
            except MCPError as exc:
                return f"a ping failed: {exc.message}"

    async def _list(self, client: Client) -> None:
        remote: list[types.Tool] = []
        cursor: str | None = None
        asked: set[str] = set()
        self.paging = ""
        for _ in range(_MAX_PAGES):
            page = await client.list_tools(cursor=cursor)
            remote += page.tools
            cursor = page.next_cursor
            if not cursor:
                break
            if cursor in asked:
                # the server pages in a circle: its pages repeat, and so would every tool
                self.paging = (
                    f"its tool list gave the page cursor {cursor!r} again; read no further"
                )
                remote = _first_of_each_name(remote)
                break
            asked.add(cursor)
        else:
            self.paging = f"its tool list has more than {_MAX_PAGES} pages; read no further"
        if self.paging:
            log.warning("mcp server %s: %s", self.name, self.paging)
        s = self.settings
        self.tools, self.problems = listed_tools(
            self.name,
            remote,
            allow=self.entry.tools,
            exclude=self.entry.exclude,
            max_schema_chars=s.max_schema_chars,
            max_description_chars=s.max_description_chars,
        )
        for problem in self.problems:
            log.warning("mcp server %s: tool left out: %s", self.name, problem)

    async def _on_message(self, message: Any) -> None:
        if isinstance(message, types.ToolListChangedNotification):
            self._relist = True
            self._poke.set()
        elif isinstance(message, Exception):
            log.warning("mcp server %s: transport error: %s", self.name, message)

    def _end(self, attempt: object) -> None:
        if attempt is not self._attempt:
            return  # a late word from a connection already replaced
        self._ended = True
        self._poke.set()
        if self.client is not None:
            # no turn may be offered or call the tools while the connection winds down
            self._down("restarting", "the connection closed")

    def set_ready(self, client: Client) -> None:
        self.client = client
        self.state, self.detail = "ready", ""
        log.info("mcp server %s: ready with %d tools", self.name, len(self.tools))
        self.ready.set()
        self.on_change(self)

    def _down(self, state: str, detail: str) -> None:
        self.client = None
        self.ready.clear()
        self.state, self.detail = state, detail
        if detail:
            #: (when, why) of the last time it went down: kept after it recovers
            self.last_error = (time.time(), detail)
        self.on_change(self)

    def stopped(self) -> None:
        self._down("stopped", "")

    def fail(self, reason: str) -> None:
        self._down("failed", reason)

    def explain(self, exc: BaseException) -> str:
        """One line on why a connection failed, with the server's last words if any."""
        leaf = _leaf(exc)
        text = leaf.message if isinstance(leaf, MCPError) else str(leaf) or type(leaf).__name__
        said = self._opener.last_words() if self._opener is not None else ""
        return f"{text} (it said: {said})" if said and said not in text else text

    # calls from turns ------------------------------------------------------------------------
    async def call(self, remote_name: str, arguments: dict[str, Any]) -> types.CallToolResult:
        client = self.client
        if client is None:
            raise ToolError(
                f"the {self.name} server is not available right now ({self.state}"
                + (f": {self.detail})" if self.detail else ")")
            )
        self._inflight += 1
        started = time.monotonic()
        try:
            return await client.call_tool(
                remote_name, arguments, read_timeout_seconds=self.entry.timeout_s
            )
        except MCPError as exc:
            # the SDK reports its own timeout and a closed connection with codes -32001 and
            # -32000, which a server may send as its own errors too (-32000 is JSON-RPC's
            # first "server error" code): then its message is what the model needs
            waited = time.monotonic() - started
            if exc.code == types.REQUEST_TIMEOUT and waited >= self.entry.timeout_s:
                self._poke.set()  # is it still alive?
                raise ToolError(
                    f"{self.name} did not answer within {self.entry.timeout_s:g} s"
                ) from None
            if exc.code == types.CONNECTION_CLOSED and self._lost(client, exc):
                self._poke.set()
                raise ToolError(
                    f"the {self.name} server stopped during the call; it is being restarted"
                ) from None
            raise ToolError(f"{self.name} refused the call: {exc.message}") from None
        except ValidationError:
            raise ToolError(f"{self.name} sent an answer that is not valid MCP") from None
        except (anyio.ClosedResourceError, anyio.BrokenResourceError):
            self._poke.set()
            raise ToolError(f"the {self.name} server is restarting; try again shortly") from None
        finally:
            self._inflight -= 1

    def _lost(self, client: Client, exc: MCPError) -> bool:
        """Whether a CONNECTION_CLOSED error is the SDK's word that the connection ended
        (the read side ends first, or a write found the transport gone), not the server's."""
        ended = self._ended or self.client is not client
        return ended or (exc.message == "Connection closed" and exc.data is None)


def _first_of_each_name(tools: list[types.Tool]) -> list[types.Tool]:
    first: dict[str, types.Tool] = {}
    for tool in tools:
        first.setdefault(tool.name, tool)
    return list(first.values())


def _leaf(exc: BaseException) -> BaseException:
    """The first real error inside (possibly nested) exception groups."""
    while isinstance(exc, BaseExceptionGroup) and exc.exceptions:
        exc = exc.exceptions[0]
    return exc
