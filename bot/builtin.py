"""Built-in commands (/start, /help, /new, /status, /ask) and tools (current time, time zone)."""

from __future__ import annotations

import datetime as dt
import time
from typing import TYPE_CHECKING, Annotated
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import Field

from bot import __version__
from bot.commands import CommandContext, CommandTable
from bot.errors import ToolError
from bot.tools import Tool, ToolContext, tool

if TYPE_CHECKING:
    from bot.gateway import Gateway


def register_builtin_commands(table: CommandTable, gateway: Gateway) -> None:
    @table.add("start", "Say hello and show what I can do")
    async def start(ctx: CommandContext) -> str:
        name = ctx.message.identity.display_name or "there"
        return f"Hi {name}! Write to me in plain words. /help lists the commands."

    @table.add("help", "List the commands")
    async def help_(ctx: CommandContext) -> str:
        lines = [f"/{c.name} {c.usage}".rstrip() + f" — {c.description}" for c in table]
        return "Commands:\n" + "\n".join(lines)

    @table.add("new", "Start a fresh conversation (forget the recent context)")
    async def new(ctx: CommandContext) -> str:
        await gateway.reset_session(ctx.message.session_key)
        return "Started a fresh conversation."

    @table.add("status", "Show the model, this session and the gateway's state")
    async def status(ctx: CommandContext) -> str:
        # the MCP servers (their addresses, their errors) are the owner's setup, not for
        # every user, nor for a group the owner asks in
        servers = ctx.role == "owner" and ctx.in_dm
        return await status_text(gateway, ctx.message.session_key, servers=servers)

    @table.add("ask", "Ask a question", usage="<question>", arg_name="question")
    async def ask(ctx: CommandContext) -> str | None:
        # an attachment alone is the question: "/ask" as a photo's caption asks about it
        return None if ctx.args.strip() or ctx.message.parts else "Usage: /ask <question>"


async def status_text(gateway: Gateway, key: str, *, servers: bool) -> str:
    session = gateway.sessions.get(key)
    await gateway.sessions.load(session)
    lines = [
        VERSION_LINE,
        f"model: {', '.join(gateway.config.models.chat)}",
        f"session: {key} ({len(session.history or [])} recent messages)",
        f"uptime: {uptime_text(gateway.started)}; active turns: {gateway.sessions.active}",
    ]
    if gateway.mcp is not None and servers:
        lines += gateway.mcp.status_lines()
    return "\n".join(lines)


def _zone(name: str) -> ZoneInfo:
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        raise ToolError(
            f"unknown time zone {name!r}; use an IANA name like 'Europe/Berlin'"
        ) from None


@tool
async def current_time(
    ctx: ToolContext,
    zone: Annotated[str | None, Field(description="IANA zone; default: the person's")] = None,
) -> str:
    """Current date, time and weekday in the person's time zone (or another zone)."""
    tz = _zone(zone or ctx.timezone)
    now = dt.datetime.now(tz)
    return now.strftime(f"%A %Y-%m-%d %H:%M:%S {tz.key} (UTC%z)")


@tool
async def set_timezone(
    ctx: ToolContext,
    zone: Annotated[str, Field(description="IANA zone, e.g. 'America/New_York'")],
) -> str:
    """Remember the person's time zone (used for times and reminders)."""
    _zone(zone)
    await ctx.deps.store.identities.set_timezone(ctx.identity.key, zone)
    ctx.timezone = zone
    return f"time zone set to {zone}"


def builtin_tools() -> list[Tool]:
    return [current_time, set_timezone]


def uptime_text(started: float) -> str:
    seconds = int(time.monotonic() - started)
    return f"{seconds // 3600}h{seconds % 3600 // 60:02d}m"


VERSION_LINE = f"Decapod {__version__}"
