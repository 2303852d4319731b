"""Named crash points for tests: `DECAPOD_FAULT=name` makes `fault_point(name)` kill -9 the process.

Only the test harness sets the variable; in production every call is a dictionary lookup.
"""

from __future__ import annotations

import os
import signal

_ARMED = frozenset(filter(None, os.environ.get("DECAPOD_FAULT", "").split(",")))


def fault_point(name: str) -> None:
    if name in _ARMED:
        os.kill(os.getpid(), signal.SIGKILL)
