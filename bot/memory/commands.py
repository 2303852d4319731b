"""/forget and /link.

/forget            asks for confirmation; `/forget all` as the person's next /forget, within
                   5 minutes, deletes everything remembered about them (without that prompt,
                   `/forget all` asks first too)
/forget <words>    deletes the person's items that contain all of these words
/link              (in a DM) gives a code valid 10 minutes
/link CODE         (in a DM, on another platform) joins this account to the one that made it

In a group or channel every /forget forgets nothing and points to a DM: its answers name what
is remembered, and everyone there would read them.
"""

from __future__ import annotations

import time
from collections.abc import Callable

from bot.commands import CommandContext, CommandTable
from bot.memory.service import MemoryRequestError

CONFIRM_WINDOW_S = 300.0
FORGET_IN_DM = (
    "What I remember about you comes from every chat with you, so I show and forget it only "
    "in a direct message with me: send /forget there. Nothing was forgotten."
)
_PREVIEW_CHARS = 60


def _preview(text: str) -> str:
    flat = " ".join(text.split())
    return flat if len(flat) <= _PREVIEW_CHARS else flat[: _PREVIEW_CHARS - 1] + "…"


class _ForgetCommand:
    def __init__(self) -> None:
        self._asked: dict[str, float] = {}  # person id -> when /forget asked to confirm

    async def __call__(self, ctx: CommandContext) -> str:
        service = ctx.deps.memory
        if service is None or not ctx.person_id:
            return "Memory is not enabled."
        if not ctx.in_dm:
            return FORGET_IN_DM
        args = ctx.args.strip()
        now = time.time()
        if args.lower() in ("", "all"):
            asked = self._asked.pop(ctx.person_id, None)
            if args and asked is not None and now - asked <= CONFIRM_WINDOW_S:
                gone = await service.forget(ctx.person_id, everything=True, everywhere=True)
                return f"Done: I forgot everything I remembered about you ({len(gone)} items)."
            count = await service.count(ctx.person_id)
            if count == 0:
                return "I don't remember anything about you."
            self._asked[ctx.person_id] = now
            return (
                f"This deletes everything I remember about you ({count} items), for good. "
                "Send /forget all within 5 minutes to confirm."
            )
        self._asked.pop(ctx.person_id, None)  # the confirmation must follow the prompt
        gone = await service.forget(ctx.person_id, matching=args, everywhere=True)
        if not gone:
            return "Nothing I remember about you matches that."
        lines = [f"Forgot {len(gone)} item{'s' if len(gone) != 1 else ''}:"]
        lines += [f"- {_preview(r.text)}" for r in gone[:10]]
        if len(gone) > 10:
            lines.append(f"…and {len(gone) - 10} more")
        return "\n".join(lines)


class _LinkCommand:
    def __init__(self, on_linked: Callable[[], None]) -> None:
        #: the gateway caches who is which person; a link changes that
        self._on_linked = on_linked

    async def __call__(self, ctx: CommandContext) -> str:
        service = ctx.deps.memory
        if service is None or not ctx.person_id:
            return "Memory is not enabled."
        # A code seen by a group could be redeemed by anyone in it, joining them to you.
        if not ctx.in_dm:
            return "Use /link in a direct message with me."
        code = ctx.args.strip()
        try:
            if not code:
                new = await service.create_link_code(ctx.person_id)
                return (
                    f"Your link code: {new}\nSend /link {new} to me from your other account "
                    "within 10 minutes, and both accounts will share one memory."
                )
            await service.redeem_link_code(ctx.person_id, code)
        except MemoryRequestError as exc:
            return str(exc)
        self._on_linked()
        return "Linked: this account now shares memory with your other account."


def register_memory_commands(table: CommandTable, *, on_linked: Callable[[], None]) -> None:
    """`on_linked` runs after a /link joined two accounts (the gateway forgets which person
    each identity was, so the next message resolves to the joined one)."""
    table.add(
        "forget",
        "Forget what I remember about you",
        usage="[all | words]",
        arg_name="what",
    )(_ForgetCommand())
    table.add(
        "link",
        "Link your accounts on different platforms",
        usage="[code]",
        arg_name="code",
    )(_LinkCommand(on_linked))
