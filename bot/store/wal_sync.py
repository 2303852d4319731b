"""A commit made durable on its own: the WAL file fsynced after it, which is what
`PRAGMA synchronous=FULL` does for every commit of every table (bot/store/jobs.py)."""

from __future__ import annotations

import asyncio
import os
from pathlib import Path


class WalSync:
    """Group commit for durability: callers that committed while an fsync was running share
    the next one instead of queueing one each."""

    def __init__(self, wal: Path) -> None:
        self._wal = wal
        self._lock = asyncio.Lock()
        self._started = 0
        self._finished = 0

    async def sync(self) -> None:
        needed = self._started + 1  # an fsync that starts after this caller's commit
        async with self._lock:
            if self._finished >= needed:
                return
            self._started += 1
            generation = self._started
            await asyncio.to_thread(self._fsync)
            self._finished = generation

    def _fsync(self) -> None:
        try:
            fd = os.open(self._wal, os.O_RDONLY)
        except FileNotFoundError:
            return  # no WAL: everything was checkpointed into the (synced) database file
        try:
            os.fsync(fd)
        finally:
            os.close(fd)
