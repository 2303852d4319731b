"""`decapod logs`: the gateway's JSON log file (HOME/logs/decapod.log, bot/logging.py), readable.

Reads the current file and, when more lines are asked for, the rotated ones before it; `-f`
then follows the file across rotations.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from collections import deque
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TextIO

LEVELS = ("debug", "info", "warning", "error", "critical")
_FOLLOW_POLL_S = 0.25
_RESERVED = ("ts", "level", "logger", "msg", "exc")


def add_subparsers(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = sub.add_parser("logs", help="show the gateway's log file, readable; -f follows it")
    parser.add_argument("-f", "--follow", action="store_true", help="keep printing new lines")
    parser.add_argument("--level", choices=LEVELS, help="only this level and above")
    parser.add_argument("--session", help="only lines of this session, e.g. telegram:dm:42")
    parser.add_argument("--json", action="store_true", help="print the JSON lines as stored")
    parser.add_argument(
        "-n", "--lines", type=_count, default=50, help="how many lines to show first (0: all)"
    )
    parser.set_defaults(run_command=run)


def _count(text: str) -> int:
    # a negative count showed nothing and exited 0, as if the log were empty
    count = int(text)
    if count < 0:
        raise ValueError(text)
    return count


_count.__name__ = "count"  # argparse names the type in its error: "invalid count value"


@dataclass(frozen=True, slots=True)
class LogFilter:
    min_level: int = 0
    session: str | None = None

    def matches(self, record: dict[str, Any] | None) -> bool:
        if record is None:  # not JSON: shown only when nothing is filtered
            return self.min_level == 0 and self.session is None
        level = str(record.get("level", "info")).lower()
        rank = LEVELS.index(level) if level in LEVELS else LEVELS.index("info")
        if rank < self.min_level:
            return False
        if self.session is not None:
            named = record.get("session") == self.session
            return named or self.session in str(record.get("msg", ""))
        return True


def run(args: argparse.Namespace) -> int:
    from bot.config import load_config

    config = load_config(args.config, args.home)
    path = config.log_file
    if path is None:
        print('decapod: logging to a file is off ([logging] file = "")', file=sys.stderr)
        return 1
    if not path.exists() and not args.follow:
        print(
            f"decapod: no log file at {path} yet: the gateway writes it once `decapod run` "
            "has started",
            file=sys.stderr,
        )
        return 1
    keep = LogFilter(LEVELS.index(args.level) if args.level else 0, args.session)
    out = sys.stdout
    # the current file is read through the handle that then follows it: no line written in
    # between is missed
    handle = _open(path)
    current = handle.read() if handle is not None else ""
    for line in last_lines(path, keep, args.lines, current):
        _emit(line, args.json, out)
    if not args.follow:
        if handle is not None:
            handle.close()
        return 0
    try:
        for line in follow(path, handle):
            if keep.matches(parse(line)):
                _emit(line, args.json, out)
    except KeyboardInterrupt:
        pass
    return 0


def parse(line: str) -> dict[str, Any] | None:
    try:
        record = json.loads(line)
    except ValueError:
        return None
    return record if isinstance(record, dict) else None


def render(record: dict[str, Any]) -> str:
    """One record as `2024-05-01 12:00:00 INFO  decapod.turn: turn session=... outcome=ok`."""
    stamp = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(float(record.get("ts", 0))))
    level = str(record.get("level", "?")).upper()
    parts = [f"{stamp} {level:<7} {record.get('logger', '?')}: {record.get('msg', '')}"]
    for key, value in record.items():
        if key not in _RESERVED:
            text = value if isinstance(value, str) else json.dumps(value)
            parts.append(f"{key}={json.dumps(text) if (' ' in text or not text) else text}")
    line = " ".join(parts)
    if record.get("exc"):
        line += "\n" + str(record["exc"])
    return line


def _emit(line: str, as_json: bool, out: TextIO) -> None:
    record = parse(line)
    out.write((line if as_json or record is None else render(record)) + "\n")
    out.flush()


def generations(path: Path) -> list[Path]:
    """The rotated files (oldest first), then the current one."""
    older = sorted(
        (p for p in path.parent.glob(path.name + ".*") if p.suffix[1:].isdigit()),
        key=lambda p: int(p.suffix[1:]),
        reverse=True,
    )
    return [*older, path]


def last_lines(path: Path, keep: LogFilter, count: int, current: str) -> list[str]:
    """The last `count` matching lines (all when 0): of `current` (the current file's text),
    and of the rotated files before it when more are wanted."""
    found: deque[str] = deque()
    for file in reversed(generations(path)):
        if file == path:
            text = current
        elif file.exists():
            text = file.read_text(encoding="utf-8", errors="replace")
        else:
            continue
        matching = [
            line for line in text.splitlines() if line.strip() and keep.matches(parse(line))
        ]
        found.extendleft(reversed(matching))
        if count and len(found) >= count:
            break
    lines = list(found)
    return lines[-count:] if count else lines


def follow(path: Path, handle: TextIO | None, poll_s: float = _FOLLOW_POLL_S) -> Iterator[str]:
    """New lines of `path` as they are written, from where `handle` stands (None: the file
    does not exist yet). After a rotation the file being read is finished, then the
    generation after it, up to the current file, so lines written while several rotations
    passed are not skipped."""
    partial = ""
    while True:
        chunk = handle.read() if handle is not None else ""
        if chunk:
            partial += chunk
            *complete, partial = partial.split("\n")
            yield from (line for line in complete if line.strip())
            continue
        if not _moved_on(path, handle):
            time.sleep(poll_s)
            continue
        following = path
        if handle is not None:
            partial += handle.read()  # written between the last read and the rotation
            following = _generation_after(path, os.fstat(handle.fileno()))
            handle.close()
        handle = _open(following)


def _open(path: Path) -> TextIO | None:
    try:
        return path.open(encoding="utf-8", errors="replace")
    except FileNotFoundError:
        return None


def _moved_on(path: Path, handle: TextIO | None) -> bool:
    """The file being read is no longer the current one (rotated), or was cut short."""
    try:
        now = path.stat()
    except FileNotFoundError:
        return False
    if handle is None:
        return True
    current = os.fstat(handle.fileno())
    return (now.st_ino, now.st_dev) != (current.st_ino, current.st_dev) or (
        now.st_size < handle.tell()
    )


def _generation_after(path: Path, done: os.stat_result) -> Path:
    """The file written after the one `done` describes; the current file when that one was
    already removed (rotated past the backups kept) or was the current one."""
    files = generations(path)
    for n, file in enumerate(files[:-1]):
        try:
            info = file.stat()
        except FileNotFoundError:
            continue
        if (info.st_ino, info.st_dev) == (done.st_ino, done.st_dev):
            return files[n + 1]
    return path
