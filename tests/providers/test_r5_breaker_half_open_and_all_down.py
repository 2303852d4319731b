"""R5: the breaker's life (with a manual clock), and a chain where everything is down.

Five consecutive failures open it; after the cooldown exactly one half-open probe goes through
even with concurrent turns; a failed probe re-opens it with the cooldown doubled; a successful
one closes it. All down: one AllProvidersFailed within the turn's deadline, with no more
provider calls than the attempt budget.
"""

from __future__ import annotations

import asyncio
import time

import pytest

from bot.errors import AllProvidersFailed, ProviderHTTPError
from bot.providers.base import ChatMessage, ChatRequest, complete
from bot.providers.breaker import BreakerSettings
from bot.providers.config import ProviderConfig
from bot.providers.failover import ChainEntry, FailoverPolicy, FailoverProvider
from bot.providers.openai import OpenAIProvider
from bot.providers.testing import FunctionProvider, ManualClock
from tests.fakes.llm import FakeLLM, Reply

REQUEST = ChatRequest(model="", messages=(ChatMessage("user", "hello"),))


class Primary:
    """Fails with 503 while `failing`; a closed `gate` holds calls until it opens."""

    def __init__(self) -> None:
        self.calls = 0
        self.failing = True
        self.gate = asyncio.Event()
        self.gate.set()

    async def __call__(self, request: ChatRequest) -> str:
        self.calls += 1
        await self.gate.wait()
        if self.failing:
            raise ProviderHTTPError(503, "service unavailable")
        return "primary answer"


async def test_open_then_one_half_open_probe_then_doubled_cooldown_then_closed() -> None:
    clock = ManualClock()
    primary = Primary()
    failover = FailoverProvider(
        [
            ChainEntry(FunctionProvider(primary, name="primary"), "p"),
            ChainEntry(FunctionProvider(lambda r: "fallback answer", name="fallback"), "f"),
        ],
        FailoverPolicy(
            breaker=BreakerSettings(failure_threshold=5, base_cooldown_s=30, max_cooldown_s=300),
            retry_delay_s=(0.0, 0.0),
        ),
        clock=clock,
        sleep=clock.sleep,
    )

    # Each turn: a 503, one retry, then the fallback. Failures count across turns.
    for _ in range(3):
        assert (await complete(failover, REQUEST)).finish.provider == "fallback"
    assert primary.calls == 5
    state = failover.state()[0]
    assert (state["state"], state["consecutive_failures"], state["cooldown_remaining_s"]) == (
        "open",
        5,
        30.0,
    )
    await complete(failover, REQUEST)
    assert primary.calls == 5  # open: skipped

    # Cooled down: of five concurrent turns exactly one probes the primary.
    clock.advance(30)
    assert failover.state()[0]["state"] == "half_open"
    primary.gate.clear()
    turns = [asyncio.create_task(complete(failover, REQUEST)) for _ in range(5)]
    async with asyncio.timeout(10):
        while sum(t.done() for t in turns) < 4:  # the other four are served meanwhile
            await asyncio.sleep(0.001)
    assert primary.calls == 6
    primary.gate.set()  # the probe fails
    results = await asyncio.gather(*turns)
    assert {r.finish.provider for r in results} == {"fallback"}
    assert primary.calls == 6, "exactly one half-open probe"

    state = failover.state()[0]
    assert (state["state"], state["cooldown_remaining_s"]) == ("open", 60.0)  # doubled

    clock.advance(59)
    await complete(failover, REQUEST)
    assert primary.calls == 6
    clock.advance(1)
    primary.failing = False
    out = await complete(failover, REQUEST)
    assert out.finish.provider == "primary"
    state = failover.state()[0]
    assert (state["state"], state["consecutive_failures"]) == ("closed", 0)


async def test_all_down_raises_once_within_the_attempt_budget() -> None:
    async with FakeLLM() as fake:
        fake.reply_fn = lambda request: Reply.error(503)
        config = ProviderConfig(base_url=fake.base_url + "/v1")
        providers = [OpenAIProvider(f"p{i}", config, ["sk"]) for i in range(3)]
        failover = FailoverProvider(
            [ChainEntry(p, "m") for p in providers],
            FailoverPolicy(attempt_budget=4, deadline_s=5.0),
        )
        try:
            started = time.perf_counter()
            with pytest.raises(AllProvidersFailed) as caught:
                await complete(failover, REQUEST)
            elapsed = time.perf_counter() - started
        finally:
            for provider in providers:
                await provider.aclose()

        assert len(fake.calls(path="/v1/chat/completions")) == 4  # the budget, no storm
        assert elapsed < 5.0
        assert [name for name, _ in caught.value.attempts] == ["p0:m", "p0:m", "p1:m", "p1:m"]
        assert caught.value.user_message  # one friendly sentence for the person
        assert failover.stats().all_failed == 1


async def test_all_hanging_gives_up_at_the_deadline() -> None:
    # Seconds, not tenths: on a busy machine an attempt can end a good while after its
    # timeout, and the second attempt must still start before the deadline cuts it.
    first_token_s, deadline_s = 2.0, 3.0
    async with FakeLLM() as fake:
        fake.reply_fn = lambda request: Reply(hang=True)
        config = ProviderConfig(base_url=fake.base_url + "/v1", first_token_timeout_s=first_token_s)
        providers = [OpenAIProvider(f"p{i}", config, ["sk"]) for i in range(8)]
        failover = FailoverProvider(
            [ChainEntry(p, "m") for p in providers],
            FailoverPolicy(attempt_budget=10, deadline_s=deadline_s),
        )
        try:
            started = time.perf_counter()
            with pytest.raises(AllProvidersFailed) as caught:
                await complete(failover, REQUEST)
            elapsed = time.perf_counter() - started
            await fake.wait_idle()
        finally:
            for provider in providers:
                await provider.aclose()

        # Not before the deadline; and well before the 16 s that waiting out every entry's
        # first-token timeout would take.
        assert deadline_s <= elapsed < 12.0
        # the first entry timed out, the second was cut by the deadline, no third was tried
        assert [name for name, _ in caught.value.attempts] == ["p0:m", "p1:m"]
        assert len(fake.calls(path="/v1/chat/completions")) <= 2


async def test_every_entry_open_fails_fast_without_calls() -> None:
    clock = ManualClock()
    calls: list[ChatRequest] = []

    def down(request: ChatRequest) -> str:
        calls.append(request)
        raise ProviderHTTPError(429, "slow down", retry_after=60)

    failover = FailoverProvider(
        [ChainEntry(FunctionProvider(down, name=n), "m") for n in ("a", "b")], clock=clock
    )
    with pytest.raises(AllProvidersFailed):
        await complete(failover, REQUEST)
    assert len(calls) == 2

    with pytest.raises(AllProvidersFailed) as caught:
        await complete(failover, REQUEST)
    assert len(calls) == 2
    assert [type(e).__name__ for _, e in caught.value.attempts] == ["CircuitOpen", "CircuitOpen"]
