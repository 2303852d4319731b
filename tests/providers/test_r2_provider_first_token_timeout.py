"""R2: the primary accepts the request and never sends a byte.

The fallback answers; the turn takes at most the first-token timeout plus the fallback's own
time plus 0.5 s; the hung connection is closed and no task is left behind.
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import replace

import pytest

from bot.errors import AllProvidersFailed, ProviderTimeout
from bot.providers.base import ChatMessage, ChatRequest, complete
from bot.providers.config import ProviderConfig
from bot.providers.failover import ChainEntry, FailoverProvider
from bot.providers.openai import OpenAIProvider
from bot.providers.testing import ManualClock
from tests.fakes.llm import FakeLLM, Reply

FIRST_TOKEN_TIMEOUT_S = 0.3
REQUEST = ChatRequest(model="", messages=(ChatMessage("user", "are you there?"),))


async def _new_tasks(before: set[asyncio.Task[object]], wait_s: float = 1.0) -> set[str]:
    """Tasks started since `before` that are still running after a short settle."""
    deadline = time.monotonic() + wait_s
    while True:
        left = {t for t in asyncio.all_tasks() - before if not t.done()}
        if not left or time.monotonic() > deadline:
            return {t.get_name() for t in left}
        await asyncio.sleep(0.01)


async def test_hung_primary_times_out_and_the_fallback_answers() -> None:
    before = set(asyncio.all_tasks())
    async with FakeLLM() as fake:
        config = ProviderConfig(
            base_url=fake.base_url + "/v1", first_token_timeout_s=FIRST_TOKEN_TIMEOUT_S
        )
        primary = OpenAIProvider("primary", config, ["sk-a"])
        # the fallback's own timeout is not under test: a busy machine may keep its first
        # answer longer than the primary's 0.3 s
        fallback_config = ProviderConfig(base_url=fake.base_url + "/v1", first_token_timeout_s=30.0)
        fallback = OpenAIProvider("fallback", fallback_config, ["sk-b"])
        failover = FailoverProvider(
            [ChainEntry(primary, "hung"), ChainEntry(fallback, "ok")], clock=ManualClock()
        )
        try:
            started = time.perf_counter()
            await complete(fallback, replace(REQUEST, model="ok"))
            fallback_s = time.perf_counter() - started
            fake.push(Reply(hang=True), model="hung")

            started = time.perf_counter()
            out = await complete(failover, REQUEST)
            elapsed = time.perf_counter() - started

            assert (out.finish.provider, out.finish.model) == ("fallback", "ok")
            assert out.text
            assert FIRST_TOKEN_TIMEOUT_S <= elapsed <= FIRST_TOKEN_TIMEOUT_S + fallback_s + 0.5
            assert failover.stats().errors == {"timeout": 1}
            # The client closed the hung connection itself: the server saw it go.
            await fake.wait_idle(1.0)
            assert fake.disconnects == 1
            assert len(fake.calls(model="hung")) == 1
        finally:
            await primary.aclose()
            await fallback.aclose()
    assert await _new_tasks(before) == set()


async def test_timeout_is_not_retried_on_the_same_entry() -> None:
    async with FakeLLM() as fake:
        # long enough for the request to reach the server on a busy machine, so the one call
        # it saw is the one attempt made
        config = ProviderConfig(base_url=fake.base_url + "/v1", first_token_timeout_s=2.0)
        only = OpenAIProvider("only", config, ["sk-a"])
        failover = FailoverProvider([ChainEntry(only, "hung")], clock=ManualClock())
        fake.push(Reply(hang=True), model="hung")
        try:
            with pytest.raises(AllProvidersFailed) as caught:
                await complete(failover, REQUEST)
        finally:
            await only.aclose()

        assert [type(e) for _, e in caught.value.attempts] == [ProviderTimeout]
        assert len(fake.calls(model="hung")) == 1
