"""The web chat over its WebSocket: the `web` channel goes through the gateway's store,
dedupe and session path; answers stream; a dropped socket resumes without loss or doubling."""

from __future__ import annotations

import asyncio
import contextlib
import io
from typing import Any

import aiohttp
import pytest

from bot.gateway import Gateway
from tests.fakes.llm import FakeLLM, Reply
from tests.webui.conftest import SignedIn, record_inbound, until_event

LONG = " ".join(f"word{i}" for i in range(120))


async def _open(s: SignedIn, after: int | None = None, have: dict[str, int] | None = None) -> Any:
    ws = await s.http.ws_connect(f"{s.base}/ws?csrf={s.csrf}", headers={"Origin": s.base})
    await ws.send_json({"type": "hello", "after": after, "have": have or {}})
    return ws


def _text(events: list[dict[str, Any]], answer_id: str) -> str:
    """The answer as a page builds it: each delta applied at its offset, repeats dropped."""
    text = ""
    for e in events:
        if e["type"] == "delta" and e["id"] == answer_id:
            assert e["at"] <= len(text), "a gap in the stream"
            text += e["text"][len(text) - e["at"] :]
    return text


async def test_an_answer_streams_and_joins_the_history(
    gateway: Gateway, signed_in: SignedIn, fake_llm: FakeLLM
) -> None:
    fake_llm.push(Reply(text="Hello **there**, owner."))
    ws = await _open(signed_in)
    first = await until_event(ws, "ready")
    assert first[0] == {"type": "history", "items": []}
    await ws.send_json({"type": "send", "id": "msg-00000001", "text": "hi"})
    events = await until_event(ws, "done")
    assert {"type": "ack", "id": "msg-00000001"} in events
    assert _text(events, "msg-00000001") == "Hello **there**, owner."
    await ws.close()
    status = await gateway.store.inbound.status("web", "owner:msg-00000001")
    for _ in range(100):
        if status == "done":
            break
        await asyncio.sleep(0.05)
        status = await gateway.store.inbound.status("web", "owner:msg-00000001")
    assert status == "done"
    ws = await _open(signed_in)
    history = (await until_event(ws, "ready"))[0]
    assert history["items"] == [
        {"role": "user", "text": "hi"},
        {"role": "assistant", "text": "Hello **there**, owner.", "id": "msg-00000001"},
    ]
    await ws.close()


async def test_commands_answer_in_the_chat_as_the_owner(
    signed_in: SignedIn, fake_llm: FakeLLM
) -> None:
    ws = await _open(signed_in)
    await until_event(ws, "ready")
    await ws.send_json({"type": "send", "id": "cmd-00000001", "text": "/pair NOPE2345"})
    events = await until_event(ws, "done")
    # an owner-only command runs: the web chat is the owner's, signed in with the password
    assert "No pending pairing code NOPE2345" in _text(events, "cmd-00000001")
    assert fake_llm.requests == [] or all("/pair" not in str(r.body) for r in fake_llm.requests)
    await ws.close()


async def test_a_drop_mid_answer_resumes_without_loss_or_doubling(
    gateway: Gateway, signed_in: SignedIn, fake_llm: FakeLLM
) -> None:
    fake_llm.push(Reply(text=LONG, chunk_delay_s=0.02))
    ws = await _open(signed_in)
    ready = await until_event(ws, "ready")
    after = ready[-1]["seq"]
    await ws.send_json({"type": "send", "id": "long-0000001", "text": "talk a while"})
    got = await until_event(ws, "delta")
    await ws.close()  # the socket drops mid-answer
    partial = _text(got, "long-0000001")
    assert 0 < len(partial) < len(LONG)
    # the page comes back, says what it has, and sends its message again (no ack seen? same id)
    ws = await _open(signed_in, after=after, have={"long-0000001": len(partial)})
    await ws.send_json({"type": "send", "id": "long-0000001", "text": "talk a while"})
    rest = await until_event(ws, "done")
    await ws.close()
    events = [e for e in got if e["type"] == "delta"] + rest
    assert _text(events, "long-0000001") == LONG
    # the second send was a duplicate delivery: one model call, one stored turn
    chats = fake_llm.calls(path="/v1/chat/completions")
    assert len(chats) == 1
    assert gateway.metrics.duplicates.labels("web")._value.get() == 1


async def test_a_page_that_missed_a_whole_answer_gets_it_on_resume(
    signed_in: SignedIn, fake_llm: FakeLLM
) -> None:
    fake_llm.push(Reply(text="all of it"))
    ws = await _open(signed_in)
    after = (await until_event(ws, "ready"))[-1]["seq"]
    await ws.send_json({"type": "send", "id": "gone-0000001", "text": "hello"})
    await until_event(ws, "ack")
    await ws.close()  # gone before any of the answer arrived
    await asyncio.sleep(0.5)
    ws = await _open(signed_in, after=after, have={})
    events = await until_event(ws, "done")
    assert _text(events, "gone-0000001") == "all of it"
    await ws.close()


async def test_bad_frames_are_refused_without_harm(signed_in: SignedIn) -> None:
    ws = await _open(signed_in)
    await until_event(ws, "ready")
    await ws.send_str("not json")
    await ws.send_json({"type": "send", "id": "x", "text": "id too short"})
    event = await ws.receive_json(timeout=10)
    assert event == {"type": "error", "text": "bad message id"}
    await ws.close()


async def test_stopping_the_gateway_closes_open_chats(make_config: Any, fake_llm: FakeLLM) -> None:
    from tests.webui.conftest import base_url, client, gateway_config, page_csrf, set_up

    gw = await Gateway(gateway_config(make_config, fake_llm)).start()
    try:
        async with client() as http:
            await set_up(http, gw)
            async with http.get(base_url(gw) + "/") as resp:
                s = SignedIn(http, base_url(gw), page_csrf(await resp.text()))
            ws = await _open(s)
            await until_event(ws, "ready")
            # an open page must not hold the stop for the server's 60 s shutdown timeout
            async with asyncio.timeout(30):
                await gw.stop()
                msg = await ws.receive()
            assert msg.type in (aiohttp.WSMsgType.CLOSE, aiohttp.WSMsgType.CLOSED)
    finally:
        await gw.stop()


async def test_a_reminder_sent_while_no_page_is_open_is_in_the_history(
    gateway: Gateway, signed_in: SignedIn, fake_llm: FakeLLM
) -> None:
    from datetime import UTC, datetime, timedelta

    from bot.messages import Conversation, ConversationKind
    from bot.scheduler.timing import Once
    from bot.store.jobs import JobStatus

    fake_llm.push(Reply(text="Sure."))
    ws = await _open(signed_in)
    await until_event(ws, "ready")
    await ws.send_json({"type": "send", "id": "before-00001", "text": "hello"})
    await until_event(ws, "done")
    await ws.close()
    for _ in range(100):
        if await gateway.store.inbound.status("web", "owner:before-00001") == "done":
            break
        await asyncio.sleep(0.05)
    scheduler = gateway.deps.scheduler
    assert scheduler is not None
    job = await scheduler.schedule(
        person_id="web:owner",
        identity_key="web:owner",
        conversation=Conversation("web", "owner", ConversationKind.DM),
        text="feed the cat",
        when=Once(datetime.now(UTC) + timedelta(seconds=1)),
        timezone="UTC",
    )
    for _ in range(300):  # the scheduler's own loop delivers it, no page listening
        found = await scheduler.jobs.get(job.id)
        if found is not None and found.status is JobStatus.SENT:
            break
        await asyncio.sleep(0.1)
    else:
        raise AssertionError("the reminder was not delivered")
    ws = await _open(signed_in)  # a fresh page load
    items = (await until_event(ws, "ready"))[0]["items"]
    await ws.close()
    assert [i["text"] for i in items] == ["hello", "Sure.", "⏰ feed the cat"]


async def _upload(
    s: SignedIn, body: bytes, name: str, mime: str, csrf: str | None = None
) -> aiohttp.ClientResponse:
    form = aiohttp.FormData()
    form.add_field("file", io.BytesIO(body), filename=name, content_type=mime)
    headers = {"X-CSRF-Token": csrf if csrf is not None else s.csrf}
    return await s.http.post(f"{s.base}/upload", data=form, headers=headers)


async def test_an_uploaded_file_reaches_the_gateway_as_an_attachment_it_can_fetch(
    gateway: Gateway, signed_in: SignedIn, fake_llm: FakeLLM
) -> None:
    from bot.errors import ChannelError
    from bot.messages import Attachment, InboundMessage

    picture = b"\x89PNG\r\n\x1a\n" + bytes(range(256)) * 40
    resp = await _upload(signed_in, picture, "cat.png", "image/png")
    assert resp.status == 200, await resp.text()
    image = await resp.json()
    resp = await _upload(signed_in, b"%PDF-1.4 notes", "notes.pdf", "application/pdf")
    doc = await resp.json()
    assert (image["kind"], doc["kind"]) == ("image", "document")
    # streamed to disk: larger than the server's 4 MB bound on bodies it reads whole
    resp = await _upload(signed_in, b"v" * 6_000_000, "talk.ogg", "audio/ogg")
    assert resp.status == 200 and (await resp.json())["size"] == 6_000_000
    fake_llm.push(Reply(text="Nice cat."))
    received = record_inbound(gateway)
    ws = await _open(signed_in)
    await until_event(ws, "ready")
    frame = {
        "type": "send",
        "id": "file-0000001",
        "text": "look",
        "files": [image["id"], doc["id"]],
    }
    await ws.send_json(frame)
    await until_event(ws, "done")
    await ws.close()
    (message,) = received
    assert isinstance(message, InboundMessage)
    assert message.text == "look"
    assert [(p.kind, p.ref, p.name, p.mime, p.size) for p in message.parts] == [
        ("image", image["id"], "cat.png", "image/png", len(picture)),
        ("document", doc["id"], "notes.pdf", "application/pdf", 14),
    ]
    web = gateway.channels["web"]
    assert await web.fetch(message.parts[0], 10_000_000) == picture
    assert await web.fetch(message.parts[1], 100) == b"%PDF-1.4 notes"
    with pytest.raises(ChannelError, match="limit"):
        await web.fetch(message.parts[0], 1000)
    with pytest.raises(ChannelError, match="no longer available"):
        await web.fetch(Attachment("image", "A" * 22, "gone.png"), 1000)


async def test_uploads_need_the_token_stay_under_the_cap_and_belong_to_their_sender(
    make_config: Any, fake_llm: FakeLLM
) -> None:
    from tests.webui.conftest import base_url, client, gateway_config, page_csrf, set_up

    config = gateway_config(make_config, fake_llm, webui={"upload_max_mb": 0.01})
    async with Gateway(config) as gw, client() as http:
        await set_up(http, gw)
        async with http.get(base_url(gw) + "/") as resp:
            s = SignedIn(http, base_url(gw), page_csrf(await resp.text()))
        uploads = gw.config.home / "webui-uploads"
        resp = await _upload(s, b"hello", "a.txt", "text/plain", csrf="wrong")
        assert resp.status == 403
        resp = await _upload(s, b"x" * 20_000, "big.bin", "application/octet-stream")
        assert resp.status == 413 and "larger than" in await resp.text()
        assert list(uploads.iterdir()) == []  # the cut-off upload is not kept
        ws = await _open(s)
        await until_event(ws, "ready")
        # an id that was never uploaded (or is someone else's) is refused, nothing stored
        await ws.send_json({"type": "send", "id": "file-0000002", "text": "x", "files": ["B" * 22]})
        event = await ws.receive_json(timeout=30)
        assert event == {"type": "error", "id": "file-0000002", "text": "unknown file"}
        # refused for good: acknowledged, so the page does not send it again on reconnect
        assert await ws.receive_json(timeout=30) == {"type": "ack", "id": "file-0000002"}
        await ws.close()
        assert await gw.store.inbound.status("web", "owner:file-0000002") is None


async def test_a_chat_socket_opened_before_logout_sends_nothing_after_it(
    gateway: Gateway, signed_in: SignedIn, fake_llm: FakeLLM
) -> None:
    """A tab left open after a logout can no longer write as that person: the logout
    closes its socket (test_webui_chat_signout.py), and a frame that still gets through
    before the close finds the login gone."""
    seen = record_inbound(gateway)
    ws = await _open(signed_in)
    await until_event(ws, "ready")
    async with await signed_in.post("/logout") as resp:
        assert resp.status == 303
    with contextlib.suppress(ConnectionError):  # the connection may be gone already
        await ws.send_json({"type": "send", "id": "msg-00000009", "text": "still me?"})
    closed = await ws.receive(timeout=30)
    assert (closed.type, closed.data) == (aiohttp.WSMsgType.CLOSE, 4401)
    await asyncio.sleep(0.2)
    assert seen == [] and fake_llm.calls(path="/v1/chat/completions") == []


async def test_an_upload_whose_file_went_away_is_said_to_be_gone(
    gateway: Gateway, signed_in: SignedIn
) -> None:
    """Its record is there but its bytes are not (pruned between the two, or removed by
    hand): the person is told the file is gone, not "something went wrong"."""
    from bot.errors import ChannelError
    from bot.messages import Attachment
    from bot.webui.uploads import UPLOAD_DIR

    resp = await _upload(signed_in, b"plain notes\n", "notes.txt", "text/plain")
    upload = await resp.json()
    (gateway.config.home / UPLOAD_DIR / upload["id"]).unlink()
    with pytest.raises(ChannelError, match=r"notes\.txt is no longer available"):
        await gateway.channels["web"].fetch(Attachment("document", upload["id"], "notes.txt"), 1000)


async def test_a_message_with_more_files_than_allowed_says_so(
    gateway: Gateway, signed_in: SignedIn
) -> None:
    """Eleven files the person did upload: they are told the limit, not "unknown file"."""
    from bot.webui.chat import MAX_FILES

    ids = []
    for n in range(MAX_FILES + 1):
        resp = await _upload(signed_in, b"notes %d\n" % n, f"n{n}.txt", "text/plain")
        ids.append((await resp.json())["id"])
    received = record_inbound(gateway)
    ws = await _open(signed_in)
    await until_event(ws, "ready")
    await ws.send_json({"type": "send", "id": "file-0000011", "text": "all", "files": ids})
    event = await ws.receive_json(timeout=30)
    acknowledged = await ws.receive_json(timeout=30)
    await ws.close()
    assert event == {
        "type": "error",
        "id": "file-0000011",
        "text": f"a message can carry at most {MAX_FILES} files; send the rest in another",
    }
    assert acknowledged == {"type": "ack", "id": "file-0000011"}
    assert received == []
