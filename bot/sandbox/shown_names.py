"""File names a command made, as the file tools list them: one line of text each, that
the store and a provider can take and that no other name reads like."""

from __future__ import annotations

import os
import unicodedata

#: joiners that belong inside emoji sequences and some scripts (between two such letters)
_JOINERS = frozenset("\u200c\u200d")
#: what separates a symlink from its target in a listing
ARROW = " -> "


def shown_name(name: str) -> str:
    """A name a command made, as one line of text the store and a provider can take. A name
    of plain text is shown as it is (any script, emoji, U+202F). One that could read as
    another is shown as a JSON string literal (`"bad\\udcffname"`), which gives the exact
    name back as a path argument: it holds bytes that are not UTF-8, control or invisible
    format characters, line separators, bidi controls, whitespace at either end of a part
    (a path loses it nowhere, but a reader does), the arrow a symlink is listed with, or
    starts with `"`."""
    text = os.fsencode(name).decode("utf-8", "surrogateescape")
    if text.startswith('"') or ARROW in text or _loose_ends(text) or _hides_text(text):
        return json_quoted(text)
    return text


def json_quoted(text: str) -> str:
    """`text` as a JSON string literal that shows every character a reader could miss:
    `json.loads` gives `text` back, a byte that is not UTF-8 (U+DC80-U+DCFF, as
    surrogateescape keeps it) included, and a file tool opens that same name."""
    return '"' + "".join(_escape(c) for c in text) + '"'


def _loose_ends(text: str) -> bool:
    return any(part[:1].isspace() or part[-1:].isspace() for part in text.split("/"))


def _hides_text(text: str) -> bool:
    return any(_hidden(c) and not _joins(text, i) for i, c in enumerate(text))


def _joins(text: str, i: int) -> bool:
    """A joiner between two letters that are not ASCII: an emoji sequence, or a script
    that joins letters."""
    inside = 0 < i < len(text) - 1 and text[i] in _JOINERS
    return inside and not text[i - 1].isascii() and not text[i + 1].isascii()


def _hidden(c: str) -> bool:
    """Control and format characters (bidi controls, U+200B, U+FEFF, U+00AD among them),
    surrogates, line separators: each hides or reorders text, or fakes another line."""
    return unicodedata.category(c) in ("Cc", "Cf", "Cs", "Zl", "Zp")


def _escape(c: str) -> str:
    if c in '"\\':
        return "\\" + c
    if not (_hidden(c) or (c.isspace() and c != " ")):
        return c
    code = ord(c)
    if code > 0xFFFF:  # JSON spells it as a UTF-16 pair
        code -= 0x10000
        return f"\\u{0xD800 + (code >> 10):04x}\\u{0xDC00 + (code & 0x3FF):04x}"
    return f"\\u{code:04x}"
