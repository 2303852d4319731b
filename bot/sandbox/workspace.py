"""One directory per session under `<home>/sandboxes/`, named by an HMAC of the session key.

The name reveals nothing about the chat and cannot be guessed from the session key alone.
Metadata (session key, created, last used) lives beside the directory, not inside it, so a
sandboxed command can neither read nor forge it.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import os
import re
import secrets
import shutil
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bot.sandbox.base import Workspace
from bot.sandbox.quota import WorkspaceQuota

_HASH = re.compile(r"^[0-9a-f]{32}$")
_KEY_FILE = ".hmac-key"


@dataclass(frozen=True, slots=True)
class WorkspaceInfo:
    hash: str
    path: Path
    session_key: str | None  # None when the metadata file is missing
    created: float
    last_used: float
    size_bytes: int


class WorkspaceManager:
    """Creates, lists and removes session workspaces.

    `owner` is the (uid, gid) that sandboxed commands run as; when the gateway runs as root,
    workspaces and the files the gateway writes into them are handed to that owner.
    `quota` bounds each workspace; backends refuse to start without one (listing and
    removing, as `decapod sandbox` does, need none).
    """

    def __init__(
        self,
        root: Path,
        owner: tuple[int, int] | None = None,
        quota: WorkspaceQuota | None = None,
        ro_mounts: dict[str, Path] | None = None,
    ) -> None:
        self.root = root
        self.owner = owner
        self.quota = quota
        #: host folders every command sees read-only (sandbox path -> host path), e.g. the
        #: owner's skills at /skills
        self.ro_mounts = dict(ro_mounts or {})
        self._key: bytes | None = None

    def ensure_root(self) -> None:
        self.root.mkdir(mode=0o700, parents=True, exist_ok=True)
        os.chmod(self.root, 0o700)

    def _hmac_key(self) -> bytes:
        if self._key is None:
            self.ensure_root()
            path = self.root / _KEY_FILE
            try:
                fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600)
            except FileExistsError:
                self._key = path.read_bytes()
            else:
                key = secrets.token_bytes(32)
                with os.fdopen(fd, "wb") as f:
                    f.write(key)
                self._key = key
        return self._key

    def hash_for(self, session_key: str) -> str:
        digest = hmac.new(self._hmac_key(), session_key.encode(), hashlib.sha256)
        return digest.hexdigest()[:32]

    def path_for(self, session_key: str) -> Path:
        return self.root / self.hash_for(session_key)

    def prepare(self, session_key: str) -> Workspace:
        """Create the workspace if needed and mark it used now."""
        h = self.hash_for(session_key)
        path = self.root / h
        try:
            path.mkdir(mode=0o700)
        except FileExistsError:
            if path.is_symlink() or not path.is_dir():
                raise RuntimeError(f"workspace {path} is not a directory") from None
        else:
            if self.owner is not None:
                os.chown(path, *self.owner)
        os.chmod(path, 0o700)
        now = time.time()
        meta = self._read_meta(h) or {"session_key": session_key, "created": now}
        meta["last_used"] = now
        self._write_meta(h, meta)
        return Workspace(session_key, h, path, float(meta["created"]), now)

    def ls(self) -> list[WorkspaceInfo]:
        if not self.root.is_dir():
            return []
        out = []
        for entry in sorted(self.root.iterdir()):
            if not _HASH.match(entry.name) or not entry.is_dir() or entry.is_symlink():
                continue
            meta = self._read_meta(entry.name)
            mtime = entry.stat().st_mtime
            out.append(
                WorkspaceInfo(
                    hash=entry.name,
                    path=entry,
                    session_key=meta.get("session_key") if meta else None,
                    created=float(meta["created"]) if meta else mtime,
                    last_used=float(meta["last_used"]) if meta else mtime,
                    size_bytes=_tree_size(entry),
                )
            )
        return out

    def resolve(self, key_or_hash: str) -> str | None:
        """A workspace hash from a session key, a full hash, or a unique hash prefix (≥ 8)."""
        existing = [w.hash for w in self.ls()]
        if key_or_hash in existing:
            return key_or_hash
        if self.root.is_dir():
            h = self.hash_for(key_or_hash)
            if h in existing:
                return h
        if len(key_or_hash) >= 8:
            matches = [h for h in existing if h.startswith(key_or_hash)]
            if len(matches) == 1:
                return matches[0]
        return None

    def rm(self, key_or_hash: str) -> bool:
        h = self.resolve(key_or_hash)
        if h is None:
            return False
        self._remove(h)
        return True

    def prune(self, max_age_s: float) -> list[WorkspaceInfo]:
        """Remove workspaces not used for `max_age_s` seconds; returns what was removed."""
        cutoff = time.time() - max_age_s
        removed = [w for w in self.ls() if w.last_used < cutoff]
        for w in removed:
            self._remove(w.hash)
        return removed

    def _remove(self, h: str) -> None:
        # rmtree works on directory fds on Linux, so symlinks planted inside are not followed
        shutil.rmtree(self.root / h, ignore_errors=True)
        (self.root / f"{h}.json").unlink(missing_ok=True)

    def _read_meta(self, h: str) -> dict[str, Any] | None:
        try:
            data = json.loads((self.root / f"{h}.json").read_text())
        except (OSError, ValueError):
            return None
        return data if isinstance(data, dict) else None

    def _write_meta(self, h: str, meta: dict[str, Any]) -> None:
        tmp = self.root / f".{h}.json.tmp"
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_NOFOLLOW, 0o600)
        with os.fdopen(fd, "w") as f:
            json.dump(meta, f)
        os.replace(tmp, self.root / f"{h}.json")


def _tree_size(path: Path) -> int:
    total = 0
    for dirpath, _dirs, files in os.walk(path):
        for name in files:
            try:
                total += os.lstat(os.path.join(dirpath, name)).st_size
            except OSError:
                pass
    return total
