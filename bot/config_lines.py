"""Where config.toml sets each key: the line a validation error points at.

tomllib keeps no positions, so the file's lines are read once more, only when an error is
reported: table headers (`[a.b]`, `[[a.b]]`, counted per array) and `key =` lines, with the
lines inside a multi-line string or array skipped. What this cannot place (a key inside an
inline table, a key continued over lines) falls back to the nearest enclosing table or key
that it can.
"""

from __future__ import annotations

import re
from collections.abc import Callable

#: a dotted key: bare, "quoted" or 'literal' parts joined by dots
_DOTTED_KEY = (
    r"""(?:[A-Za-z0-9_-]+|"[^"]*"|'[^']*')(?:\s*\.\s*(?:[A-Za-z0-9_-]+|"[^"]*"|'[^']*'))*"""
)
_HEADER = re.compile(r"\s*(\[\[?)\s*([^\[\]]+?)\s*\]\]?\s*(#.*)?$")
_ASSIGNMENT = re.compile(rf"\s*({_DOTTED_KEY})\s*=")
_PART = re.compile(r"""[A-Za-z0-9_-]+|"([^"]*)"|'([^']*)'""")


def _parts(dotted: str) -> list[str]:
    return [m.group(1) or m.group(2) or m.group(0) for m in _PART.finditer(dotted)]


def _string_end(line: str, start: int, quotes: str) -> int:
    """Where the string that `quotes` opened before `start` ends on this line (just past its
    closing quotes), else -1. In a "basic" string a backslash escapes the next character."""
    at = start
    while at < len(line):
        if line[at] == "\\" and quotes[0] == '"':
            at += 2
        elif line.startswith(quotes, at):
            end = at + len(quotes)
            # `""""a"""""`: up to two quotes next to the closing three belong to the string
            while len(quotes) == 3 and end < min(len(line), at + 5) and line[end] == quotes[0]:
                end += 1
            return end
        else:
            at += 1
    return -1


def _scan(line: str, start: int, depth: int) -> tuple[int, str | None]:
    """The depth of nested arrays after `line[start:]`, and the quotes of a multi-line
    string the line leaves open."""
    at = start
    while at < len(line) and line[at] != "#":
        char = line[at]
        if char in "\"'":
            quotes = line[at : at + 3] if line.startswith(char * 3, at) else char
            at = _string_end(line, at + len(quotes), quotes)
            if at < 0:  # a one-line string cannot stay open: the file parsed
                return depth, quotes if len(quotes) == 3 else None
            continue
        depth += (char in "[{") - (char in "]}")
        at += 1
    return depth, None


def key_lines(text: str) -> dict[str, int]:
    """Each key path the file sets or opens ("gateway.timezone", "web.search.0"), by line
    number from 1."""
    found: dict[str, int] = {}
    arrays: dict[str, int] = {}
    table: list[str] = []
    depth = 0  # of the arrays a value opened and has not closed: `[a]` in them is no header
    in_string: str | None = None  # the quotes of an open multi-line string
    for number, line in enumerate(text.splitlines(), start=1):
        start = 0
        if in_string is not None:
            start = _string_end(line, 0, in_string)
            if start < 0:
                continue
            in_string = None
        elif depth == 0:
            header = _HEADER.match(line)
            if header:
                table = _parts(header.group(2))
                if header.group(1) == "[[":
                    name = ".".join(table)
                    arrays[name] = arrays.get(name, -1) + 1
                    table = [*table, str(arrays[name])]
                found.setdefault(".".join(table), number)
                continue
            assignment = _ASSIGNMENT.match(line)
            if assignment is None:
                continue
            found.setdefault(".".join([*table, *_parts(assignment.group(1))]), number)
            start = assignment.end()
        depth, in_string = _scan(line, start, depth)
    return found


def line_of(lines: dict[str, int], key_path: str) -> int | None:
    """The line of `key_path`, else of the nearest enclosing key the file names."""
    parts = key_path.split(".")
    while parts:
        if ".".join(parts) in lines:
            return lines[".".join(parts)]
        parts.pop()
    return None


def line_finder(text: str) -> Callable[[str], int | None]:
    """`line_of` for the keys of `text`, whose lines are read at the first call (only when an
    error is reported), then once for every error."""
    lines: dict[str, int] | None = None

    def find(key_path: str) -> int | None:
        nonlocal lines
        if lines is None:
            lines = key_lines(text)
        return line_of(lines, key_path)

    return find
