"""Layer 1 of the redactor: the secrets the process holds, matched exactly.

Each registered value is matched together with its variants: URL-encoded, hex in both cases,
and standard and URL-safe base64 at all three byte alignments (so the secret is caught inside
a larger encoded blob, whatever its offset). The variants are searched in the text with every
whitespace run that holds a line break taken out, so a variant is found whole or cut by line
breaks; a cut one counts when it has at least MIN_SPLIT_LEN characters. That covers a value
wrapped by a terminal or an editor, base64 or hex dumps wrapped over lines (``base64``
without ``-w0``, ``xxd -p``), and a registered value of several lines however it is wrapped.

The scan keeps the frontier contract of bot/security/patterns.py.
"""

from __future__ import annotations

import base64
import bisect
import os
import re
import threading
from collections.abc import Iterable
from urllib.parse import quote, quote_plus

from bot.security.patterns import RANK_KNOWN, Span

MIN_SECRET_LEN = 8
#: a variant at least this long is also found with line breaks inside it
MIN_SPLIT_LEN = 12

# Characters from most to least common in chat, code and logs. Each needle is anchored on its
# rarest character, so the combined regex skips most of the text without trying any needle.
_COMMON_FIRST = (
    " etaoinsrhldcumfpgwybvk,.-_x'\"\n0123456789TAISOCMWBNPHDRLFEGUVYJKQXZjqz:/=()"
    ";!?+*&%$#@~^|\\{}<>[]`\t"
)
_COMMONNESS = {char: rank for rank, char in enumerate(_COMMON_FIRST)}
#: characters after a needle's anchor that the search pattern holds
_PREFILTER = 6


def variants(value: str) -> set[str]:
    """The forms in which `value` is matched: raw, URL-encoded, hex, and the base64 characters
    that depend only on `value` when it is encoded at each of the three byte alignments."""
    raw = value.encode("utf-8")
    forms = {value, quote(value, safe=""), quote_plus(value, safe=""), raw.hex(), raw.hex().upper()}
    for shift in range(3):
        first = -(-8 * shift // 6)
        last = 8 * (shift + len(raw)) // 6
        for encode in (base64.b64encode, base64.urlsafe_b64encode):
            forms.add(encode(bytes(shift) + raw)[first:last].decode("ascii"))
    return {form for form in forms if len(form) >= MIN_SECRET_LEN}


def _join_lines(text: str) -> tuple[str, list[str], list[str]]:
    """`text` without the whitespace runs that hold a line break; also its lines, and what
    is kept of each."""
    lines = text.split("\n")
    kept = list(map(str.strip, lines))
    # Whitespace at the very start or end of the text is not next to a line break.
    if kept[0]:
        kept[0] = lines[0].rstrip()
    if len(lines) > 1 and kept[-1]:
        kept[-1] = lines[-1].lstrip()
    return "".join(kept), lines, kept


class _Joined:
    """`source[start:end]` with every whitespace run that holds a line break taken out, and
    the way back from a position in the joined text to one in `source`."""

    def __init__(self, source: str, start: int, end: int) -> None:
        self._start = start
        region = source if start == 0 and end == len(source) else source[start:end]
        self._lines: tuple[list[str], list[str]] | None = None
        if "\n" in region:
            self.text, *lines = _join_lines(region)
            self._lines = (lines[0], lines[1])
        else:
            self.text = region
        self._joined_at: list[int] = []  # where each line's kept part starts in the joined text
        self._source_at: list[int] = []  # ... and in the source

    def original(self, at: int) -> int:
        """Where joined character `at` is in the source (for `at == len(text)`: where the
        next character would be)."""
        if self._lines is None:
            return self._start + at
        if not self._joined_at:
            joined, source = 0, self._start
            for number, (line, kept) in enumerate(zip(*self._lines, strict=True)):
                # The first line keeps its leading whitespace; a line with nothing kept
                # starts (empty) where it ends.
                lead = len(line) - len(line.lstrip()) if number else 0
                self._joined_at.append(joined)
                self._source_at.append(source + (lead if kept else len(line)))
                joined += len(kept)
                source += len(line) + 1
        index = bisect.bisect_right(self._joined_at, at) - 1
        return self._source_at[index] + at - self._joined_at[index]


class NeedleIndex:
    """All variants of all registered secrets, found in one regex pass."""

    def __init__(self, needles: Iterable[str]) -> None:
        self.longest = 0
        self._by_anchor: dict[str, list[tuple[int, str]]] = {}
        for needle in sorted(set(needles), key=len, reverse=True):
            anchor = max(range(len(needle)), key=lambda i: _COMMONNESS.get(needle[i], 999))
            self._by_anchor.setdefault(needle[anchor], []).append((anchor, needle))
            self.longest = max(self.longest, len(needle))
        branches = []
        for char, entries in self._by_anchor.items():
            # The pattern only finds where a needle may be (its anchor and the few characters
            # after it); `_occurrences` checks each whole needle there. A pattern of whole
            # needles finds nothing more and takes several ms to compile at every start.
            alternatives = dict.fromkeys(
                re.escape(needle[offset + 1 : offset + 1 + _PREFILTER])
                for offset, needle in entries
            )
            branches.append(re.escape(char) + "(?:" + "|".join(alternatives) + ")")
        self._pattern = re.compile("|".join(branches)) if branches else None
        # No needle can contain a character that none of them has: a needle starting before
        # the text's trailing run of such characters is already whole, and can be judged.
        self._chars = "".join(
            sorted({c for entries in self._by_anchor.values() for _, n in entries for c in n})
        )

    def scan(self, text: str, start: int, final: bool, out: list[Span]) -> int:
        """Search the text with its line-break runs taken out: a needle found whole there is
        in the text whole, or cut by line breaks."""
        if self._pattern is None:
            return len(text)
        end = len(text)
        if not final:
            # Trailing whitespace may turn out to hold a line break inside a needle.
            while end > start and text[end - 1].isspace():
                end -= 1
        joined = _Joined(text, start, end)
        limit = len(joined.text)
        if not final:
            limit = max(limit - self.longest + 1, len(joined.text.rstrip(self._chars)))
        for begin, stop in self._occurrences(joined.text, limit):
            first, last = joined.original(begin), joined.original(stop - 1) + 1
            if stop - begin >= MIN_SPLIT_LEN or last - first == stop - begin:
                out.append((first, last, RANK_KNOWN, "known_secret"))
        return joined.original(limit) if not final else len(text)

    def _occurrences(self, text: str, limit: int) -> list[tuple[int, int]]:
        # Every occurrence counts, overlapping ones too, so a finding never depends on
        # where an earlier match happened to end.
        assert self._pattern is not None
        found = []
        search = self._pattern.search
        match = search(text)
        while match is not None:
            at = match.start()
            for offset, needle in self._by_anchor[text[at]]:
                begin = at - offset
                if 0 <= begin < limit and text.startswith(needle, begin):
                    found.append((begin, begin + len(needle)))
            match = search(text, at + 1)
        return found


class SecretRegistry:
    """Every secret value the process holds. Thread-safe; the matcher is rebuilt lazily."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._labels: dict[str, str] = {}
        self._index: NeedleIndex | None = NeedleIndex(())

    def add(self, value: str, label: str = "secret") -> None:
        """Register `value` (and its stripped form); values under 8 characters are ignored."""
        with self._lock:
            for candidate in {value, value.strip()}:
                if len(candidate) >= MIN_SECRET_LEN and candidate not in self._labels:
                    self._labels[candidate] = label
                    self._index = None

    def add_env(self, names: Iterable[str]) -> None:
        for name in names:
            value = os.environ.get(name)
            if value:
                self.add(value, label=name)

    def labels(self) -> list[str]:
        """The labels of the registered secrets, for diagnostics; never their values."""
        with self._lock:
            return sorted(set(self._labels.values()))

    def __len__(self) -> int:
        return len(self._labels)

    def index(self) -> NeedleIndex:
        index = self._index
        if index is None:
            with self._lock:
                index = self._index
                if index is None:
                    index = NeedleIndex(
                        _join_lines(needle)[0]
                        for value in self._labels
                        for needle in variants(value)
                        if len(_join_lines(needle)[0]) >= MIN_SECRET_LEN
                    )
                    self._index = index
        return index
