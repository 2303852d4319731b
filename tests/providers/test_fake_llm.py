"""The fake LLM server itself, through the real SDKs: embeddings, whole (non-streamed)
answers, the reply hook, and that it binds to loopback only."""

from __future__ import annotations

import math
from collections.abc import AsyncIterator

import anthropic
import openai
import pytest
import pytest_asyncio

from bot.providers.base import ToolCall
from tests.fakes.llm import FakeLLM, RecordedRequest, Reply, fake_embedding


@pytest_asyncio.fixture
async def fake() -> AsyncIterator[FakeLLM]:
    async with FakeLLM(embedding_dim=8) as server:
        yield server


@pytest_asyncio.fixture
async def oai(fake: FakeLLM) -> AsyncIterator[openai.AsyncOpenAI]:
    client = openai.AsyncOpenAI(api_key="sk-test", base_url=fake.base_url + "/v1", max_retries=0)
    yield client
    await client.close()


async def test_embeddings_are_deterministic_unit_vectors(
    fake: FakeLLM, oai: openai.AsyncOpenAI
) -> None:
    # The SDK asks for base64 by default; a float list is asked for explicitly here.
    as_base64 = await oai.embeddings.create(model="embed", input=["crab", "lobster"])
    as_floats = await oai.embeddings.create(model="embed", input="crab", encoding_format="float")

    crab, lobster = (item.embedding for item in as_base64.data)
    assert len(crab) == 8
    assert math.isclose(sum(v * v for v in crab), 1.0, rel_tol=1e-5)
    assert crab != lobster
    assert as_floats.data[0].embedding == pytest.approx(fake_embedding("crab", 8))
    assert crab == pytest.approx(as_floats.data[0].embedding, rel=1e-5)


async def test_whole_answers_in_both_shapes(fake: FakeLLM, oai: openai.AsyncOpenAI) -> None:
    call = ToolCall("call_1", "lookup", '{"word": "krill"}')
    fake.push(Reply(text="openai says hi", tool_calls=[call]), "anthropic says hi")

    chat = await oai.chat.completions.create(
        model="gpt-x", messages=[{"role": "user", "content": "hi"}]
    )
    claude = anthropic.AsyncAnthropic(api_key="sk-ant", base_url=fake.base_url, max_retries=0)
    try:
        message = await claude.messages.create(
            model="claude-x", max_tokens=10, messages=[{"role": "user", "content": "hi"}]
        )
    finally:
        await claude.close()

    choice = chat.choices[0]
    assert choice.message.content == "openai says hi"
    assert choice.message.tool_calls is not None
    assert choice.message.tool_calls[0].id == "call_1"
    assert message.content[0].type == "text"
    assert message.content[0].text == "anthropic says hi"


async def test_reply_fn_answers_when_nothing_is_queued(
    fake: FakeLLM, oai: openai.AsyncOpenAI
) -> None:
    def echo(request: RecordedRequest) -> Reply:
        return Reply(text=f"model {request.model}")

    fake.reply_fn = echo
    fake.push("queued first")

    texts = []
    for _ in range(2):
        chat = await oai.chat.completions.create(
            model="m7", messages=[{"role": "user", "content": "hi"}]
        )
        texts.append(chat.choices[0].message.content)

    assert texts == ["queued first", "model m7"]
    assert [r.model for r in fake.calls(path="/v1/chat/completions")] == ["m7", "m7"]


def test_binds_to_loopback_only() -> None:
    with pytest.raises(AssertionError):
        FakeLLM(host="0.0.0.0")
