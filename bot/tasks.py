"""Background tasks: stopping them (cancel, then wait until they have finished), and the
pauses between a retry loop's tries."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from typing import Any


def pause_after(pauses: Sequence[float], tries: int) -> float:
    """The pause to wait when `tries` (0, 1, ...) pauses came before: the `pauses` in turn,
    then the last repeated."""
    return pauses[min(tries, len(pauses) - 1)]


async def cancel_and_wait(*tasks: asyncio.Task[Any] | None) -> None:
    """Cancel every task (None: nothing to do), then wait for each to finish.

    A task's own CancelledError ends here; any other error it raised is raised. A cancellation
    of the caller while it waits is raised, never swallowed: asyncio hands it to the awaited
    task, whose CancelledError then looks like the expected one, so the caller's count of
    cancellation requests tells them apart. The count is taken at the call, so a caller that
    is cleaning up after a cancellation it already received (a `finally` at shutdown) still
    waits for its tasks.
    """
    current = asyncio.current_task()
    before = current.cancelling() if current is not None else 0
    running = [task for task in tasks if task is not None]
    for task in running:
        task.cancel()
    for task in running:
        try:
            await task
        except asyncio.CancelledError:
            if current is not None and current.cancelling() > before:
                raise
            continue
        if current is not None and current.cancelling() > before:
            # the task ignored its cancellation and returned, so the caller's went nowhere
            raise asyncio.CancelledError


def cancelled_from_outside() -> bool:
    """Whether a CancelledError that just arrived stands for a cancellation of this task (a
    /stop, a drain). False when nothing asked for one: a library ended its own wait that
    way, and the error is that library's failure, not a reason to stop."""
    current = asyncio.current_task()
    return current is None or current.cancelling() > 0
