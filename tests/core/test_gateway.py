"""The gateway end to end: inbound -> session -> agent -> reply, through the real openai SDK."""

from __future__ import annotations

import asyncio
import contextlib
import io
import itertools
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import pytest

from bot.errors import ProviderHTTPError
from bot.gateway import Gateway
from bot.providers.base import ChatRequest, ToolCall
from bot.providers.testing import FunctionProvider, ScriptedProvider
from bot.sessions import Session
from channels.console import ConsoleChannel
from tests.fakes.channel import RecordingChannel
from tests.fakes.llm import FakeLLM, Reply


def _fake_llm_config(make_config: Any, fake: FakeLLM, **extra: Any) -> Any:
    return make_config(
        providers={"fake": fake.provider(context_window=8000, first_token_timeout_s=5)},
        models={"chat": ["fake:test-model"]},
        **extra,
    )


@pytest.fixture(autouse=True)
def _fake_key(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("FAKE_LLM_KEY", "sk-test-not-a-secret")


async def test_turn_with_a_tool_call_through_the_openai_sdk(make_config: Any) -> None:
    async with FakeLLM() as fake:
        fake.push(
            Reply(tool_calls=[ToolCall("call_1", "current_time", '{"zone": "UTC"}')]),
            Reply(text="It is noon where you are."),
        )
        channel = RecordingChannel(console=True)
        async with Gateway(_fake_llm_config(make_config, fake), channels={"test": channel}) as gw:
            await channel.push("what time is it?")
            texts = await channel.wait_for_messages(1)
            await _until(lambda: gw.sessions.active == 0 and not gw.sessions.queue_depth)
            assert texts == ["It is noon where you are."]
            first, second = fake.calls(path="/v1/chat/completions")
            assert first.body["messages"][-1] == {"role": "user", "content": "what time is it?"}
            assert any(t["function"]["name"] == "current_time" for t in first.body["tools"])
            tool_msg = second.body["messages"][-1]
            assert tool_msg["role"] == "tool" and "UTC" in tool_msg["content"]
            session = gw.sessions.get("test:dm:u1")
            rows = await gw.store.turns.for_session(session.row.id)  # type: ignore[union-attr]
            assert [r["role"] for r in rows] == ["user", "assistant", "tool", "assistant"]
            assert rows[-1]["outcome"] == "ok" and rows[-1]["output_tokens"] > 0
            assert rows[-1]["model"] == "test-model"


async def test_console_channel_end_to_end(make_config: Any) -> None:
    async with FakeLLM() as fake:
        fake.push(
            Reply(tool_calls=[ToolCall("c1", "current_time", "{}")]),
            Reply(text="Here is the time."),
        )
        out = io.StringIO()
        console = ConsoleChannel(
            "console", stdin=io.StringIO("hello there\n/status\n"), stdout=out, user="owner"
        )
        config = _fake_llm_config(make_config, fake)
        async with Gateway(config, channels={"console": console}):
            await asyncio.wait_for(console.closed.wait(), 10)
        text = out.getvalue()
        assert "bot> Here is the time." in text
        assert "session: console:dm:owner" in text


async def test_streaming_edits_one_message_at_a_throttled_rate(make_config: Any) -> None:
    async def slow(request: ChatRequest) -> AsyncIterator[Any]:
        from bot.providers.base import Finish, TextDelta

        for i in range(60):
            await asyncio.sleep(0.01)
            yield TextDelta(f"word{i:03d} ")
        yield Finish()

    channel = RecordingChannel(console=True)
    async with Gateway(
        make_config(), provider=FunctionProvider(slow), channels={"test": channel}
    ) as gw:
        await channel.push("stream please")
        await _until(lambda: gw.sessions.active == 0 and channel.texts())
        await _until(lambda: channel.texts()[0].rstrip().endswith("word059"))
    sends = [c for c in channel.calls if c[0] == "send"]
    edits = [c for c in channel.calls if c[0] == "edit"]
    assert len(sends) == 1 and edits, "one message, edited in place"
    stamps = [c[2] for c in channel.calls if c[0] in ("send", "edit")]
    gaps = [b - a for a, b in itertools.pairwise(stamps)]
    assert min(gaps) >= channel.edit_interval * 0.9
    assert [t.rstrip() for t in channel.texts()] == [" ".join(f"word{i:03d}" for i in range(60))]


async def test_long_reply_is_chunked_at_the_channel_limit(make_config: Any) -> None:
    long = "\n\n".join(f"Paragraph {i}: " + "lorem ipsum " * 20 for i in range(20))
    channel = RecordingChannel(max_message_len=500, console=True)
    async with Gateway(
        make_config(), provider=ScriptedProvider([long]), channels={"test": channel}
    ) as gw:
        await channel.push("write a lot")
        await _until(lambda: gw.sessions.active == 0 and len(channel.texts()) > 1)
    assert all(len(t) <= 500 for t in channel.texts())
    assert " ".join(" ".join(channel.texts()).split()) == " ".join(long.split())


async def test_per_session_order_and_cross_session_concurrency(make_config: Any) -> None:
    running: list[str] = []
    peak = 0
    overlapped = asyncio.Event()

    async def answer(request: ChatRequest) -> str:
        nonlocal peak
        text = request.messages[-1].content
        running.append(text)
        peak = max(peak, len(running))
        if len(running) > 1:
            overlapped.set()
        # a turn waits (a while) for another session's turn to overlap it: no sleep of a
        # guessed length, which a busy machine could outlast before the other one starts
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(3):
                await overlapped.wait()
        running.remove(text)
        return f"re: {text}"

    channel = RecordingChannel(console=True)
    async with Gateway(
        make_config(), provider=FunctionProvider(answer), channels={"test": channel}
    ):
        for i in range(3):
            await channel.push(f"a{i}", user="alice")
        for i in range(3):
            await channel.push(f"b{i}", user="bob")
        await channel.wait_for_messages(3, chat_id="alice")
        await channel.wait_for_messages(3, chat_id="bob")
    assert channel.texts("alice") == ["re: a0", "re: a1", "re: a2"]
    assert channel.texts("bob") == ["re: b0", "re: b1", "re: b2"]
    assert peak == 2, "one turn at a time per session, sessions side by side"


async def test_duplicate_delivery_is_dropped_before_any_llm_call(make_config: Any) -> None:
    provider = ScriptedProvider(["one answer", "never used"])
    channel = RecordingChannel(console=True)
    async with Gateway(make_config(), provider=provider, channels={"test": channel}) as gw:
        message = channel.inbound("hi", delivery_id="update-42")
        await channel.sink(message)  # type: ignore[misc]
        await channel.sink(message)  # type: ignore[misc]
        await channel.wait_for_messages(1)
        await _until(lambda: gw.sessions.active == 0)
        await channel.sink(message)  # type: ignore[misc]
        await asyncio.sleep(0.1)
    assert len(provider.requests) == 1
    assert channel.texts() == ["one answer"]


async def test_provider_failure_is_a_short_message_and_the_session_goes_on(
    make_config: Any,
) -> None:
    provider = ScriptedProvider([ProviderHTTPError(500, "boom"), "fine now"])
    channel = RecordingChannel(console=True)
    async with Gateway(make_config(), provider=provider, channels={"test": channel}) as gw:
        await channel.push("first")
        await channel.wait_for_messages(1)
        await channel.push("second")
        texts = await channel.wait_for_messages(2)
        await _until(lambda: gw.sessions.active == 0)
        session = gw.sessions.get("test:dm:u1")
        rows = await gw.store.turns.for_session(session.row.id)  # type: ignore[union-attr]
    assert "not answering" in texts[0]
    assert texts[1] == "fine now"
    assert [r["outcome"] for r in rows if r["role"] == "assistant"] == ["error", "ok"]
    # the failed reply is not history: the second request sees both user messages only
    assert [m.role for m in provider.requests[1].messages] == ["user", "user"]


async def test_garbage_and_timeouts_reach_the_person_as_short_errors(make_config: Any) -> None:
    async with FakeLLM() as fake:
        fake.push(Reply.error(400, "invalid_request"), Reply(hang=True))
        config = _fake_llm_config(
            make_config,
            fake,
            gateway={"turn_deadline_s": 1.0},
        )
        channel = RecordingChannel(console=True)
        async with Gateway(config, channels={"test": channel}):
            await channel.push("first")
            await channel.wait_for_messages(1)
            await channel.push("second")
            texts = await channel.wait_for_messages(2, timeout=8)
    assert all(len(t) < 200 for t in texts)
    assert "took too long" in texts[1] or "not answering" in texts[1]


@pytest.mark.parametrize(
    ("text", "expected"), [("   ", "empty message"), ("x" * 20_000, "at most 16,000")]
)
async def test_empty_and_oversized_messages_get_a_clear_reply(
    make_config: Any, text: str, expected: str
) -> None:
    provider = ScriptedProvider([])
    channel = RecordingChannel(console=True)
    async with Gateway(make_config(), provider=provider, channels={"test": channel}):
        await channel.push(text)
        texts = await channel.wait_for_messages(1)
    assert expected in texts[0]
    assert provider.requests == []


async def test_new_starts_a_fresh_session(make_config: Any) -> None:
    provider = ScriptedProvider(["a", "b"])
    channel = RecordingChannel(console=True)
    async with Gateway(make_config(), provider=provider, channels={"test": channel}):
        await channel.push("remember x")
        await channel.wait_for_messages(1)
        await channel.push("/new")
        await channel.push("what was x?")
        await channel.wait_for_messages(3)
    assert channel.texts()[1] == "Started a fresh conversation."
    assert [m.content for m in provider.requests[1].messages] == ["what was x?"]


async def _twelve_long_messages(
    make_config: Any, answer: Callable[[ChatRequest], Awaitable[str]]
) -> tuple[list[str], Session]:
    """Twelve messages of ~300 characters in one session, with a context window of 1,000
    tokens (compaction is due every few turns); the answers, and the session after them."""
    config = make_config(
        providers={"local": {"preset": "ollama", "context_window": 1000}},
        agent={"keep_recent_messages": 2},
    )
    channel = RecordingChannel(console=True)
    async with Gateway(config, provider=FunctionProvider(answer), channels={"test": channel}) as gw:
        for i in range(12):
            await channel.push(f"message {i} " + "x" * 300)
        texts = await channel.wait_for_messages(12, timeout=10)
        return texts, gw.sessions.get("test:dm:u1")


async def test_compaction_at_95_percent_keeps_the_newest_verbatim(make_config: Any) -> None:
    calls: list[ChatRequest] = []

    async def answer(request: ChatRequest) -> str:
        calls.append(request)
        if request.purpose == "compaction":
            return "SUMMARY: the person talked about numbers."
        return "ok " + "y" * 300

    _texts, session = await _twelve_long_messages(make_config, answer)
    assert any(c.purpose == "compaction" for c in calls)
    assert session.row is not None and session.row.summary.startswith("SUMMARY")
    last = [c for c in calls if c.purpose == "chat"][-1]
    assert "SUMMARY" in last.system
    assert last.messages[-1].content.startswith("message 11")
    estimate = sum(len(m.content) for m in last.messages) / 4 + len(last.system) / 4
    assert estimate < 1000


@pytest.mark.parametrize("failure", ["provider error", "empty summary"])
async def test_a_failed_compaction_still_answers_and_keeps_the_history(
    make_config: Any, failure: str
) -> None:
    """Compaction is a side step of a turn: when the model that summarizes fails or writes
    nothing, the person is still answered (from the history as it is) and no message of the
    history is dropped for a summary that does not exist."""
    asked: list[str] = []

    async def answer(request: ChatRequest) -> str:
        if request.purpose == "compaction":
            asked.append(request.purpose)
            if failure == "provider error":
                raise ProviderHTTPError(503, "overloaded", retryable=True)
            return "  "
        return "ok " + "y" * 300

    texts, session = await _twelve_long_messages(make_config, answer)
    assert asked, "compaction was asked for"
    assert all(t.startswith("ok ") for t in texts)
    assert session.row is not None and session.row.summary == ""
    first = next(m.content for m in session.messages() if m.role == "user")
    assert first.startswith("message 0")


async def test_a_history_too_long_that_cannot_be_compacted_is_not_sent_again(
    make_config: Any,
) -> None:
    """When the model refuses the context and the compaction that would shorten it fails,
    the same history would be refused again: the model is asked once, the person told."""
    from bot.errors import ContextTooLong

    purposes: list[str] = []

    async def answer(request: ChatRequest) -> str:
        purposes.append(request.purpose)
        if request.purpose == "compaction":
            raise ProviderHTTPError(503, "overloaded", retryable=True)
        if purposes.count("chat") == 3:
            raise ContextTooLong()
        return "fine"

    channel = RecordingChannel(console=True)
    async with Gateway(
        make_config(agent={"keep_recent_messages": 2}),
        provider=FunctionProvider(answer),
        channels={"test": channel},
    ):
        for i in range(3):
            await channel.push(f"message {i}")
            await channel.wait_for_messages(i + 1)
    assert purposes.count("chat") == 3 and purposes.count("compaction") == 1
    assert channel.texts()[-1] != "fine"


async def test_health_endpoint_on_loopback(make_config: Any) -> None:
    import aiohttp

    config = make_config(http={"enabled": True, "port": 0})
    async with Gateway(config, provider=ScriptedProvider([])) as gw:
        url = f"http://127.0.0.1:{gw.http.port}"
        async with aiohttp.ClientSession() as http:
            async with http.get(url + "/health") as resp:
                body = await resp.json()
                assert resp.status == 200 and body["status"] == "ok" and "sessions" in body
            async with http.get(url + "/health", headers={"X-Forwarded-For": "1.2.3.4"}) as resp:
                assert await resp.json() == {"status": "ok"}
            async with http.get(url + "/metrics") as resp:
                assert resp.status == 200 and "decapod_turns" in await resp.text()
            async with http.get(url + "/metrics", headers={"Host": "bot.example.com"}) as resp:
                assert resp.status == 401


async def _until(predicate: Any, timeout: float = 15.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError("condition not reached in time")
        await asyncio.sleep(0.01)


async def test_context_too_long_compacts_and_retries_the_same_model(make_config: Any) -> None:
    from bot.errors import ContextTooLong

    calls: list[ChatRequest] = []

    async def answer(request: ChatRequest) -> str:
        calls.append(request)
        if request.purpose == "compaction":
            return "SUMMARY of earlier talk"
        if len([c for c in calls if c.purpose == "chat"]) == 3:
            raise ContextTooLong()
        return "fine"

    channel = RecordingChannel(console=True)
    async with Gateway(
        make_config(agent={"keep_recent_messages": 2}),
        provider=FunctionProvider(answer),
        channels={"test": channel},
    ):
        for i in range(3):
            await channel.push(f"message {i}")
            await channel.wait_for_messages(i + 1)
    purposes = [c.purpose for c in calls]
    assert purposes == ["chat", "chat", "chat", "memory_extract", "compaction", "chat"]
    assert channel.texts()[-1] == "fine"
    assert "SUMMARY" in calls[-1].system


async def test_a_message_with_half_an_emoji_is_answered_and_kept(make_config: Any) -> None:
    """A lone UTF-16 surrogate (a client cut an emoji in half; JSON carries it as an escape)
    became U+FFFD; it used to pass on to the store, which cannot encode it: the answer was
    sent, then "Something went wrong", and the turn ran again at every start."""
    async with FakeLLM() as fake:
        fake.push(Reply(text="Nice!"))
        channel = RecordingChannel(console=True)
        async with Gateway(_fake_llm_config(make_config, fake), channels={"test": channel}) as gw:
            await channel.push("look \ud83d what I found")
            await _until(lambda: gw.sessions.active == 0 and not gw.sessions.queue_depth)
            await channel.push("/remind in 1h see \ud83d again")
            texts = await channel.wait_for_messages(2)
            await _until(lambda: gw.sessions.active == 0 and not gw.sessions.queue_depth)
            session = gw.sessions.get("test:dm:u1")
            rows = await gw.store.turns.for_session(session.row.id)  # type: ignore[union-attr]
            unfinished = await gw.store.deliveries.unfinished()
        [call] = fake.calls(path="/v1/chat/completions")
        assert call.body["messages"][-1]["content"] == "look \ufffd what I found"
        assert texts[0] == "Nice!" and "see \ufffd again" in texts[1]
        assert [r["role"] for r in rows] == ["user", "assistant"]
        assert unfinished == []


@pytest.mark.parametrize(
    ("status", "said", "not_said"),
    [
        # the model refusing this request, not an outage: the person is not told to wait
        (400, "refused this request as invalid", "not answering"),
        # a wrong base_url or an unknown model: the operator's settings, not the request
        (404, "the bot owner needs to check its settings", "invalid"),
    ],
)
async def test_a_request_the_model_refuses_is_named_so(
    make_config: Any, status: int, said: str, not_said: str
) -> None:
    """The provider's own text (which may quote the request) is not shown."""
    async with FakeLLM() as fake:
        fake.push(Reply.error(status, "invalid_request"))
        channel = RecordingChannel(console=True)
        async with Gateway(_fake_llm_config(make_config, fake), channels={"test": channel}):
            await channel.push("hello")
            texts = await channel.wait_for_messages(1)
    assert said in texts[0]
    assert not_said not in texts[0] and "temperature" not in texts[0]


async def test_a_history_too_long_even_after_compaction_says_so(make_config: Any) -> None:
    """The model refuses the context every time: the history is compacted and the request
    sent once more, then the person reads that the conversation is too long."""
    async with FakeLLM() as fake:
        fake.push(*[Reply.context_length() for _ in range(6)])
        channel = RecordingChannel(console=True)
        async with Gateway(_fake_llm_config(make_config, fake), channels={"test": channel}):
            await channel.push("hello")
            texts = await channel.wait_for_messages(1)
    assert "too long for the language model" in texts[0] and "/new" in texts[0]
    assert "not answering" not in texts[0] and "8192" not in texts[0]
