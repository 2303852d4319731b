"""P9: 1,000 reminders due in the same minute; each delivered within 1 s of its due time.

The reminders go through Scheduler.schedule into a fresh database (real clock), due evenly
over a few seconds starting a few seconds from now, for 100 people in 100 conversations. The
running scheduler (wake-ups at the due time, claims, leases, durable commits) delivers them to a
deliverer that takes a simulated platform round trip and records when each one landed.
Lateness is landed time minus due time. Lost: never delivered; duplicated: delivered again.

    python -m bench.reminder_bench [--quick] [--json out.json]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import tempfile
import time
from collections import Counter, defaultdict
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from bench.common import median, pct
from bot.messages import Conversation
from bot.scheduler import Scheduler, SchedulerConfig
from bot.scheduler.timing import Once
from bot.store import Store

PEOPLE = 100
LEAD_S = 4.0  # the first reminder is due this long after scheduling starts
SPREAD_S = 3.0  # the due times are spread evenly over this
ROUND_TRIP_S = 0.005  # about a Telegram sendMessage against a local server
TARGET_S = 1.0


class LandingDeliverer:
    def __init__(self) -> None:
        self.landed: dict[str, list[float]] = defaultdict(list)

    async def deliver(self, conversation: Conversation, text: str) -> str:
        await asyncio.sleep(ROUND_TRIP_S)
        self.landed[text].append(time.time())
        return f"m{len(self.landed)}"


async def _schedule(scheduler: Scheduler, i: int, text: str, at: float) -> None:
    person = f"p{i % PEOPLE}"
    await scheduler.schedule(
        person_id=person, identity_key=f"bench:{person}", text=text, timezone="UTC",
        conversation=Conversation("bench", f"chat-{person}"),
        when=Once(datetime.fromtimestamp(at, UTC)),
    )  # fmt: skip


async def _measure(count: int, db: Path) -> dict[str, Any]:
    deliverer = LandingDeliverer()
    async with Store(db) as store:
        scheduler = Scheduler(store, deliverer, config=SchedulerConfig())
        await scheduler.start()
        start = time.time()
        first_due = start + LEAD_S
        due = {f"reminder {i}": first_due + i * SPREAD_S / count for i in range(count)}
        await asyncio.gather(
            *(_schedule(scheduler, i, text, at) for i, (text, at) in enumerate(due.items()))
        )
        scheduled_s = time.time() - start
        deadline = first_due + SPREAD_S + 10
        while len(deliverer.landed) < count and time.time() < deadline:
            await asyncio.sleep(0.05)
        await asyncio.sleep(1.0)  # a duplicate would land now
        await scheduler.stop()
        statuses = Counter(
            j.status.value for j in await scheduler.jobs.listing(include_closed=True)
        )
    lateness = [
        deliverer.landed[f"⏰ {text}"][0] - at
        for text, at in due.items()
        if deliverer.landed.get(f"⏰ {text}")
    ]
    lost = count - len(lateness)
    return {
        "id": "P9",
        "reminders": count,
        "scheduled_in_s": round(scheduled_s, 3),
        "delivered": len(lateness),
        "lost": lost,
        "duplicated": sum(len(times) - 1 for times in deliverer.landed.values()),
        "p50_lateness_ms": round(median(lateness) * 1000, 1),
        "p99_lateness_ms": round(pct(lateness, 99) * 1000, 1),
        "max_lateness_ms": round(max(lateness, default=float("nan")) * 1000, 1),
        "early": sum(1 for late in lateness if late < 0),
        "within_target": sum(1 for late in lateness if 0 <= late <= TARGET_S),
        "statuses": dict(statuses),
        "target_s": TARGET_S,
    }


def run(quick: bool = False) -> dict[str, Any]:
    """Schedule, wait for every delivery, print one line, return the figures."""
    count = 200 if quick else 1000
    logging.getLogger("bot.scheduler").setLevel(logging.WARNING)
    with tempfile.TemporaryDirectory(prefix="decapod-p9-") as tmp:
        results = asyncio.run(_measure(count, Path(tmp) / "p9.db"))
    results["ok"] = (
        results["lost"] == 0 and results["duplicated"] == 0 and results["within_target"] == count
    )
    print(
        f"P9 reminder precision: {count} due within {SPREAD_S:g} s (scheduled in "
        f"{results['scheduled_in_s']} s): lateness p50 {results['p50_lateness_ms']} ms, "
        f"p99 {results['p99_lateness_ms']} ms, max {results['max_lateness_ms']} ms; "
        f"lost {results['lost']}, duplicated {results['duplicated']}, early {results['early']}"
        f"  target <= {TARGET_S:g} s {'ok' if results['ok'] else 'MISSED'}"
    )
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="200 reminders")
    parser.add_argument("--json", type=Path, help="also write the figures here")
    args = parser.parse_args()
    results = run(args.quick)
    if args.json:
        args.json.write_text(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
