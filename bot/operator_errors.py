"""The one line an operator reads for a failure they fix on the machine (a full, read-only
or locked disk, a missing permission, a PostgreSQL server that refuses): `decapod` commands
print it instead of a traceback, and `decapod doctor` shows it."""

from __future__ import annotations

import errno

from bot.errors import DatabaseDamaged, DatabaseTooNew, StorageUnavailable, StoreError

_FIX_HOME = "make it writable, or point --home or DECAPOD_HOME at a folder that is"


#: what a PostgreSQL server's refusal asks of the operator, by StorageUnavailable's reason
_SERVER_REFUSALS = {
    "unreachable": "cannot be reached: check that it runs and the URL, then start again",
    "full": "is out of disk or memory: free some, then start again",
    "busy": "refuses connections or holds a lock too long: retry shortly",
    "failing": "is shutting down or reports I/O errors: check it, then start again",
    "read-only": "accepts no writes (a standby, or set read-only): point the URL at the primary",
}


def _explain_server(exc: StorageUnavailable) -> str:
    said = _SERVER_REFUSALS.get(exc.reason, f"is {exc.reason}: check it, then start again")
    return f"the PostgreSQL server at {exc.path} {said}"


def explain(exc: BaseException) -> str | None:
    """One line for a failure the operator fixes on the machine; None for anything else."""
    if isinstance(exc, StorageUnavailable):
        if "://" in exc.path:  # a server's URL (PostgreSQL), not a file on this machine
            return _explain_server(exc)
        if exc.reason == "full":
            return f"the disk holding {exc.path} is full: free some space, then start again"
        if exc.reason == "busy":
            return f"the database {exc.path} is locked by another process: stop it, then retry"
        if exc.reason == "failing":
            return f"the disk holding {exc.path} reports I/O errors: check it, then start again"
        return f"the database {exc.path} is read-only: {_FIX_HOME}"
    if isinstance(exc, (DatabaseTooNew, DatabaseDamaged)):
        return str(exc)
    if isinstance(exc, StoreError):
        return f"{exc}: is the home folder writable and the disk not full?"
    if not isinstance(exc, OSError):
        return None
    where = exc.filename or "a file"
    if exc.errno == errno.EROFS:
        return f"{where} is on a read-only file system: decapod writes to its home; {_FIX_HOME}"
    if exc.errno in (errno.EACCES, errno.EPERM):
        return f"no permission to write {where}: {_FIX_HOME}"
    if exc.errno in (errno.ENOSPC, errno.EDQUOT):
        return f"no space left on the disk holding {where}: free some space, then start again"
    if exc.errno == errno.ENOTDIR:
        return f"{where}: a part of this path is a file, not a folder; {_FIX_HOME}"
    return None
