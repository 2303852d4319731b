"""Progress of long commands (reindex, pull, migrate, export), on stderr so stdout keeps the
result: a bar with counts and an ETA on a terminal, a plain line every few seconds elsewhere
(a log file or a CI job must not fill with carriage returns).

Imports nothing beyond the standard library, so a command can show progress before its heavy
work has loaded.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Callable
from types import TracebackType
from typing import Protocol, TextIO

_BAR_WIDTH = 24
#: a terminal is redrawn at most this often (seconds)
_REDRAW_S = 0.1


def human_count(value: float, unit: str) -> str:
    """`1.5 MB` for bytes, `40 chunks` for anything else."""
    if unit != "B":
        return f"{int(value)} {unit}".rstrip()
    size = float(value)
    for prefix in ("B", "KB", "MB", "GB"):
        if size < 1024 or prefix == "GB":
            return f"{size:.0f} {prefix}" if prefix == "B" else f"{size:.1f} {prefix}"
        size /= 1024
    raise AssertionError("unreachable")


def human_seconds(seconds: float) -> str:
    seconds = max(0, round(seconds))
    if seconds < 60:
        return f"{seconds}s"
    minutes, seconds = divmod(seconds, 60)
    if minutes < 60:
        return f"{minutes}m{seconds:02d}s"
    hours, minutes = divmod(minutes, 60)
    return f"{hours}h{minutes:02d}m"


class ProgressSink(Protocol):
    """What long work reports to: its size once, then each step done. The work does not
    know how (or whether) it is shown."""

    def begin(self, total: int) -> None: ...

    def advance(self, n: int = 1) -> None: ...


class Progress:
    """`with Progress("reindex", unit="chunks") as p: work(progress=p)`; the work calls
    `begin(total)`, then `advance(n)`. `done` and `total` are what a command reports when it
    is interrupted ("40 of 100 chunks")."""

    def __init__(
        self,
        label: str,
        total: int | None = None,
        *,
        unit: str = "",
        stream: TextIO | None = None,
        every_s: float = 5.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.label = label
        self.total = total
        self.unit = unit
        self.stream = stream if stream is not None else sys.stderr
        self.every_s = every_s
        self.done = 0
        self._clock = clock
        self._started = clock()
        self._shown_at: float | None = None
        self._closed = False
        isatty = getattr(self.stream, "isatty", None)
        self.on_terminal = bool(isatty and isatty())

    def __enter__(self) -> Progress:
        if self.total is not None:
            self._show(force=True)
        return self

    def __exit__(
        self, et: type[BaseException] | None, e: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close(finished=et is None)

    def begin(self, total: int) -> None:
        self.total = total
        self._started = self._clock()
        self._show(force=True)

    def advance(self, n: int = 1) -> None:
        self.done += n
        self._show()

    def close(self, *, finished: bool = True) -> None:
        """End the bar's line. A finished run says how long it took; an interrupted one leaves
        the last counts on screen for the command's own message to follow."""
        if self._closed:
            return
        self._closed = True
        if self.total is None and not self.done:
            return  # nothing was begun: nothing to finish
        if finished:
            took = human_seconds(self._clock() - self._started)
            line = f"{self.label}: {self._counts()} in {took}"
            self._write(f"\r{line}\x1b[K\n" if self.on_terminal else line + "\n")
        elif self.on_terminal:
            self._write("\n")

    # rendering ---------------------------------------------------------------------------
    def _counts(self) -> str:
        if self.total is None:
            return human_count(self.done, self.unit)
        if self.unit == "B":
            return f"{human_count(self.done, 'B')}/{human_count(self.total, 'B')}"
        return f"{self.done}/{human_count(self.total, self.unit)}"

    def _eta(self) -> str | None:
        if not self.total or self.done <= 0 or self.done >= self.total:
            return None
        elapsed = self._clock() - self._started
        return human_seconds(elapsed / self.done * (self.total - self.done))

    def _show(self, *, force: bool = False) -> None:
        now = self._clock()
        interval = _REDRAW_S if self.on_terminal else self.every_s
        if not force and self._shown_at is not None and now - self._shown_at < interval:
            return
        self._shown_at = now
        eta = self._eta()
        if self.on_terminal:
            self._write(f"\r{self._bar()} {self._counts()}" + (f"  ETA {eta}" if eta else ""))
            self._write("\x1b[K")
            return
        line = f"{self.label}: {self._counts()}"
        if self.total:
            line += f" ({100 * self.done // self.total}%)"
        if eta:
            line += f", about {eta} left"
        self._write(line + "\n")

    def _bar(self) -> str:
        if not self.total:
            return self.label
        filled = min(_BAR_WIDTH, _BAR_WIDTH * self.done // self.total)
        return f"{self.label} [{'#' * filled}{'.' * (_BAR_WIDTH - filled)}]"

    def _write(self, text: str) -> None:
        self.stream.write(text)
        self.stream.flush()


def interrupted(what: str, resume: str, stream: TextIO | None = None) -> int:
    """The one message of a long command stopped by Ctrl-C: what state it left, and how to
    carry on. Returns the conventional exit code of a SIGINT."""
    print(f"interrupted: {what}; {resume}", file=stream if stream is not None else sys.stderr)
    return 130
