"""The redactor's API: the registry, findings, the stream object, log redaction and scrub."""

from __future__ import annotations

import itertools
import logging
import random
import string
from collections.abc import Iterator
from pathlib import Path

import pytest

from bot.security.redact import (
    NOISY_LOGGERS,
    Finding,
    RedactingFilter,
    Redactor,
    SecretRegistry,
    default_redactor,
    default_registry,
    install_log_redaction,
    scrub,
    variants,
)

ALNUM = string.ascii_letters + string.digits


def fake_secret(seed: int, size: int = 32) -> str:
    rng = random.Random(seed)
    return "".join(rng.choice(ALNUM) for _ in range(size))


def fake_github_token(seed: int) -> str:
    return "ghp_" + fake_secret(seed, 36)


# The registry.


def test_registry_ignores_short_values_and_counts_the_rest() -> None:
    registry = SecretRegistry()
    registry.add("short")
    registry.add("")
    assert len(registry) == 0
    registry.add(fake_secret(1), label="openai")
    registry.add(fake_secret(1), label="openai")
    assert len(registry) == 1
    assert registry.labels() == ["openai"]


def test_registry_also_holds_the_stripped_value() -> None:
    registry = SecretRegistry()
    secret = fake_secret(2)
    registry.add(f"{secret}\n")
    assert Redactor(registry).redact(f"[{secret}]") == "[[REDACTED:known_secret]]"


def test_add_env_registers_present_variables_only(monkeypatch: pytest.MonkeyPatch) -> None:
    secret = fake_secret(3)
    monkeypatch.setenv("DECAPOD_TEST_SECRET", secret)
    monkeypatch.delenv("DECAPOD_TEST_MISSING", raising=False)
    registry = SecretRegistry()
    registry.add_env(["DECAPOD_TEST_SECRET", "DECAPOD_TEST_MISSING"])
    assert len(registry) == 1
    assert registry.labels() == ["DECAPOD_TEST_SECRET"]
    assert secret not in Redactor(registry).redact(f"value={secret};")


def test_secrets_added_later_are_seen_by_an_existing_redactor() -> None:
    registry = SecretRegistry()
    redactor = Redactor(registry, entropy=False)
    secret = fake_secret(4)
    assert redactor.redact(secret) == secret
    registry.add(secret)
    assert redactor.redact(secret) == "[REDACTED:known_secret]"


def test_default_redactor_is_shared_and_follows_the_default_registry() -> None:
    assert default_redactor() is default_redactor()
    secret = fake_secret(5)
    default_registry.add(secret, label="test")
    assert scrub(f"upstream said: {secret}") == "upstream said: [REDACTED:known_secret]"


def test_variants_cover_every_encoding() -> None:
    secret = "a/b c+d=e?f"
    forms = variants(secret)
    assert {secret, "a%2Fb%20c%2Bd%3De%3Ff", "a%2Fb+c%2Bd%3De%3Ff"} <= forms
    assert {secret.encode().hex(), secret.encode().hex().upper()} <= forms
    assert all(len(form) >= 8 for form in forms)


# Findings.


def test_findings_are_sorted_merged_spans() -> None:
    registry = SecretRegistry()
    secret = fake_secret(6)
    registry.add(secret)
    token = fake_github_token(7)
    text = f"a {secret} b {token} c password={secret}x d"
    findings = Redactor(registry).find(text)
    assert [f.kind for f in findings] == ["known_secret", "github_token", "assignment"]
    assert findings[0] == Finding(2, 2 + len(secret), "known_secret")
    assert all(a.end <= b.start for a, b in itertools.pairwise(findings))
    value = text.index("password=") + len("password=")
    assert findings[2] == Finding(value, value + len(secret) + 1, "assignment")
    with pytest.raises(AttributeError):
        findings[0].kind = "other"  # type: ignore[misc]


# The stream object.


def test_stream_releases_final_text_and_flushes_the_rest() -> None:
    token = fake_github_token(8)
    text = f"first line\nyour token is {token}\nlast words"
    stream = Redactor().stream(batch=1)
    released = [stream.feed(char) for char in text]
    released.append(stream.flush())
    assert "".join(released) == Redactor().redact(text)
    assert stream.emitted == "".join(released)
    assert released[0] == ""  # nothing is final before the word is complete
    assert stream.flush() == ""


def test_stream_refuses_input_after_flush() -> None:
    stream = Redactor().stream()
    stream.feed("hello")
    assert stream.flush() == "hello"
    with pytest.raises(RuntimeError):
        stream.feed("more")


def test_stream_flush_on_error_still_redacts() -> None:
    token = fake_github_token(9)

    def reply() -> Iterator[str]:
        yield "partial answer with "
        yield token[:10]
        yield token[10:]
        raise ConnectionError("provider went away")

    stream = Redactor().stream(batch=1)
    shown: list[str] = []
    with pytest.raises(ConnectionError):
        try:
            for chunk in reply():
                shown.append(stream.feed(chunk))
        finally:
            shown.append(stream.flush())
    assert "".join(shown) == "partial answer with [REDACTED:github_token]"


# Logs.


class ExcInfoFormatter(logging.Formatter):
    """Formats exc_info itself, as JSON formatters do, instead of using exc_text."""

    def format(self, record: logging.LogRecord) -> str:
        line = f"{record.levelname} {record.getMessage()}"
        if record.exc_info:
            line += " | " + self.formatException(record.exc_info).replace("\n", " | ")
        return line


@pytest.fixture
def root_logging() -> Iterator[logging.Logger]:
    """The root logger, with its handlers, their filters and the noisy levels restored."""
    root = logging.getLogger()
    handlers = list(root.handlers)
    filters = {handler: list(handler.filters) for handler in handlers}
    levels = {name: logging.getLogger(name).level for name in NOISY_LOGGERS}
    root_level = root.level
    yield root
    root.setLevel(root_level)
    for handler in list(root.handlers):
        if handler not in filters:
            root.removeHandler(handler)
            handler.close()
    for handler, kept in filters.items():
        handler.filters = kept
    for name, level in levels.items():
        logging.getLogger(name).setLevel(level)


def test_log_redaction_covers_message_args_and_tracebacks(
    root_logging: logging.Logger, caplog: pytest.LogCaptureFixture, tmp_path: Path
) -> None:
    token = fake_github_token(10)
    log_file = tmp_path / "decapod.log"
    file_handler = logging.FileHandler(log_file, encoding="utf-8")
    file_handler.setFormatter(logging.Formatter("%(levelname)s %(name)s %(message)s"))
    json_like = logging.FileHandler(tmp_path / "exc-info.log", encoding="utf-8")
    json_like.setFormatter(ExcInfoFormatter())
    root_logging.addHandler(file_handler)
    root_logging.addHandler(json_like)
    caplog.set_level(logging.INFO)
    install_log_redaction()

    log = logging.getLogger("decapod.test.redact")
    log.info(f"token in the message {token}")
    log.info("token in the args %s (%d)", token, 3)
    try:
        raise RuntimeError(f"upstream rejected {token}")
    except RuntimeError:
        log.exception("call failed")
    log.info("fields", extra={"fields": {"url": f"https://x.test/?t={token}", "n": 2}})
    for handler in (file_handler, json_like):
        handler.flush()

    outputs = {
        "file": log_file.read_text(encoding="utf-8"),
        "exc_info formatter": (tmp_path / "exc-info.log").read_text(encoding="utf-8"),
        "caplog": caplog.text,
    }
    for name, output in outputs.items():
        assert token not in output, name
        assert "token in the args [REDACTED:github_token] (3)" in output, name
        assert "upstream rejected [REDACTED:github_token]" in output, name
        assert "RuntimeError" in output, name
    assert all(token not in record.getMessage() for record in caplog.records)
    fields = caplog.records[-1].__dict__["fields"]
    assert fields == {"url": "https://x.test/?t=[REDACTED:github_token]", "n": 2}


def test_install_log_redaction_is_idempotent_and_quiets_http_loggers(
    root_logging: logging.Logger,
) -> None:
    handler = logging.NullHandler()
    root_logging.addHandler(handler)
    root_logging.setLevel(logging.DEBUG)
    logging.getLogger("httpx").setLevel(logging.NOTSET)
    logging.getLogger("discord").setLevel(logging.ERROR)
    install_log_redaction(root_logging)
    install_log_redaction(root_logging)
    assert sum(isinstance(f, RedactingFilter) for f in handler.filters) == 1
    assert logging.getLogger("httpx").level == logging.WARNING
    assert logging.getLogger("httpcore").getEffectiveLevel() >= logging.WARNING
    assert logging.getLogger("discord").level == logging.ERROR


def test_filter_with_its_own_redactor_and_a_broken_format() -> None:
    registry = SecretRegistry()
    secret = fake_secret(11)
    registry.add(secret)
    record = logging.LogRecord("x", logging.INFO, __file__, 1, "%d items %s", (secret,), None)
    assert RedactingFilter(Redactor(registry)).filter(record)
    assert secret not in record.getMessage()
    assert "[REDACTED:known_secret]" in record.getMessage()


def test_scrub_exception_text() -> None:
    token = fake_github_token(12)
    error = PermissionError(f'401 {{"message": "Bad credentials", "token": "{token}"}}')
    assert (
        scrub(str(error))
        == '401 {"message": "Bad credentials", "token": "[REDACTED:github_token]"}'
    )


def test_a_long_registered_secret_does_not_hold_back_ordinary_words() -> None:
    """Needles cannot span characters none of them contains, so a stream of words is
    released as it comes even when a registered secret's hex form is 160 characters long."""
    registry = SecretRegistry()
    secret = "MTIzNDU2Nzg5MDEyMzQ1Njc4OQ.GfAke1.fake-hmac-for-tests-only-000000000000000"
    registry.add(secret, "token")
    stream = Redactor(registry).stream()
    released = "".join(stream.feed(f"w{i} ") for i in range(60))
    assert len(released) > 150
    tail = stream.feed(" then " + secret[:30]) + stream.feed(secret[30:] + " end") + stream.flush()
    assert secret not in released + tail and "[REDACTED:" in tail
