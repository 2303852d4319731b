"""The chat page's uploads as rows of the store (`web_uploads`), for replicas on one
PostgreSQL database: a file uploaded through one replica is read by whichever replica the
message naming it reaches. Same rules as the files of bot/webui/uploads.py (one process on
SQLite keeps those): the size cap applied while the body streams in (held in memory, at
most the cap, and stored without a copy), the per-person quota counted with the uploads
still streaming into this process and again in the writing transaction, a day's keep, and
the rows of older uploads removed (at start, then hourly on the next upload; a removal that
fails is tried again on the next one and fails no upload; hourly too without uploads)."""

from __future__ import annotations

import asyncio
import logging
import secrets
import shutil
import time
from typing import TYPE_CHECKING

from bot.store.web_shared import UploadRow, WebSharedRepo
from bot.tasks import cancel_and_wait
from bot.webui.uploads import (
    _ID,
    KEEP_S,
    Upload,
    UploadTooLarge,
    _mb,
    describe,
    kind_of,
    quota_full,
    read_within,
)

if TYPE_CHECKING:
    from pathlib import Path

    from aiohttp import BodyPartReader

    from bot.messages import Attachment
    from bot.store import Store

_PRUNE_EVERY_S = 3600.0
_PRUNE_RETRY_S = 60.0
log = logging.getLogger(__name__)


class RowUploads:
    def __init__(
        self,
        store: Store,
        max_bytes: int,
        quota_bytes: int,
        old_dir: Path | None = None,
        *,
        prune_every_s: float = _PRUNE_EVERY_S,
        prune_retry_s: float = _PRUNE_RETRY_S,
    ) -> None:
        self.repo = WebSharedRepo(store)
        #: how often the expired rows go, and how soon a removal that failed is tried again
        self.prune_every_s = prune_every_s
        self.prune_retry_s = prune_retry_s
        #: the folder a single process kept uploads in before it had rows (removed at start)
        self.old_dir = old_dir
        self.max_bytes = max_bytes
        self.quota_bytes = quota_bytes
        self._pruned_at = 0.0
        #: person -> bytes of their uploads streaming into this process now: counted against
        #: their quota too, so parallel uploads cannot each fit the room left
        self._inflight: dict[str, int] = {}
        self._timer: asyncio.Task[None] | None = None

    def start(self) -> None:
        """In a thread: the files of a home that kept uploads on disk before its store was
        PostgreSQL go (messages still naming them say they are gone); the expired rows go
        on `started`."""
        if self.old_dir is not None and self.old_dir.is_dir():
            shutil.rmtree(self.old_dir, ignore_errors=True)

    async def started(self) -> None:
        await self._prune_due()
        self._timer = asyncio.create_task(self._prune_hourly())

    async def stop(self, _app: object = None) -> None:
        await cancel_and_wait(self._timer)

    async def _prune_hourly(self) -> None:
        """Also without uploads: the rows of a quiet replica's day go all the same. It wakes
        when the next prune is due, not an hour after it last woke: an upload's prune in
        between would else put the next one off to nearly two hours (a failed one is tried
        again after a minute, not at once)."""
        while True:
            due_in = self._pruned_at + self.prune_every_s - time.time()
            await asyncio.sleep(min(max(due_in, self.prune_retry_s), self.prune_every_s))
            await self._prune_due()

    async def prune(self, now: float | None = None) -> int:
        now = now or time.time()
        gone = await self.repo.prune_uploads(now - KEEP_S)
        self._pruned_at = now  # only once done: a failed one is tried on the next upload
        return gone

    async def _prune_due(self) -> None:
        if time.time() - self._pruned_at <= self.prune_every_s:
            return
        try:
            await self.prune()
        except Exception as exc:  # old rows wait an upload longer; this one goes on
            log.warning("web UI: could not remove expired uploads: %s", exc)

    async def save(self, user: str, part: BodyPartReader) -> Upload:
        await self._prune_due()
        kept = await self.repo.kept_bytes(user)
        if kept + self._inflight.get(user, 0) >= self.quota_bytes:
            raise quota_full(self.quota_bytes)  # before anything is read
        name, mime = describe(part)
        data = bytearray()
        self._inflight[user] = self._inflight.get(user, 0)
        try:
            while chunk := await part.read_chunk(64 * 1024):
                data += chunk
                self._inflight[user] += len(chunk)
                if len(data) > self.max_bytes:
                    raise UploadTooLarge(f"{name} is larger than {_mb(self.max_bytes)}")
                if kept + self._inflight[user] > self.quota_bytes:
                    raise quota_full(self.quota_bytes)
            row = UploadRow(
                secrets.token_urlsafe(16), user, name, mime.lower(), len(data), kind_of(mime),
                time.time(),
            )  # fmt: skip
            # the buffer itself: the driver sends it as it is (a copy would double the cap)
            if not await self.repo.add_upload(row, data, self.quota_bytes):
                raise quota_full(self.quota_bytes)  # another replica's upload took the room
        finally:
            self._inflight[user] -= len(data)
            if not self._inflight[user]:
                del self._inflight[user]
        return _upload(row)

    async def find(self, upload_id: str) -> Upload | None:
        if not _ID.fullmatch(upload_id):
            return None
        row = await self.repo.upload(upload_id, time.time() - KEEP_S)
        return None if row is None else _upload(row)

    async def read(self, attachment: Attachment, max_bytes: int) -> bytes:
        """The bytes of an upload, never more than `max_bytes` (ChannelError if it is)."""
        return await read_within(attachment, max_bytes, self.find, self._data)

    async def _data(self, upload: Upload) -> bytes | None:
        return await self.repo.upload_data(upload.id)  # None: pruned since its row was read


def _upload(row: UploadRow) -> Upload:
    return Upload(row.id, row.person, row.name, row.mime, row.size, row.kind, row.created_at)
