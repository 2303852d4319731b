"""Who gets the sandbox tools, and when a command needs the owner's approval.

| who, where            | file tools | exec                                   |
|-----------------------|------------|----------------------------------------|
| owner, DM             | yes        | yes                                    |
| owner, group          | yes        | only with exec_in_groups               |
| operator/user, DM     | yes        | only with exec_for_users               |
| operator/user, group  | yes        | only with exec_for_users and exec_in_groups |
| host backend          | yes        | owner in a DM only, whatever the flags |

The exec tool checks the same rules again before it runs anything, so a gateway that
forgets to pass this policy still cannot hand exec to the wrong person.
"""

from __future__ import annotations

from typing import Any

from bot.sandbox.approval import dangerous_reason
from bot.sandbox.config import SandboxConfig
from bot.tools import Tool, ToolContext, ToolPolicy

EXEC_TAG = "exec"
FS_TAG = "fs"


def exec_denial(config: SandboxConfig, ctx: ToolContext, backend: Any) -> str | None:
    """Why this person may not run commands here, or None if they may."""
    if backend is None:
        return "no sandbox is available on this host, so commands cannot be run"
    owner_dm = ctx.role == "owner" and not ctx.is_group
    if getattr(backend, "name", None) == "host":
        if config.allow_host_exec and owner_dm:
            return None
        return "commands run unsandboxed on this host, so only the owner may run them, in a DM"
    if ctx.is_group and not config.exec_in_groups:
        return "running commands is turned off in group chats"
    if ctx.role != "owner" and not config.exec_for_users:
        return "running commands is reserved for the owner"
    return None


def approval_reason(config: SandboxConfig, ctx: ToolContext, command: str) -> str | None:
    """Why this command needs the owner's approval first, or None."""
    if config.approval == "never":
        return None
    if config.approval == "always":
        return "every command needs approval here"
    if ctx.tainted:
        return "the conversation contains untrusted content"
    why = dangerous_reason(command)
    return f"it looks dangerous ({why})" if why else None


def write_approval_reason(config: SandboxConfig, ctx: ToolContext) -> str | None:
    """Why a file write needs the owner's approval first, or None: a write is asked for
    only once untrusted content (a web page) reached the conversation."""
    if config.approval != "never" and ctx.tainted:
        return "the conversation contains untrusted content"
    return None


class SandboxToolPolicy(ToolPolicy):
    def __init__(self, config: SandboxConfig) -> None:
        self.config = config

    def allows(self, t: Tool, ctx: ToolContext) -> bool:
        sandbox = ctx.deps.sandbox
        if EXEC_TAG in t.tags:
            return exec_denial(self.config, ctx, sandbox and sandbox.backend) is None
        if FS_TAG in t.tags:
            return sandbox is not None
        return super().allows(t, ctx)
