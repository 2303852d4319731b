"""R1: the primary answers 429 with Retry-After: 2 and the fallback is healthy.

The turn is served by the fallback with < 500 ms added (no sleep); the primary cools down, so
turns inside the cooldown make no call to it; once the cooldown is over it is tried again.
"""

from __future__ import annotations

import time
from collections.abc import AsyncIterator
from dataclasses import replace

import pytest_asyncio

from bot.providers.base import ChatMessage, ChatRequest, complete
from bot.providers.config import ProviderConfig
from bot.providers.failover import ChainEntry, FailoverPolicy, FailoverProvider
from bot.providers.openai import OpenAIProvider
from bot.providers.testing import ManualClock
from tests.fakes.llm import FakeLLM, Reply

REQUEST = ChatRequest(model="", messages=(ChatMessage("user", "hello"),))


@pytest_asyncio.fixture
async def fake() -> AsyncIterator[FakeLLM]:
    async with FakeLLM() as server:
        yield server


@pytest_asyncio.fixture
async def providers(fake: FakeLLM) -> AsyncIterator[tuple[OpenAIProvider, OpenAIProvider]]:
    config = ProviderConfig(base_url=fake.base_url + "/v1")
    primary = OpenAIProvider("primary", config, ["sk-primary"])
    fallback = OpenAIProvider("fallback", config, ["sk-fallback"])
    yield primary, fallback
    await primary.aclose()
    await fallback.aclose()


def chain(
    providers: tuple[OpenAIProvider, OpenAIProvider], clock: ManualClock, **policy: float
) -> FailoverProvider:
    primary, fallback = providers
    return FailoverProvider(
        [ChainEntry(primary, "big"), ChainEntry(fallback, "small")],
        FailoverPolicy(**policy),  # type: ignore[arg-type]
        clock=clock,
    )


async def test_429_is_served_by_the_fallback_at_once(
    fake: FakeLLM, providers: tuple[OpenAIProvider, OpenAIProvider]
) -> None:
    clock = ManualClock()
    failover = chain(providers, clock)
    # The same turn against the fallback alone, to know what "added latency" is measured against.
    started = time.perf_counter()
    await complete(providers[1], replace(REQUEST, model="small"))
    baseline = time.perf_counter() - started
    # a wait far beyond any pause of a busy machine: going to the fallback at once is
    # told apart from waiting it out by a wide margin
    fake.push(Reply.error(429, retry_after=30), model="big")

    started = time.perf_counter()
    out = await complete(failover, REQUEST)
    elapsed = time.perf_counter() - started

    assert (out.finish.provider, out.finish.model) == ("fallback", "small")
    assert out.text
    assert elapsed - baseline < 10
    assert len(fake.calls(model="big")) == 1
    assert failover.stats().errors == {"rate_limit": 1}
    assert failover.stats().failovers == 1


async def test_primary_gets_no_call_while_cooling_and_is_tried_after_retry_after(
    fake: FakeLLM, providers: tuple[OpenAIProvider, OpenAIProvider]
) -> None:
    clock = ManualClock()
    # The floor is what lifts a short Retry-After; with none, the cooldown is exactly 2 s.
    failover = chain(providers, clock, rate_limit_min_cooldown_s=0.0)
    fake.push(Reply.error(429, retry_after=2), model="big")
    await complete(failover, REQUEST)

    clock.advance(1.9)
    second = await complete(failover, REQUEST)
    assert second.finish.provider == "fallback"
    assert len(fake.calls(model="big")) == 1  # the second turn made 0 calls to the primary
    state = {s["name"]: s for s in failover.state()}
    assert state["primary:big"]["state"] == "open"
    assert 0 < state["primary:big"]["cooldown_remaining_s"] <= 0.1

    clock.advance(0.2)
    third = await complete(failover, REQUEST)
    assert third.finish.provider == "primary"
    assert len(fake.calls(model="big")) == 2
    assert failover.state()[0]["state"] == "closed"


async def test_a_short_retry_after_still_cools_for_the_5s_floor(
    fake: FakeLLM, providers: tuple[OpenAIProvider, OpenAIProvider]
) -> None:
    clock = ManualClock()
    failover = chain(providers, clock)  # default floor: max(Retry-After, 5 s)
    fake.push(Reply.error(429, retry_after=2), model="big")
    await complete(failover, REQUEST)

    clock.advance(2.1)
    await complete(failover, REQUEST)
    assert len(fake.calls(model="big")) == 1

    clock.advance(3.0)
    out = await complete(failover, REQUEST)
    assert out.finish.provider == "primary"
    assert len(fake.calls(model="big")) == 2


async def test_429_without_retry_after_cools_for_5s(
    fake: FakeLLM, providers: tuple[OpenAIProvider, OpenAIProvider]
) -> None:
    clock = ManualClock()
    failover = chain(providers, clock)
    fake.push(Reply.error(429), model="big")
    await complete(failover, REQUEST)

    assert failover.state()[0]["cooldown_remaining_s"] == 5.0
    clock.advance(4.9)
    await complete(failover, REQUEST)
    assert len(fake.calls(model="big")) == 1
    clock.advance(0.2)
    await complete(failover, REQUEST)
    assert len(fake.calls(model="big")) == 2
