"""What the SDK providers share: Retry-After parsing, error classification, key rotation."""

from __future__ import annotations

import email.utils
import time

import httpx2
import pytest

from bot.errors import ContextTooLong, ProviderHTTPError, ProviderTimeout
from bot.providers.remote import KeyPool, parse_retry_after, status_error, transport_error
from bot.providers.testing import ManualClock


@pytest.mark.parametrize(
    ("headers", "seconds"),
    [
        ({"Retry-After": "2"}, 2.0),
        ({"retry-after": "1.5"}, 1.5),
        ({"retry-after-ms": "250", "Retry-After": "9"}, 0.25),
        ({"Retry-After": "soon"}, None),
        ({"Retry-After": "inf"}, None),
        ({"Retry-After": "nan"}, None),
        ({"retry-after-ms": "nan", "Retry-After": "3"}, 3.0),
        ({"Retry-After": "99999999999"}, 3600.0),
        ({}, None),
    ],
)
def test_retry_after_in_seconds(headers: dict[str, str], seconds: float | None) -> None:
    assert parse_retry_after(headers) == seconds


def test_retry_after_as_an_http_date() -> None:
    when = email.utils.formatdate(time.time() + 30, usegmt=True)

    seconds = parse_retry_after({"Retry-After": when})

    assert seconds is not None and 28 <= seconds <= 31
    past = email.utils.formatdate(time.time() - 30, usegmt=True)
    assert parse_retry_after({"Retry-After": past}) == 0.0


@pytest.mark.parametrize(
    "message",
    [
        "This model's maximum context length is 4096 tokens. However, you requested 5000",  # vLLM
        "the request exceeds the available context size, try increasing it",  # llama.cpp
        "prompt is too long: 210000 tokens > 200000 maximum",  # Anthropic
        "input length and `max_tokens` exceed context limit: 199000 + 4096 > 200000",
    ],
)
def test_context_length_wordings_of_several_servers(message: str) -> None:
    assert isinstance(status_error(400, message), ContextTooLong)


@pytest.mark.parametrize(
    ("status", "code", "message", "expected"),
    [
        (402, None, "Payment Required", ("billing", False)),
        (429, "insufficient_quota", "You exceeded your current quota", ("billing", False)),
        (400, "invalid_request_error", "Your credit balance is too low", ("billing", False)),
        (429, "rate_limit_exceeded", "Rate limit reached", ("rate_limit_exceeded", True)),
        (408, None, "Request Timeout", (None, True)),
        (529, "overloaded_error", "Overloaded", ("overloaded_error", True)),
        (404, "model_not_found", "The model does not exist", ("model_not_found", False)),
    ],
)
def test_status_classification(
    status: int, code: str | None, message: str, expected: tuple[str | None, bool]
) -> None:
    error = status_error(status, message, code=code)

    assert not isinstance(error, ContextTooLong)
    assert (error.code, error.retryable) == expected


def test_transport_errors_are_typed() -> None:
    request = httpx2.Request("POST", "http://127.0.0.1/v1/chat/completions")
    connect = transport_error(
        httpx2.ConnectTimeout("slow", request=request), connect_s=3, phase="idle", seconds=9
    )
    read = transport_error(
        httpx2.ReadTimeout("slow", request=request), connect_s=3, phase="idle", seconds=9
    )
    refused = transport_error(
        httpx2.ConnectError("refused", request=request), connect_s=3, phase="idle", seconds=9
    )

    assert isinstance(connect, ProviderTimeout) and (connect.phase, connect.seconds) == (
        "connect",
        3,
    )
    assert isinstance(read, ProviderTimeout) and (read.phase, read.seconds) == ("idle", 9)
    assert isinstance(refused, ProviderHTTPError)
    assert (refused.status, refused.code, refused.retryable) == (0, "connection", True)


def test_key_pool_rotates_and_falls_back_to_the_soonest_ready_key() -> None:
    clock = ManualClock()
    made: list[str] = []

    def make(key: str) -> str:
        made.append(key)
        return f"client:{key}"

    pool = KeyPool(["k1", "k2"], make, clock=clock)
    assert pool.pick() == (0, "client:k1")

    assert pool.penalize(0, ProviderHTTPError(401, "bad key")) is True  # k2 is ready: retry now
    assert pool.pick() == (1, "client:k2")
    # A 429 moves on for the next request, but the current one fails over instead.
    assert pool.penalize(1, ProviderHTTPError(429, "slow", retry_after=20)) is False
    assert pool.pick() == (1, "client:k2")  # none ready: k2 recovers first (20 s vs 600 s)
    clock.advance(20)
    assert pool.pick() == (1, "client:k2")
    assert made == ["k1", "k2"]  # one client per key, however often picked
    assert pool.penalize(1, ProviderHTTPError(500, "oops")) is False


def test_key_pool_needs_a_key() -> None:
    with pytest.raises(ValueError):
        KeyPool([], str)
