"""A chat page that stays open while the gateway restarts: its socket comes back to the new
process, which must send it what it missed there, as it does after a drop without restart."""

from __future__ import annotations

from typing import Any

from yarl import URL

from bot.gateway import Gateway
from bot.messages import Conversation, ConversationKind, OutboundMessage
from tests.fakes.llm import FakeLLM, Reply
from tests.webui.conftest import base_url, client, gateway_config, page_csrf, set_up, until_event
from tests.webui.test_webui_chat import _text


async def _first_answer(http: Any, gw: Gateway) -> tuple[str, str]:
    """Set up, and have "hi" (sent as first-000001) answered; the base URL and the page's
    token."""
    await set_up(http, gw)
    base = base_url(gw)
    async with http.get(base + "/") as resp:
        csrf = page_csrf(await resp.text())
    ws = await http.ws_connect(f"{base}/ws?csrf={csrf}", headers={"Origin": base})
    await ws.send_json({"type": "hello", "after": None, "have": {}})
    await until_event(ws, "ready")
    await ws.send_json({"type": "send", "id": "first-000001", "text": "hi"})
    await until_event(ws, "done")
    await ws.close()
    return base, csrf


async def test_a_page_open_across_a_restart_gets_what_the_new_process_sent(
    make_config: Any, fake_llm: FakeLLM
) -> None:
    """The page's number is of the old process: the new one numbers its answers from 1
    again, so its smaller numbers are still news to the page."""
    config = gateway_config(make_config, fake_llm)
    fake_llm.push(Reply(text="First answer."))
    async with client() as http:
        async with Gateway(config) as gw:
            base, csrf = await _first_answer(http, gw)
            # the page the owner keeps open: loaded once that answer was there
            ws = await http.ws_connect(f"{base}/ws?csrf={csrf}", headers={"Origin": base})
            await ws.send_json({"type": "hello", "after": None, "have": {}})
            ready = (await until_event(ws, "ready"))[-1]
            after, process = ready["seq"], ready.get("process")
            await ws.close()
        cookie = http.cookie_jar.filter_cookies(URL(base))["decapod_session"].value
        async with Gateway(config) as gw:  # the same home, a new process
            base = base_url(gw)
            http.cookie_jar.update_cookies({"decapod_session": cookie}, URL(base))
            # sent by the new process before the page's socket is back (a reminder due
            # during the restart, a resumed answer)
            web = gw.channels["web"]
            conversation = Conversation("web", "owner", ConversationKind.DM)
            sent = await web.send(OutboundMessage(conversation, "⏰ feed the cat"))
            ws = await http.ws_connect(f"{base}/ws?csrf={csrf}", headers={"Origin": base})
            have = {"first-000001": 13}
            hello = {"type": "hello", "after": after, "process": process, "have": have}
            await ws.send_json(hello)
            events = await until_event(ws, "done")
            await ws.close()
            # the next reconnect says the new process's number and gets nothing again
            ready = next(e for e in events if e["type"] == "ready")
            assert ready["process"] != process
            ws = await http.ws_connect(f"{base}/ws?csrf={csrf}", headers={"Origin": base})
            have[sent.message_id] = len("⏰ feed the cat")
            await ws.send_json({**hello, "after": ready["seq"], "process": ready["process"]})
            await until_event(ws, "ready")
            plants = await web.send(OutboundMessage(conversation, "🌱 water the plants"))
            later = await until_event(ws, "done")
            while later[-1]["id"] != plants.message_id:
                later += await until_event(ws, "done")
            await ws.close()
    assert _text(events, sent.message_id) == "⏰ feed the cat"
    # of what it had, only the ends again: no text twice
    assert [e["text"] for e in later if e["type"] == "delta"] == ["🌱 water the plants"]


async def test_a_page_of_the_version_before_gets_what_it_missed(
    make_config: Any, fake_llm: FakeLLM
) -> None:
    """A page loaded before the numbers were per process says no process and a time as its
    number (microseconds, far past any number here): it is treated as from another process,
    gets what it missed, and is given this process's number to say next time."""
    config = gateway_config(make_config, fake_llm)
    async with client() as http, Gateway(config) as gw:
        await set_up(http, gw)
        base = base_url(gw)
        async with http.get(base + "/") as resp:
            csrf = page_csrf(await resp.text())
        web = gw.channels["web"]
        conversation = Conversation("web", "owner", ConversationKind.DM)
        sent = await web.send(OutboundMessage(conversation, "⏰ feed the cat"))
        ws = await http.ws_connect(f"{base}/ws?csrf={csrf}", headers={"Origin": base})
        await ws.send_json({"type": "hello", "after": 1_800_000_000_000_000, "have": {}})
        events = await until_event(ws, "done")
        await ws.close()
    ready = next(e for e in events if e["type"] == "ready")
    assert ready["seq"] == 1
    assert ready["process"] == web.process_id
    assert _text(events, sent.message_id) == "⏰ feed the cat"


async def test_the_history_names_its_answers_so_a_page_takes_none_twice(
    make_config: Any, fake_llm: FakeLLM
) -> None:
    """A page loaded with the history, whose socket comes back to another process (a replica,
    a restart) that has those answers buffered: it says them as had, from the ids the history
    gave, and gets none of their text again."""
    config = gateway_config(make_config, fake_llm)
    fake_llm.push(Reply(text="First answer."))
    async with client() as http, Gateway(config) as gw:
        base, csrf = await _first_answer(http, gw)
        web = gw.channels["web"]
        conversation = Conversation("web", "owner", ConversationKind.DM)
        sent = await web.send(OutboundMessage(conversation, "⏰ feed the cat"))
        # a fresh page: both answers come in the history
        ws = await http.ws_connect(f"{base}/ws?csrf={csrf}", headers={"Origin": base})
        await ws.send_json({"type": "hello", "after": None, "have": {}})
        history = (await until_event(ws, "history"))[-1]["items"]
        await ws.close()
        answers = [item for item in history if item["role"] == "assistant"]
        assert [(a["id"], a["text"]) for a in answers] == [
            ("first-000001", "First answer."),
            (sent.message_id, "⏰ feed the cat"),
        ]
        assert ["id" in item for item in history if item["role"] == "user"] == [False]
        # back with a number of another process: everything buffered is news, but what
        # the page has from the history is said as had
        have = {a["id"]: len(a["text"]) for a in answers}
        ws = await http.ws_connect(f"{base}/ws?csrf={csrf}", headers={"Origin": base})
        hello = {"type": "hello", "after": 5, "process": "another", "have": have}
        await ws.send_json(hello)
        events = await until_event(ws, "ready")
        while len([e for e in events if e["type"] == "done"]) < 2:
            events += await until_event(ws, "done")
        await ws.close()
    assert [e for e in events if e["type"] == "delta"] == []
