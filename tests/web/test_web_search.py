"""web_search's providers against fake SearXNG, Brave and Tavily APIs on 127.0.0.1, and
the chain failing over between them."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import pytest

import bot.web.net
from bot.errors import ToolError
from bot.providers.testing import ManualClock
from bot.web.config import WebConfig
from bot.web.search import MAX_ANSWER_BYTES, SearchChain, build_provider, plain
from tests.fakes.web import FakeSearchAPI

RESULTS = [
    {"title": "Hermit crab - <b>Wiki</b>", "url": "https://crabs.example/hermit", "snippet":
     "Hermit crabs are <strong>decapod</strong> crustaceans &amp; shell users."},
    {"title": "Crab care", "url": "https://care.example/crabs", "snippet": "How to keep them."},
    {"title": "Not a web link", "url": "javascript:alert(1)", "snippet": "dropped"},
]  # fmt: skip


@pytest.fixture
async def apis() -> AsyncIterator[dict[str, FakeSearchAPI]]:
    servers = {kind: FakeSearchAPI(kind, RESULTS) for kind in ("searxng", "brave", "tavily")}
    for server in servers.values():
        await server.start()
    yield servers
    for server in servers.values():
        await server.stop()


@pytest.fixture
async def session() -> AsyncIterator[aiohttp.ClientSession]:
    s = bot.web.net.open_session(bot.web.net.system_network(), user_agent="test")
    yield s
    await s.close()


def _chain(
    apis: dict[str, FakeSearchAPI],
    session: aiohttp.ClientSession,
    order: list[str],
    clock: Any = None,
    **extra: Any,
) -> SearchChain:
    entries = [{"type": k, "base_url": apis[k].base_url, "timeout_s": 2} for k in order]
    config = WebConfig.model_validate({"search": entries, **extra})
    keys = {"searxng": None, "brave": "brave-key-1", "tavily": "tvly-key-2"}
    providers = [build_provider(p, session, keys[p.type]) for p in config.search]
    return SearchChain(providers, config.search_cooldown_s, **({"clock": clock} if clock else {}))


@pytest.mark.parametrize("kind", ["searxng", "brave", "tavily"])
async def test_each_provider_returns_title_url_and_snippet(
    apis: dict[str, FakeSearchAPI], session: aiohttp.ClientSession, kind: str
) -> None:
    name, results = await _chain(apis, session, [kind]).search("hermit crab", 5)
    assert name == kind
    assert [(r.title, r.url) for r in results] == [
        ("Hermit crab - Wiki", "https://crabs.example/hermit"),
        ("Crab care", "https://care.example/crabs"),
    ]
    assert results[0].snippet == "Hermit crabs are decapod crustaceans & shell users."
    query, headers = apis[kind].requests[-1]
    assert query == "hermit crab"
    if kind == "brave":
        assert headers["X-Subscription-Token"] == "brave-key-1"
    elif kind == "tavily":
        assert headers["Authorization"] == "Bearer tvly-key-2"
    else:
        assert "Authorization" not in headers


async def test_count_is_passed_on_and_respected(
    apis: dict[str, FakeSearchAPI], session: aiohttp.ClientSession
) -> None:
    _, results = await _chain(apis, session, ["brave"]).search("crab", 1)
    assert len(results) == 1


@pytest.mark.parametrize("fault", ["status", "garbage", "hang"])
async def test_the_chain_fails_over_to_the_next_provider(
    apis: dict[str, FakeSearchAPI], session: aiohttp.ClientSession, fault: str
) -> None:
    if fault == "status":
        apis["searxng"].status = 500
    elif fault == "garbage":
        apis["searxng"].garbage = True
    else:
        apis["searxng"].hang = True
    chain = _chain(apis, session, ["searxng", "brave", "tavily"])
    name, results = await chain.search("crab", 5)
    assert name == "brave" and results
    assert len(apis["searxng"].requests) == 1 and not apis["tavily"].requests
    # the failed provider is skipped while it cools down: no second request
    name, _ = await chain.search("crab again", 5)
    assert name == "brave" and len(apis["searxng"].requests) == 1


async def test_all_down_is_said_once_then_the_tool_is_not_offered_until_cooled(
    apis: dict[str, FakeSearchAPI], session: aiohttp.ClientSession, caplog: Any
) -> None:
    clock = ManualClock()
    apis["searxng"].status = 503
    apis["brave"].status = 429
    apis["brave"].retry_after = 120
    chain = _chain(apis, session, ["searxng", "brave"], clock=clock, search_cooldown_s=60)
    with pytest.raises(ToolError, match=r"unavailable.*searxng: HTTP 503; brave: HTTP 429"):
        await chain.search("crab", 5)
    assert not chain.available()
    with pytest.raises(ToolError, match="cooling down"):
        await chain.search("crab", 5)
    assert len(apis["searxng"].requests) == 1 and len(apis["brave"].requests) == 1
    assert sum("web search is unavailable" in r.message for r in caplog.records) == 1
    apis["searxng"].status = apis["brave"].status = 200
    clock.advance(61)  # searxng has cooled; brave waits out its Retry-After of 120 s
    assert chain.available()
    name, _ = await chain.search("crab", 5)
    assert name == "searxng"


async def test_an_absurd_retry_after_does_not_turn_search_off_until_a_restart(
    apis: dict[str, FakeSearchAPI], session: aiohttp.ClientSession
) -> None:
    clock = ManualClock()
    apis["searxng"].status = 429
    apis["searxng"].retry_after = "99999999"  # three years
    chain = _chain(apis, session, ["searxng"], clock=clock, search_cooldown_s=60)
    with pytest.raises(ToolError, match="HTTP 429"):
        await chain.search("crab", 5)
    assert not chain.available()
    apis["searxng"].status = 200
    clock.advance(3601)  # the longest pause a Retry-After may ask for is an hour
    assert chain.available()
    name, results = await chain.search("crab", 5)
    assert name == "searxng" and results


def test_snippets_lose_markup_but_keep_their_text() -> None:
    assert plain("a <em>b</em> &lt;c&gt; &amp; <script>x</script>") == "a b <c> & x"
    assert plain(None) == ""


async def test_an_answer_past_the_byte_cap_is_cut_off_and_the_next_provider_asked(
    apis: dict[str, FakeSearchAPI], session: aiohttp.ClientSession
) -> None:
    """A search API that sends more than any result list needs is not read to its end (the
    timeout alone would let it fill memory for as long as it lasts): it fails with its size
    and the chain goes on to the next provider."""
    apis["searxng"].bulk = MAX_ANSWER_BYTES // 2  # three results: 1.5 times the cap
    with pytest.raises(ToolError, match=f"searxng: the answer is larger than {MAX_ANSWER_BYTES:,}"):
        await _chain(apis, session, ["searxng"]).search("crab", 5)
    name, results = await _chain(apis, session, ["searxng", "brave"]).search("crab", 5)
    assert name == "brave" and len(results) == 2
