"""The web tools in real turns: through the gateway and the openai SDK against the fake
LLM, a page is read and a search is made, and the answer carries the content and the link.
What web content changes for commands and file writes: test_s14_*."""

from __future__ import annotations

import json
import logging
import re
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import pytest

from bot.errors import ConfigError
from bot.gateway import Gateway
from bot.providers.base import ToolCall
from bot.providers.testing import FunctionProvider
from bot.web.tools import WEB_GUIDANCE
from channels.slack_mrkdwn import to_mrkdwn
from channels.telegram_html import markdown_to_html
from tests.fakes.channel import RecordingChannel
from tests.fakes.llm import FakeLLM, RecordedRequest, Reply
from tests.fakes.web import ARTICLE_SENTENCE, FakePages, FakeSearchAPI

SEARCH_RESULTS = [
    {"title": "Hermit crab care", "url": "https://crabs.example/care", "snippet": "Keep two."},
    {"title": "Shell swaps", "url": "https://crabs.example/swaps", "snippet": "In a chain."},
]
_SOURCE = re.compile(r"<<<untrusted web content from (\S+)>>>")
_FIRST_LINK = re.compile(r"\[([^\]]+)\]\((https?://[^)\s]+)\)")


@pytest.fixture(autouse=True)
def _fake_key(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("FAKE_LLM_KEY", "sk-test-not-a-secret")


@pytest.fixture
async def searxng() -> AsyncIterator[FakeSearchAPI]:
    async with FakeSearchAPI("searxng", SEARCH_RESULTS) as api:
        yield api


def _config(
    make_config: Any,
    fake: FakeLLM,
    api: FakeSearchAPI | None,
    search: list[dict[str, str]] | None = None,
    **extra: Any,
) -> Any:
    if search is None:
        search = [{"type": "searxng", "base_url": api.base_url}] if api else []
    return make_config(
        providers={"fake": fake.provider(context_window=16000, first_token_timeout_s=10)},
        models={"chat": ["fake:test-model"]},
        sandbox={"backend": "none"},
        memory={"enabled": False},
        web={"allow_hosts": ["page.test"], "search": search},
        **extra,
    )


def _model(recorded: RecordedRequest) -> Reply:
    """Reads a page when asked what one says, searches when asked to search, and answers
    from the tool result with the link it came from, as the system prompt asks."""
    last = recorded.body["messages"][-1]
    if last["role"] == "user":
        text = last["content"]
        if text.startswith("what does this page say:"):
            url = text.split(":", 1)[1].strip()
            return Reply(tool_calls=[ToolCall("f1", "web_fetch", json.dumps({"url": url}))])
        query = text.removeprefix("search for ")
        return Reply(tool_calls=[ToolCall("s1", "web_search", json.dumps({"query": query}))])
    content = last["content"]
    if "web search" in content.splitlines()[0]:
        title, url = _FIRST_LINK.search(content).groups()  # type: ignore[union-attr]
        return Reply(text=f"The top result is about {title.lower()}.\n\n[{title}]({url})")
    source = _SOURCE.search(content).group(1)  # type: ignore[union-attr]
    said = ARTICLE_SENTENCE if ARTICLE_SENTENCE in content else "nothing I could read"
    return Reply(text=f"The page says: {said}.\n\n[All about hermit crabs]({source})")


async def test_what_does_this_page_say_answers_with_the_content_and_the_link(
    make_config: Any, pages: FakePages, searxng: FakeSearchAPI
) -> None:
    url = pages.url("/article", host="page.test")
    async with FakeLLM() as fake:
        fake.reply_fn = _model
        channel = RecordingChannel(console=True)
        async with Gateway(_config(make_config, fake, searxng), channels={"test": channel}):
            await channel.push(f"what does this page say: {url}")
            [reply] = await channel.wait_for_messages(1, timeout=30)
    assert reply == f"The page says: {ARTICLE_SENTENCE}.\n\n[All about hermit crabs]({url})"
    first, second = fake.calls(path="/v1/chat/completions")
    offered = {t["function"]["name"] for t in first.body["tools"]}
    assert {"web_fetch", "web_search"} <= offered
    assert WEB_GUIDANCE in first.body["messages"][0]["content"]
    tool_msg = second.body["messages"][-1]
    assert tool_msg["role"] == "tool" and tool_msg["content"].endswith("<<<end>>>")
    assert pages.hits["/article"] == 1
    # the link is a link on each platform
    assert f'<a href="{url}">All about hermit crabs</a>' in markdown_to_html(reply)
    assert f"<{url}|All about hermit crabs>" in to_mrkdwn(reply)


async def test_search_for_x_answers_with_the_result_and_its_link(
    make_config: Any, searxng: FakeSearchAPI
) -> None:
    async with FakeLLM() as fake:
        fake.reply_fn = _model
        channel = RecordingChannel(console=True)
        async with Gateway(_config(make_config, fake, searxng), channels={"test": channel}):
            await channel.push("search for hermit crab care")
            [reply] = await channel.wait_for_messages(1, timeout=30)
    assert reply == (
        "The top result is about hermit crab care.\n\n"
        "[Hermit crab care](https://crabs.example/care)"
    )
    assert [q for q, _ in searxng.requests] == ["hermit crab care"]


async def test_without_a_search_provider_web_search_is_not_offered(
    make_config: Any, caplog: Any
) -> None:
    caplog.set_level(logging.INFO, "decapod")
    async with FakeLLM() as fake:
        fake.push("hello")
        channel = RecordingChannel(console=True)
        async with Gateway(_config(make_config, fake, None), channels={"test": channel}):
            await channel.push("hi")
            await channel.wait_for_messages(1, timeout=30)
    offered = {
        t["function"]["name"] for t in fake.calls(path="/v1/chat/completions")[0].body["tools"]
    }
    assert "web_fetch" in offered and "web_search" not in offered
    assert sum("web_search is off" in r.message for r in caplog.records) == 1


async def test_web_tools_off_offer_nothing_and_add_no_rule(make_config: Any) -> None:
    provider = FunctionProvider(lambda request: "ok")
    channel = RecordingChannel(console=True)
    config = make_config(
        sandbox={"backend": "none"}, memory={"enabled": False}, web={"enabled": False}
    )
    async with Gateway(config, provider=provider, channels={"test": channel}):
        await channel.push("hi")
        await channel.wait_for_messages(1)
    [request] = provider.requests
    assert not {t.name for t in request.tools} & {"web_fetch", "web_search"}
    assert WEB_GUIDANCE not in request.system


async def test_a_missing_extractor_is_a_start_error_when_asked_for(
    make_config: Any, monkeypatch: pytest.MonkeyPatch, caplog: Any
) -> None:
    monkeypatch.setattr("bot.web.extractor_installed", lambda: False)
    config = make_config(sandbox={"backend": "none"}, memory={"enabled": False})
    provider = FunctionProvider(lambda request: "ok")
    async with Gateway(
        config, provider=provider, channels={"test": RecordingChannel(console=True)}
    ) as gw:
        assert "web_fetch" not in gw.tools
    assert any("web_fetch is off" in r.message for r in caplog.records)
    explicit = make_config(sandbox={"backend": "none"}, web={"enabled": True})
    with pytest.raises(ConfigError, match=r"web\.enabled.*trafilatura"):
        await Gateway(
            explicit, provider=provider, channels={"test": RecordingChannel(console=True)}
        ).start()


async def test_a_search_key_comes_from_the_environment_and_is_redacted(
    make_config: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    from bot.security.redact import default_redactor

    key = "BSA-test-key-0123456789abcdef"
    config = make_config(
        sandbox={"backend": "none"},
        memory={"enabled": False},
        web={"search": [{"type": "brave", "api_key_env": "TEST_BRAVE_KEY"}]},
    )
    provider = FunctionProvider(lambda request: "ok")
    with pytest.raises(ConfigError, match=r"web\.search\[0\]\.api_key_env.*TEST_BRAVE_KEY"):
        await Gateway(config, provider=provider, channels={}).start()
    monkeypatch.setenv("TEST_BRAVE_KEY", key)
    async with Gateway(config, provider=provider, channels={}) as gw:
        assert "web_search" in gw.tools
    assert key not in default_redactor().redact(f"the key is {key}")


async def test_a_searxng_behind_basic_auth_is_asked_with_its_user_and_password(
    make_config: Any, searxng: FakeSearchAPI, monkeypatch: pytest.MonkeyPatch
) -> None:
    from bot.security.redact import default_redactor

    password = "shell-password-0123456789"
    async with FakeLLM() as fake:
        fake.reply_fn = _model
        entry = {"type": "searxng", "base_url": searxng.base_url, "username": "crab",
                 "password_env": "TEST_SEARXNG_PASSWORD"}  # fmt: skip
        config = _config(make_config, fake, None, search=[entry])
        channel = RecordingChannel(console=True)
        with pytest.raises(ConfigError, match=r"web\.search\[0\]\.password_env"):
            await Gateway(config, channels={"test": channel}).start()
        monkeypatch.setenv("TEST_SEARXNG_PASSWORD", password)
        async with Gateway(config, channels={"test": channel}):
            await channel.push("search for hermit crab care")
            [reply] = await channel.wait_for_messages(1, timeout=30)
    assert reply.startswith("The top result is about hermit crab care.")
    [(_, headers)] = searxng.requests
    assert headers["Authorization"] == aiohttp.encode_basic_auth("crab", password)
    assert password not in default_redactor().redact(f"the password is {password}")
