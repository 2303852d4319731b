"""An MCP server's tool as a gateway Tool, and the policy that offers it to the right people.

Every result is outside content: the tool carries UNTRUSTED_TAG, so a turn that called it is
tainted (commands then need the owner's approval), and its text is redacted and then capped here,
before the agent redacts the transcript again.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from pydantic import BaseModel, ConfigDict

from bot.errors import ToolDenied, ToolError
from bot.mcp.results import result_text
from bot.mcp.schema import ListedTool
from bot.providers.base import ToolSpec
from bot.tools import UNTRUSTED_TAG, Tool, ToolContext, ToolPolicy

if TYPE_CHECKING:
    from jsonschema.protocols import Validator

    from bot.mcp.config import HttpServerConfig, StdioServerConfig
    from bot.mcp.connection import McpConnection

MCP_TAG = "mcp"


class _RemoteArgs(BaseModel):
    """Arguments are checked against the server's JSON schema, not a pydantic model."""

    model_config = ConfigDict(extra="allow")


class McpTool(Tool):
    def __init__(
        self,
        listed: ListedTool,
        server: McpConnection,
        entry: StdioServerConfig | HttpServerConfig,
        *,
        max_result_chars: int,
        redact: Callable[[str], str],
    ) -> None:
        super().__init__(
            listed.name,
            listed.description,
            self._call,
            _RemoteArgs,
            frozenset({UNTRUSTED_TAG, MCP_TAG}),
        )
        self.listed = listed
        self.server = server
        self.entry = entry
        self.max_result_chars = max_result_chars
        self.redact = redact

    @functools.cached_property
    def spec(self) -> ToolSpec:
        return ToolSpec(self.name, self.description, self.listed.schema)

    def permits(self, ctx: ToolContext) -> bool:
        return ctx.role in self.entry.roles and (self.entry.in_groups or not ctx.is_group)

    async def invoke(self, ctx: ToolContext, arguments: dict[str, Any]) -> str:
        # the registry asks the policy too; this holds when a caller forgets to pass it
        if not self.permits(ctx):
            raise ToolDenied(f"tool {self.name!r} is not available here")
        problem = self._argument_problem(arguments)
        if problem:
            raise ToolError(f"invalid arguments for {self.name}: {problem}")
        return await self._call(ctx, **arguments)

    async def _call(self, ctx: ToolContext, /, **arguments: Any) -> str:
        # positional-only: a server's tool may well take an argument named "ctx" or "self"
        result = await self.server.call(self.listed.remote_name, arguments)
        text = result_text(result, self.max_result_chars, redact=self.redact)
        if result.is_error:
            raise ToolError(f"{self.listed.remote_name} failed: {text}")
        return text

    def _argument_problem(self, arguments: dict[str, Any]) -> str | None:
        from jsonschema.exceptions import best_match

        error = best_match(self._validator.iter_errors(arguments))
        if error is None:
            return None
        where = ".".join(str(p) for p in error.absolute_path) or "arguments"
        return f"{where}: {error.message}"

    @functools.cached_property
    def _validator(self) -> Validator:
        from jsonschema import validators

        schema = self.listed.full_schema
        return validators.validator_for(schema)(schema)


class McpToolPolicy(ToolPolicy):
    """Offers an MCP tool to the roles (and places) its server's entry names; every other
    tool is the wrapped policy's call."""

    def __init__(self, inner: ToolPolicy) -> None:
        self.inner = inner

    def allows(self, t: Tool, ctx: ToolContext) -> bool:
        if isinstance(t, McpTool):
            return t.permits(ctx)
        return self.inner.allows(t, ctx)
