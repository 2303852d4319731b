"""The runtime secret redactor: known secrets, our pattern catalog, an entropy backstop.

Three layers, each reporting `(start, end, kind)` spans that are merged and replaced by
``[REDACTED:<kind>]``:

1. **Known secrets** (`SecretRegistry`): every secret the process holds, matched exactly in
   one pass together with its variants: URL-encoded, hex in both cases, and standard and
   URL-safe base64 at all three byte alignments (so the secret is caught inside a larger
   encoded blob, whatever its offset).
2. **Pattern catalog** (bot/security/patterns.py): platform tokens, provider keys, JWTs, PEM
   private keys, ``Bearer`` values and ``key = value`` assignments.
3. **Entropy backstop**: long, mixed-class runs with Shannon entropy of at least 4.5 bits.

`StreamRedactor` applies the same rules to text that arrives in chunks. It releases only
text whose redaction can no longer change, so for any split of the input the released text
joined with `flush()` equals `redact()` of the whole input, and no released prefix ever
shows a secret that the final redaction would hide.

Limitations: a secret that is transformed is not caught. That includes base64 or hex wrapped
over several lines (``base64`` without ``-w0``, ``xxd -p``), other encodings (rot13,
compression, spelling it out character by character), and a registered value of fewer than
eight characters. Redaction is the second line of defence; the first is keeping secrets out
of the sandbox and out of the model's context.
"""

from __future__ import annotations

import base64
import functools
import logging
import os
import re
import threading
from collections.abc import Iterable
from dataclasses import dataclass
from urllib.parse import quote, quote_plus

from bot.security.patterns import (
    CONTEXT,
    PIECE,
    RANK_KNOWN,
    TOKEN_CHARS,
    Span,
    scan_pem,
    scan_runs,
    scan_values,
)

MIN_SECRET_LEN = 8
#: new characters a stream collects before it judges its held-back text again
STREAM_BATCH = 64
#: third-party loggers that would otherwise log URLs, headers or bodies below WARNING
NOISY_LOGGERS = ("httpx", "httpcore", "openai", "anthropic", "telegram", "slack_sdk", "discord")

# Characters from most to least common in chat, code and logs. Each needle is anchored on its
# rarest character, so the combined regex skips most of the text without trying any needle.
_COMMON_FIRST = (
    " etaoinsrhldcumfpgwybvk,.-_x'\"\n0123456789TAISOCMWBNPHDRLFEGUVYJKQXZjqz:/=()"
    ";!?+*&%$#@~^|\\{}<>[]`\t"
)
_COMMONNESS = {char: rank for rank, char in enumerate(_COMMON_FIRST)}
_RUN_TO = re.compile("[" + re.escape("".join(sorted(TOKEN_CHARS))) + r"]*\Z")
_LOOKBEHIND = 8


@dataclass(frozen=True, slots=True)
class Finding:
    start: int
    end: int
    kind: str


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


class _NeedleIndex:
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
            # Match the anchor first, then look back for the head and forward for the tail.
            alternatives = [
                (f"(?<={re.escape(needle[: offset + 1])})" if offset else "")
                + re.escape(needle[offset + 1 :])
                for offset, needle in entries
            ]
            branches.append(re.escape(char) + "(?:" + "|".join(alternatives) + ")")
        self._pattern = re.compile("|".join(branches)) if branches else None
        # No needle can contain a character that none of them has: a needle starting before
        # the text's trailing run of such characters is already whole, and can be judged.
        chars = "".join(
            sorted({c for needle in self._by_anchor.values() for _, n in needle for c in n})
        )
        self._trailing_run = re.compile(f"[{re.escape(chars)}]*\\Z") if chars else None

    def scan(self, text: str, start: int, final: bool, out: list[Span]) -> int:
        # Every occurrence counts, overlapping ones too, so a finding never depends on
        # where an earlier match happened to end.
        if self._pattern is None:
            return len(text)
        limit = len(text) if final else len(text) - self.longest + 1
        if not final and self._trailing_run is not None:
            tail = self._trailing_run.search(text, start)
            limit = max(limit, tail.start() if tail is not None else len(text))
        search = self._pattern.search
        match = search(text, start)
        while match is not None:
            at = match.start()
            for offset, needle in self._by_anchor[text[at]]:
                begin = at - offset
                if start <= begin < limit and text.startswith(needle, begin):
                    out.append((begin, begin + len(needle), RANK_KNOWN, "known_secret"))
            match = search(text, at + 1)
        return limit


class SecretRegistry:
    """Every secret value the process holds. Thread-safe; the matcher is rebuilt lazily."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._labels: dict[str, str] = {}
        self._index: _NeedleIndex | None = _NeedleIndex(())

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

    def index(self) -> _NeedleIndex:
        index = self._index
        if index is None:
            with self._lock:
                index = self._index
                if index is None:
                    index = _NeedleIndex(n for value in self._labels for n in variants(value))
                    self._index = index
        return index


def _merge(spans: list[Span]) -> list[Finding]:
    spans.sort(key=lambda span: (span[0], -span[1], span[2]))
    merged: list[Finding] = []
    for start, end, _rank, kind in spans:
        if not merged or start >= merged[-1].end:
            merged.append(Finding(start, end, kind))
        elif end > merged[-1].end:
            merged[-1] = Finding(merged[-1].start, end, merged[-1].kind)
    return merged


def _apply(text: str, start: int, end: int, findings: list[Finding]) -> str:
    parts = []
    at = start
    for finding in findings:
        parts.append(text[at : finding.start])
        parts.append(f"[REDACTED:{finding.kind}]")
        at = finding.end
    parts.append(text[at:end])
    return "".join(parts)


class Redactor:
    def __init__(self, registry: SecretRegistry | None = None, *, entropy: bool = True) -> None:
        self.registry = registry if registry is not None else SecretRegistry()
        self.entropy = entropy

    def find(self, text: str) -> list[Finding]:
        """Merged, non-overlapping findings in order."""
        spans, _ = self._detect(text, 0, final=True)
        return _merge(spans)

    def redact(self, text: str) -> str:
        findings = self.find(text)
        return _apply(text, 0, len(text), findings) if findings else text

    def stream(self, *, batch: int = STREAM_BATCH) -> StreamRedactor:
        return StreamRedactor(self, batch=batch)

    def _detect(self, text: str, start: int, final: bool) -> tuple[list[Span], int]:
        """Findings that start at or after `start`, and the frontier before which they are
        certain (see bot/security/patterns.py)."""
        out: list[Span] = []
        latin = text.encode("latin-1", "replace")
        frontier = min(
            self.registry.index().scan(text, start, final, out),
            scan_pem(text, start, final, out),
            scan_runs(text, latin, start, final, self.entropy, out),
            scan_values(text, latin, start, final, out),
        )
        return out, frontier


class StreamRedactor:
    """Redacts text that arrives in chunks; see the module docstring for the guarantee.

    Text is judged again once `batch` new characters have arrived, so `feed` mostly just
    appends, and the held-back text never grows past the longest span a rule can cover.
    """

    def __init__(self, redactor: Redactor, *, batch: int = STREAM_BATCH) -> None:
        self._redactor = redactor
        self._batch = max(1, batch)
        self._text = ""  # input from _base on: left context, then held-back text
        self._base = 0
        self._scan = 0  # where detection restarts: a piece boundary CONTEXT before _done
        self._done = 0  # input before this offset has been released
        self._fresh: list[str] = []
        self._fresh_size = 0
        self._emitted: list[str] = []
        self._closed = False

    @property
    def emitted(self) -> str:
        if len(self._emitted) > 1:
            self._emitted = ["".join(self._emitted)]
        return self._emitted[0] if self._emitted else ""

    def feed(self, chunk: str) -> str:
        """Take the next chunk; return the text that is now final (often empty)."""
        if self._closed:
            raise RuntimeError("feed() after flush()")
        self._fresh.append(chunk)
        self._fresh_size += len(chunk)
        if self._fresh_size < self._batch:
            return ""
        return self._release(final=False)

    def flush(self) -> str:
        """End of stream, error or cancel: judge everything held back and return it."""
        if self._closed:
            return ""
        released = self._release(final=True)
        self._closed = True
        self._text = ""
        return released

    def _release(self, final: bool) -> str:
        if self._fresh:
            self._text += "".join(self._fresh)
            self._fresh.clear()
            self._fresh_size = 0
        text = self._text
        done = self._done - self._base
        spans, frontier = self._redactor._detect(text, self._scan - self._base, final)
        findings = _merge([span for span in spans if done <= span[0] < frontier])
        cut = max(frontier, done)
        # Never cut through a finding, nor inside a token run: a prefix ending mid-run could
        # look like a token that the whole run is not.
        while not final:
            if findings and findings[-1].end > cut:
                cut = min(cut, findings.pop().start)
            elif (snapped := max(self._piece_start(text, cut), done)) < cut:
                cut = snapped
            else:
                break
        released = _apply(text, done, cut, findings)
        self._done = self._base + cut
        self._advance_scan()
        if released:
            self._emitted.append(released)
        return released

    def _piece_start(self, text: str, at: int) -> int:
        """Where the piece of the token run through position `at` starts (`at` itself when
        no run passes through it)."""
        if at < len(text) and text[at] not in TOKEN_CHARS:
            return at
        run = _RUN_TO.search(text, self._scan - self._base, at)
        run_start = at if run is None else run.start()
        return run_start + (at - run_start) // PIECE * PIECE

    def _advance_scan(self) -> None:
        """Move the detection start up to CONTEXT before the released text, onto a piece
        boundary, and drop the input before it."""
        target = self._done - CONTEXT - self._base
        if target <= self._scan - self._base:
            return
        target = self._piece_start(self._text, target)
        drop = max(0, target - _LOOKBEHIND)
        self._text = self._text[drop:]
        self._base += drop
        self._scan = self._base + target - drop


default_registry = SecretRegistry()


@functools.cache
def default_redactor() -> Redactor:
    return Redactor(default_registry)


def scrub(text: str) -> str:
    """Redact an exception message or an HTTP error body before it is shown or logged."""
    return default_redactor().redact(text)


class RedactedTraceback(Exception):
    """Stands in for a logged exception whose traceback contained a secret."""


class RedactingFilter(logging.Filter):
    """Redacts the formatted message, exception text, stack and `fields` of every record.

    Attach it to handlers: a filter on a logger does not see records from its children."""

    def __init__(self, redactor: Redactor | None = None) -> None:
        super().__init__()
        self._redactor = redactor

    def filter(self, record: logging.LogRecord) -> bool:
        redact = (self._redactor or default_redactor()).redact
        try:
            message = record.getMessage()
        except Exception:  # let the handler report the broken format, without the secret
            message = f"{record.msg!s} {record.args!r}"
        clean = redact(message)
        if clean != message:
            record.msg, record.args = clean, None
        if record.exc_info and record.exc_info[1] is not None:
            trace = record.exc_text or logging.Formatter().formatException(record.exc_info)
            clean = redact(trace)
            if clean != trace:
                # Formatters that format exc_info themselves get a stand-in carrying the
                # redacted traceback; the stdlib formatter uses exc_text as it is.
                record.exc_info = (RedactedTraceback, RedactedTraceback(clean), None)
                record.exc_text = clean
        elif record.exc_text:
            record.exc_text = redact(record.exc_text)
        if record.stack_info:
            record.stack_info = redact(record.stack_info)
        fields = getattr(record, "fields", None)
        if isinstance(fields, dict):
            for key, value in fields.items():
                if not isinstance(value, int | float | bool | None):
                    text = str(value)
                    clean = redact(text)
                    if clean != text:
                        fields[key] = clean
        return True


def install_log_redaction(logger: logging.Logger | None = None) -> None:
    """Put a RedactingFilter on every handler of `logger` (default: root) and quiet the
    HTTP and SDK loggers to WARNING. Handlers added later need their own filter."""
    target = logger if logger is not None else logging.getLogger()
    for handler in target.handlers:
        if not any(isinstance(f, RedactingFilter) for f in handler.filters):
            handler.addFilter(RedactingFilter())
    for name in NOISY_LOGGERS:
        noisy = logging.getLogger(name)
        if noisy.getEffectiveLevel() < logging.WARNING:
            noisy.setLevel(logging.WARNING)
