"""A process running a Store and a Scheduler, for the crash tests (R9, R10).

    python -m tests.scheduler.harness DB OUT [--schedule-in S] [--until-lines N] [--settle S]
                                             [--timeout S] [--lease S]

Every delivery is appended to OUT as one JSON line the moment the "platform" has it: the
stand-in for a 2xx. With --schedule-in it first schedules one reminder and prints its id and
due time as JSON. It runs until OUT holds --until-lines lines (then --settle seconds more, to
catch a duplicate) or until --timeout, then stops cleanly. DECAPOD_FAULT (bot/faults.py) kills
it with SIGKILL at a named point.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import time
from datetime import UTC, datetime
from pathlib import Path

from bot.messages import Conversation
from bot.scheduler import Scheduler, SchedulerConfig
from bot.scheduler.timing import Once
from bot.store import Store

CONVERSATION = Conversation("test", "dm-alice")


class FileDeliverer:
    def __init__(self, path: Path) -> None:
        self.path = path

    async def deliver(self, conversation: Conversation, text: str) -> str:
        line = json.dumps({"at": time.time(), "chat": conversation.chat_id, "text": text})
        fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
        try:
            os.write(fd, (line + "\n").encode())
        finally:
            os.close(fd)
        return f"m{time.monotonic_ns()}"


def delivered(path: Path) -> int:
    return len(path.read_text().splitlines()) if path.exists() else 0


async def main(args: argparse.Namespace) -> None:
    config = SchedulerConfig(
        lease_seconds=args.lease, poll_seconds=0.2, late_note_after_seconds=1.0,
        min_interval_seconds=1.0,
    )  # fmt: skip
    async with Store(args.db) as store:
        scheduler = Scheduler(store, FileDeliverer(args.out), config=config)
        if args.schedule_in is not None:
            due = datetime.fromtimestamp(time.time() + args.schedule_in, UTC)
            job = await scheduler.schedule(
                person_id="alice", identity_key="test:alice", conversation=CONVERSATION,
                text="stretch", when=Once(due), timezone="UTC",
            )  # fmt: skip
            print(json.dumps({"job": job.id, "due": job.due_at}), flush=True)
        await scheduler.start()
        deadline = time.monotonic() + args.timeout
        while time.monotonic() < deadline and delivered(args.out) < args.until_lines:
            await asyncio.sleep(0.02)
        if delivered(args.out) >= args.until_lines:
            await asyncio.sleep(args.settle)
        await scheduler.stop()


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("db", type=Path)
    parser.add_argument("out", type=Path)
    parser.add_argument("--schedule-in", type=float)
    parser.add_argument("--until-lines", type=int, default=1)
    parser.add_argument("--settle", type=float, default=0.5)
    parser.add_argument("--timeout", type=float, default=10.0)
    parser.add_argument("--lease", type=float, default=1.5)
    asyncio.run(main(parser.parse_args()))
