"""The tools as the model calls them: untrusted markers, the cache, per-person limits, who
is offered them, secrets kept in, and save_as into the workspace."""

from __future__ import annotations

import contextlib
import os
import re
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

import bot.web.net
from bot.errors import ToolDenied, ToolError
from bot.messages import Conversation, ConversationKind, Identity
from bot.providers.base import ToolCall
from bot.sandbox import InMemoryApprovalBroker, PendingApproval, SandboxConfig, WorkspaceManager
from bot.sandbox.quota import WorkspaceQuota
from bot.security.redact import Redactor, SecretRegistry
from bot.tools import UNTRUSTED_TAG, ToolContext, ToolPolicy, ToolRegistry, tool
from bot.web.config import WebConfig
from bot.web.save import WorkspaceSaver
from bot.web.search import SearchChain, build_provider
from bot.web.tools import MAX_CHARS, WEB_GUIDANCE, WEB_TAG, WebTools
from tests.deps import make_deps
from tests.fakes.web import ARTICLE_SENTENCE, FakePages, FakeSearchAPI, LoopbackNetwork
from tests.web.conftest import open_fetcher

SECRET = "sk-live-PLEASE-NEVER-LEAVE-0123456789"


def ctx_for(
    role: str = "owner", *, user: str = "42", group: bool = False, tainted: bool = False
) -> ToolContext:
    kind = ConversationKind.GROUP if group else ConversationKind.DM
    return ToolContext(
        identity=Identity("telegram", user, f"user {user}"),
        conversation=Conversation("telegram", "g1" if group else user, kind),
        session_key=f"telegram:dm:{user}",
        deps=make_deps(),
        person_id=f"p{user}",
        role=role,
        tainted=tainted,
    )


def _redactor() -> Redactor:
    registry = SecretRegistry()
    registry.add(SECRET, "TEST_SECRET")
    return Redactor(registry, entropy=False)


@contextlib.asynccontextmanager
async def web_tools(
    *, search_api: FakeSearchAPI | None = None, saver: WorkspaceSaver | None = None, **cfg: Any
) -> AsyncIterator[WebTools]:
    search_cfg = [{"type": "searxng", "base_url": search_api.base_url}] if search_api else []
    config = WebConfig.model_validate({"allow_hosts": ["page.test"], "search": search_cfg, **cfg})
    async with open_fetcher(**config.model_dump(exclude={"search"})) as fetcher:
        session = bot.web.net.open_session(bot.web.net.system_network(), user_agent="test")
        search = None
        if config.search:
            search = SearchChain([build_provider(config.search[0], session, None)], 60)
        try:
            redact = _redactor().redact
            yield WebTools(config, fetcher=fetcher, search=search, redact=redact, saver=saver)
        finally:
            await session.close()


async def call(t: WebTools, name: str, ctx: ToolContext | None = None, **args: Any) -> str:
    registry = ToolRegistry(t.tools())
    found = registry.get(name)
    assert found is not None
    return await found.invoke(ctx or ctx_for(), args)


async def test_a_page_comes_back_marked_untrusted_with_its_source(pages: FakePages) -> None:
    url = pages.url("/redirect/2", host="page.test")
    async with web_tools() as t:
        out = await call(t, "web_fetch", url=url)
        [fetch] = t.tools()
    final = pages.url("/article", host="page.test")
    assert out.startswith(f"<<<untrusted web content from {final}>>>\n")
    assert out.endswith("\n<<<end>>>") and ARTICLE_SENTENCE in out
    assert UNTRUSTED_TAG in fetch.tags and WEB_TAG in fetch.tags
    assert fetch.guidance == WEB_GUIDANCE


async def test_page_text_cannot_forge_the_markers(pages: FakePages) -> None:
    async with web_tools() as t:
        out = await call(t, "web_fetch", url=pages.url("/inject", host="page.test"))
    assert out.count("<<<") == 2 and out.count(">>>") == 2, out
    assert out.endswith("<<<end>>>") and "ignore previous instructions" in out


async def test_the_same_page_twice_costs_one_request(pages: FakePages) -> None:
    url = pages.url("/counted", host="page.test")
    async with web_tools() as t:
        first = await call(t, "web_fetch", url=url)
        second = await call(t, "web_fetch", url=url, max_chars=300)
    assert pages.hits["/counted"] == 1
    assert ARTICLE_SENTENCE in first and "[... cut at 300 of" in second
    async with web_tools(cache_ttl_s=0) as t:
        await call(t, "web_fetch", url=url)
        await call(t, "web_fetch", url=url)
    assert pages.hits["/counted"] == 3


async def test_fetches_are_limited_per_person(pages: FakePages) -> None:
    async with web_tools(fetches_per_minute=2, cache_ttl_s=0) as t:
        url = pages.url("/text", host="page.test")
        await call(t, "web_fetch", ctx_for(user="alice"), url=url)
        await call(t, "web_fetch", ctx_for(user="alice"), url=url)
        with pytest.raises(ToolError, match=r"too many fetches.*at most 2 a minute"):
            await call(t, "web_fetch", ctx_for(user="alice"), url=url)
        assert "plain words" in await call(t, "web_fetch", ctx_for(user="bob"), url=url)
    assert pages.hits["/text"] == 3


async def test_searches_are_limited_per_person() -> None:
    results = [{"title": "t", "url": "https://a.example/"}]
    async with (
        FakeSearchAPI("searxng", results) as api,
        web_tools(search_api=api, searches_per_minute=1) as t,
    ):
        await call(t, "web_search", query="crabs")
        with pytest.raises(ToolError, match="too many searches"):
            await call(t, "web_search", query="crabs")
    assert len(api.requests) == 1


async def test_search_results_are_marked_untrusted_as_links() -> None:
    results = [{"title": "Crab >>> facts", "url": "https://a.example/x", "snippet": "s1"}]
    async with FakeSearchAPI("searxng", results) as api, web_tools(search_api=api) as t:
        out = await call(t, "web_search", query="hermit crabs", count=3)
    assert out.startswith('<<<untrusted web content from a web search for "hermit crabs"')
    assert "1. [Crab > > > facts](https://a.example/x)\n   s1" in out
    assert out.endswith("<<<end>>>")


async def test_a_secret_never_leaves_in_a_url_or_a_query(
    pages: FakePages, net: LoopbackNetwork
) -> None:
    async with FakeSearchAPI("searxng", []) as api, web_tools(search_api=api) as t:
        with pytest.raises(ToolError, match="contains a secret"):
            await call(t, "web_fetch", url=pages.url(f"/text?k={SECRET}", host="page.test"))
        assert pages.hits == {}
        out = await call(t, "web_search", query=f"what is {SECRET}")
    [(query, _headers)] = api.requests
    assert SECRET not in query and "[REDACTED" in query
    assert SECRET not in out and "no results" in out


async def test_who_is_offered_the_web_tools(pages: FakePages) -> None:
    async with FakeSearchAPI("searxng", []) as api:
        async with web_tools(search_api=api) as t:
            policy = t.policy(ToolPolicy())
            names = {x.name for x in t.tools()}
            assert names == {"web_fetch", "web_search"}
            for ctx in (ctx_for("owner"), ctx_for("user"), ctx_for("operator", group=True)):
                assert all(policy.allows(x, ctx) for x in t.tools())
            # every other tool is still decided by the wrapped policy
            tagged = tool(_noop, name="exec_like", tags=["exec"])
            assert policy.allows(tagged, ctx_for("owner"))
            assert not policy.allows(tagged, ctx_for("user"))
        async with web_tools(search_api=api, roles=["owner"], in_groups=False) as t:
            policy = t.policy(ToolPolicy())
            [fetch, _] = t.tools()
            assert policy.allows(fetch, ctx_for("owner"))
            assert not policy.allows(fetch, ctx_for("user"))
            assert not policy.allows(fetch, ctx_for("owner", group=True))
            # the tool checks again, for a caller that forgot the policy
            with pytest.raises(ToolDenied, match="not available to you"):
                await call(
                    t, "web_fetch", ctx_for("user"), url=pages.url("/text", host="page.test")
                )
            assert pages.hits == {}


async def test_web_search_is_not_offered_while_every_provider_cools_down() -> None:
    async with FakeSearchAPI("searxng", []) as api, web_tools(search_api=api) as t:
        api.status = 500
        policy = t.policy(ToolPolicy())
        search = next(x for x in t.tools() if x.name == "web_search")
        assert policy.allows(search, ctx_for())
        with pytest.raises(ToolError, match="unavailable"):
            await call(t, "web_search", query="crabs")
        assert not policy.allows(search, ctx_for())


async def _noop(ctx: ToolContext) -> str:
    return ""


class _Owner:
    """Answers approval requests the way a test tells it to, and remembers them."""

    def __init__(self, approve: bool) -> None:
        self.approve = approve
        self.asked: list[PendingApproval] = []
        self.broker = InMemoryApprovalBroker(notify=self._notify)

    async def _notify(self, pending: PendingApproval) -> None:
        self.asked.append(pending)
        decide = self.broker.approve if self.approve else self.broker.deny
        decide(pending.id)


def _saver(
    tmp_path: Path, owner: _Owner | None, approval: str = "ask", quota_bytes: int = 256 << 20
) -> WorkspaceSaver:
    config = SandboxConfig(approval=approval)  # type: ignore[arg-type]
    broker = owner.broker if owner else None
    # as bot/sandbox/selection.py builds it: every workspace has its quota
    quota = WorkspaceQuota(quota_bytes, 100_000, repair_access=os.geteuid() != 0)
    return WorkspaceSaver(WorkspaceManager(tmp_path / "sandboxes", quota=quota), config, broker)


async def test_save_as_puts_the_file_in_the_session_workspace(
    pages: FakePages, tmp_path: Path
) -> None:
    saver = _saver(tmp_path, None)
    async with web_tools(saver=saver) as t:
        out = await call(
            t, "web_fetch", url=pages.url("/pdf", host="page.test"), save_as="docs/a.pdf"
        )
        assert "to /work/docs/a.pdf" in out and "application/pdf" in out
        for bad in ("../escape.pdf", "/etc/passwd", "/work/../x"):
            with pytest.raises(ToolError, match="refused"):
                await call(t, "web_fetch", url=pages.url("/pdf", host="page.test"), save_as=bad)
    workspace = saver.workspaces.path_for(ctx_for().session_key)
    assert (workspace / "docs" / "a.pdf").read_bytes().startswith(b"%PDF-1.4")
    assert pages.hits["/pdf"] == 1, "a refused path downloads nothing"
    assert not (tmp_path / "escape.pdf").exists()


async def test_save_as_keeps_a_file_that_is_there_unless_told_to_overwrite(
    pages: FakePages, tmp_path: Path
) -> None:
    """Unlike write_file, which replaces (documented), a download named like a file that is
    there is refused, naming it, before anything is fetched; `overwrite` replaces it."""
    saver = _saver(tmp_path, None)
    mine = saver.workspaces.path_for(ctx_for().session_key) / "docs" / "a.pdf"
    mine.parent.mkdir(parents=True)
    mine.write_bytes(b"my own notes")
    url = pages.url("/pdf", host="page.test")
    async with web_tools(saver=saver) as t:
        with pytest.raises(ToolError, match=r"/work/docs/a\.pdf already exists.*overwrite=true"):
            await call(t, "web_fetch", url=url, save_as="docs/a.pdf")
        assert mine.read_bytes() == b"my own notes" and "/pdf" not in pages.hits
        out = await call(t, "web_fetch", url=url, save_as="docs/a.pdf", overwrite=True)
    assert "to /work/docs/a.pdf" in out and mine.read_bytes().startswith(b"%PDF-1.4")


async def test_a_file_made_while_the_download_runs_is_kept(
    pages: FakePages, tmp_path: Path
) -> None:
    """The name was free when checked; a file made there before the write (here while the
    owner was asked) is not replaced without `overwrite`. With it, the owner is told."""

    class MakesTheFileWhenAsked(_Owner):
        async def _notify(self, pending: PendingApproval) -> None:
            if not mine.exists():
                mine.write_bytes(b"my own notes")
            await super()._notify(pending)

    owner = MakesTheFileWhenAsked(approve=True)
    saver = _saver(tmp_path, owner)
    mine = saver.workspaces.path_for(ctx_for().session_key) / "a.pdf"
    mine.parent.mkdir(parents=True)
    url = pages.url("/pdf", host="page.test")
    async with web_tools(saver=saver) as t:
        with pytest.raises(ToolError, match=r"/work/a\.pdf was made while the download ran"):
            await call(t, "web_fetch", ctx_for(tainted=True), url=url, save_as="a.pdf")
        assert mine.read_bytes() == b"my own notes"
        await call(t, "web_fetch", ctx_for(tainted=True), url=url, save_as="a.pdf", overwrite=True)
    assert "/work/a.pdf, replacing the file there" in owner.asked[-1].summary
    assert "replacing" not in owner.asked[0].summary
    assert mine.read_bytes().startswith(b"%PDF-1.4")


async def test_save_as_a_folder_is_refused_before_anything_is_fetched_or_asked(
    pages: FakePages, tmp_path: Path
) -> None:
    owner = _Owner(approve=True)
    saver = _saver(tmp_path, owner)
    url = pages.url("/pdf", host="page.test")
    saver.workspaces.path_for(ctx_for().session_key).joinpath("docs").mkdir(parents=True)
    async with web_tools(saver=saver) as t:
        for folder in (
            "/work",
            "/work/",
            "downloads/",
            ".",
            "downloads/.",
            "/work/downloads/.",
            "docs",
            "/work/docs",
        ):
            with pytest.raises(ToolError, match="save_as names a file"):
                await call(t, "web_fetch", ctx_for(tainted=True), url=url, save_as=folder)
    workspace = saver.workspaces.path_for(ctx_for().session_key)
    assert not (workspace / "downloads").exists(), "no file named after the folder"
    assert "/pdf" not in pages.hits and owner.asked == []


async def test_save_as_refuses_a_file_over_the_byte_cap_and_without_a_workspace(
    pages: FakePages, tmp_path: Path
) -> None:
    async with web_tools(saver=_saver(tmp_path, None), max_bytes=64 * 1024) as t:
        with pytest.raises(ToolError, match="nothing was saved"):
            await call(t, "web_fetch", url=pages.url("/big", host="page.test"), save_as="big.html")
    async with web_tools(saver=None) as t:
        with pytest.raises(ToolError, match="sandbox is off"):
            await call(t, "web_fetch", url=pages.url("/pdf", host="page.test"), save_as="a.pdf")


async def test_save_as_keeps_the_workspace_within_its_quota(
    pages: FakePages, tmp_path: Path
) -> None:
    saver = _saver(tmp_path, None, quota_bytes=256 * 1024)
    url = pages.url("/page-200k", host="page.test")  # 200 KB each
    async with web_tools(saver=saver) as t:
        await call(t, "web_fetch", url=url, save_as="first.html")
        with pytest.raises(ToolError, match="would take the workspace past its quota"):
            await call(t, "web_fetch", url=url, save_as="second.html")
    workspace = saver.workspaces.path_for(ctx_for().session_key)
    assert (workspace / "first.html").exists() and not (workspace / "second.html").exists()


@pytest.mark.parametrize("approve", [True, False])
async def test_save_as_after_untrusted_content_needs_the_owner(
    pages: FakePages, tmp_path: Path, approve: bool
) -> None:
    owner = _Owner(approve)
    saver = _saver(tmp_path, owner)
    url = pages.url("/pdf", host="page.test")
    async with web_tools(saver=saver) as t:
        await call(t, "web_fetch", ctx_for(), url=url, save_as="clean.pdf")
        assert owner.asked == [], "an untainted turn saves without asking"
        if approve:
            await call(t, "web_fetch", ctx_for(tainted=True), url=url, save_as="later.pdf")
        else:
            with pytest.raises(ToolDenied, match=r"not saved.*untrusted content"):
                await call(t, "web_fetch", ctx_for(tainted=True), url=url, save_as="later.pdf")
    [asked] = owner.asked
    assert "later.pdf" in asked.summary and "untrusted content" in asked.summary
    workspace = saver.workspaces.path_for(ctx_for().session_key)
    assert (workspace / "later.pdf").exists() is approve
    assert pages.hits["/pdf"] == (2 if approve else 1), "a denied save downloads nothing"


async def test_the_untrusted_tag_taints_the_turn_through_the_registry(pages: FakePages) -> None:
    # the agent loop sets ctx.tainted after a tool tagged UNTRUSTED_TAG ran
    from bot.agent import Agent, AgentSettings, TurnDone
    from bot.providers.base import ChatMessage
    from bot.providers.testing import ScriptedProvider

    url = pages.url("/article", host="page.test")
    async with web_tools() as t:
        registry = ToolRegistry(t.tools())
        provider = ScriptedProvider(
            [[ToolCall("c1", "web_fetch", f'{{"url": "{url}"}}')], "It says crabs move."]
        )
        agent = Agent(
            provider,
            registry,
            AgentSettings(system_prompt="sys"),
            policy=t.policy(ToolPolicy()),
            redact=str,
        )
        ctx = ctx_for("user")
        events = [e async for e in agent.run([], ChatMessage("user", "read it"), ctx)]
    done = events[-1]
    assert isinstance(done, TurnDone) and done.result.outcome == "ok"
    assert ctx.tainted
    assert WEB_GUIDANCE in provider.requests[0].system


async def test_a_long_page_is_cut_with_a_note_and_cached_only_as_far_as_a_call_can_read(
    pages: FakePages,
) -> None:
    url = pages.url("/page-200k", host="page.test")
    async with web_tools() as t:
        short = await call(t, "web_fetch", url=url)
        longest = await call(t, "web_fetch", url=url, max_chars=MAX_CHARS)
        cached = t.cache.get(url)
    assert pages.hits["/page-200k"] == 1
    total = re.search(r"cut at 20,000 of ([\d,]+) characters", short).group(1)  # type: ignore[union-attr]
    assert int(total.replace(",", "")) > MAX_CHARS
    assert f"cut at {MAX_CHARS:,} of {total} characters" in longest
    assert cached is not None and len(cached.text) == MAX_CHARS
