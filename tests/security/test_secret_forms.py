"""Secrets in the forms the catalog alone does not show: the password inside a URL, base64 of a
pattern-shaped secret, base64 of a low-entropy registered secret, and a registered secret cut
by line breaks. Each form has its look-alikes in ordinary text, which stay as they are.

As in test_secret_corpus.py, every fake secret is built here from random characters.
"""

from __future__ import annotations

import base64
import random
import string

import pytest

from bot.security.known import MIN_SPLIT_LEN
from bot.security.redact import Finding, Redactor, SecretRegistry
from tests.security.test_secret_corpus import (
    ALNUM,
    ORDINARY,
    UPPER_DIGITS,
    covering,
    fake_tokens,
    pick,
)

# Passwords in URLs.

PASSWORD_CHARS = ALNUM + "!$%&*+,;=~-._"


def fake_password(seed: int, size: int = 15) -> str:
    return pick(random.Random(seed), PASSWORD_CHARS, size)


URLS_WITH_PASSWORDS = [
    "postgres://admin:{}@db.internal:5432/app",
    "https://user:{}@host.example.com/private?x=1",
    "redis://:{}@cache:6379/0",
    "mysql+pymysql://svc_reader:{}@10.0.0.7/reports#frag",
    "amqp://guest:{}@rabbit",
]
URL_CONTEXTS = (
    "DATABASE_URL={}\n",
    'engine = create_engine("{}")',
    "connecting to {} ...",
    "<{}>",
)


@pytest.mark.parametrize("url", URLS_WITH_PASSWORDS)
@pytest.mark.parametrize("context", URL_CONTEXTS)
def test_url_password_is_redacted_and_the_rest_of_the_url_stays(url: str, context: str) -> None:
    password = fake_password(len(url) + len(context))
    text = context.format(url.format(password))
    redacted = Redactor().redact(text)
    assert redacted == context.format(url.format("[REDACTED:url_password]"))


def test_url_password_containing_at_signs_and_colons() -> None:
    # Unencoded "@" and ":" in a password: the user ends at the first ":", the password at
    # the last "@" before the host.
    password = "p@ss:" + fake_password(1, 10) + "@x"
    text = f"ftp://backup:{password}@files.example.net/dump.sql"
    assert Redactor().redact(text) == (
        "ftp://backup:[REDACTED:url_password]@files.example.net/dump.sql"
    )


URLS_WITHOUT_PASSWORDS = [
    "http://example.com/path",
    "see https://example.com/a/b?c=d#e for the docs",
    "user@example.com",
    "contact maintainer.name+decapod@example.org or https://user@host.example.com/x",
    "http://localhost:8080/api?to=someone@example.com",
    "ssh://git@github.com:22/example/repo.git",
    "http://[::1]:8080/health and http://127.0.0.1:9000/",
    "mailto:someone@example.com",
    "postgres://db.internal:5432/app",
    "a time like 10:30 and a ratio 3:2, then http://host:81/@home",
]


@pytest.mark.parametrize("text", URLS_WITHOUT_PASSWORDS)
def test_urls_without_a_password_are_left_alone(text: str) -> None:
    assert Redactor().find(text) == []


# Base64 that decodes to something the catalog or an assignment catches.


def b64(text: str, urlsafe: bool = False) -> str:
    encode = base64.urlsafe_b64encode if urlsafe else base64.b64encode
    return encode(text.encode()).decode()


def encoded_secrets(seed: int) -> list[tuple[str, str]]:
    """(kind, plain text holding one secret) for the short shapes base64 hides."""
    rng = random.Random(seed)
    key_id = "AKIA" + pick(rng, UPPER_DIGITS, 16)
    word = pick(rng, string.ascii_lowercase, 6) + pick(rng, string.digits, 3)
    return [
        ("aws_access_key", key_id),
        ("aws_access_key", f"aws_access_key_id = {key_id}\n"),
        ("assignment", f"password={word}"),
        ("assignment", f'DB_PASSWORD="{word}!"'),
        ("assignment", f"api_key: {word}{word}"),
        ("url_password", f"postgres://app:{word}@db/app"),
        *[(kind, token) for kind, token in fake_tokens(rng) if kind != "jwt"],
    ]


@pytest.mark.parametrize("seed", range(3))
@pytest.mark.parametrize("urlsafe", [False, True])
def test_base64_of_a_pattern_secret_is_redacted(seed: int, urlsafe: bool) -> None:
    redactor = Redactor()
    for kind, plain in encoded_secrets(seed):
        encoded = b64(plain, urlsafe)
        for context in ("echo {} | base64 -d", "data:\n  credentials: {}\n", '"{}"'):
            text = context.format(encoded)
            start = text.index(encoded)
            found = covering(redactor.find(text), start, start + len(encoded))
            assert found.kind == f"base64_{kind}", (plain, text)
            assert encoded.rstrip("=") not in redactor.redact(text)


HARMLESS = [
    "user@example.com",
    "http://example.com/path",
    "hello, world!",
    "The meeting is at 10:30 in room 4, bring the notes please.",
    '{"name": "Alice", "age": 30, "tags": ["a", "b"]}',
    "token count: 1024, password reset link sent",
    "#!/bin/sh\necho hello\nexit 0\n",
]


@pytest.mark.parametrize("plain", HARMLESS)
def test_base64_of_harmless_text_is_not_redacted_for_what_it_holds(plain: str) -> None:
    for encoded in (b64(plain), b64(plain, urlsafe=True)):
        # The decoded text holds no secret; only the entropy backstop judges the run itself.
        assert Redactor(entropy=False).find(f"blob {encoded} end") == []
        if len(encoded.rstrip("=")) < 24:  # too short for the backstop
            assert Redactor().find(f"blob {encoded} end") == []


def test_base64_look_alikes_are_not_decoded_into_findings() -> None:
    text = (
        "install_log_redaction_filters and ThisIsACamelCaseIdentifierName, "
        "path a/b/c/d/e/f/g/h/i/j/k/l, v1/chat/completions, "
        + b64(pick(random.Random(3), ALNUM, 30)).rstrip("=")[:20]
    )
    assert Redactor(entropy=False).find(text) == []


# Base64 of a registered secret that has little entropy: only the registry can see it.

# Nine characters: base64 of the repeats is a short cycle at every alignment.
LOW_ENTROPY_WORDS = ("changeme-", "password1", "qwerty123", "letmein99")


@pytest.fixture
def low_entropy() -> tuple[str, Redactor]:
    rng = random.Random(11)
    secret = rng.choice(LOW_ENTROPY_WORDS) * 3
    registry = SecretRegistry()
    registry.add(secret, label="local")
    return secret, Redactor(registry)


@pytest.mark.parametrize("offset", range(9))
@pytest.mark.parametrize("urlsafe", [False, True])
def test_base64_of_a_low_entropy_registered_secret(
    low_entropy: tuple[str, Redactor], offset: int, urlsafe: bool
) -> None:
    secret, redactor = low_entropy
    encode = base64.urlsafe_b64encode if urlsafe else base64.b64encode
    blob = encode(b"x" * offset + secret.encode() + b"\n").decode()
    text = f"env | base64 -w0\n{blob}\n"
    first, last = -(-8 * offset // 6), 8 * (offset + len(secret)) // 6
    start = text.index(blob)
    finding = covering(redactor.find(text), start + first, start + last)
    assert finding.kind == "known_secret"
    # Nothing but the registry hides it: it has no shape and too little entropy.
    assert Redactor().find(text) == []


# Registered secrets cut by line breaks.


@pytest.fixture
def registered() -> tuple[str, Redactor]:
    secret = pick(random.Random(12), ALNUM + "-_", 32)
    registry = SecretRegistry()
    registry.add(secret, label="provider")
    return secret, Redactor(registry, entropy=False)


@pytest.mark.parametrize("breaker", ["\n", "\r\n", " \n", "\n    ", "\n\n", "\t\n  \n "])
def test_a_registered_secret_split_over_lines_at_any_point(
    registered: tuple[str, Redactor], breaker: str
) -> None:
    secret, redactor = registered
    for cut in range(1, len(secret)):
        text = f"key: {secret[:cut]}{breaker}{secret[cut:]} ok"
        end = text.index(" ok")
        assert redactor.find(text) == [Finding(5, end, "known_secret")], cut
        assert redactor.redact(text) == "key: [REDACTED:known_secret] ok"


def test_wrapped_base64_and_hex_dumps_of_a_registered_secret(
    registered: tuple[str, Redactor],
) -> None:
    secret, redactor = registered
    blob = bytes(range(50)) + secret.encode() + bytes(range(50))
    wrapped_b64 = base64.encodebytes(blob).decode()  # 76 characters a line
    hex_lines = blob.hex()
    xxd_plain = "\n".join(hex_lines[i : i + 60] for i in range(0, len(hex_lines), 60))
    for dump in (wrapped_b64, xxd_plain):
        assert any(f.kind == "known_secret" for f in redactor.find(dump)), dump
        assert "known_secret" in redactor.redact(dump)


def test_line_breaks_join_nothing_that_is_not_a_secret(registered: tuple[str, Redactor]) -> None:
    secret, redactor = registered
    for text in ORDINARY:
        assert redactor.find(text) == []
    # Half of the secret next to ordinary text, and the two halves on lines that are not
    # next to each other, are not the secret.
    half = len(secret) // 2
    for text in (
        f"{secret[:half]}\nand then something else",
        f"before\n{secret[half:]}",
        f"{secret[:half]}\nmiddle line\n{secret[half:]}",
    ):
        assert redactor.find(text) == [], text


def test_short_registered_values_are_not_matched_across_lines() -> None:
    """A stated limit: below MIN_SPLIT_LEN characters, joining lines would match too much."""
    secret = pick(random.Random(13), ALNUM, MIN_SPLIT_LEN - 2)
    registry = SecretRegistry()
    registry.add(secret)
    redactor = Redactor(registry, entropy=False)
    assert redactor.redact(f"a {secret} b") == "a [REDACTED:known_secret] b"
    assert redactor.find(f"a {secret[:4]}\n{secret[4:]} b") == []


def test_multi_line_registered_value_matches_however_it_is_wrapped() -> None:
    rng = random.Random(14)
    lines = [pick(rng, ALNUM, 20) for _ in range(3)]
    registry = SecretRegistry()
    registry.add("\n".join(lines))
    redactor = Redactor(registry, entropy=False)
    for joint in ("\n", "\r\n", "\n  ", " \n\n"):
        text = f"key:\n{joint.join(lines)}\nend"
        assert redactor.redact(text) == "key:\n[REDACTED:known_secret]\nend", text


def test_secrets_alike_for_their_first_characters_are_told_apart() -> None:
    """The index's pattern holds only a few characters of each secret; the whole secret is
    what counts: one alike for its first 20 characters is not found in place of another."""
    rng = random.Random(15)
    head = pick(rng, ALNUM, 20)
    first, second = head + pick(rng, ALNUM, 20), head + pick(rng, ALNUM, 20)
    registry = SecretRegistry()
    registry.add(first, label="first")
    redactor = Redactor(registry, entropy=False)
    assert redactor.find(f"a {second} b") == []
    assert redactor.find(f"a {head} b") == []
    registry.add(second, label="second")
    text = f"a {second} b {first} c {head}"
    spans = [(f.start, f.end) for f in redactor.find(text)]
    assert spans == [(2, 2 + len(second)), (5 + len(second), 5 + 2 * len(second))]
