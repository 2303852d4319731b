"""What the SDK providers share: Retry-After parsing, error classification, key rotation."""

from __future__ import annotations

import asyncio
import email.utils
import time

import httpx2
import pytest

from bot.errors import ContextTooLong, ProviderHTTPError, ProviderTimeout
from bot.providers.chunk_timer import ChunkTimer
from bot.providers.remote import (
    KeyPool,
    parse_retry_after,
    status_error,
    transport_error,
)
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


async def _read_chunks(timer: ChunkTimer, gaps: list[float], between_s: float = 0.0) -> int:
    """Waits on one 'chunk' per gap (a sleep that long); the consumer's own time in between."""
    read = 0
    for gap in gaps:
        await timer.chunk(asyncio.sleep(gap))
        read += 1
        if between_s:
            await asyncio.sleep(between_s)
    return read


# Reads of ~0.01 s against deadlines of 1 s and more: a loop that lags a few hundred ms on a
# busy machine still reads each chunk in time.


async def test_chunk_timer_never_cuts_a_stream_that_keeps_sending() -> None:
    # 150 chunks ~0.01 s apart: 1.5 s in all, past both deadlines; the one timer must move on
    timer = ChunkTimer(first_token_s=1.0, idle_s=1.0)
    try:
        assert await _read_chunks(timer, [0.01] * 150) == 150
    finally:
        timer.close()


async def test_chunk_timer_does_not_count_the_consumers_time() -> None:
    # 1.2 s of the consumer's own work after each chunk, longer than the idle gap
    timer = ChunkTimer(first_token_s=1.0, idle_s=1.0)
    try:
        assert await _read_chunks(timer, [0.01] * 2, between_s=1.2) == 2
    finally:
        timer.close()


async def test_chunk_timer_cuts_a_stream_that_stalls_mid_answer() -> None:
    first_token_s = 30.0
    timer = ChunkTimer(first_token_s=first_token_s, idle_s=1.0)
    loop = asyncio.get_running_loop()

    await _read_chunks(timer, [0.01] * 5)  # the first idle gap armed an earlier deadline
    stalled_at = loop.time()
    with pytest.raises(ProviderTimeout) as caught:
        await timer.chunk(asyncio.sleep(first_token_s))
    cut_after = loop.time() - stalled_at

    assert (caught.value.phase, caught.value.seconds) == ("idle", 1.0)
    # at the idle deadline, not at the first-token one the timer was first armed for
    assert 0.9 <= cut_after < first_token_s / 2


async def test_chunk_timer_cuts_a_silent_server_at_the_first_token_deadline() -> None:
    timer = ChunkTimer(first_token_s=0.2, idle_s=5.0)

    with pytest.raises(ProviderTimeout) as caught:
        await timer.request(asyncio.sleep(5.0))

    assert (caught.value.phase, caught.value.seconds) == ("first_token", 0.2)


async def test_chunk_timer_leaves_an_outside_cancel_a_cancel() -> None:
    timer = ChunkTimer(first_token_s=5.0, idle_s=5.0)
    reading = asyncio.create_task(timer.chunk(asyncio.sleep(5.0)))
    await asyncio.sleep(0.05)

    reading.cancel()

    with pytest.raises(asyncio.CancelledError):
        await reading
    timer.close()


async def test_chunk_timer_leaves_an_outside_deadline_at_the_same_time_a_timeout() -> None:
    """The caller's own deadline and the timer's go off in the same pass of the loop: two
    cancels, one of them the caller's, so the caller's TimeoutError, not ProviderTimeout."""
    timer = ChunkTimer(first_token_s=0.5, idle_s=5.0)

    with pytest.raises(TimeoutError):  # ProviderTimeout is no TimeoutError
        async with asyncio.timeout_at(timer._first_deadline):
            await timer.request(asyncio.sleep(5.0))
