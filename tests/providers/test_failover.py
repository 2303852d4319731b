"""FailoverProvider policy beyond the R-matrix: retries, waiting for the primary, windows,
unexpected errors, callers that stop reading, and what Finish carries."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncIterator

import pytest

from bot.errors import AllProvidersFailed, ContextTooLong, ProviderHTTPError, ProviderTimeout
from bot.providers.base import (
    ChatEvent,
    ChatMessage,
    ChatRequest,
    TextDelta,
    complete,
)
from bot.providers.breaker import BreakerSettings
from bot.providers.failover import ChainEntry, FailoverPolicy, FailoverProvider, classify
from bot.providers.testing import FunctionProvider, ManualClock, ScriptedProvider

REQUEST = ChatRequest(model="", messages=(ChatMessage("user", "hello"),))


def chain(*providers: ScriptedProvider | FunctionProvider, **policy: object) -> FailoverProvider:
    clock = ManualClock()
    return FailoverProvider(
        [ChainEntry(p, f"{p.name}-model") for p in providers],
        FailoverPolicy(**policy),  # type: ignore[arg-type]
        clock=clock,
        sleep=clock.sleep,
    )


async def test_5xx_is_retried_once_after_a_short_jittered_pause_then_fails_over() -> None:
    stamps: list[float] = []

    def down(request: ChatRequest) -> str:
        stamps.append(time.perf_counter())
        raise ProviderHTTPError(502, "bad gateway")

    primary = FunctionProvider(down, name="primary")
    fallback = ScriptedProvider(["from the fallback"], name="fallback")
    failover = FailoverProvider(
        [ChainEntry(primary, "a"), ChainEntry(fallback, "b")], clock=ManualClock()
    )

    out = await complete(failover, REQUEST)

    assert out.text == "from the fallback"
    assert len(stamps) == 2
    assert 0.1 <= stamps[1] - stamps[0] <= 0.3 + 0.1  # real jitter in [100, 300] ms
    assert failover.stats().errors == {"server": 2}
    assert failover.stats().failovers == 1


async def test_5xx_retry_that_succeeds_stays_on_the_primary() -> None:
    primary = ScriptedProvider([ProviderHTTPError(500, "oops"), "second try worked"], name="p")
    fallback = ScriptedProvider([], name="f")

    out = await complete(chain(primary, fallback), REQUEST)

    assert (out.text, out.finish.provider) == ("second try worked", "p")
    assert fallback.requests == []


async def test_connection_error_is_retried_once() -> None:
    refused = ProviderHTTPError(0, "refused", retryable=True, code="connection")
    primary = ScriptedProvider([refused, refused], name="p")
    fallback = ScriptedProvider(["ok"], name="f")

    out = await complete(chain(primary, fallback), REQUEST)

    assert out.finish.provider == "f"
    assert len(primary.requests) == 2


async def test_finish_names_the_entry_that_answered_and_counts_attempts() -> None:
    primary = ScriptedProvider([ProviderTimeout("first_token", 1)], name="p")
    fallback = ScriptedProvider(["fine"], name="f")

    out = await complete(chain(primary, fallback), REQUEST)

    assert (out.finish.provider, out.finish.model) == ("f", "f-model")
    assert out.finish.meta["attempts"] == 2
    assert fallback.requests[0].model == "f-model"  # each entry gets its own model name


async def test_wait_for_primary_waits_out_a_short_cooldown_within_the_deadline() -> None:
    primary = ScriptedProvider(
        [ProviderHTTPError(429, "busy", retry_after=3), "the primary, after waiting"], name="p"
    )
    fallback = ScriptedProvider([], name="f")
    failover = chain(primary, fallback, wait_for_primary=True)
    started = failover.board.clock()

    out = await complete(failover, REQUEST)

    assert out.finish.provider == "p"
    assert failover.board.clock() - started == 5.0  # max(Retry-After, 5 s floor), on the clock
    assert fallback.requests == []


async def test_wait_for_primary_fails_over_when_the_cooldown_outlasts_the_deadline() -> None:
    primary = ScriptedProvider([ProviderHTTPError(429, "busy", retry_after=120)], name="p")
    fallback = ScriptedProvider(["fallback"], name="f")
    failover = chain(primary, fallback, wait_for_primary=True, deadline_s=30.0)
    started = failover.board.clock()

    out = await complete(failover, REQUEST)

    assert out.finish.provider == "f"
    assert failover.board.clock() == started


async def test_context_too_long_moves_only_to_a_larger_window() -> None:
    small = ScriptedProvider([ContextTooLong()], name="small")
    same = ScriptedProvider([], name="same")
    large = ScriptedProvider(["fits in 200k"], name="large")
    failover = FailoverProvider(
        [
            ChainEntry(small, "s", context_window=32_000),
            ChainEntry(same, "m", context_window=32_000),
            ChainEntry(large, "l", context_window=200_000),
        ],
        clock=ManualClock(),
    )

    out = await complete(failover, REQUEST)

    assert out.finish.provider == "large"
    assert same.requests == []


async def test_context_too_long_with_no_larger_window_is_raised() -> None:
    first = ScriptedProvider([ContextTooLong()], name="a")
    second = ScriptedProvider([], name="b")
    failover = FailoverProvider(
        [ChainEntry(first, "a", context_window=128_000), ChainEntry(second, "b", 8_000)],
        clock=ManualClock(),
    )

    with pytest.raises(ContextTooLong):
        await complete(failover, REQUEST)
    assert second.requests == []


async def test_an_unexpected_exception_fails_over_and_is_logged(
    caplog: pytest.LogCaptureFixture,
) -> None:
    primary = ScriptedProvider([KeyError("chunk without choices")], name="p")
    fallback = ScriptedProvider(["fine"], name="f")
    failover = chain(primary, fallback)

    with caplog.at_level(logging.ERROR, logger="bot.providers.failover"):
        out = await complete(failover, REQUEST)

    assert out.finish.provider == "f"
    assert failover.stats().errors == {"unexpected": 1}
    assert "p:p-model failed unexpectedly" in caplog.text


async def test_a_caller_that_stops_reading_frees_the_half_open_probe() -> None:
    clock = ManualClock()
    primary = ScriptedProvider(
        [ProviderHTTPError(429, "busy"), "a long answer in many words", "again"], name="p"
    )
    failover = FailoverProvider(
        [ChainEntry(primary, "m"), ChainEntry(ScriptedProvider(["fb"], name="f"), "m")],
        clock=clock,
    )
    await complete(failover, REQUEST)  # 429: open for 5 s
    clock.advance(5)

    stream = failover.stream(REQUEST)
    first = await anext(stream)  # this turn holds the probe...
    assert first == TextDelta("a")
    await stream.aclose()  # ...and gives up reading

    out = await complete(failover, REQUEST)  # the next turn can probe
    assert (out.text, out.finish.provider) == ("again", "p")


async def test_a_cancelled_turn_frees_the_half_open_probe() -> None:
    clock = ManualClock()
    hold = asyncio.Event()

    async def slow(request: ChatRequest) -> str:
        await hold.wait()
        return "late"

    primary = ScriptedProvider([ProviderHTTPError(429, "busy"), slow, "now"], name="p")
    failover = FailoverProvider(
        [ChainEntry(primary, "m"), ChainEntry(ScriptedProvider(["fb"], name="f"), "m")],
        clock=clock,
    )
    await complete(failover, REQUEST)
    clock.advance(5)

    turn = asyncio.create_task(complete(failover, REQUEST))
    while len(primary.requests) < 2:
        await asyncio.sleep(0)
    turn.cancel()
    with pytest.raises(asyncio.CancelledError):
        await turn

    assert (await complete(failover, REQUEST)).text == "now"


async def test_events_before_anything_visible_do_not_stop_a_failover() -> None:
    async def empty_then_fail(request: ChatRequest) -> AsyncIterator[ChatEvent]:
        async def events() -> AsyncIterator[ChatEvent]:
            yield TextDelta("")  # empty text is not visible
            raise ProviderHTTPError(0, "reset", code="connection")

        return events()

    primary = FunctionProvider(empty_then_fail, name="p")
    fallback = ScriptedProvider(["clean answer"], name="f")

    out = await complete(chain(primary, fallback, retry_delay_s=(0.0, 0.0)), REQUEST)

    assert (out.text, out.finish.provider) == ("clean answer", "f")


async def test_the_breaker_outlives_the_turn() -> None:
    primary = ScriptedProvider([ProviderHTTPError(503, "down")] * 4 + ["back"], name="p")
    fallback = ScriptedProvider(["fb"] * 3, name="f")
    failover = chain(
        primary, fallback, retry_delay_s=(0.0, 0.0), breaker=BreakerSettings(failure_threshold=4)
    )

    await complete(failover, REQUEST)  # failures 1 and 2
    await complete(failover, REQUEST)  # failures 3 and 4: open
    out = await complete(failover, REQUEST)

    assert out.finish.provider == "f"
    assert primary.remaining == 1  # the third turn never called the primary
    assert failover.state()[0]["state"] == "open"


@pytest.mark.parametrize(
    ("error", "kind"),
    [
        (ProviderHTTPError(429, "x"), "rate_limit"),
        (ProviderHTTPError(401, "x"), "auth"),
        (ProviderHTTPError(403, "x"), "auth"),
        (ProviderHTTPError(402, "x", code="billing"), "billing"),
        (ProviderHTTPError(429, "x", code="billing"), "billing"),
        (ProviderHTTPError(500, "x"), "server"),
        (ProviderHTTPError(408, "x", retryable=True), "server"),
        (ProviderHTTPError(0, "x", code="connection"), "connection"),
        (ProviderHTTPError(404, "x"), "bad_request"),
        (ContextTooLong(), "context_length"),
        (ProviderTimeout("idle", 1), "timeout"),
        (ValueError("bug"), "unexpected"),
    ],
)
def test_failure_classes(error: Exception, kind: str) -> None:
    assert classify(error) == kind


async def test_an_empty_chain_is_refused() -> None:
    with pytest.raises(ValueError):
        FailoverProvider([])


async def test_stats_after_a_mixed_run() -> None:
    primary = ScriptedProvider([ProviderHTTPError(429, "busy"), "ok"], name="p")
    fallback = ScriptedProvider(["fb", RuntimeError("boom")], name="f")
    failover = chain(primary, fallback)

    await complete(failover, REQUEST)
    with pytest.raises(AllProvidersFailed):  # p is cooling, f breaks
        await complete(failover, REQUEST)

    stats = failover.stats()
    assert (stats.calls, stats.successes, stats.failovers, stats.all_failed) == (3, 1, 1, 1)
    assert stats.skipped_open == 1
    assert stats.errors == {"rate_limit": 1, "unexpected": 1}
