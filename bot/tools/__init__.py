"""Tools the model can call: a typed signature in, a JSON schema out.

    @tool
    async def current_time(ctx: ToolContext, zone: str | None = None) -> str:
        '''Current date and time in the person's time zone.'''

The first parameter is always the ToolContext; the others become the JSON schema (through
pydantic), and the model's arguments are validated against it before the call. What a tool
may reach (store, sandbox, memory, scheduler, the redactor) is `ctx.deps` (bot/deps.py).

Every failure inside a tool becomes a result the model reads; only cancellation escapes.
"""

from __future__ import annotations

import asyncio
import functools
import inspect
import logging
import time
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass
from typing import Any, get_type_hints

from pydantic import BaseModel, ConfigDict, ValidationError, create_model

from bot.deps import Deps
from bot.errors import ToolDenied, ToolError
from bot.messages import Conversation, Identity, well_formed
from bot.providers.base import ToolCall, ToolSpec
from bot.tasks import cancelled_from_outside
from bot.tools.turn_clock import TurnClock

log = logging.getLogger("decapod.tools")

ToolFn = Callable[..., Awaitable[str]]

#: a tool whose output is outside content (a web page, a downloaded file): calling it taints
#: the turn, and while such output is in the context, commands need the owner's approval
#: (sandbox approval = "ask")
UNTRUSTED_TAG = "untrusted"


@dataclass(slots=True)
class ToolContext:
    """Who is asking, where, and what the tool may reach. Built once per turn."""

    identity: Identity
    conversation: Conversation
    session_key: str
    #: what a tool may reach (bot/deps.py); the gateway's, shared by every turn
    deps: Deps
    #: the canonical person (identities linked across platforms share one)
    person_id: str = ""
    role: str = "user"  # owner | operator | user
    timezone: str = "UTC"
    #: outside content reached this turn's context (an untrusted tool's output, a non-owner's
    #: attachments): commands then need the owner's approval
    tainted: bool = False
    #: the turn's deadline while the agent runs it (bot/agent): how long is left, and a
    #: wait for a person holds it back
    turn_clock: TurnClock | None = None

    @property
    def is_group(self) -> bool:
        return self.conversation.kind.value != "dm"


@dataclass(frozen=True, slots=True)
class ToolResult:
    call_id: str
    name: str
    content: str
    ok: bool
    elapsed_ms: float


class _Args(BaseModel):
    model_config = ConfigDict(extra="forbid")


@dataclass(eq=False)
class Tool:
    name: str
    description: str
    fn: ToolFn
    #: the arguments' model; None: built from `fn`'s signature when first needed (a start
    #: registers ~17 tools and each model costs pydantic ~0.3 ms, which no turn needs before
    #: the gateway is ready)
    declared_args: type[BaseModel] | None
    #: tags a policy filters on, e.g. {"exec"} or {"fs"}
    tags: frozenset[str] = frozenset()
    #: a rule for the system prompt, added (once) to turns that offer this tool
    guidance: str = ""

    @functools.cached_property
    def args_model(self) -> type[BaseModel]:
        return self.declared_args or _args_model_of(self.fn)

    @functools.cached_property
    def spec(self) -> ToolSpec:
        schema = self.args_model.model_json_schema()
        schema.pop("title", None)
        for prop in schema.get("properties", {}).values():
            prop.pop("title", None)
        return ToolSpec(self.name, self.description, schema)

    async def invoke(self, ctx: ToolContext, arguments: dict[str, Any]) -> str:
        try:
            args = self.args_model.model_validate(arguments)
        except ValidationError as exc:
            problems = "; ".join(
                f"{'.'.join(str(p) for p in e['loc']) or 'arguments'}: {e['msg']}"
                for e in exc.errors()
            )
            raise ToolError(f"invalid arguments for {self.name}: {problems}") from None
        return await self.fn(ctx, **{k: getattr(args, k) for k in type(args).model_fields})


def tool(fn: ToolFn | None = None, *, name: str | None = None, tags: Iterable[str] = ()) -> Any:
    """Decorator turning `async def f(ctx, a: int, b: str = "x") -> str` into a Tool."""

    def build(func: ToolFn) -> Tool:
        doc = inspect.cleandoc(func.__doc__ or "").strip()
        return Tool(name or func.__name__, doc, func, None, frozenset(tags))

    return build(fn) if fn is not None else build


def _args_model_of(func: ToolFn) -> type[BaseModel]:
    """The model of `async def f(ctx, a: int, b: str = "x")`'s arguments after `ctx`."""
    hints = get_type_hints(func, include_extras=True)
    params = list(inspect.signature(func).parameters.values())[1:]  # skip ctx
    fields: dict[str, Any] = {}
    for p in params:
        default = ... if p.default is inspect.Parameter.empty else p.default
        fields[p.name] = (hints.get(p.name, Any), default)
    return create_model(f"{func.__name__}_args", __base__=_Args, **fields)


class ToolRegistry:
    def __init__(self, tools: Iterable[Tool] = ()) -> None:
        self._tools: dict[str, Tool] = {}
        #: trims what one request offers (the MCP manager keeps it within `max_tools`)
        self.limit: Callable[[list[Tool]], list[Tool]] | None = None
        for t in tools:
            self.register(t)

    def register(self, t: Tool) -> None:
        if t.name in self._tools:
            raise ValueError(f"tool {t.name!r} registered twice")
        self._tools[t.name] = t

    def unregister(self, name: str) -> Tool | None:
        """Withdraw a tool at run time (its MCP server went away). A turn that was offered it
        already and calls it now gets an "unknown tool" result."""
        return self._tools.pop(name, None)

    def __contains__(self, name: str) -> bool:
        return name in self._tools

    def get(self, name: str) -> Tool | None:
        return self._tools.get(name)

    def names(self) -> list[str]:
        return list(self._tools)

    def is_untrusted(self, name: str | None) -> bool:
        """Whether the tool called `name` brings outside content."""
        t = self._tools.get(name or "")
        return t is not None and UNTRUSTED_TAG in t.tags

    def available(self, ctx: ToolContext, policy: ToolPolicy | None = None) -> list[Tool]:
        tools = list(self._tools.values())
        if policy is not None:
            tools = [t for t in tools if policy.allows(t, ctx)]
        return self.limit(tools) if self.limit is not None else tools

    async def call(
        self, call: ToolCall, ctx: ToolContext, policy: ToolPolicy | None = None
    ) -> ToolResult:
        """Run one tool call. Every failure becomes a result the model can read; only
        cancellation (a BaseException) passes through."""
        start = time.perf_counter()
        t = self._tools.get(call.name)
        hooks = ctx.deps.hooks
        try:
            if t is None:
                raise ToolError(f"unknown tool {call.name!r}")
            if policy is not None and not policy.allows(t, ctx):
                raise ToolDenied(f"tool {call.name!r} is not available here")
            try:
                arguments = call.parsed_arguments()
            except ValueError as exc:
                raise ToolError(f"arguments are not valid JSON: {exc}") from None
            if hooks is not None and (blocked := await hooks.before_tool(ctx, t.name, arguments)):
                raise ToolDenied(f"not run: {blocked}")
            try:
                content, ok = await t.invoke(ctx, arguments), True
            finally:
                if UNTRUSTED_TAG in t.tags:
                    # what it fetched, even in an error message, is outside content
                    ctx.tainted = True
        except ToolError as exc:
            content, ok = f"error: {exc}", False
        except (Exception, asyncio.CancelledError) as exc:
            if isinstance(exc, asyncio.CancelledError) and cancelled_from_outside():
                raise  # the turn was stopped or the gateway drains
            # A bug or an OS error in one tool (or a CancelledError a library raised without
            # a cancellation) must not end the turn: left to propagate, the delivery would
            # stay pending and every restart would run into it again.
            log.exception("tool %s failed", call.name)
            content, ok = f"error: {call.name} failed: {_failure(exc)}", False
        elapsed = (time.perf_counter() - start) * 1000
        # a name or output made of bytes that are not UTF-8 (a file a command created, an MCP
        # server's text) reaches here with lone surrogates, which neither the store nor a
        # provider can encode: the turn would fail after the reply went out
        result = ToolResult(call.id, call.name, well_formed(content), ok, elapsed)
        if hooks is not None:
            hooks.after_tool(ctx, result)
        return result


def _failure(exc: BaseException) -> str:
    """What the model is told about an unexpected failure: the OS's reason without the host
    path it names, otherwise only the kind of error (the details are in the log)."""
    if isinstance(exc, OSError) and exc.strerror:
        return exc.strerror
    return f"an internal error ({type(exc).__name__}); the details are in the gateway's log"


class ToolPolicy:
    """Decides which tools are offered to whom. The default offers everything untagged,
    and tagged tools only to the owner in a DM; bot/security refines this."""

    def allows(self, t: Tool, ctx: ToolContext) -> bool:
        if not t.tags:
            return True
        return ctx.role == "owner" and not ctx.is_group
