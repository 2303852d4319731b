"""Streams that go wrong once under way, as a user's turn meets them: a Retry-After a server
filled with garbage, bytes that are not UTF-8 inside an event, a 200 that is an HTML page.

Each must end as one of our provider errors (retried, failed over, or told to the user), never
as a foreign exception, and must not lock an entry out for good."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest
import pytest_asyncio

from bot.errors import ProviderHTTPError
from bot.providers.anthropic import AnthropicProvider
from bot.providers.base import ChatMessage, ChatRequest, complete
from bot.providers.config import ProviderConfig
from bot.providers.failover import ChainEntry, FailoverProvider
from bot.providers.openai import OpenAIProvider
from bot.providers.remote import StreamingProvider
from bot.providers.testing import ManualClock
from tests.fakes.llm import FakeLLM, Reply

REQUEST = ChatRequest(model="", messages=(ChatMessage("user", "hello"),))
HTML = b"<!DOCTYPE html>\n<html><head><title>Sign in</title></head>\n\n<body>Log in</body></html>"


@pytest_asyncio.fixture
async def fake() -> AsyncIterator[FakeLLM]:
    async with FakeLLM() as server:
        yield server


def _provider(kind: str, name: str, fake: FakeLLM) -> StreamingProvider[object]:
    if kind == "openai":
        return OpenAIProvider(name, ProviderConfig(base_url=fake.base_url + "/v1"), [f"sk-{name}"])
    config = ProviderConfig(type="anthropic", base_url=fake.base_url)
    return AnthropicProvider(name, config, [f"sk-ant-{name}"])  # type: ignore[return-value]


@pytest_asyncio.fixture(params=["openai", "anthropic"])
async def pair(
    request: pytest.FixtureRequest, fake: FakeLLM
) -> AsyncIterator[tuple[StreamingProvider[object], StreamingProvider[object]]]:
    primary, fallback = (
        _provider(request.param, "primary", fake),
        _provider(request.param, "fallback", fake),
    )
    yield primary, fallback
    await primary.aclose()
    await fallback.aclose()


def _chain(
    pair: tuple[StreamingProvider[object], StreamingProvider[object]], clock: ManualClock
) -> FailoverProvider:
    primary, fallback = pair
    return FailoverProvider(
        [ChainEntry(primary, "big"), ChainEntry(fallback, "small")],  # type: ignore[arg-type]
        clock=clock,
    )


@pytest.mark.parametrize("garbage", ["inf", "nan", "1e400", "99999999999"])
async def test_a_garbage_retry_after_does_not_lock_the_primary_out_for_good(
    fake: FakeLLM,
    pair: tuple[StreamingProvider[object], StreamingProvider[object]],
    garbage: str,
) -> None:
    clock = ManualClock()
    failover = _chain(pair, clock)
    fake.push(Reply.error(429, retry_after=garbage), model="big")

    first = await complete(failover, REQUEST)
    assert first.finish.provider == "fallback"

    # An hour and a bit later the primary is asked again: a server's Retry-After is bounded.
    clock.advance(3601.0)
    later = await complete(failover, REQUEST)
    assert later.finish.provider == "primary"
    assert len(fake.calls(model="big")) == 2


async def test_bytes_that_are_not_utf8_in_an_event_are_a_malformed_event_retried_once(
    fake: FakeLLM, pair: tuple[StreamingProvider[object], StreamingProvider[object]]
) -> None:
    broken = Reply("never seen", garbage=b"data: \xff\xfe{}\n\n", garbage_after_chunks=1)
    await _retried_once(fake, pair, broken)


async def _retried_once(
    fake: FakeLLM,
    pair: tuple[StreamingProvider[object], StreamingProvider[object]],
    broken: Reply,
) -> None:
    """`broken` is the primary's first answer: it is retried once, on the primary."""
    failover = _chain(pair, ManualClock())
    fake.push(broken, Reply("the answer after one retry"), model="big")

    out = await complete(failover, REQUEST)

    assert out.text == "the answer after one retry"
    assert out.finish.provider == "primary"
    # a server fault worth one retry, not an unexpected crash of the provider's code
    assert failover.stats().errors == {"server": 1}


async def test_a_200_with_an_html_page_is_told_as_such_not_as_a_broken_stream(
    fake: FakeLLM, pair: tuple[StreamingProvider[object], StreamingProvider[object]]
) -> None:
    primary, _ = pair
    fake.push(Reply(raw_body=HTML, content_type="text/html"))

    with pytest.raises(ProviderHTTPError) as caught:
        await complete(primary, REQUEST)

    error = caught.value
    assert error.status == 502 and error.retryable
    assert "text/html" in str(error) and "not an event stream" in str(error)


async def test_a_refusal_that_echoes_the_key_does_not_carry_it_to_the_owner(
    fake: FakeLLM,
) -> None:
    """Some servers and proxies quote the key they refused; the notice to the owner goes out
    through a chat platform, and the control panel's recent errors are shown in a browser:
    neither may carry it."""
    key = "sk-proj-" + "Ab3dEf6hIj9kLm2nOp5qRs8tUv1wXy4z" * 2
    config = ProviderConfig(base_url=fake.base_url + "/v1")
    primary = OpenAIProvider("primary", config, [key])
    fallback = OpenAIProvider("fallback", config, ["sk-fallback"])
    notices: list[str] = []

    async def notify(text: str) -> None:
        notices.append(text)

    failover = FailoverProvider(
        [ChainEntry(primary, "big"), ChainEntry(fallback, "small")], notify=notify
    )
    body = f'{{"error": {{"message": "Incorrect API key provided: {key}"}}}}'.encode()
    fake.push(Reply(status=401, raw_body=body, content_type="application/json"), model="big")
    try:
        out = await complete(failover, REQUEST)
        await failover.aclose()  # the notice is sent in the background
    finally:
        await primary.aclose()
        await fallback.aclose()

    assert out.finish.provider == "fallback"
    [notice] = notices
    assert "refused its API key" in notice
    assert key not in notice and key[:24] not in notice
    [failure] = failover.board.recent.of("primary:big")
    assert key[:24] not in failure.message


async def test_an_error_page_goes_into_the_error_cut_short(
    fake: FakeLLM, pair: tuple[StreamingProvider[object], StreamingProvider[object]]
) -> None:
    primary, _ = pair
    page = b"<html><body>" + b"<p>Bad gateway</p>\n" * 5000 + b"</body></html>"
    fake.push(Reply(status=502, raw_body=page, content_type="text/html"))

    with pytest.raises(ProviderHTTPError) as caught:
        await complete(primary, REQUEST)

    error = caught.value
    assert error.status == 502 and error.retryable
    assert "Bad gateway" in str(error) and len(str(error)) < 400


async def test_a_tool_block_without_its_id_is_a_malformed_event_retried_once(
    fake: FakeLLM,
) -> None:
    config = ProviderConfig(type="anthropic", base_url=fake.base_url)
    primary = AnthropicProvider("primary", config, ["sk-ant-primary"])
    fallback = AnthropicProvider("fallback", config, ["sk-ant-fallback"])
    failover = FailoverProvider(
        [ChainEntry(primary, "big"), ChainEntry(fallback, "small")], clock=ManualClock()
    )
    block = b'{"type": "content_block_start", "index": 0, "content_block": {"type": "tool_use"}}'
    fake.push(
        Reply("never seen", garbage=b"event: content_block_start\ndata: " + block + b"\n\n"),
        Reply("the answer after one retry"),
        model="big",
    )
    try:
        out = await complete(failover, REQUEST)
    finally:
        await primary.aclose()
        await fallback.aclose()

    assert out.text == "the answer after one retry"
    assert failover.stats().errors == {"server": 1}


async def test_a_text_that_is_not_a_string_is_a_malformed_event_retried_once(
    fake: FakeLLM, pair: tuple[StreamingProvider[object], StreamingProvider[object]]
) -> None:
    # a list of parts where the API streams a string: passed on, it broke the turn that
    # joined the text, outside the provider's retry and fail-over
    if isinstance(pair[0], OpenAIProvider):
        garbage = b'data: {"choices": [{"delta": {"content": [{"type": "text", "text": "hi"}]}}]}'
    else:
        garbage = (
            b"event: content_block_delta\n"
            b'data: {"index": 0, "delta": {"type": "text_delta", "text": ["hi"]}}'
        )
    await _retried_once(fake, pair, Reply("never seen", garbage=garbage + b"\n\n"))


async def test_an_empty_list_for_a_text_is_no_text(
    fake: FakeLLM, pair: tuple[StreamingProvider[object], StreamingProvider[object]]
) -> None:
    # a server that sends `[]` for "no text" in a chunk: nothing to join, nothing to retry
    primary, _ = pair
    if isinstance(primary, OpenAIProvider):
        empty, after = b'data: {"choices": [{"delta": {"content": []}}]}', 1
    else:
        empty = (
            b"event: content_block_delta\n"
            b'data: {"index": 0, "delta": {"type": "text_delta", "text": []}}'
        )
        after = 2
    fake.push(Reply("the answer", garbage=empty + b"\n\n", garbage_after_chunks=after))

    out = await complete(primary, REQUEST)

    assert out.text == "the answer"
