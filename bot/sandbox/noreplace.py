"""Moving a file into place only where nothing is: Linux's renameat2 with RENAME_NOREPLACE,
which Python's os module does not offer. The file is written in full under a temporary name
first, so that a reader never sees it half written, and no writer takes a name another has
taken meanwhile."""

from __future__ import annotations

import contextlib
import errno
import os
import sys
from collections.abc import Callable
from functools import cache

_RENAME_NOREPLACE = 1
#: the errors of a kernel, C library or filesystem without the flag
_UNSUPPORTED = frozenset({errno.ENOSYS, errno.EINVAL, errno.ENOTSUP, errno.EOPNOTSUPP})


@cache
def _renameat2() -> Callable[..., int] | None:
    if not sys.platform.startswith("linux"):
        return None
    # ctypes only here: it is not needed at start, only when a workspace has no hard links
    import ctypes

    libc = ctypes.CDLL(None, use_errno=True)
    call: Callable[..., int] | None = getattr(libc, "renameat2", None)
    return call


def rename_noreplace(dir_fd: int, src: str, dst: str) -> bool | None:
    """Rename `src` to `dst` in the directory `dir_fd` unless anything is at `dst` (a
    symlink included, not followed): True when moved, False when something is there, None
    when this system cannot do it (nothing was changed)."""
    call = _renameat2()
    if call is None:
        return None
    if call(dir_fd, os.fsencode(src), dir_fd, os.fsencode(dst), _RENAME_NOREPLACE) == 0:
        return True
    import ctypes

    err = ctypes.get_errno()
    if err == errno.EEXIST:
        return False
    if err in _UNSUPPORTED:
        return None
    raise OSError(err, os.strerror(err), dst)


def remove_placeholder(parent: int, name: str, placeholder: int) -> None:
    """Remove the empty file that took `name`, if it is still there: another writer may
    have put its own file there since. Failing to must not hide why the move failed."""
    with contextlib.suppress(OSError):
        ours, there = os.fstat(placeholder), os.stat(name, dir_fd=parent, follow_symlinks=False)
        if (there.st_dev, there.st_ino) == (ours.st_dev, ours.st_ino):
            os.unlink(name, dir_fd=parent)
