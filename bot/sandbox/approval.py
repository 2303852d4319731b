"""Asking the owner before a command runs.

The sandbox is the security boundary; approval is a second gate for commands that look
destructive, and for every command asked for in a context that untrusted content reached.
The dangerous-command heuristic is deliberately small: it decides when to ask, never what
is safe to run unasked.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import re
import secrets
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Protocol

from bot.errors import ToolDenied

if TYPE_CHECKING:
    from bot.tools import ToolContext

log = logging.getLogger("decapod.sandbox")

#: how long past its own timeout a broker may take before it counts as hung
_DECISION_GRACE_S = 5.0
#: the shortest wait a request is announced with (or half of `approval_timeout_s`)
_SHORTEST_WAIT_S = 30.0

_DANGEROUS = [
    (re.compile(p), why)
    for p, why in [
        (r"\brm\s+(-\w+\s+)*-\w*[rRf]", "recursive or forced delete"),
        (r"\b(curl|wget)\b[^|;&]*\|\s*(sudo\s+)?(ba|z|da|k)?sh\b", "pipes a download into a shell"),
        (r"\bbase64\s+(-d|--decode)\b[^|]*\|\s*(ba|z|da)?sh\b", "runs decoded data"),
        (r"\b(mkfs(\.\w+)?|fdisk|parted|wipefs|shred)\b", "disk or filesystem tool"),
        (r"\bdd\b.*\bof=", "raw write with dd"),
        (r"\bchmod\s+(-\w+\s+)*[0-7]*7[0-7]{2}\b|\bch(mod|own)\s+-R\b", "broad permission change"),
        (r":\(\)\s*\{.*\};\s*:", "fork bomb"),
        (r"\b(sudo|doas|su)\b", "privilege escalation"),
        (r"\b(nc|ncat|netcat|socat|telnet|ssh|scp)\b", "network tool"),
        (r"\b(kill|pkill|killall)\b", "kills processes"),
        (r"\bfind\b.*\s-delete\b", "find -delete"),
        (r">\s*/dev/(sd|nvme|hd|mem|kmem)", "writes to a device"),
        (r"\beval\b", "eval"),
    ]
]


def dangerous_reason(command: str) -> str | None:
    """Why a command looks dangerous, or None."""
    for pattern, why in _DANGEROUS:
        if pattern.search(command):
            return why
    return None


class ApprovalBroker(Protocol):
    async def request(self, ctx: ToolContext, summary: str, timeout: float) -> bool:  # noqa: ASYNC109
        """True only if the owner approved within `timeout` seconds; raises when the owner
        could not be asked (`notify` failed)."""
        ...


async def ask_owner(
    ctx: ToolContext,
    broker: ApprovalBroker | None,
    summary: str,
    wait: float,
    *,
    why: str,
    refused: str,
) -> None:
    """Ask the owner to approve `summary` (redacted here) within `wait` seconds, because
    `why`; unless they approve, raise ToolDenied starting with `refused` ("not run", "not
    written", "not saved"). The wait does not count against the turn's deadline, one
    approval window per turn: a later request is announced with what is left of it, or not
    made when too little is. The owner is not asked for a step the turn has no time left to
    do, nor again in a turn where they denied or did not answer: each request would hold the
    session and nag the owner."""
    needed = f"{refused}: this needed the owner's approval because {why}"
    if broker is None:
        raise ToolDenied(
            f"{refused}: this needs the owner's approval because {why}, and there is no way "
            "to ask for it here"
        )
    clock = ctx.turn_clock
    if clock is not None:
        if clock.owner_refused:
            raise ToolDenied(
                f"{needed}, and it was not asked: the owner denied or did not answer an "
                "earlier request in this turn; answer with what you have"
            )
        clock.room_s(refused)
        left = clock.hold_for(wait + _DECISION_GRACE_S) - _DECISION_GRACE_S
        if left < min(wait / 2, _SHORTEST_WAIT_S):
            raise ToolDenied(
                f"{needed}, and it was not asked: this turn's time for approvals is used up; "
                "answer with what you have"
            )
        wait = min(wait, left)
    window = wait + _DECISION_GRACE_S
    held = clock.waiting_for_a_person(window) if clock else contextlib.nullcontext()
    try:
        with held:
            # the broker owns the timeout; this bound only guards against one that hangs
            async with asyncio.timeout(window):  # not wait_for: on 3.11 it can drop a cancel
                approved = await broker.request(ctx, ctx.deps.redact(summary), wait)
    except Exception:  # a failing or hung broker: the owner may never have seen the request
        log.exception("could not ask the owner for approval")
        raise ToolDenied(f"{needed}, and the owner could not be asked") from None
    if approved is not True:
        if clock is not None:
            clock.owner_refused = True
        within = f"{wait:.0f}" if wait >= 10 else f"{wait:g}"
        raise ToolDenied(f"{needed}, and it was denied or not given within {within} seconds")


@dataclass(frozen=True, slots=True)
class PendingApproval:
    id: str
    session_key: str
    requester: str  # identity key of whoever asked for the command
    summary: str
    created_at: float
    expires_at: float


class InMemoryApprovalBroker:
    """Holds requests until `approve(id)` or `deny(id)`, or until they time out.

    `notify` is called once per request (the gateway sends the owner a message with the id
    and the summary); if it fails, `request` raises it: the request is refused at once, as
    one the owner could not be asked.
    """

    def __init__(self, notify: Callable[[PendingApproval], Awaitable[None]] | None = None) -> None:
        self._notify = notify
        self._pending: dict[str, tuple[PendingApproval, asyncio.Future[bool]]] = {}

    async def request(self, ctx: ToolContext, summary: str, timeout: float) -> bool:  # noqa: ASYNC109
        approval_id = secrets.token_hex(3)
        while approval_id in self._pending:
            approval_id = secrets.token_hex(3)
        now = time.time()
        info = PendingApproval(
            approval_id, ctx.session_key, ctx.identity.key, summary, now, now + timeout
        )
        decision: asyncio.Future[bool] = asyncio.get_running_loop().create_future()
        self._pending[approval_id] = (info, decision)
        try:
            if self._notify is not None:
                await self._notify(info)  # a failure reaches ask_owner: the owner was not asked
            async with asyncio.timeout(timeout):  # not wait_for: on 3.11 it can drop a cancel
                return await decision
        except TimeoutError:
            return False
        finally:
            self._pending.pop(approval_id, None)

    async def waiting(self) -> list[PendingApproval]:
        """The requests waiting for the owner, wherever they were made."""
        return self.pending()

    async def decide(self, approval_id: str, approved: bool) -> bool:
        """Answer a request; False when none such waits (here: in this process)."""
        return self._decide(approval_id, approved)

    def approve(self, approval_id: str) -> bool:
        return self._decide(approval_id, True)

    def deny(self, approval_id: str) -> bool:
        return self._decide(approval_id, False)

    def pending(self) -> list[PendingApproval]:
        return [info for info, _ in self._pending.values()]

    def _decide(self, approval_id: str, approved: bool) -> bool:
        entry = self._pending.get(approval_id)
        if entry is None or entry[1].done():
            return False
        entry[1].set_result(approved)
        return True
