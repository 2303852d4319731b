"""The garbage collector of a serving gateway.

Once the gateway is up, what start-up made (modules, the config, schemas, compiled patterns)
lives as long as the process. A full collection walked all of it again and again: a burst of
2,000 turns spent ~7 of ~20 s in the collector, most in nine full collections. Freezing the
start-up objects takes them out of every later walk, and collecting the youngest generation
every 10,000 allocations instead of 700 lets a turn's short-lived objects die young, between
collections. Cyclic garbage is still collected, in larger steps.
"""

from __future__ import annotations

import asyncio
import gc

#: (youngest, middle, oldest): a young collection every 10,000 net allocations, a middle one
#: every 10 young ones, a full one every 10 middle ones (and then only when the old
#: generation grew by a quarter, as the collector itself decides)
SERVING_THRESHOLDS = (10_000, 10, 10)

#: seconds from ready to the settling collection: it holds the event loop for ~40 ms, and
#: /health, the platforms' first events and the first requests are answered before it
SETTLE_DELAY_S = 0.5


def hold_collections_until_settled() -> None:
    """Call first in `decapod run`. What a start makes nearly all lives as long as the process
    (modules, classes, schemas), and the collector walked it ~280 times as it grew (~0.1 s of
    CPU, about a tenth of the start); settle_after_start collects once, then freezes it. The
    little garbage a start makes waits until then."""
    gc.disable()


def settle_after_start() -> None:
    """Call once the gateway is up (`decapod run`, or a bench that runs the gateway as it)."""
    gc.collect()
    gc.freeze()
    gc.set_threshold(*SERVING_THRESHOLDS)
    gc.enable()


def settle_soon(delay_s: float = SETTLE_DELAY_S) -> asyncio.TimerHandle:
    """settle_after_start `delay_s` from now, on the running loop (`decapod run`, once the
    gateway is up); cancel the handle when stopping before then."""
    return asyncio.get_running_loop().call_later(delay_s, settle_after_start)
