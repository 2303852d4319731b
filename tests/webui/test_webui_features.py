"""The panel's pages of optional features: sandbox workspaces (contents, quota, delete after a
confirmation with the CSRF token), skills and their drafts, MCP servers; "not configured"
when a feature is off."""

from __future__ import annotations

import asyncio
import sys
from collections.abc import AsyncIterator
from typing import Any

import pytest

from bot.gateway import Gateway
from tests.fakes.llm import FakeLLM
from tests.mcp.conftest import SERVER, START_S
from tests.webui.conftest import SignedIn, base_url, client, gateway_config, page_csrf, set_up


@pytest.fixture
async def make_owner() -> Any:
    async def make(http: Any, gw: Gateway) -> SignedIn:
        await set_up(http, gw)
        async with http.get(base_url(gw) + "/") as resp:
            return SignedIn(http, base_url(gw), page_csrf(await resp.text()))

    return make


async def test_features_that_are_off_say_so(
    make_config: Any, fake_llm: FakeLLM, make_owner: Any
) -> None:
    config = gateway_config(make_config, fake_llm, skills={"enabled": False})
    async with Gateway(config) as gw, client() as http:
        owner = await make_owner(http, gw)
        assert "The sandbox is not configured" in await owner.get("/panel/workspaces")
        assert "Skills are not configured" in await owner.get("/panel/skills")
        assert "No MCP server is configured" in await owner.get("/panel/mcp")
        resp = await owner.post("/panel/workspaces/delete", workspace="x" * 32, confirm="yes")
        assert resp.status == 400


@pytest.fixture
async def sandboxed(make_config: Any, fake_llm: FakeLLM) -> AsyncIterator[Gateway]:
    config = gateway_config(make_config, fake_llm, sandbox={"backend": "bwrap"})
    async with Gateway(config) as gw:
        yield gw


async def test_a_workspace_is_shown_and_deleted_only_after_confirming(
    sandboxed: Gateway, make_owner: Any
) -> None:
    sandbox = sandboxed.deps.sandbox
    assert sandbox is not None
    ws = sandbox.workspaces.prepare("web:dm:owner")
    (ws.path / "notes").mkdir()
    (ws.path / "notes" / "<b>plan.txt").write_text("x" * 3000)
    (ws.path / "data.csv").write_text("a,b\n")
    async with client() as http:
        owner = await make_owner(http, sandboxed)
        page = await owner.get("/panel/workspaces")
        assert "web:dm:owner" in page and str(ws.path) in page
        assert "2 files" in page and "256 MB" in page
        assert "notes/&lt;b&gt;plan.txt" in page and "data.csv" in page
        # without the token: refused, nothing removed
        resp = await owner.http.post(
            owner.base + "/panel/workspaces/delete",
            data={"workspace": ws.hash, "confirm": "yes"},
            allow_redirects=False,
        )
        assert resp.status == 403 and ws.path.exists()
        # the first press asks
        resp = await owner.post("/panel/workspaces/delete", workspace=ws.hash)
        assert resp.status == 200 and "Delete this workspace?" in await resp.text()
        assert ws.path.exists()
        resp = await owner.post("/panel/workspaces/delete", workspace=ws.hash, confirm="yes")
        assert resp.status == 303 and "deleted" in resp.headers["Location"]
        assert not ws.path.exists()
        assert sandbox.workspaces.ls() == []
        assert "No workspace yet" in await owner.get("/panel/workspaces")


async def test_skills_and_the_drafts_waiting_for_approval(
    gateway: Gateway, signed_in: SignedIn
) -> None:
    draft = gateway.config.home / "skill_drafts" / "tidy-notes"
    draft.mkdir(parents=True)
    (draft / "SKILL.md").write_text(
        "---\nname: tidy-notes\ndescription: Tidy the <i>notes</i> folder.\n---\n\nSort them.\n"
    )
    page = await signed_in.get("/panel/skills")
    assert "daily-briefing" in page  # a bundled skill
    drafts = page[page.index('id="drafts"') :]
    assert "tidy-notes" in drafts and "waiting" in drafts
    assert "Tidy the &lt;i&gt;notes&lt;/i&gt; folder." in drafts


async def test_mcp_servers_with_their_state_tools_and_last_error(
    make_config: Any, fake_llm: FakeLLM, make_owner: Any, tmp_path: Any, monkeypatch: Any
) -> None:
    monkeypatch.setenv("MCP_TEST_STATE", str(tmp_path))
    servers = {
        "files": {
            "transport": "stdio",
            "command": sys.executable,
            "args": [str(SERVER)],
            "run_in_sandbox": False,
            "env": ["MCP_TEST_STATE"],
            "startup_timeout_s": START_S,
        },
        "broken": {
            "transport": "stdio",
            "command": str(tmp_path / "no-such-server"),
            "run_in_sandbox": False,
        },
    }
    config = gateway_config(make_config, fake_llm, mcp={"servers": servers})
    async with Gateway(config) as gw, client() as http:
        assert gw.mcp is not None
        await asyncio.wait_for(gw.mcp.wait_ready("files"), START_S)
        for _ in range(int(START_S * 10)):
            if gw.mcp.connections["broken"].last_error is not None:
                break
            await asyncio.sleep(0.1)
        owner = await make_owner(http, gw)
        page = await owner.get("/panel/mcp")
    tools = len(gw.mcp.connections["files"].tools)
    assert tools > 0
    assert '<tr data-server="files"><td>files</td>' in page
    files_row = page[page.index('data-server="files"') : page.index('data-server="broken"')]
    assert ">ready<" in files_row and f"<td>{tools}</td>" in files_row
    broken_row = page[page.index('data-server="broken"') :]
    assert "no-such-server" in broken_row
