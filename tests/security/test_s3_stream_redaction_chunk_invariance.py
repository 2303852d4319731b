"""S3 stream_redaction_chunk_invariance.

For any split of the input into chunks, and whenever release() is called between them (as the
clock does for a slow stream), the text a StreamRedactor releases, joined with its flush(),
equals Redactor.redact() of the whole input; every prefix it has released is a prefix of that
final text and contains no registered secret in any of its encodings. A flush in the middle
(end of stream, error, cancel) returns the redaction of what was fed so far.

The inputs mix every kind the redactor knows: registered secrets raw, encoded, wrapped over
lines and cut by line breaks; catalog tokens and their base64; assignments, Bearer values,
URL passwords, PEM blocks and long runs.
"""

from __future__ import annotations

import base64
import itertools
import random
import re
import string
from collections.abc import Sequence
from urllib.parse import quote

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from bot.security.known import MIN_SPLIT_LEN, _join_lines
from bot.security.patterns import PEM_CAP, PIECE
from bot.security.redact import (
    STREAM_BATCH,
    Redactor,
    SecretRegistry,
    StreamRedactor,
    variants,
)
from tests.security.test_secret_corpus import BASE64, fake_pem, fake_tokens, pick
from tests.security.test_secret_forms import HARMLESS, b64, encoded_secrets

_RNG = random.Random(20241121)
SECRETS = [
    "sk-live-" + pick(_RNG, string.ascii_letters + string.digits, 32),
    "p@ss w/rd+" + pick(_RNG, string.ascii_letters, 10),
    pick(_RNG, string.ascii_letters + string.digits, 12),
]


def registered(secrets: list[str]) -> Redactor:
    registry = SecretRegistry()
    for secret in secrets:
        registry.add(secret, label="test")
    return Redactor(registry)


def needle_patterns(secrets: list[str]) -> tuple[re.Pattern[str], re.Pattern[str]]:
    """Every needle, and every needle that is also caught when line breaks cut it."""
    needles = sorted({needle for secret in secrets for needle in variants(secret)})
    return (
        re.compile("|".join(map(re.escape, needles))),
        re.compile("|".join(re.escape(n) for n in needles if len(n) >= MIN_SPLIT_LEN)),
    )


REDACTOR = registered(SECRETS)
# A space in a needle holds back text before a space; without one, line breaks must do it.
UNSPACED = registered([SECRETS[0], SECRETS[2]])
PLAIN = Redactor()
NEEDLES = sorted({needle for secret in SECRETS for needle in variants(secret)})
KNOWN = {REDACTOR: needle_patterns(SECRETS), UNSPACED: needle_patterns([SECRETS[0], SECRETS[2]])}
TOKENS = [token for seed in range(3) for _, token in fake_tokens(random.Random(seed))]
LONG_RUN = pick(_RNG, BASE64, 2 * PIECE + 300)


def encoded(secret: str, shift: int, form: str) -> str:
    raw = bytes(range(shift)) + secret.encode() + b"\x00tail"
    if form == "base64":
        return base64.b64encode(raw).decode()
    if form == "urlsafe":
        return base64.urlsafe_b64encode(raw).decode()
    if form == "hex":
        return raw.hex()
    if form == "HEX":
        return raw.hex().upper()
    if form == "url":
        return quote(secret, safe="")
    if form == "wrapped":
        return base64.encodebytes(raw).decode()
    return secret


def cut_by_lines(secret: str, cut: int, breaker: str) -> str:
    cut = 1 + cut % (len(secret) - 1)
    return secret[:cut] + breaker + secret[cut:]


ENCODED_SECRETS = [b64(plain, urlsafe) for _, plain in encoded_secrets(0) for urlsafe in (0, 1)]
HARMLESS_BASE64 = [b64(plain) for plain in HARMLESS]


def pem(lines: int, closed: bool) -> str:
    block = fake_pem(random.Random(lines), "RSA PRIVATE KEY", lines)
    return block if closed else block.rsplit("\n", 1)[0]


fragments = st.one_of(
    st.sampled_from([" ", "\n", "the ", "reply", ". ", ", ", ":", "=", '"', "'", "-", "/", "\t"]),
    st.text(max_size=8),
    st.builds(
        encoded,
        st.sampled_from(SECRETS),
        st.integers(0, 8),
        st.sampled_from(["raw", "base64", "urlsafe", "hex", "HEX", "url", "wrapped"]),
    ),
    st.builds(
        cut_by_lines,
        st.sampled_from(SECRETS),
        st.integers(0, 40),
        st.sampled_from(["\n", "\r\n", " \n  ", "\n\n", "\n\t"]),
    ),
    st.sampled_from(ENCODED_SECRETS + HARMLESS_BASE64),
    st.builds(
        "{}://{}:{}@{}{}".format,
        st.sampled_from(["postgres", "https", "redis", ""]),
        st.sampled_from(["admin", "", "u.s-er"]),
        st.text(alphabet=string.ascii_letters + string.digits + "@:!%~.", min_size=1, max_size=12),
        st.sampled_from(["db.internal:5432", "host", "h@st", ""]),
        st.sampled_from(["/app", "?q=1", "#x", " ", "\n", ""]),
    ),
    st.sampled_from(["http://example.com/path", "://", "http://host:8080/x?to=a@b", "user@host"]),
    st.sampled_from(TOKENS),
    st.tuples(
        st.sampled_from(
            ['password = "', "token: '", "API_KEY=", "secret: ", "Bearer ", "bearer\t"]
        ),
        st.text(alphabet=string.ascii_letters + string.digits + " !@#.", max_size=30),
        st.sampled_from(['"', "'", " ", "\n", ""]),
    ).map("".join),
    st.builds(pem, st.integers(0, 6), st.booleans()),
    st.sampled_from(
        ["-----BEGIN", "-----BEGIN RSA PRIVATE KEY-----", "-----END RSA PRIVATE KEY-----"]
    ),
    st.integers(PIECE - 30, len(LONG_RUN)).map(lambda size: LONG_RUN[:size]),
)
texts = st.lists(fragments, max_size=24).map("".join)


def split(text: str, cuts: list[int]) -> list[str]:
    points = [0, *sorted({cut % (len(text) + 1) for cut in cuts}), len(text)]
    return [text[a:b] for a, b in itertools.pairwise(points) if b > a]


def run_stream(
    stream: StreamRedactor,
    chunks: list[str],
    whole: str,
    needle: re.Pattern[str] | None,
    releases: Sequence[bool],
) -> str:
    released = ""
    for at, chunk in enumerate(chunks):
        released += stream.feed(chunk)
        if releases and releases[at % len(releases)]:
            released += stream.release()
        assert stream.emitted == released
        assert whole.startswith(released)
        assert needle is None or needle.search(released) is None
    released += stream.flush()
    assert stream.emitted == released
    return released


def check_invariance(
    text: str, chunks: list[str], batch: int, redactor: Redactor, releases: Sequence[bool] = ()
) -> None:
    needle, split_needle = KNOWN.get(redactor, (None, None))
    whole = redactor.redact(text)
    assert needle is None or needle.search(whole) is None
    assert split_needle is None or split_needle.search(_join_lines(whole)[0]) is None
    released = run_stream(redactor.stream(batch=batch), chunks, whole, needle, releases)
    assert released == whole
    for finding in redactor.find(text):
        hidden = text[finding.start : finding.end]
        assert hidden in whole or hidden not in released


@settings(
    max_examples=250,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
@given(
    text=texts,
    cuts=st.lists(st.integers(min_value=0), max_size=60),
    single_chars=st.booleans(),
    batch=st.sampled_from([1, 5, 64]),
    # Without registered secrets nothing is held back for them, which exposes the other rules.
    redactor=st.sampled_from([REDACTOR, UNSPACED, PLAIN]),
    releases=st.lists(st.booleans(), max_size=8),
)
def test_stream_redaction_chunk_invariance(
    text: str,
    cuts: list[int],
    single_chars: bool,
    batch: int,
    redactor: Redactor,
    releases: list[bool],
) -> None:
    chunks = list(text) if single_chars and len(text) < 3000 else split(text, cuts)
    check_invariance(text, chunks, batch, redactor, releases)


def test_a_pem_block_glued_to_a_long_run_is_held_until_its_end() -> None:
    """A run of URL-safe base64 swallows the dashes of "-----BEGIN" that follows it: the run
    must not be released while the text stops inside that marker, or the key after it goes
    out in clear."""
    text = LONG_RUN[:1015] + pem(0, True)
    for batch in (1, 5):
        check_invariance(text, list(text), batch, PLAIN)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(text=texts, cuts=st.lists(st.integers(min_value=0), min_size=1, max_size=20), data=st.data())
def test_flush_midway_returns_the_redaction_of_what_was_fed(
    text: str, cuts: list[int], data: st.DataObject
) -> None:
    chunks = split(text, cuts)
    stop = data.draw(st.integers(0, len(chunks)))
    fed = "".join(chunks[:stop])
    stream = REDACTOR.stream(batch=1)
    released = "".join(stream.feed(chunk) for chunk in chunks[:stop]) + stream.flush()
    assert released == REDACTOR.redact(fed)


def everything() -> str:
    rng = random.Random(5)
    parts = [f"token {token} and " for token in TOKENS[:14]]
    parts += [encoded(secret, shift, "base64") + "\n" for secret in SECRETS for shift in range(3)]
    parts += [f"hex {encoded(SECRETS[1], 0, 'hex')} url {encoded(SECRETS[1], 0, 'url')}\n"]
    parts += ['password = "correct horse battery"\n', f"Bearer {pick(rng, BASE64, 40)}\n"]
    parts += [pem(8, True), "\nafter the key\n", f"secret is {pick(rng, '0123456789abcdef', 40)}"]
    parts += [f"\nurl postgres://admin:{pick(rng, BASE64, 12)}@db:5432/app and "]
    parts += [f"{cut_by_lines(secret, 7, breaker)} " for secret in SECRETS for breaker in "\n "]
    parts += [encoded(SECRETS[0], 1, "wrapped"), " ".join(ENCODED_SECRETS[:6])]
    return "".join(parts)


def test_one_character_chunks_through_every_kind() -> None:
    text = everything()
    for batch in (1, 64):
        for redactor in (REDACTOR, UNSPACED, PLAIN):
            check_invariance(text, list(text), batch, redactor)


def test_every_split_point_of_pending_constructs() -> None:
    """Values, open quotes, Bearer tokens, PEM blocks and needles cut at every position."""
    split_secret = cut_by_lines(SECRETS[0], 9, " \n  ")
    text = (
        f'x password = "ab!c d@e" y\nDB_PASSWORD=p!ss#word z\n"token": \'k3y w!th space\'\n'
        f"Bearer abc.def~ghi/jkl+mno= w\nbefore {SECRETS[1]} key:\n{pem(3, True)}\nafter"
        " redis://u:p@ss:w@h/0 amqp://guest:pa!ss%20w@rabbit"
        f" then {split_secret} {ENCODED_SECRETS[0]}."
    )
    for redactor in (REDACTOR, UNSPACED, PLAIN):
        for cut in range(len(text) + 1):
            check_invariance(text, [text[:cut], text[cut:]], 1, redactor)


def test_ordinary_text_is_released_promptly() -> None:
    """Holding everything until flush() would satisfy every other test here."""
    prose = "The answer is forty-two, and the rest of this reply explains why. " * 20
    for redactor, needle_hold in (
        (Redactor(), 0),
        (REDACTOR, max(map(len, NEEDLES))),
    ):
        stream = redactor.stream()
        released = ""
        for at in range(0, len(prose), 10):
            released += stream.feed(prose[at : at + 10])
            assert prose.startswith(released)
            assert at + 10 - len(released) <= STREAM_BATCH + needle_hold + 20


def test_hold_back_is_capped_for_unbroken_output() -> None:
    text = "blob: " + LONG_RUN * 3 + " end"
    whole = REDACTOR.redact(text)
    assert whole == "blob: " + "[REDACTED:high-entropy]" * (len(LONG_RUN) * 3 // PIECE + 1) + " end"
    stream = REDACTOR.stream()
    released = ""
    for at in range(0, len(text), 100):
        released += stream.feed(text[at : at + 100])
        complete_pieces = (at + 100 - len("blob: ")) // PIECE
        assert released.count("[REDACTED:high-entropy]") >= complete_pieces - 1
    assert released + stream.flush() == whole


def test_pem_block_without_end_is_held_only_up_to_the_cap() -> None:
    rng = random.Random(9)
    body = "\n".join(pick(rng, BASE64, 64) for _ in range(PEM_CAP // 65 + 40))
    text = f"-----BEGIN PRIVATE KEY-----\n{body}\nand then prose"
    stream = REDACTOR.stream()
    released = "".join(stream.feed(text[at : at + 50]) for at in range(0, len(text), 50))
    assert released.startswith("[REDACTED:pem_private_key]")
    assert released + stream.flush() == REDACTOR.redact(text)
    assert body.splitlines()[0] not in REDACTOR.redact(text)
