"""/approve and /deny: one pair of owner commands for everything that waits for the owner.

Each part that asks (the sandbox's command approvals, the skill drafts) adds an
ApprovalSource; the commands are registered when the first one is added. `/approve ID`
goes to the first source that knows ID; `/approve` alone lists what is waiting, with
Approve / Deny buttons for each (typed commands where a platform has no buttons).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

from bot.commands import CommandContext, CommandTable, Reply
from bot.messages import Choice

#: Discord shows at most 25 buttons under a message, Slack 25 per actions block
MAX_LISTED = 12


@dataclass(frozen=True, slots=True)
class Waiting:
    key: str  # what /approve and /deny take
    summary: str


def approval_choices(key: str) -> tuple[Choice, ...]:
    return (Choice("Approve", f"/approve {key}"), Choice("Deny", f"/deny {key}"))


class ApprovalSource(Protocol):
    async def waiting(self) -> list[Waiting]:
        """Everything of this source that waits for the owner (on every replica)."""
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

    async def decide(self, key: str, approve: bool, *, in_dm: bool = True) -> str | Reply:
        key = key.strip()
        if not key and not in_dm:
            # what waits quotes the requests, made in other people's chats too
            return "What waits for approval is listed only in a direct message with me."
        if not key:
            waiting = [item for source in self._sources for item in await source.waiting()]
            if not waiting:
                return "Nothing is waiting for approval."
            lines = [f"{item.key}: {item.summary}" for item in waiting]
            listed = waiting[:MAX_LISTED]
            choices = tuple(
                Choice(f"{label} {item.key}", f"/{verb} {item.key}")
                for item in listed
                for label, verb in (("Approve", "approve"), ("Deny", "deny"))
            )
            return Reply("\n".join(lines), choices)
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
        async def approve(ctx: CommandContext) -> str | Reply:
            return await self.decide(ctx.args, True, in_dm=ctx.in_dm)

        @self._commands.add(
            "deny",
            "Refuse something waiting for you",
            usage="<id>",
            arg_name="id",
            owner_only=True,
            immediate=True,
        )
        async def deny(ctx: CommandContext) -> str | Reply:
            return await self.decide(ctx.args, False, in_dm=ctx.in_dm)
