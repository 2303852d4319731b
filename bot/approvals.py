"""/approve and /deny: one pair of owner commands for everything that waits for the owner.

Each part that asks (the sandbox's command approvals, the skill drafts) adds an
ApprovalSource; the commands are registered when the first one is added. `/approve ID`
goes to the first source that knows ID; `/approve` alone lists what is waiting.
"""

from __future__ import annotations

from typing import Protocol

from bot.commands import CommandContext, CommandTable


class ApprovalSource(Protocol):
    def waiting(self) -> list[str]:
        """One line per thing waiting, starting with the id to approve it by."""
        ...

    async def decide(self, key: str, approve: bool) -> str | None:
        """The reply once `key` is approved or denied; None when `key` is not this source's."""
        ...


class ApprovalDesk:
    def __init__(self, commands: CommandTable) -> None:
        self._commands = commands
        self._sources: list[ApprovalSource] = []

    def add(self, source: ApprovalSource) -> None:
        if not self._sources:
            self._register()
        self._sources.append(source)

    async def decide(self, key: str, approve: bool) -> str:
        key = key.strip()
        if not key:
            waiting = [line for source in self._sources for line in source.waiting()]
            return "\n".join(waiting) if waiting else "Nothing is waiting for approval."
        for source in self._sources:
            reply = await source.decide(key, approve)
            if reply is not None:
                return reply
        return f"No pending request {key} (it may have expired)."

    def _register(self) -> None:
        @self._commands.add(
            "approve",
            "Approve something waiting for you",
            usage="<id>",
            arg_name="id",
            owner_only=True,
            immediate=True,
        )
        async def approve(ctx: CommandContext) -> str:
            return await self.decide(ctx.args, True)

        @self._commands.add(
            "deny",
            "Refuse something waiting for you",
            usage="<id>",
            arg_name="id",
            owner_only=True,
            immediate=True,
        )
        async def deny(ctx: CommandContext) -> str:
            return await self.decide(ctx.args, False)
