"""Layer 2 of the redactor outside token runs: secrets that follow a marker.

``key = value`` assignments, ``Bearer`` values, passwords in URLs (``scheme://user:pw@host``)
and PEM private-key blocks. Token shapes, decoded base64 and the entropy backstop are in
bot/security/tokens.py, registered secrets in bot/security/known.py.

Every scanner of the redactor looks at ``text[start:]``, appends findings to ``out`` as
``(start, end, rank, kind)`` and returns its *frontier*. While the text may still grow
(``final`` false), only findings that start before the frontier are certain to be the same
whatever follows; with ``final`` true the frontier is ``len(text)``.

Each finding depends only on nearby text, which is what lets the stream wrapper release text
early and still agree exactly with a one-shot redaction of the whole text:

- token patterns, decoded base64 and the entropy backstop look inside one *piece*: a maximal
  run of token characters, cut every PIECE characters counted from the start of the run;
- ``key = value`` assignments and ``Bearer`` values are tried at every place a keyword
  starts, need at most CONTEXT characters before their value, and have a bounded length;
- a URL password starts at most URL_USER_MAX + 4 characters after its ``://`` and is known
  once the authority has ended (a space, ``/``, ``?`` or ``#``) or VALUE_MAX characters are in;
- a registered secret is matched whole, also across line breaks;
- a PEM private-key block ends at its END line, or at the last line break within PEM_CAP
  characters of its BEGIN line.
"""

from __future__ import annotations

import re
import string
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
VALUE_MAX: Final = 256
#: the longest user name before a URL password, so the password is within CONTEXT of "://"
URL_USER_MAX: Final = 64
BEARER_MAX: Final = 1024

# Ties between findings with the same span are won by the lowest rank.
RANK_PATTERN: Final = 0
RANK_KNOWN: Final = 1
RANK_VALUE: Final = 2
RANK_ENTROPY: Final = 3

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

# RFC 3986 userinfo: the user name ends at the first ":", the password at the last "@" before
# the authority ends. A port ("host:8080/") has no "@" after it, an IPv6 host starts with "[".
_URL_USER = re.compile(rf"://[^\s/?#@:\[\]]{{0,{URL_USER_MAX}}}:")
# ... followed by an "@": the regex engine skips every other "://" without a Python step.
_URL_PASSWORD = re.compile(_URL_USER.pattern + rf"(?=[^\s/?#]{{0,{VALUE_MAX}}}@)")
_AUTHORITY_END = re.compile(r"[\s/?#]")


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
    if not final:
        # the text may stop inside "-----BEGIN": a finding that swallows its first dashes
        # (a run of URL-safe base64 before it) must not be released before the block is seen
        for keep in range(min(len(_PEM_BEGIN) - 1, size - start), 0, -1):
            if text.endswith(_PEM_BEGIN[:keep]):
                return size - keep
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


def scan_url_passwords(text: str, start: int, final: bool, out: list[Span]) -> int:
    """The password of ``scheme://user:password@host``; the scheme, user and host stay."""
    size = len(text)
    for user in _URL_PASSWORD.finditer(text, start):
        begin = user.end()
        reach = begin + VALUE_MAX + 1  # the "@" after the longest password
        end = _AUTHORITY_END.search(text, begin, reach)
        if end is not None or size >= reach or final:  # else a later "@" may lengthen it
            last_at = text.rfind("@", begin + 1, reach if end is None else end.start())
            if last_at != -1:  # else the only "@" comes right after the ":": no password
                out.append((begin, last_at, RANK_VALUE, "url_password"))
    # Only the authority after the last "://" can still be open: the "/" of a later "://"
    # ends any before it.
    last = text.rfind("://", start)
    if not final and last != -1 and (open_user := _URL_USER.match(text, last)) is not None:
        begin = open_user.end()
        if _AUTHORITY_END.search(text, begin) is None and size <= begin + VALUE_MAX:
            return begin
    return size
