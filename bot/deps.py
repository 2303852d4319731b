"""What tools and commands may reach: one typed, frozen object the gateway builds.

A tool reads it as `ctx.deps` (a command as `ctx.deps` too). The security part, `redact`,
has no default and is checked when the object is built, so a gateway that lacks a redactor
fails at start-up instead of passing secrets through an identity function at run time. The
optional parts are `X | None`: None means the part is off, and a tool that needs it says so.

The object is frozen: the gateway replaces it (`dataclasses.replace`) as optional parts
start, and every turn takes the one current when it begins.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from bot.hooks.bus import HookBus
    from bot.media.outbound import ChannelFiles
    from bot.memory.service import MemoryService
    from bot.sandbox.approval import ApprovalBroker
    from bot.sandbox.base import SandboxBackend
    from bot.sandbox.config import SandboxConfig
    from bot.sandbox.workspace import WorkspaceManager
    from bot.scheduler.service import Scheduler
    from bot.skills.runtime import SkillsDeps
    from bot.store import Store


@dataclass(frozen=True, slots=True)
class SandboxDeps:
    """The sandbox part: file tools need `workspaces`, exec needs `backend` too."""

    config: SandboxConfig
    workspaces: WorkspaceManager
    #: None when no backend could start on this host: exec is off, file tools still work
    backend: SandboxBackend | None
    #: None: a command that needs the owner's approval is refused, never run unasked
    approvals: ApprovalBroker | None = None


@dataclass(frozen=True, slots=True)
class Deps:
    store: Store
    #: applied to every tool result and error message, and to approval requests
    redact: Callable[[str], str]
    sandbox: SandboxDeps | None = None
    memory: MemoryService | None = None
    scheduler: Scheduler | None = None
    #: the skill set current when the turn began (a reload swaps in a new Deps)
    skills: SkillsDeps | None = None
    #: None when no hook is configured
    hooks: HookBus | None = None
    #: sends a file to a conversation's chat (the gateway's channels)
    files: ChannelFiles | None = None

    def __post_init__(self) -> None:
        if not callable(self.redact):
            raise TypeError("Deps needs a redactor: redact must be a function str -> str")
