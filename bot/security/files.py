"""Private files: what Decapod keeps under its home is its user's alone, whatever the umask.

Modes are set explicitly (created with 0600 / 0700, then fchmod/chmod to exactly that) rather
than by a process-wide umask: a umask would also change what the sandbox creates for the
containers it mounts workspaces into, and would not repair a home made earlier under a
permissive umask anyway. SQLite creates a database's -wal and -shm files with the database
file's own mode, so a database created 0600 keeps its companions 0600 too.
"""

from __future__ import annotations

import os
import stat
from collections.abc import Iterable
from pathlib import Path

PRIVATE_FILE = 0o600
PRIVATE_DIR = 0o700
#: group and other permission bits
_SHARED_BITS = 0o077


def private_dirs(path: Path) -> None:
    """Create `path` and any missing parent as 0700 (Path.mkdir(parents=True) gives the
    parents the umask's default instead)."""
    missing: list[Path] = []
    while not path.exists():
        missing.append(path)
        path = path.parent
    for folder in reversed(missing):
        try:
            folder.mkdir(mode=PRIVATE_DIR)
        except FileExistsError:
            continue  # another process made it meanwhile: tighten() is the one to repair it
        os.chmod(folder, PRIVATE_DIR)


def create_private_file(path: Path) -> None:
    """Create `path` empty and 0600 when it does not exist yet; an existing file is left alone."""
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, PRIVATE_FILE)
    except FileExistsError:
        return
    try:
        os.fchmod(fd, PRIVATE_FILE)  # the umask may have taken bits away
    finally:
        os.close(fd)


def tighten(paths: Iterable[Path]) -> list[Path]:
    """Remove group and other permissions from each existing path, in order (symlinks are
    left alone, never followed); returns the paths that had any."""
    fixed: list[Path] = []
    for path in paths:
        mode = _shared_mode(path)
        if mode is not None:
            os.chmod(path, mode & ~_SHARED_BITS)
            fixed.append(path)
    return fixed


def shared_entries(home: Path, extra: Iterable[Path | None] = ()) -> list[Path]:
    """The home, its direct entries and `extra` paths that other users may read, the home
    first: once it is private nobody else can swap an entry for a symlink. Deeper entries are
    covered by their folder: a 0700 folder keeps everything under it private. A symlinked home
    is followed (its target is reported); symlinks inside it are not."""
    home = home.resolve()
    others = [p.parent.resolve() / p.name for p in extra if p is not None]
    candidates = dict.fromkeys([home, *_entries(home), *others])
    return [path for path in candidates if _shared_mode(path) is not None]


def secure_home(home: Path, extra: Iterable[Path | None] = ()) -> list[Path]:
    """Create the home 0700 if missing, then repair the modes shared_entries() finds; returns
    what was repaired."""
    private_dirs(home)
    return tighten(shared_entries(home, extra))


def _entries(home: Path) -> list[Path]:
    try:
        return sorted(home.iterdir())
    except (FileNotFoundError, NotADirectoryError):
        return []


def _shared_mode(path: Path) -> int | None:
    """The permission bits of `path` when other users have any; None when it is private,
    missing, or a symlink."""
    try:
        st = path.lstat()
    except FileNotFoundError:
        return None
    mode = stat.S_IMODE(st.st_mode)
    return mode if mode & _SHARED_BITS and not stat.S_ISLNK(st.st_mode) else None
