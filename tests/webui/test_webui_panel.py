"""The control panel's handlers against a real gateway: pairing, people, memory, reminders,
providers, sessions, usage, config check-before-save, the audit; names are escaped."""

from __future__ import annotations

import contextlib
import re
from collections.abc import AsyncIterator
from typing import Any

import pytest

from bot import features
from bot.gateway import Gateway
from bot.messages import Identity
from bot.warmup import StartUpStepFailed
from tests.fakes.llm import FakeLLM, Reply
from tests.webui.conftest import SignedIn, base_url, client, gateway_config, page_csrf, set_up

XSS_NAME = '<img src=x onerror="alert(1)">Eve'


@pytest.fixture
async def panel_gw(make_config: Any, fake_llm: FakeLLM) -> AsyncIterator[Gateway]:
    config = gateway_config(make_config, fake_llm, memory={"enabled": True, "embedders": []})
    async with Gateway(config) as gw:
        yield gw


@pytest.fixture
async def owner(panel_gw: Gateway) -> AsyncIterator[SignedIn]:
    async with client() as http:
        await set_up(http, panel_gw)
        async with http.get(base_url(panel_gw) + "/") as resp:
            csrf = page_csrf(await resp.text())
        yield SignedIn(http, base_url(panel_gw), csrf)


async def _pending_code(gw: Gateway, user_id: str, name: str) -> str:
    code = await gw.store.access.issue_code("ABCD" + user_id[-4:], "tg", user_id, name, 3600, 100)
    assert code is not None
    return code.code


async def test_pairing_approve_and_deny(panel_gw: Gateway, owner: SignedIn) -> None:
    first = await _pending_code(panel_gw, "u0001111", XSS_NAME)
    second = await _pending_code(panel_gw, "u0002222", "Mallory")
    page = await owner.get("/panel")
    assert first in page and second in page
    assert "<img src=x" not in page and "&lt;img src=x" in page  # the name is text
    resp = await owner.post("/panel/pairing", code=first, action="approve")
    assert resp.status == 303
    assert await panel_gw.store.access.is_paired("tg", "u0001111")
    resp = await owner.post("/panel/pairing", code=second, action="deny")
    assert resp.status == 303
    assert not await panel_gw.store.access.is_paired("tg", "u0002222")
    assert await panel_gw.store.access.pending() == []
    assert "u0001111" in await owner.get("/panel")  # now among the approved


async def test_panel_forms_need_the_csrf_token(panel_gw: Gateway, owner: SignedIn) -> None:
    code = await _pending_code(panel_gw, "u0003333", "Trent")
    resp = await owner.http.post(
        owner.base + "/panel/pairing", data={"code": code, "action": "approve"}
    )
    assert resp.status == 403
    assert not await panel_gw.store.access.is_paired("tg", "u0003333")


async def test_panel_needs_a_signed_in_owner(panel_gw: Gateway) -> None:
    async with client() as http:
        async with http.get(base_url(panel_gw) + "/panel", allow_redirects=False) as resp:
            assert resp.status == 303 and resp.headers["Location"] == "/login"
        async with http.post(
            base_url(panel_gw) + "/panel/pairing", data={"code": "X", "action": "approve"}
        ) as resp:
            assert resp.status == 403


async def test_memory_view_search_forget_export(panel_gw: Gateway, owner: SignedIn) -> None:
    memory = panel_gw.deps.memory
    assert memory is not None
    person = await panel_gw.store.identities.touch(Identity("tg", "42", "Alice"))
    keep = await memory.save(person, "Alice likes green tea")
    gone = await memory.save(person, "Alice's locker code is 1234 <script>x</script>")
    # said in a group: shown under alice with its group, never as a person of its own
    in_group = await memory.save(person, "Alice hums the choir's anthem", place="tg:group:-5")
    page = await owner.get(f"/panel/memory?person={person}")
    assert "green tea" in page and "&lt;script&gt;" in page and "<script>x" not in page
    assert "choir" in page and ">tg:group:-5<" in page and "@tg:group:-5" not in page
    found = await owner.get(f"/panel/memory?person={person}&q=locker")
    assert "locker code" in found and "green tea" not in found
    assert "choir" in await owner.get(f"/panel/memory?person={person}&q=anthem")
    for item in (gone, in_group):
        resp = await owner.post("/panel/memory/forget", person=person, item=str(item))
        assert resp.status == 303
    assert [r.id for r in await memory.repo.items(person)] == [keep]
    assert await memory.count(person) == 1
    await memory.save(person, "Alice hums the choir's anthem", place="tg:group:-5")
    resp = await owner.post("/panel/memory/export", person=person)
    assert resp.status == 200 and "attachment" in resp.headers["Content-Disposition"]
    text = await resp.text()
    assert "green tea" in text and "locker" not in text
    assert "anthem _(in tg:group:-5, " in text


async def test_reminders_pages_work_when_a_later_warm_up_step_failed(
    make_config: Any, fake_llm: FakeLLM, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The scheduler is the warm-up's first step: its pages wait for it, not for memory's."""

    async def broken_memory(gw: Gateway, stack: contextlib.AsyncExitStack) -> None:
        raise OSError("memory folder unreadable")

    monkeypatch.setattr(features, "start_memory", broken_memory)
    config = gateway_config(make_config, fake_llm, memory={"enabled": True, "embedders": []})
    async with Gateway(config) as gw, client() as http:
        with pytest.raises(StartUpStepFailed):
            await gw.warmup.wait()
        await set_up(http, gw)
        async with http.get(base_url(gw) + "/") as resp:
            owner = SignedIn(http, base_url(gw), page_csrf(await resp.text()))
        resp = await owner.post("/panel/reminders/create", text="in 2 hours water the plants")
        assert resp.status == 303 and "scheduled" in resp.headers["Location"]
        assert "water the plants" in await owner.get("/panel/reminders")
        async with http.get(owner.base + "/panel/memory", allow_redirects=False) as resp:
            assert resp.status == 503  # memory's page says why it cannot work
            assert "memory folder unreadable" in await resp.text()


async def test_reminders_create_list_cancel(panel_gw: Gateway, owner: SignedIn) -> None:
    resp = await owner.post("/panel/reminders/create", text="in 2 hours water the plants")
    assert resp.status == 303 and "scheduled" in resp.headers["Location"]
    page = await owner.get("/panel/reminders")
    job_id = re.search(r'data-job="([^"]+)"', page).group(1)  # type: ignore[union-attr]
    assert "water the plants" in page
    scheduler = panel_gw.deps.scheduler
    assert scheduler is not None
    job = await scheduler.jobs.get(job_id)
    assert job is not None and job.conversation.channel == "web"
    resp = await owner.post("/panel/reminders/cancel", job=job_id, person=job.person_id)
    assert resp.status == 303 and "cancelled" in resp.headers["Location"]
    assert "No open reminders" in await owner.get("/panel/reminders")
    resp = await owner.post("/panel/reminders/create", text="sometime maybe")
    assert resp.status == 303 and "scheduled" not in resp.headers["Location"]


async def test_providers_sessions_usage_after_a_turn(
    panel_gw: Gateway, owner: SignedIn, fake_llm: FakeLLM
) -> None:
    ws = await owner.http.ws_connect(
        f"{owner.base}/ws?csrf={owner.csrf}", headers={"Origin": owner.base}
    )
    await ws.send_json({"type": "hello", "after": None, "have": {}})
    await ws.send_json({"type": "send", "id": "usage-000001", "text": "hello"})
    while (await ws.receive_json(timeout=30))["type"] != "done":
        pass
    await ws.close()
    for _ in range(100):
        if await panel_gw.store.inbound.status("web", "owner:usage-000001") == "done":
            break
        import asyncio

        await asyncio.sleep(0.05)
    providers = await owner.get("/panel/providers")
    assert "fake:test-model" in providers and "FAKE_LLM_KEY" in providers
    assert "sk-test-not-a-secret" not in providers
    sessions = await owner.get("/panel/sessions")
    assert "web:dm:owner" in sessions and "12 / 7" in sessions  # the fake's usage
    usage = await owner.get("/panel/usage")
    assert "<svg" in usage and "web:owner" in usage and "fake:test-model" in usage


async def test_config_is_checked_before_it_is_saved(panel_gw: Gateway, owner: SignedIn) -> None:
    path = panel_gw.config.home / "config.toml"
    page = await owner.get("/panel/config")
    assert "FAKE_LLM_KEY" in page and "sk-test-not-a-secret" not in page
    resp = await owner.post(
        "/panel/config", text="[gateway]\nmax_concurent_turns = 3\n", action="save"
    )
    body = await resp.text()
    assert "gateway.max_concurent_turns (line 2): unknown key" in body and not path.exists()
    resp = await owner.post("/panel/config", text="[gateway\n", action="save")
    assert "not valid TOML" in await resp.text() and not path.exists()
    good = "[gateway]\nmax_concurrent_turns = 3\n"
    resp = await owner.post("/panel/config", text=good, action="check")
    assert 'id="config-ok"' in await resp.text() and not path.exists()
    resp = await owner.post("/panel/config", text=good, action="save")
    assert 'id="config-saved"' in await resp.text()
    assert path.read_text() == good and path.stat().st_mode & 0o077 == 0


async def test_the_security_audit_page(owner: SignedIn) -> None:
    page = await owner.get("/panel/audit")
    assert "Security audit" in page and 'id="findings"' in page


async def test_providers_page_lists_each_entrys_recent_errors(
    panel_gw: Gateway, owner: SignedIn, fake_llm: FakeLLM
) -> None:
    from bot.errors import AllProvidersFailed
    from bot.providers.base import ChatMessage, ChatRequest, complete

    assert panel_gw.providers is not None
    chain = panel_gw.providers.for_purpose("chat")
    request = ChatRequest(model="", messages=(ChatMessage("user", "hello"),))
    fake_llm.push(Reply.error(400))  # a bad request: the entry answered, not its failure
    fake_llm.push(Reply.error(500))
    fake_llm.push(Reply.error(503))  # the one retry of a server error
    for _ in range(2):
        with pytest.raises(Exception):  # noqa: B017
            await complete(chain, request)
    with pytest.raises(AllProvidersFailed):
        fake_llm.push(Reply.error(401))
        await complete(chain, request)
    page = await owner.get("/panel/providers")
    section = page[page.index('id="recent-errors"') :]
    rows = re.findall(r"<tr><td>[^<]+</td><td>(\w+)</td><td>(\d*)</td>", section)
    # newest first, every failure, not only the last one
    assert rows[:3] == [("auth", "401"), ("server", "503"), ("server", "500")], rows
    assert "sk-test-not-a-secret" not in page
