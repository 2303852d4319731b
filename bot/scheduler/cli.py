"""`decapod reminders list|cancel`: the operator's view of every person's jobs.

Safe while the gateway runs: SQLite in WAL mode lets this read and write beside it, and a
cancel made here is honoured by a delivery already under way (its commit no longer matches).
"""

from __future__ import annotations

import argparse
import asyncio
import time
from pathlib import Path
from typing import Any

from bot.scheduler.timing import describe_repeat, format_local
from bot.store import Store
from bot.store.jobs import Job, JobRepo


def add_subparsers(sub: Any) -> None:
    """Add `reminders` to the CLI's subparsers (an argparse _SubParsersAction)."""
    parser = sub.add_parser("reminders", help="list or cancel reminders and scheduled tasks")
    actions = parser.add_subparsers(dest="reminders_action", required=True)
    listing = actions.add_parser("list", help="open jobs of everybody, soonest first")
    listing.add_argument("--person", help="only this person's jobs (a person id)")
    listing.add_argument(
        "--all", action="store_true", help="include sent, missed and cancelled jobs"
    )
    cancel = actions.add_parser("cancel", help="cancel a job by id, whoever owns it")
    cancel.add_argument("job_id")


def run(args: argparse.Namespace, store: Path | Store) -> int:
    """`store`: the configured store (not started), or the path of a SQLite one."""
    return asyncio.run(_run(args, store if isinstance(store, Store) else Store(store)))


async def _run(args: argparse.Namespace, store: Store) -> int:
    async with store:
        jobs = JobRepo(store)
        if args.reminders_action == "cancel":
            job_id = args.job_id.strip().lower()
            if await jobs.cancel(job_id, None, time.time()):
                print(f"cancelled {job_id}")
                return 0
            print(f"no open job {job_id}")
            return 1
        rows = await jobs.listing(include_closed=args.all, person_id=args.person)
        if not rows:
            print("no jobs")
            return 0
        print(render_table([_cells(job) for job in rows]))
        return 0


HEADER = ("ID", "STATUS", "DUE", "REPEAT", "KIND", "PERSON", "WHERE", "TEXT")


def render_table(rows: list[list[str]]) -> str:
    """The rows under HEADER, each column as wide as its widest cell (the text, last, is not
    padded)."""
    table = [list(HEADER), *rows]
    widths = [max(len(row[i]) for row in table) for i in range(len(HEADER) - 1)]
    return "\n".join(
        "  ".join([*(cell.ljust(w) for cell, w in zip(row, widths, strict=False)), row[-1]])
        for row in table
    )


def _cells(job: Job) -> list[str]:
    conv = job.conversation
    where = f"{conv.channel}:{conv.kind.value}:{conv.chat_id}"
    repeat = describe_repeat(job) or "once"
    text = " ".join(job.text.split())
    text = text if len(text) <= 60 else text[:59] + "…"
    return [
        job.id,
        job.status.value,
        format_local(job.run_at, job.timezone),
        repeat,
        job.kind.value,
        job.person_id,
        where,
        text,
    ]
