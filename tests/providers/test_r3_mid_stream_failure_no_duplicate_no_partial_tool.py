"""R3: a stream that breaks part way.

After visible text the answer ends with an explicit "interrupted" Finish: the text already
streamed stays and is never sent again, nothing is re-asked elsewhere. A tool call cut off in
its JSON is never emitted. A failure before anything visible fails over transparently.
Checked for both wire formats.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator

import pytest
import pytest_asyncio

from bot.providers.anthropic import AnthropicProvider
from bot.providers.base import (
    ChatEvent,
    ChatMessage,
    ChatRequest,
    Finish,
    TextDelta,
    ToolCall,
    ToolCallEvent,
)
from bot.providers.config import ProviderConfig
from bot.providers.failover import ChainEntry, FailoverProvider
from bot.providers.openai import OpenAIProvider
from bot.providers.testing import ManualClock
from tests.fakes.llm import FakeLLM, Reply

REQUEST = ChatRequest(model="", messages=(ChatMessage("user", "tell me a long story"),))
FORTY_WORDS = " ".join(f"word{i}" for i in range(40))
CALL = ToolCall("call_1", "save_note", json.dumps({"title": "groceries", "body": "eggs, milk"}))
#: chunks sent before the first text word / the first tool-argument piece, per wire format
TEXT_STARTS_AT = {"openai": 1, "anthropic": 3}
ARGS_START_AT = {"openai": 2, "anthropic": 3}


@pytest_asyncio.fixture(params=["openai", "anthropic"])
async def setup(
    request: pytest.FixtureRequest,
) -> AsyncIterator[tuple[str, FakeLLM, FailoverProvider]]:
    kind: str = request.param
    async with FakeLLM() as fake:
        suffix = "/v1" if kind == "openai" else ""
        config = ProviderConfig(type=kind, base_url=fake.base_url + suffix)  # type: ignore[arg-type]
        made = OpenAIProvider if kind == "openai" else AnthropicProvider
        primary = made("primary", config, ["sk-a"])
        fallback = made("fallback", config, ["sk-b"])
        failover = FailoverProvider(
            [ChainEntry(primary, "primary-model"), ChainEntry(fallback, "fallback-model")],
            clock=ManualClock(),
        )
        yield kind, fake, failover
        await primary.aclose()
        await fallback.aclose()


async def collect(failover: FailoverProvider) -> list[ChatEvent]:
    return [event async for event in failover.stream(REQUEST)]


def text_of(events: list[ChatEvent]) -> str:
    return "".join(e.text for e in events if isinstance(e, TextDelta))


async def test_reset_after_40_tokens_ends_interrupted_without_duplicates(
    setup: tuple[str, FakeLLM, FailoverProvider],
) -> None:
    kind, fake, failover = setup
    fake.push(
        Reply(text=FORTY_WORDS, reset_after_chunks=TEXT_STARTS_AT[kind] + 40),
        model="primary-model",
    )

    events = await collect(failover)

    deltas = [e for e in events if isinstance(e, TextDelta)]
    assert text_of(events) == FORTY_WORDS  # each token exactly once, in order
    assert len(deltas) == 40
    finish = events[-1]
    assert isinstance(finish, Finish)
    assert (finish.reason, finish.provider) == ("interrupted", "primary")
    assert fake.calls(model="fallback-model") == []  # nothing re-asked, nothing re-sent
    assert failover.stats().interrupted == 1


async def test_reset_mid_answer_keeps_the_prefix_and_marks_it_interrupted(
    setup: tuple[str, FakeLLM, FailoverProvider],
) -> None:
    kind, fake, failover = setup
    fake.push(
        Reply(text=FORTY_WORDS, reset_after_chunks=TEXT_STARTS_AT[kind] + 20),
        model="primary-model",
    )

    events = await collect(failover)

    assert text_of(events) == " ".join(FORTY_WORDS.split()[:20])
    assert [type(e) for e in events][-1] is Finish
    assert events[-1].reason == "interrupted"  # type: ignore[union-attr]
    assert sum(isinstance(e, Finish) for e in events) == 1
    assert fake.calls(model="fallback-model") == []


async def test_reset_inside_tool_json_before_any_text_fails_over_transparently(
    setup: tuple[str, FakeLLM, FailoverProvider],
) -> None:
    kind, fake, failover = setup
    cut_in_json = Reply(tool_calls=[CALL], reset_after_chunks=ARGS_START_AT[kind] + 2)
    # A connection failure is retried once on the same entry before failing over.
    fake.push(cut_in_json, cut_in_json, model="primary-model")
    fake.push(Reply(text="Saved it."), model="fallback-model")

    events = await collect(failover)

    assert not any(isinstance(e, ToolCallEvent) for e in events)
    assert text_of(events) == "Saved it."
    finish = events[-1]
    assert isinstance(finish, Finish)
    assert (finish.reason, finish.provider) == ("stop", "fallback")


async def test_reset_inside_tool_json_after_text_never_emits_the_partial_call(
    setup: tuple[str, FakeLLM, FailoverProvider],
) -> None:
    kind, fake, failover = setup
    # openai: role, 2 words, tool head, pieces; anthropic: start, ping, block, 2 words, stop,
    # tool block, pieces
    cut = {"openai": 1 + 2 + 1 + 2, "anthropic": 3 + 2 + 2 + 2}[kind]
    fake.push(
        Reply(text="Saving now", tool_calls=[CALL], reset_after_chunks=cut), model="primary-model"
    )

    events = await collect(failover)

    assert text_of(events) == "Saving now"
    assert not any(isinstance(e, ToolCallEvent) for e in events)
    assert events[-1].reason == "interrupted"  # type: ignore[union-attr]
    assert fake.calls(model="fallback-model") == []


async def test_failure_before_the_first_token_fails_over_transparently(
    setup: tuple[str, FakeLLM, FailoverProvider],
) -> None:
    kind, fake, failover = setup
    cut_before_text = Reply(text=FORTY_WORDS, reset_after_chunks=TEXT_STARTS_AT[kind])
    fake.push(cut_before_text, cut_before_text, model="primary-model")
    fake.push(Reply(text="From the fallback."), model="fallback-model")

    events = await collect(failover)

    assert text_of(events) == "From the fallback."
    assert events[-1].provider == "fallback"  # type: ignore[union-attr]
    assert len(fake.calls(model="primary-model")) == 2
