"""Layers 2 and 3 of the redactor: our own pattern catalog and the entropy backstop.

Every scanner looks at ``text[start:]``, appends findings to ``out`` as
``(start, end, rank, kind)`` and returns its *frontier*. While the text may still grow
(``final`` false), only findings that start before the frontier are certain to be the same
whatever follows; with ``final`` true the frontier is ``len(text)``.

Each finding depends only on nearby text, which is what lets the stream wrapper release text
early and still agree exactly with a one-shot redaction of the whole text:

- token patterns and the entropy backstop look inside one *piece*: a maximal run of token
  characters, cut every PIECE characters counted from the start of the run;
- ``key = value`` assignments and ``Bearer`` values are tried at every place a keyword
  starts, need at most CONTEXT characters before their value, and have a bounded length;
- a PEM private-key block ends at its END line, or at the last line break within PEM_CAP
  characters of its BEGIN line.
"""

from __future__ import annotations

import bisect
import math
import re
import string
from collections import Counter
from typing import Final

Span = tuple[int, int, int, str]

TOKEN_CHARS: Final = frozenset(string.ascii_letters + string.digits + "+/=_-.:~")
#: a token run longer than this is judged piece by piece, so holding back never exceeds it
PIECE: Final = 1024
#: a PEM block without an END line is redacted up to the last line break within this many chars
PEM_CAP: Final = 8192
#: how far before a value a keyword counts as "near"
NEAR: Final = 64
#: the most text before a finding that can decide it (keyword window plus look-behinds)
CONTEXT: Final = NEAR + 32
ENTROPY_LIMIT: Final = 4.5
VALUE_MAX: Final = 256
BEARER_MAX: Final = 1024

# Ties between findings with the same span are won by the lowest rank.
RANK_PATTERN: Final = 0
RANK_KNOWN: Final = 1
RANK_VALUE: Final = 2
RANK_ENTROPY: Final = 3

# bytes.translate tables: characters of the class become b"a", everything else b" "
_TOKEN_MASK = bytes(ord("a") if chr(code) in TOKEN_CHARS else ord(" ") for code in range(256))
_CANDIDATE_CHARS = frozenset(string.ascii_letters + string.digits + "+/_-")
_CANDIDATE_MASK = bytes(
    ord("a") if chr(code) in _CANDIDATE_CHARS else ord(" ") for code in range(256)
)
_CANDIDATE_MIN = 24
_CANDIDATE_SEED = b"a" * _CANDIDATE_MIN
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

_PEM_BEGIN = "-----BEGIN"
_PEM_HEADER = re.compile(r"-----BEGIN (?:[A-Z0-9]{1,16} ){0,3}PRIVATE KEY(?: BLOCK)?-----")
_PEM_FOOTER = re.compile(r"-----END (?:[A-Z0-9]{1,16} ){0,3}PRIVATE KEY(?: BLOCK)?-----")
_PEM_HEADER_MAX = 96

_BEARER_VALUE = r"[A-Za-z0-9._~+/=-]"
_BEARER = re.compile(
    rf"(?<![A-Za-z0-9_])bearer[ \t]{{1,4}}(?P<value>{_BEARER_VALUE}{{16,{BEARER_MAX}}})",
    re.IGNORECASE | re.ASCII,
)
_BEARER_PENDING = re.compile(
    rf"(?<![A-Za-z0-9_])bearer[ \t]{{1,4}}(?P<value>{_BEARER_VALUE}{{0,{BEARER_MAX - 1}}})\Z",
    re.IGNORECASE | re.ASCII,
)

# The keyword must end the identifier: DB_PASSWORD= counts, password_hash= does not.
KEYWORDS: Final = sorted(
    {
        "password",
        "passwd",
        "passphrase",
        "pwd",
        "token",
        "credential",
        "credentials",
        *(
            f"{word}{joint}key"
            for word in ("secret", "api", "access", "private")
            for joint in ("", "_", "-")
        ),
        "secret",
    },
    key=lambda word: (-len(word), word),
)
_KEY = (
    r"(?<![A-Za-z0-9])(?:" + "|".join(map(re.escape, KEYWORDS)) + r")"
    r"[\"']?[ \t]{0,4}(?::|=(?!=))[ \t]{0,4}"
)
# Every keyword starts with one of these; bytes.find is several times faster than a regex.
SEEDS: Final = (b"acce", b"api", b"cred", b"pass", b"priv", b"pwd", b"secr", b"toke")
# The separator is at most this far after the start of the keyword (keyword + quote + 4).
_SEPARATOR_REACH = len(KEYWORDS[0]) + 6
_BARE = r"[^\s\"'`,;&(){}\[\]<>]"
_ASSIGN = re.compile(
    rf"{_KEY}(?:\"(?P<dq>[^\"\n]{{1,{VALUE_MAX}}})\"|'(?P<sq>[^'\n]{{1,{VALUE_MAX}}})'"
    rf"|(?P<bare>{_BARE}{{4,{VALUE_MAX}}}))",
    re.IGNORECASE | re.ASCII,
)
_ASSIGN_PENDING = re.compile(
    rf"{_KEY}(?:\"(?P<dq>[^\"\n]{{0,{VALUE_MAX}}})|'(?P<sq>[^'\n]{{0,{VALUE_MAX}}})"
    rf"|(?P<bare>{_BARE}{{0,{VALUE_MAX - 1}}}))\Z",
    re.IGNORECASE | re.ASCII,
)
# An unquoted value that reads like a name in code (self.token, Optional, None) is not a secret.
_CODE_NAME = re.compile(r"[A-Za-z_]+(?:\.[A-Za-z_]+)*")


def shannon_entropy(value: str) -> float:
    """Bits per character of `value`'s own character distribution."""
    size = len(value)
    return -sum(count / size * math.log2(count / size) for count in Counter(value).values())


def _mixes_classes(value: str) -> bool:
    lower, upper = value != value.upper(), value != value.lower()
    return lower + upper + (_DIGIT.search(value) is not None) >= 2


def _near(word: re.Pattern[str], text: str, at: int) -> bool:
    return word.search(text, max(0, at - NEAR), at) is not None


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
    """Maximal runs of base64/base64url characters, _CANDIDATE_MIN or more, with up to two
    "=" of padding, inside one piece."""
    found = []
    at = classes.find(_CANDIDATE_SEED, lo, hi)
    while at != -1:
        end = classes.find(b" ", at, hi)
        end = hi if end == -1 else end
        padded = end
        while padded < min(hi, end + 2) and text[padded] == "=":
            padded += 1
        found.append((at, padded))
        at = classes.find(_CANDIDATE_SEED, end, hi)
    return found


def scan_runs(
    text: str, latin: bytes, start: int, final: bool, entropy: bool, out: list[Span]
) -> int:
    """Token patterns and the entropy backstop, piece by piece.

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
    for lo, hi in pieces:
        if hi - lo < _CANDIDATE_MIN:
            continue
        for begin, end in _candidates(text, classes, lo, hi):
            # Judge only what no catalog token already covers: "<token>/getUpdates" in a URL
            # is a token and a path, not one high-entropy blob.
            index = bisect.bisect_right(token_ends, begin)
            while index < len(token_starts) and token_starts[index] < end:
                if token_starts[index] - begin >= _CANDIDATE_MIN:
                    _judge(text, begin, token_starts[index], entropy, out)
                begin = max(begin, token_ends[index])
                index += 1
            if end - begin >= _CANDIDATE_MIN:
                _judge(text, begin, end, entropy, out)
    return limit


def _judge(text: str, begin: int, end: int, entropy: bool, out: list[Span]) -> None:
    judged = _judge_candidate(text, begin, text[begin:end], entropy)
    if judged is not None:
        out.append((begin, end, *judged))


def scan_pem(text: str, start: int, final: bool, out: list[Span]) -> int:
    """PEM private-key blocks, held until their END line or PEM_CAP."""
    size = len(text)
    at = text.find(_PEM_BEGIN, start)
    while at != -1:
        header = _PEM_HEADER.match(text, at)
        if header is None:
            if not final and at + _PEM_HEADER_MAX > size:
                return at
        else:
            cap = at + PEM_CAP
            footer = _PEM_FOOTER.search(text, header.end(), cap)
            if footer is not None:
                out.append((at, footer.end(), RANK_PATTERN, "pem_private_key"))
            elif size >= cap:
                line_break = text.rfind("\n", header.end(), cap)
                out.append(
                    (at, cap if line_break == -1 else line_break, RANK_PATTERN, "pem_private_key")
                )
            elif final:
                out.append((at, size, RANK_PATTERN, "pem_private_key"))
            else:
                return at
        at = text.find(_PEM_BEGIN, at + 1)
    return size


def scan_values(text: str, latin: bytes, start: int, final: bool, out: list[Span]) -> int:
    """`Bearer <token>` and `key = value` assignments; only the value is reported."""
    size = len(text)
    frontier = size
    lowered = latin.lower()
    at = lowered.find(b"bearer", start)
    while at != -1:
        match = _BEARER.match(text, at)
        if match is not None:
            lo, hi = match.span("value")
            if final or hi < size or hi - lo == BEARER_MAX:
                out.append((lo, hi, RANK_VALUE, "bearer_token"))
            else:
                frontier = min(frontier, lo)
        elif not final and (pending := _BEARER_PENDING.match(text, at)) is not None:
            frontier = min(frontier, pending.start("value"))
        at = lowered.find(b"bearer", at + 1)

    seeds: set[int] = set()
    for seed in SEEDS:
        at = lowered.find(seed, start)
        while at != -1:
            seeds.add(at)
            at = lowered.find(seed, at + 1)
    for at in sorted(seeds):
        # Most keywords in prose have no separator after them; skip the regex for those.
        reach = at + _SEPARATOR_REACH
        if lowered.find(b"=", at, reach) == -1 and lowered.find(b":", at, reach) == -1:
            continue
        match = _ASSIGN.match(text, at)
        if match is not None:
            group = match.lastgroup or "bare"
            lo, hi = match.span(group)
            if group != "bare":
                out.append((lo, hi, RANK_VALUE, "assignment"))
            elif not final and hi == size and hi - lo < VALUE_MAX:
                frontier = min(frontier, lo)
            elif not _CODE_NAME.fullmatch(text, lo, hi):
                out.append((lo, hi, RANK_VALUE, "assignment"))
        elif not final and (pending := _ASSIGN_PENDING.match(text, at)) is not None:
            frontier = min(frontier, pending.start(pending.lastgroup or "bare"))
    return frontier
