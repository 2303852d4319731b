"""Layers 2 and 3 of the redactor inside runs of token characters: the catalog of token
shapes, base64 that decodes to a secret, and the entropy backstop.

Each finding here lies inside one *piece*: a maximal run of token characters, cut every PIECE
characters counted from the start of the run (see bot/security/patterns.py for the frontier
contract). Inside a piece, a run of base64 or base64url characters (DECODE_MIN or more) that
decodes to printable ASCII is judged by what it decodes to: when the catalog, a ``key =
value`` assignment, a ``Bearer`` value, a URL password or a PEM private key is found in it, the
whole run is redacted as ``base64_<kind>``. A run of 24 or more characters is also judged by
its own entropy, whatever it decodes to.
"""

from __future__ import annotations

import binascii
import bisect
import itertools
import math
import re
import string
from collections import Counter
from typing import Final

from bot.security.patterns import (
    CONTEXT,
    NEAR,
    PIECE,
    RANK_ENTROPY,
    RANK_PATTERN,
    TOKEN_CHARS,
    Span,
    scan_pem,
    scan_url_passwords,
    scan_values,
)

ENTROPY_LIMIT: Final = 4.5
#: base64 runs at least this long (12 bytes) are decoded, and judged by what they hold
DECODE_MIN: Final = 16

# bytes.translate tables: characters of the class become b"a", everything else b" "
_TOKEN_MASK = bytes(ord("a") if chr(code) in TOKEN_CHARS else ord(" ") for code in range(256))
_CANDIDATE_CHARS = frozenset(string.ascii_letters + string.digits + "+/_-")
_CANDIDATE_MASK = bytes(
    ord("a") if chr(code) in _CANDIDATE_CHARS else ord(" ") for code in range(256)
)
_CANDIDATE_MIN = 24
_CANDIDATE_SEED = b"a" * DECODE_MIN
# Base64 of ASCII: the first character of every group of four encodes the top six bits of a
# byte below 0x80, so it is one of these. Checking it costs far less than decoding.
_GROUP_FIRST = string.ascii_uppercase + "abcdef"
_TO_STANDARD = str.maketrans("-_", "+/")
_PRINTABLE = bytes(range(32, 127)) + b"\t\n\r"
_DECODED_GAP = "\n" * CONTEXT
# No catalog pattern matches fewer characters than this (xoxb- plus ten).
_MIN_RUN = 15
_RUN_SEED = b"a" * _MIN_RUN

# (kind, anchor characters, literal before the anchor, characters that may not come before
# the token, the rest of the pattern). The anchor is a rarely used character of the token.
_CATALOG_RULES = (
    ("anthropic_key", "k", "s", "A-Za-z0-9_-", r"-ant-[A-Za-z0-9_-]{20,}"),
    (
        "openai_key",
        "k",
        "s",
        "A-Za-z0-9_-",
        r"-(?:proj-|svcacct-|admin-)?(?=[A-Za-z0-9_-]*[0-9])(?=[A-Za-z0-9_-]*[A-Z])"
        r"(?=[A-Za-z0-9_-]*[a-z])[A-Za-z0-9_-]{20,}",
    ),
    ("slack_token", "x", "", "A-Za-z0-9", r"(?:ox[abposr]|app)-[A-Za-z0-9-]{10,}"),
    (
        "github_token",
        "g",
        "",
        "A-Za-z0-9_",
        r"(?:h[pousr]_[A-Za-z0-9]{36,}|ithub_pat_[A-Za-z0-9_]{22,})",
    ),
    ("aws_access_key", "A", "", "A-Za-z0-9", r"(?:KIA|SIA)[0-9A-Z]{16}(?![A-Za-z0-9])"),
    ("google_api_key", "A", "", "A-Za-z0-9_-", r"Iza[0-9A-Za-z_-]{35}(?![A-Za-z0-9_-])"),
    (
        "jwt",
        "J",
        "ey",
        "A-Za-z0-9_-",
        r"[A-Za-z0-9_-]{8,}\.eyJ[A-Za-z0-9_-]{8,}\.[A-Za-z0-9_-]{8,}",
    ),
    (
        "telegram_token",
        string.digits,
        "",
        "0-9",
        r"[0-9]{7,9}:[A-Za-z0-9_-]{35}(?![A-Za-z0-9_-])",
    ),
    (
        "discord_token",
        "MNO",
        "",
        "A-Za-z0-9_-",
        r"[A-Za-z0-9_-]{23,25}\.[A-Za-z0-9_-]{6}\.[A-Za-z0-9_-]{27,}",
    ),
)


def _compile_catalog() -> tuple[re.Pattern[str], dict[int, tuple[str, int]]]:
    """One regex whose every branch starts with a literal character, so the engine skips
    any position that cannot hold an anchor without trying the branches. An empty group at
    the end of each branch tells which rule matched and how far before the anchor the token
    starts."""
    branches: list[str] = []
    rules: dict[int, tuple[str, int]] = {}
    for kind, anchors, lead, not_before, rest in _CATALOG_RULES:
        for anchor in anchors:
            head = re.escape(lead + anchor)
            behind = f"(?<=(?<![{not_before}]){head})"
            branches.append(f"{re.escape(anchor)}{behind}(?:{rest})()")
            rules[len(branches)] = (kind, len(lead))
    return re.compile("|".join(branches)), rules


_CATALOG, _CATALOG_RULE_OF_GROUP = _compile_catalog()
_AWS_SECRET = re.compile(r"[A-Za-z0-9/+]{40}")
_AWS_WORD = re.compile(r"[Aa][Ww][Ss]|AKIA|ASIA")
_HEX_OR_UUID = re.compile(r"[0-9a-fA-F]+|[0-9a-fA-F]{8}(?:-[0-9a-fA-F]{4}){3}-[0-9a-fA-F]{12}")
_SECRET_WORD = re.compile(
    r"(?<![a-z])(?:api[_-]?key|key|token|secret|passw(?:or)?d|passphrase|pwd|credentials?"
    r"|auth(?:orization)?|bearer|signature)(?![a-z])",
    re.IGNORECASE | re.ASCII,
)
_DIGIT = re.compile(r"[0-9]")


def shannon_entropy(value: str) -> float:
    """Bits per character of `value`'s own character distribution."""
    size = len(value)
    return -sum(count / size * math.log2(count / size) for count in Counter(value).values())


def _mixes_classes(value: str) -> bool:
    lower, upper = value != value.upper(), value != value.lower()
    return lower + upper + (_DIGIT.search(value) is not None) >= 2


def _near(word: re.Pattern[str], text: str, at: int) -> bool:
    return word.search(text, max(0, at - NEAR), at) is not None


def _decoded(text: str, begin: int, end: int) -> str | None:
    """The text that `text[begin:end]` encodes, when it is base64 of printable ASCII."""
    if text[begin:end:4].strip(_GROUP_FIRST):
        return None
    body = text[begin:end].rstrip("=")
    body = body[: len(body) - (len(body) % 4 == 1)].translate(_TO_STANDARD)
    try:
        raw = binascii.a2b_base64(body + "=" * (-len(body) % 4))
    except binascii.Error:  # pragma: no cover - every character is in the alphabet
        return None
    return None if raw.translate(None, _PRINTABLE) else raw.decode("ascii")


def _secrets_in(texts: list[str]) -> list[str | None]:
    """The kind of the first secret in each text, if any. One scan for all of them: the gap
    between two texts is wider than any rule looks back, and a finding belongs to the text
    it starts in. The catalog runs without the entropy backstop: an encoded run is judged by
    its own entropy."""
    joined = _DECODED_GAP.join(texts)
    starts = list(itertools.accumulate((len(t) + len(_DECODED_GAP) for t in texts), initial=0))
    latin = joined.encode("ascii")
    out: list[Span] = []
    scan_runs(joined, latin, 0, True, False, out, decode=False)
    scan_values(joined, latin, 0, True, out)
    scan_pem(joined, 0, True, out)
    scan_url_passwords(joined, 0, True, out)
    kinds: list[str | None] = [None] * len(texts)
    for begin, _end, _rank, kind in sorted(out):
        index = bisect.bisect_right(starts, begin) - 1
        if kinds[index] is None:
            kinds[index] = kind
    return kinds


def _judge_candidate(text: str, at: int, value: str, entropy: bool) -> tuple[int, str] | None:
    if len(value) == 40 and _AWS_SECRET.fullmatch(value) and _near(_AWS_WORD, text, at):
        return RANK_PATTERN, "aws_secret_key"
    if not entropy:
        return None
    if _HEX_OR_UUID.fullmatch(value):
        # Commit hashes, digests and ids are everywhere; only a keyword makes them secrets.
        return (RANK_ENTROPY, "high-entropy") if _near(_SECRET_WORD, text, at) else None
    if _mixes_classes(value) and shannon_entropy(value) >= ENTROPY_LIMIT:
        return RANK_ENTROPY, "high-entropy"
    return None


def _pieces(masked: bytes, start: int, limit: int) -> list[tuple[int, int]]:
    """Pieces of token runs in [start, limit) long enough for a catalog pattern."""
    found = []
    at = masked.find(_RUN_SEED, start, limit)
    while at != -1:
        end = masked.find(b" ", at, limit)
        end = limit if end == -1 else end
        for lo in range(at, end, PIECE):
            hi = min(lo + PIECE, end)
            if hi - lo >= _MIN_RUN:
                found.append((lo, hi))
        at = masked.find(_RUN_SEED, end, limit)
    return found


def _candidates(text: str, classes: bytes, lo: int, hi: int) -> list[tuple[int, int]]:
    """Maximal runs of base64/base64url characters, DECODE_MIN or more, with up to two
    "=" of padding, inside one piece (the shorter ones only if they may be base64 of text)."""
    found = []
    at = classes.find(_CANDIDATE_SEED, lo, hi)
    while at != -1:
        end = classes.find(b" ", at, hi)
        end = hi if end == -1 else end
        padded = end
        while padded < min(hi, end + 2) and text[padded] == "=":
            padded += 1
        # Too short for the entropy backstop: worth judging only if it may encode text.
        if padded - at >= _CANDIDATE_MIN or not text[at:padded:4].strip(_GROUP_FIRST):
            found.append((at, padded))
        at = classes.find(_CANDIDATE_SEED, end, hi)
    return found


def scan_runs(
    text: str,
    latin: bytes,
    start: int,
    final: bool,
    entropy: bool,
    out: list[Span],
    *,
    decode: bool = True,
) -> int:
    """Token patterns, decoded base64 (unless `decode` is false) and the entropy backstop,
    piece by piece.

    `latin` is `text` encoded one byte per character; `start` must be the start of a piece or
    a position outside any token run."""
    masked = latin.translate(_TOKEN_MASK)
    limit = len(text)
    if not final and masked.endswith(b"a"):
        run_start = max(len(masked.rstrip(b"a")), start)
        limit -= (limit - run_start) % PIECE
    pieces = _pieces(masked, start, limit)
    if not pieces:
        return limit
    # One regex pass over all pieces joined by a non-token character costs far less than a
    # pass per piece; no pattern can match across the separator.
    joined_starts = []
    at = 0
    for lo, hi in pieces:
        joined_starts.append(at)
        at += hi - lo + 1
    token_starts: list[int] = []
    token_ends: list[int] = []
    for match in _CATALOG.finditer(" ".join(text[lo:hi] for lo, hi in pieces)):
        index = bisect.bisect_right(joined_starts, match.start()) - 1
        shift = pieces[index][0] - joined_starts[index]
        kind, lead = _CATALOG_RULE_OF_GROUP[match.lastindex or 0]
        token_starts.append(match.start() - lead + shift)
        token_ends.append(match.end() + shift)
        out.append((token_starts[-1], token_ends[-1], RANK_PATTERN, kind))
    classes = latin.translate(_CANDIDATE_MASK)
    segments: list[tuple[int, int]] = []
    for lo, hi in pieces:
        if hi - lo < DECODE_MIN:
            continue
        for begin, end in _candidates(text, classes, lo, hi):
            # Judge only what no catalog token already covers: "<token>/getUpdates" in a URL
            # is a token and a path, not one high-entropy blob.
            index = bisect.bisect_right(token_ends, begin)
            while index < len(token_starts) and token_starts[index] < end:
                if token_starts[index] - begin >= DECODE_MIN:
                    segments.append((begin, token_starts[index]))
                begin = max(begin, token_ends[index])
                index += 1
            if end - begin >= DECODE_MIN:
                segments.append((begin, end))
    if segments:
        _judge(text, segments, entropy, decode, out)
    return limit


def _judge(
    text: str, segments: list[tuple[int, int]], entropy: bool, decode: bool, out: list[Span]
) -> None:
    """Base64 runs by what they decode to, the rest (when long enough) by their entropy."""
    decoded = {
        number: plain
        for number, segment in enumerate(segments)
        if decode and (plain := _decoded(text, *segment))
    }
    kinds = dict(zip(decoded, _secrets_in(list(decoded.values())), strict=True)) if decoded else {}
    for number, (begin, end) in enumerate(segments):
        kind = kinds.get(number)
        if kind is not None:
            out.append((begin, end, RANK_PATTERN, f"base64_{kind}"))
        elif end - begin >= _CANDIDATE_MIN:
            judged = _judge_candidate(text, begin, text[begin:end], entropy)
            if judged is not None:
                out.append((begin, end, *judged))
