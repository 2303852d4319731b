"""R4: errors that another attempt would not fix.

(a) 400: no failover, one attempt, the error itself is raised. (b) 401 with no other key: the
entry's breaker opens for its long cooldown, the fallback serves, the owner hears of it once
across many turns. (c) context too long: ContextTooLong reaches the caller (which compacts and
retries the same chain); no other model is tried.
"""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest
import pytest_asyncio

from bot.errors import ContextTooLong, ProviderHTTPError
from bot.providers.base import ChatMessage, ChatRequest, complete
from bot.providers.config import ProviderConfig
from bot.providers.failover import ChainEntry, FailoverProvider
from bot.providers.openai import OpenAIProvider
from bot.providers.testing import ManualClock
from tests.fakes.llm import FakeLLM, Reply

REQUEST = ChatRequest(model="", messages=(ChatMessage("user", "hello"),))


class Owner:
    def __init__(self) -> None:
        self.messages: list[str] = []

    async def notify(self, text: str) -> None:
        self.messages.append(text)


@pytest_asyncio.fixture
async def fake() -> AsyncIterator[FakeLLM]:
    async with FakeLLM() as server:
        yield server


@pytest_asyncio.fixture
async def world(fake: FakeLLM) -> AsyncIterator[tuple[FailoverProvider, ManualClock, Owner]]:
    config = ProviderConfig(base_url=fake.base_url + "/v1")
    primary = OpenAIProvider("primary", config, ["sk-revoked"])
    fallback = OpenAIProvider("fallback", config, ["sk-good"])
    clock, owner = ManualClock(), Owner()
    failover = FailoverProvider(
        [ChainEntry(primary, "big"), ChainEntry(fallback, "small")],
        clock=clock,
        notify=owner.notify,
    )
    yield failover, clock, owner
    await failover.aclose()
    await primary.aclose()
    await fallback.aclose()


async def test_400_is_raised_after_one_attempt_without_failover(
    fake: FakeLLM, world: tuple[FailoverProvider, ManualClock, Owner]
) -> None:
    failover, _, _ = world
    fake.push(Reply.error(400), model="big")

    with pytest.raises(ProviderHTTPError) as caught:
        await complete(failover, REQUEST)

    assert caught.value.status == 400
    assert "temperature" in str(caught.value)  # the API's own message, for the log
    assert len(fake.calls(model="big")) == 1
    assert fake.calls(model="small") == []
    # The entry answered, so its breaker is not charged for a bad request.
    assert failover.state()[0]["state"] == "closed"
    assert failover.state()[0]["consecutive_failures"] == 0


async def test_401_opens_the_breaker_long_and_notifies_the_owner_once(
    fake: FakeLLM, world: tuple[FailoverProvider, ManualClock, Owner]
) -> None:
    failover, clock, owner = world
    fake.push(Reply.error(401), model="big")

    out = await complete(failover, REQUEST)

    assert out.finish.provider == "fallback"
    primary = failover.state()[0]
    assert (primary["state"], primary["last_error"]) == ("open", "auth")
    assert primary["cooldown_remaining_s"] == 600.0

    for _ in range(3):  # later turns go straight to the fallback
        clock.advance(60)
        assert (await complete(failover, REQUEST)).finish.provider == "fallback"
    assert len(fake.calls(model="big")) == 1

    # After 10 minutes one probe goes through; the key is still bad: same outage, no new notice.
    clock.advance(600)
    fake.push(Reply.error(401), model="big")
    assert (await complete(failover, REQUEST)).finish.provider == "fallback"
    assert len(fake.calls(model="big")) == 2

    await failover.aclose()  # lets the notice in flight finish
    assert len(owner.messages) == 1
    assert "primary" in owner.messages[0]
    assert "sk-revoked" not in owner.messages[0]


async def test_owner_hears_again_only_after_the_provider_recovered(
    fake: FakeLLM, world: tuple[FailoverProvider, ManualClock, Owner]
) -> None:
    failover, clock, owner = world
    fake.push(Reply.error(401), model="big")
    await complete(failover, REQUEST)
    clock.advance(601)
    assert (await complete(failover, REQUEST)).finish.provider == "primary"  # key fixed

    fake.push(Reply.error(401), model="big")  # revoked again: a new outage
    await complete(failover, REQUEST)

    await failover.aclose()
    assert len(owner.messages) == 2


async def test_billing_opens_for_an_hour_and_notifies_once(
    fake: FakeLLM, world: tuple[FailoverProvider, ManualClock, Owner]
) -> None:
    failover, clock, owner = world
    fake.push(Reply.insufficient_quota(), model="big")

    assert (await complete(failover, REQUEST)).finish.provider == "fallback"
    assert failover.state()[0]["cooldown_remaining_s"] == 3600.0
    assert failover.state()[0]["last_error"] == "billing"
    clock.advance(3599)
    await complete(failover, REQUEST)
    assert len(fake.calls(model="big")) == 1

    await failover.aclose()
    assert len(owner.messages) == 1
    assert "billing" in owner.messages[0]


async def test_context_too_long_surfaces_and_no_other_model_is_tried(
    fake: FakeLLM, world: tuple[FailoverProvider, ManualClock, Owner]
) -> None:
    failover, _, _ = world
    fake.push(Reply.context_length(), model="big")

    with pytest.raises(ContextTooLong):
        await complete(failover, REQUEST)

    assert fake.calls(model="small") == []
    # The caller compacts and asks the same chain again: the same model answers.
    out = await complete(failover, REQUEST)
    assert (out.finish.provider, out.finish.model) == ("primary", "big")
    assert failover.stats().errors == {"context_length": 1}
