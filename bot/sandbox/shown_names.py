"""File names a command made, as the file tools list them: one line of text each, that
the store and a provider can take and that no other name reads like."""

from __future__ import annotations

import os
import unicodedata

#: characters that reorder or hide text around them (a name could show as another)
_BIDI_CONTROLS = frozenset(
    "\u061c\u200e\u200f\u202a\u202b\u202c\u202d\u202e\u2066\u2067\u2068\u2069"
)


def shown_name(name: str) -> str:
    """A name a command made, as one line of text the store and a provider can take. A name
    of plain text is shown as it is (any script, emoji, U+202F); one holding bytes that are
    not UTF-8, control characters (a newline that would fake another entry), line separators
    or bidi controls is shown quoted, escaped as in Python (`"bad\\xffname"`), so it never
    reads like another name, a name written with a backslash and `xff` included."""
    text = os.fsencode(name).decode("utf-8", "surrogateescape")
    if not text.startswith('"') and not any(map(_escaped, text)):
        return text
    shown = "".join(_escape(c) for c in text)
    return f'"{shown}"'


def _escaped(c: str) -> bool:
    return unicodedata.category(c) in ("Cc", "Cs", "Zl", "Zp") or c in _BIDI_CONTROLS


def _escape(c: str) -> str:
    if c in '"\\':
        return "\\" + c
    if "\udc80" <= c <= "\udcff":  # a byte that is not UTF-8, kept by surrogateescape
        return f"\\x{ord(c) - 0xDC00:02x}"
    return repr(c)[1:-1] if _escaped(c) else c
