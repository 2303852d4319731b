"""Where config.toml sets each key: the line a validation error points at.

tomllib keeps no positions, so the file's lines are read once more, only when an error is
reported: table headers (`[a.b]`, `[[a.b]]`, counted per array) and `key =` lines, with
multi-line strings skipped. What this cannot place (a key inside an inline table, a key
continued over lines) falls back to the nearest enclosing table or key that it can.
"""

from __future__ import annotations

import re
from collections.abc import Callable

#: a dotted key: bare, "quoted" or 'literal' parts joined by dots
_DOTTED_KEY = (
    r"""(?:[A-Za-z0-9_-]+|"[^"]*"|'[^']*')(?:\s*\.\s*(?:[A-Za-z0-9_-]+|"[^"]*"|'[^']*'))*"""
)
_HEADER = re.compile(r"\s*(\[\[?)\s*([^\[\]]+?)\s*\]\]?\s*(#.*)?$")
_HEADER_NAME = re.compile(_DOTTED_KEY)
_ASSIGNMENT = re.compile(rf"\s*({_DOTTED_KEY})\s*=")
_PART = re.compile(r"""[A-Za-z0-9_-]+|"([^"]*)"|'([^']*)'""")


def _parts(dotted: str) -> list[str]:
    return [m.group(1) or m.group(2) or m.group(0) for m in _PART.finditer(dotted)]


def key_lines(text: str) -> dict[str, int]:
    """Each key path the file sets or opens ("gateway.timezone", "web.search.0"), by line
    number from 1."""
    found: dict[str, int] = {}
    arrays: dict[str, int] = {}
    table: list[str] = []
    in_string: str | None = None  # the quotes of an open multi-line string
    for number, line in enumerate(text.splitlines(), start=1):
        if in_string is not None:
            if in_string in line:  # the first closes it: the string cannot hold its quotes
                in_string = None
            continue
        header = _HEADER.match(line)
        # a line of a multi-line array (`  ["a", "b"]`) looks like a header but names no key
        if header and _HEADER_NAME.fullmatch(header.group(2)):
            table = _parts(header.group(2))
            if header.group(1) == "[[":
                name = ".".join(table)
                arrays[name] = arrays.get(name, -1) + 1
                table = [*table, str(arrays[name])]
            found.setdefault(".".join(table), number)
            continue
        assignment = _ASSIGNMENT.match(line)
        if assignment:
            found.setdefault(".".join([*table, *_parts(assignment.group(1))]), number)
            # only a value that starts with the quotes and does not close them on its line
            # opens a multi-line string: not quotes in a comment or inside a one-line string
            value = line[assignment.end() :].lstrip()
            for quotes in ('"""', "'''"):
                if value.startswith(quotes) and quotes not in value[3:]:
                    in_string = quotes
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
