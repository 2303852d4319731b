"""The workspace quota: a bound on the disk space and entries a session's /work holds.

No kernel mechanism bounds one directory tree for a non-root process on every filesystem:
project quotas need root and XFS/ext4 prjquota, a loop-mounted image needs root, a tmpfs
is memory (charged to the command's own memory limit) and lost on restart, and docker's
`--storage-opt size` sizes only the container's root layer, never a bind mount. So the
gateway measures the workspace itself, the same way for every backend:

- before a command, it records each file's inode and size;
- while the command runs, it measures the tree again and again (GNU find, which never
  follows symlinks, counts hard links once and walks trees of any depth), and stops the
  whole command the moment the workspace is over the quota;
- after the command, if the workspace is over, it undoes the command's growth, newest
  first, until it is back under: entries the command created are removed, files it grew
  are cut back to their earlier size, the way a full disk leaves a write cut short. The
  result names each of them.

The quota counts allocated bytes (what fills a disk; a sparse file counts what it uses)
and entries (inodes: a million empty files fill a filesystem too). A workspace already over
the quota when a command starts (the quota was lowered) may shrink, but not grow.
Overshoot between two measurements is bounded by the poll interval and RLIMIT_FSIZE.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import os
import shutil
import subprocess
import tempfile
import time
from dataclasses import dataclass, replace
from pathlib import Path

from bot.errors import SandboxError, ToolError
from bot.sandbox.base import WORK_DIR, ExecResult

#: every killed_reason this module writes starts so
QUOTA_REASON = "workspace quota"
_MIN_POLL_S = 0.2
#: one line per entry: inode, 512-byte blocks, size
_USAGE_FORMAT = "%i %b %s\\n"
#: one record per entry: inode, size, blocks, mtime, type, path (which may hold newlines)
_LISTING_FORMAT = "%i %s %b %T@ %y %P\\0"
_ROLLBACK_PASSES = 3
_ERR_KEEP = 4096


@dataclass(frozen=True, slots=True)
class Usage:
    bytes: int
    entries: int
    #: why the measurement is incomplete (a directory it could not read), or ""
    error: str = ""


@dataclass(frozen=True, slots=True)
class Snapshot:
    """A workspace before a command: its usage and each inode's size."""

    usage: Usage
    sizes: dict[int, int]


@dataclass(frozen=True, slots=True)
class _Entry:
    path: str
    inode: int
    size: int
    allocated: int
    mtime: float
    kind: str


@dataclass(frozen=True, slots=True)
class _Undo:
    entry: _Entry
    #: None: remove the entry; else cut the file back to this size
    cut_to: int | None
    freed_bytes: int
    freed_entries: int


class WorkspaceQuota:
    """`repair_access`: the gateway owns the files (it is not root), so a directory the
    sandbox made unreadable to its owner is given u+rwx back before it is measured."""

    def __init__(self, max_bytes: int, max_entries: int, *, repair_access: bool) -> None:
        self.max_bytes = max_bytes
        self.max_entries = max_entries
        self.repair_access = repair_access

    def describe(self) -> str:
        return f"{_size(self.max_bytes)}, {self.max_entries} entries"

    @functools.cached_property
    def find_tool(self) -> str:
        found = shutil.which("find")
        if found is None:
            raise SandboxError("GNU find is not installed; the workspace quota needs it")
        return found

    def allowed(self, before: Usage) -> Usage:
        """What a command may take the workspace to: the quota, or where it already is."""
        return Usage(max(self.max_bytes, before.bytes), max(self.max_entries, before.entries))

    # -- measuring

    async def usage(self, path: Path) -> Usage:
        return (await self.snapshot(path)).usage

    async def snapshot(self, path: Path) -> Snapshot:
        snapshot = _snapshot_from(await self._run_find(path, _USAGE_FORMAT, b"\n"))
        if snapshot.usage.error and self.repair_access:
            await self._repair(path)
            snapshot = _snapshot_from(await self._run_find(path, _USAGE_FORMAT, b"\n"))
        return snapshot

    def usage_sync(self, path: Path) -> Usage:
        """For the file tools, which run in a thread."""
        with (
            tempfile.TemporaryFile() as err,
            subprocess.Popen(
                self._find_argv(path, _USAGE_FORMAT),
                stdin=subprocess.DEVNULL,
                stdout=subprocess.PIPE,
                stderr=err,
            ) as proc,
        ):
            assert proc.stdout is not None
            chunks: list[bytes] = []
            count, capped = 0, False
            while chunk := proc.stdout.read(1 << 16):
                chunks.append(chunk)
                count += chunk.count(b"\n")
                if count > self._cap:
                    capped = True
                    proc.kill()
                    break
            code = proc.wait()
            err.seek(0)
            message = err.read(_ERR_KEEP).replace(os.fsencode(path), WORK_DIR.encode())
            out = _FindOutput(b"".join(chunks), capped, code, message)
        return _snapshot_from(out).usage

    async def _run_find(self, path: Path, fmt: str, sep: bytes) -> _FindOutput:
        proc = await asyncio.create_subprocess_exec(
            *self._find_argv(path, fmt),
            stdin=asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
        )
        assert proc.stdout is not None and proc.stderr is not None
        # read stderr alongside: find blocks on a full stderr pipe otherwise
        errors = asyncio.create_task(_first_bytes(proc.stderr, _ERR_KEEP))
        chunks: list[bytes] = []
        count, capped, finished = 0, False, False
        try:
            while chunk := await proc.stdout.read(1 << 16):
                chunks.append(chunk)
                count += chunk.count(sep)
                if count > self._cap:  # far over the quota already: no need to read on
                    capped = True
                    break
            finished = not capped
        finally:
            # only a find we stopped reading is killed: signalling one that is exiting by
            # itself would race its exit status (and asyncio's reaping of it)
            if not finished and proc.returncode is None:
                with contextlib.suppress(ProcessLookupError):
                    proc.kill()
            code = await proc.wait()
            err = await errors
        # the model reads this: name the workspace as it knows it, not by its host path
        err = err.replace(os.fsencode(path), WORK_DIR.encode())
        return _FindOutput(b"".join(chunks), capped, code, err)

    def _find_argv(self, path: Path, fmt: str) -> list[str]:
        return [self.find_tool, "-P", str(path), "-xdev", "-printf", fmt]

    @property
    def _cap(self) -> int:
        return 2 * self.max_entries + 1000

    async def _repair(self, path: Path) -> None:
        # find runs -exec on a directory before it reads it, so each fix lets it go deeper
        proc = await asyncio.create_subprocess_exec(
            self.find_tool, "-P", str(path), "-xdev", "-type", "d", "!", "-perm", "-u=rwx",
            "-exec", "chmod", "u+rwx", "--", "{}", ";",
            stdin=asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.DEVNULL,
            stderr=asyncio.subprocess.DEVNULL,
        )  # fmt: skip
        await proc.wait()

    # -- while and after a command

    async def watch(self, path: Path, allowed: Usage) -> str:
        """Returns (and only returns) when the workspace is over `allowed`, saying so."""
        interval = _MIN_POLL_S
        while True:
            await asyncio.sleep(interval)
            started = time.monotonic()
            usage = await self.usage(path)
            # a big tree is measured less often, so that measuring stays a small cost
            interval = max(_MIN_POLL_S, 4 * (time.monotonic() - started))
            if usage.error:
                return f"{QUOTA_REASON} ({self.describe()}): {usage.error}"
            if not _within(usage, allowed):
                return f"{QUOTA_REASON} ({self.describe()}): /work reached {_shown(usage)}"

    async def settle(self, path: Path, before: Snapshot, result: ExecResult) -> ExecResult:
        """Check the workspace after a command; undo its growth past the quota, and say so."""
        allowed = self.allowed(before.usage)
        after = await self.usage(path)
        if not after.error and _within(after, allowed):
            return result
        reached = after
        undone: list[str] = []
        failed: list[str] = []
        for _ in range(_ROLLBACK_PASSES):
            if after.error or _within(after, allowed):
                break
            plan = _plan(await self._listing(path), before.sizes, after, allowed)
            if not plan:
                break
            done, errors = await asyncio.to_thread(_apply, path, plan)
            undone += done
            failed += errors
            after = await self.usage(path)
        if after.error:
            reason = (
                f"{QUOTA_REASON} ({self.describe()}): {after.error}; no command runs until "
                "/work can be measured again"
            )
        else:
            reason = f"{QUOTA_REASON} ({self.describe()}) exceeded: /work reached {_shown(reached)}"
        if undone:
            reason += f"; undone, newest first: {_listed(undone)}"
        if failed:
            reason += f"; could not undo: {_listed(failed)}"
        if not after.error:
            reason += f"; /work now holds {_shown(after)}"
            if not _within(after, allowed):
                reason += "; it is still over the quota: remove files before writing more"
        if result.killed_reason and not result.killed_reason.startswith(QUOTA_REASON):
            reason = f"{result.killed_reason}; {reason}"
        return replace(result, killed_reason=reason)

    async def _listing(self, path: Path) -> list[_Entry]:
        out = await self._run_find(path, _LISTING_FORMAT, b"\0")
        entries = []
        for record in out.data.split(b"\0"):
            fields = record.split(b" ", 5)
            if len(fields) != 6 or not fields[5]:
                continue  # the workspace itself, or a record cut off by the cap
            inode, size, blocks, mtime, kind, rel = fields
            entries.append(
                _Entry(
                    os.fsdecode(rel),
                    int(inode),
                    int(size),
                    int(blocks) * 512,
                    float(mtime),
                    kind.decode(),
                )
            )
        return entries


@dataclass(frozen=True, slots=True)
class _FindOutput:
    data: bytes
    capped: bool
    code: int
    err: bytes


def _snapshot_from(out: _FindOutput) -> Snapshot:
    fields = out.data.split()
    allocated: dict[bytes, int] = {}
    sizes: dict[int, int] = {}
    for i in range(0, len(fields) - 2, 3):
        inode = fields[i]
        if inode not in allocated:  # a hard link counts once
            allocated[inode] = int(fields[i + 1]) * 512
            sizes[int(inode)] = int(fields[i + 2])
    usage = Usage(sum(allocated.values()), len(allocated))
    if out.code != 0 and not out.capped:  # capped: killed on purpose, already far over
        detail = out.err.decode(errors="replace").strip().splitlines()
        why = detail[0] if detail else f"find exited with {out.code}"
        usage = replace(usage, error=f"the workspace could not be measured ({why})")
    return Snapshot(usage, sizes)


async def _first_bytes(stream: asyncio.StreamReader, keep: int) -> bytes:
    kept = b""
    while chunk := await stream.read(1 << 16):
        kept += chunk[: max(0, keep - len(kept))]
    return kept


def _within(usage: Usage, allowed: Usage) -> bool:
    return usage.bytes <= allowed.bytes and usage.entries <= allowed.entries


def _plan(
    entries: list[_Entry], sizes: dict[int, int], after: Usage, allowed: Usage
) -> list[_Undo]:
    """What to undo until the workspace is back within `allowed`: the files the command
    created or grew, newest first; then the directories it created that are left empty,
    deepest first."""
    files: list[_Undo] = []
    dirs: list[_Undo] = []
    for e in entries:
        old = sizes.get(e.inode)
        if old is None:
            (dirs if e.kind == "d" else files).append(_Undo(e, None, e.allocated, 1))
        elif e.kind == "f" and e.size > old:
            files.append(_Undo(e, old, max(0, e.allocated - _blocks(old)), 0))
    files.sort(key=lambda u: (u.entry.mtime, u.freed_bytes), reverse=True)
    dirs.sort(key=lambda u: (u.entry.path.count("/"), u.entry.mtime), reverse=True)
    excess_bytes = after.bytes - allowed.bytes
    excess_entries = after.entries - allowed.entries
    plan = []
    for undo in files + dirs:
        if excess_bytes <= 0 and excess_entries <= 0:
            break
        plan.append(undo)
        excess_bytes -= undo.freed_bytes
        excess_entries -= undo.freed_entries
    return plan


def _apply(root: Path, plan: list[_Undo]) -> tuple[list[str], list[str]]:
    """Run in a thread, after the command's processes are gone."""
    from bot.sandbox.safe_fs import WorkspaceFS

    fs = WorkspaceFS(root, None, 0)
    done, failed = [], []
    for undo in plan:
        entry = undo.entry
        parts = entry.path.split("/")
        try:
            if undo.cut_to is None:
                changed = fs.remove_entry(parts, entry.inode)
                what = f"removed {entry.path} (new, {_size(undo.freed_bytes)})"
            else:
                changed = fs.cut_back(parts, entry.inode, undo.cut_to)
                what = f"cut {entry.path} back to {_size(undo.cut_to)}"
        except (ToolError, OSError) as exc:
            failed.append(f"{entry.path} ({exc})")
            continue
        if changed:
            done.append(what)
    return done, failed


def _listed(items: list[str], most: int = 5) -> str:
    shown = ", ".join(items[:most])
    return f"{shown} and {len(items) - most} more" if len(items) > most else shown


def _blocks(size: int) -> int:
    return -(-size // 4096) * 4096


def _shown(usage: Usage) -> str:
    return f"{_size(usage.bytes)} in {usage.entries} entries"


def _size(n: int) -> str:
    value = float(n)
    for unit in ("B", "KiB", "MiB"):
        if value < 1024:
            return f"{value:.1f}".removesuffix(".0") + f" {unit}"
        value /= 1024
    return f"{value:.1f}".removesuffix(".0") + " GiB"
