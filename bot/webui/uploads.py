"""Files and images sent from the chat page.

The page uploads a file first (`POST /upload`, multipart, the session's CSRF token in the
`X-CSRF-Token` header) and gets an id; its next chat message names the ids, and the message
reaches the gateway with one `Attachment(ref=<id>)` per file. The media path then asks the web
channel's `fetch()` for the bytes, which reads them from here.

Each upload is a file in `<home>/webui-uploads/` (private) with a JSON sidecar naming its
owner, so a message replayed after a restart still finds its files. The size cap is applied
while the body streams in: a larger upload is cut off and removed, never kept. Uploads older
than a day are removed. What one person has kept here is capped too (`upload_quota_mb`), so
an invited guest cannot fill the disk within that day: the bytes count against the quota as
they stream in, and an upload that would pass it is cut off and removed like a too large one.
"""

from __future__ import annotations

import asyncio
import json
import mimetypes
import os
import re
import secrets
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from bot.errors import ChannelError

if TYPE_CHECKING:
    from collections.abc import Awaitable, Callable

    from aiohttp import BodyPartReader

    from bot.messages import Attachment

UPLOAD_DIR = "webui-uploads"
KEEP_S = 86400.0
_ID = re.compile(r"[A-Za-z0-9_-]{22}")
_NAME_UNSAFE = re.compile(r"[\x00-\x1f/\\]")


class UploadTooLarge(ChannelError):
    pass


class UploadQuotaFull(UploadTooLarge):
    """The person's uploads kept here would pass their quota."""


@dataclass(frozen=True, slots=True)
class Upload:
    id: str
    user: str
    name: str
    mime: str
    size: int
    kind: str  # the Attachment kind: image | audio | video | document
    created_at: float

    def attachment(self) -> Attachment:
        from bot.messages import Attachment

        return Attachment(self.kind, self.id, self.name, self.mime, self.size)


def describe(part: BodyPartReader) -> tuple[str, str]:
    """A part's file name, made safe to show and keep, and its content type."""
    name = _NAME_UNSAFE.sub("_", part.filename or "file")[-200:] or "file"
    mime = part.headers.get("Content-Type") or mimetypes.guess_type(name)[0] or ""
    if mime in ("", "application/octet-stream"):
        mime = mimetypes.guess_type(name)[0] or "application/octet-stream"
    return name, mime


def quota_full(quota_bytes: int) -> UploadQuotaFull:
    return UploadQuotaFull(
        f"upload limit reached: the files you uploaded may take up {_mb(quota_bytes)} "
        "at most; uploads are cleared a day after they were sent, so there is room again "
        "then"
    )


def kind_of(mime: str) -> str:
    top = mime.split("/", 1)[0]
    return top if top in ("image", "audio", "video") else "document"


class UploadStore:
    def __init__(self, root: Path, max_bytes: int, quota_bytes: int) -> None:
        self.root = root
        self.max_bytes = max_bytes
        self.quota_bytes = quota_bytes
        self._pruned_at = 0.0
        #: person -> bytes of their uploads kept here, those streaming in included
        self._kept: dict[str, int] = {}

    def start(self) -> None:
        from bot.security.files import private_dirs

        private_dirs(self.root)
        self.prune()
        for meta in self.root.glob("*.json"):
            upload = self._record(meta)
            if upload is not None:
                self._kept[upload.user] = self._kept.get(upload.user, 0) + upload.size

    def _prune_hourly(self) -> None:
        if time.time() - self._pruned_at > 3600:
            self.prune()

    async def save(self, user: str, part: BodyPartReader) -> Upload:
        """Stream one multipart file part to disk, within the cap."""
        self._prune_hourly()
        if self._kept.get(user, 0) >= self.quota_bytes:
            raise self._quota_full()  # before anything is written
        upload_id = secrets.token_urlsafe(16)
        name, mime = describe(part)
        path = self.root / upload_id
        size = 0
        # before the try: a first upload that fails before any chunk still has a count to undo
        self._kept.setdefault(user, 0)
        meta = self.root / f"{upload_id}.json"
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600)
        try:
            with os.fdopen(fd, "wb") as out:
                while chunk := await part.read_chunk(64 * 1024):
                    size += len(chunk)
                    # counted before the write, so two uploads at once cannot both fit
                    self._kept[user] += len(chunk)
                    if size > self.max_bytes:
                        raise UploadTooLarge(f"{name} is larger than {_mb(self.max_bytes)}")
                    if self._kept[user] > self.quota_bytes:
                        raise self._quota_full()
                    await asyncio.to_thread(out.write, chunk)
            upload = Upload(upload_id, user, name, mime.lower(), size, kind_of(mime), time.time())
            # inside the try: a file without its record is never listed, so it must not count
            meta_fd = os.open(meta, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600)
            with os.fdopen(meta_fd, "w") as meta_out:
                json.dump(asdict(upload), meta_out)
        except BaseException:
            self._kept[user] -= size
            path.unlink(missing_ok=True)
            meta.unlink(missing_ok=True)
            raise
        return upload

    def _quota_full(self) -> UploadQuotaFull:
        return quota_full(self.quota_bytes)

    async def find(self, upload_id: str) -> Upload | None:
        return self.get(upload_id)

    def get(self, upload_id: str) -> Upload | None:
        if not _ID.fullmatch(upload_id):
            return None
        return self._record(self.root / f"{upload_id}.json")

    @staticmethod
    def _record(meta: Path) -> Upload | None:
        try:
            return Upload(**json.loads(meta.read_text()))
        except (OSError, ValueError, TypeError):
            return None

    async def read(self, attachment: Attachment, max_bytes: int) -> bytes:
        """The bytes of an upload, never more than `max_bytes` (ChannelError if it is)."""
        return await read_within(attachment, max_bytes, self.find, self._data)

    async def _data(self, upload: Upload) -> bytes | None:
        try:
            return await asyncio.to_thread((self.root / upload.id).read_bytes)
        except FileNotFoundError:
            return None  # its record outlived it (pruned meanwhile, removed by hand)

    def prune(self, now: float | None = None) -> int:
        now = now or time.time()
        self._pruned_at = now
        cutoff = now - KEEP_S
        removed = 0
        for path in self.root.iterdir():
            try:
                if path.lstat().st_mtime < cutoff:
                    gone = self._record(path) if path.suffix == ".json" else None
                    path.unlink()
                    removed += 1
                    if gone is not None and gone.user in self._kept:
                        self._kept[gone.user] = max(0, self._kept[gone.user] - gone.size)
            except OSError:
                continue
        return removed


async def read_within(
    attachment: Attachment,
    max_bytes: int,
    find: Callable[[str], Awaitable[Upload | None]],
    data_of: Callable[[Upload], Awaitable[bytes | None]],
) -> bytes:
    """The bytes of the upload `attachment` names, from its record (`find`) and its data
    (`data_of`, None when it went since the record was read): never more than `max_bytes`,
    and a ChannelError that says so or that the upload is gone."""
    what = attachment.name or attachment.kind
    upload = await find(attachment.ref)
    if upload is None:
        raise gone_error(what)
    if upload.size > max_bytes:
        raise too_large_for(what, upload.size, max_bytes)
    data = await data_of(upload)
    if data is None:
        raise gone_error(what)
    return checked(data, what, max_bytes)


def checked(data: bytes, what: str, max_bytes: int) -> bytes:
    if len(data) > max_bytes:
        raise ChannelError(f"{what} is larger than {_mb(max_bytes)}")
    return data


def gone_error(what: str) -> ChannelError:
    return ChannelError(f"{what} is no longer available (uploads are kept for a day)")


def too_large_for(what: str, size: int, max_bytes: int) -> ChannelError:
    return ChannelError(f"{what} is {_mb(size)}; the limit is {_mb(max_bytes)}")


def _mb(n: int) -> str:
    return f"{n / 1024 / 1024:.1f} MB"
