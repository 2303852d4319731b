"""The sandbox tools: exec, and file tools confined to the session workspace.

They read the sandbox part of the dependencies, `ctx.deps.sandbox` (bot/deps.py): its
config, the WorkspaceManager, the backend (None: exec is off) and the approval broker (None:
commands that need approval are refused). Every result and error message passes through
`ctx.deps.redact`, and the agent redacts the transcript again.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import shlex
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Annotated, Any

from pydantic import Field

from bot.deps import SandboxDeps
from bot.errors import SandboxError, ToolDenied, ToolError
from bot.sandbox.approval import ask_owner
from bot.sandbox.base import ExecResult
from bot.sandbox.policy import (
    EXEC_TAG,
    FS_TAG,
    approval_reason,
    exec_denial,
    write_approval_reason,
)
from bot.sandbox.safe_fs import WorkspaceFS
from bot.tools import Tool, ToolContext, tool

if TYPE_CHECKING:
    from bot.sandbox.config import SandboxConfig
    from bot.sandbox.workspace import WorkspaceManager

log = logging.getLogger("decapod.sandbox")

_MAX_LIST_ENTRIES = 500


def sandbox_tools() -> list[Tool]:
    """exec (tagged "exec") and the file tools (tagged "fs")."""
    return [
        tool(exec_command, name="exec", tags=[EXEC_TAG]),
        *(tool(fn, tags=[FS_TAG]) for fn in (read_file, write_file, list_files, edit_file)),
    ]


def _redacted(fn: Callable[..., Awaitable[str]]) -> Callable[..., Awaitable[str]]:
    """Pass the result, and any error message, through ctx.deps.redact."""

    @functools.wraps(fn)
    async def wrapper(ctx: ToolContext, **kwargs: Any) -> str:
        redact = ctx.deps.redact
        try:
            return redact(await fn(ctx, **kwargs))
        except ToolError as exc:
            raise type(exc)(redact(str(exc))) from None

    return wrapper


def _sandbox(ctx: ToolContext) -> SandboxDeps:
    sandbox = ctx.deps.sandbox
    if sandbox is None:
        raise ToolError("no workspace is set up for this conversation")
    return sandbox


def workspace_fs(ctx: ToolContext) -> WorkspaceFS:
    """The session's workspace, through the path checks every file tool shares."""
    sandbox = _sandbox(ctx)
    return session_workspace_fs(sandbox.workspaces, sandbox.config, ctx.session_key)


def session_workspace_fs(
    workspaces: WorkspaceManager, config: SandboxConfig, session_key: str
) -> WorkspaceFS:
    """The session's workspace (made if new) with the file size limit and the quota that
    every write into it keeps: the file tools, a saved download, a received document."""
    ws = workspaces.prepare(session_key)
    limit = config.limits.file_size_mb << 20
    return WorkspaceFS(ws.path, workspaces.owner, limit, workspaces.quota)


_Seconds = Annotated[float | None, Field(description="seconds")]


@_redacted
async def exec_command(
    ctx: ToolContext,
    command: Annotated[
        str | list[str], Field(description="a shell string (sh -c) or an argv list")
    ],
    stdin: str | None = None,
    timeout: _Seconds = None,  # noqa: ASYNC109 (a parameter the model sets)
) -> str:
    """Run a command in this chat's sandbox: Linux, no network, /work kept between commands,
    /tmp for scratch. Returns exit code, stdout and stderr (each cut at 64 KiB)."""
    sandbox = ctx.deps.sandbox
    if sandbox is None:
        raise ToolDenied("not run: no sandbox is available here, so commands cannot be run")
    config, backend = sandbox.config, sandbox.backend
    denial = exec_denial(config, ctx, backend)
    if denial is not None:
        raise ToolDenied(f"not run: {denial}")
    if isinstance(command, str):
        argv, shown = ["/bin/sh", "-c", command], command
    else:
        argv, shown = list(command), shlex.join(command)
    if not argv or not argv[0] or any("\0" in a for a in argv):
        raise ToolError("command must be a non-empty string or argv list without NUL bytes")
    limits = config.limits.to_limits()
    seconds = min(timeout if timeout and timeout > 0 else config.timeout_s, limits.wall_seconds)

    why = approval_reason(config, ctx, shown)
    if why is not None:  # not asked for a command the turn has no time left to run
        await _ask_owner(ctx, sandbox, shown, why, "not run")
    assert backend is not None  # exec_denial refuses a missing backend
    asked, seconds = seconds, _within_the_turn(ctx, seconds)
    try:
        result = await backend.exec(
            ctx.session_key,
            argv,
            stdin=stdin.encode() if stdin is not None else None,
            limits=limits,
            timeout=seconds,
        )
    except SandboxError as exc:
        raise ToolError(f"the sandbox could not run the command: {exc}") from None
    text = format_result(result)
    if result.timed_out and seconds < asked:
        text += (
            f"\n[the turn's time limit cut this command's wall clock to {seconds:.0f}s; a "
            "larger timeout will not help in this turn]"
        )
    return text


def _within_the_turn(ctx: ToolContext, seconds: float) -> float:
    """A command's wall clock cut to end before the turn's deadline: past it the whole turn
    is stopped, and the person gets "that took too long" instead of the output so far."""
    clock = ctx.turn_clock
    room = None if clock is None else clock.room_s("not run")
    return seconds if room is None else min(seconds, room)


async def _ask_owner(
    ctx: ToolContext, sandbox: SandboxDeps, shown: str, why: str, refused: str
) -> None:
    who = ctx.identity.display_name or ctx.identity.key
    summary = f"{who} wants to run, because {why}:\n{shown}"
    wait = sandbox.config.approval_timeout_s
    await ask_owner(ctx, sandbox.approvals, summary, wait, why=why, refused=refused)


async def _approve_write(ctx: ToolContext, tool_name: str, path: str) -> None:
    sandbox = _sandbox(ctx)
    why = write_approval_reason(sandbox.config, ctx)
    if why is not None:
        await _ask_owner(ctx, sandbox, f"{tool_name} {path}", why, "not written")


def format_result(r: ExecResult) -> str:
    head = f"exit code {r.exit_code} after {r.duration_s:.2f}s"
    if r.timed_out:
        head += f"; timed out ({r.killed_reason}): the command and all it started were killed"
    elif r.killed_reason:
        head += f"; stopped by the sandbox: {r.killed_reason}"
    sections = [head]
    for label, data, cut in (
        ("stdout", r.stdout, r.truncated_stdout),
        ("stderr", r.stderr, r.truncated_stderr),
    ):
        if not data and not cut:
            continue
        text = data.decode(errors="replace")
        if cut:
            text += f"\n[... {label} truncated: only the first {len(data)} bytes are shown ...]"
        sections.append(f"--- {label} ---\n{text}")
    if len(sections) == 1:
        sections.append("(no output)")
    return "\n".join(sections)


#: relative to /work, or /work/...; said once in each description ("under /work") rather
#: than in a description of `path`: every byte of a tool schema rides on every turn
_Path = str


@_redacted
async def read_file(ctx: ToolContext, path: _Path, offset: int = 0) -> str:
    """Read a text file under /work: 64 KiB from byte `offset`."""
    cap = _sandbox(ctx).config.limits.output_bytes
    offset = max(0, offset)
    data, size = await asyncio.to_thread(workspace_fs(ctx).read, path, offset, cap)
    if b"\0" in data:
        return f"{path} is a binary file ({size} bytes); not shown"
    text = data.decode(errors="replace")
    end = offset + len(data)
    if end < size:
        text += f"\n[... truncated: bytes {offset}-{end} of {size}; read on with offset={end} ...]"
    return text


@_redacted
async def write_file(ctx: ToolContext, path: _Path, content: str, append: bool = False) -> str:
    """Write (or `append` to) a text file under /work; makes missing folders."""
    data = _encoded(content)  # before the owner is asked for a write that cannot happen
    await _approve_write(ctx, "write_file", path)
    fs = workspace_fs(ctx)
    written = await asyncio.to_thread(fs.write, path, data, append=append)
    return f"{'appended' if append else 'wrote'} {written} bytes to {path}"


def _encoded(content: str) -> bytes:
    try:
        return content.encode()
    except UnicodeEncodeError as exc:
        raise ToolError(
            f"content is not valid text: a lone surrogate ({content[exc.start]!a}) at "
            f"character {exc.start}; nothing was written"
        ) from None


@_redacted
async def list_files(ctx: ToolContext, path: _Path = ".", recursive: bool = False) -> str:
    """List a folder under /work; quoted names are JSON strings."""
    lines, left_off = await asyncio.to_thread(
        workspace_fs(ctx).listing, path, recursive=recursive, max_entries=_MAX_LIST_ENTRIES
    )
    if not lines:
        return f"{path} is empty"
    if left_off:
        lines.append(f"[... {left_off} more entries not shown ...]")
    return "\n".join(lines)


@_redacted
async def edit_file(
    ctx: ToolContext, path: _Path, old_text: str, new_text: str, replace_all: bool = False
) -> str:
    """Replace exact text in a file under /work: `old_text` must occur once, unless
    `replace_all`."""
    _encoded(new_text)
    await _approve_write(ctx, "edit_file", path)
    count = await asyncio.to_thread(
        workspace_fs(ctx).edit, path, old_text, new_text, replace_all=replace_all
    )
    return f"replaced {count} occurrence{'s' if count != 1 else ''} in {path}"
