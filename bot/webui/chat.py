"""The chat page's WebSocket: messages in, streamed answers out, resumable.

The page opens `/ws?csrf=<the session's token>` (browsers cannot set headers on a WebSocket,
and a foreign page cannot read the token) and first says hello:
`{"type": "hello", "after": <seq of its first connection or null>, "process": <the process
that seq is from>, "have": {answer id: chars}}`. A fresh page (`after` null) gets the
session's history (each answer with the id it was streamed under, so the page says it as
had); every page then gets what it missed (see channels/web.py), and `ready` gives it the
seq and process to say next time (new ones after a restart). A hello with no process (a
page of the version before) or a seq past this process's last is of another process.
An error that says `"wait": true` is a message waiting for storage: its ack follows.
`{"type": "send", "id": <client id>, "text": ...}` is acknowledged once stored, or refused
for good (an unknown file, too many files: the error, then the ack); a page re-sends what
was not acknowledged, under the same id, after a reconnect.

A socket lives only as long as its login: a logout, a revoked guest or the login's expiry
closes it with 4401 at once, and nothing more is sent to it (on a shared computer the next
person must not read the conversation). Logout and revoke close the sockets registered for
that login or person; expiry is a timer; anything else that ends a login (the oldest of too
many is dropped) is caught by asking the store again every few minutes, not for each frame.
"""

from __future__ import annotations

import asyncio
import json
import logging
import re
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol, cast

from aiohttp import BodyPartReader, WSMsgType, web

from bot.errors import DecapodError, StorageUnavailable
from bot.messages import Attachment, Conversation, ConversationKind
from bot.tasks import cancel_and_wait
from bot.webui.auth import SESSION, WebSession, csrf_ok, login_key

if TYPE_CHECKING:
    from bot.webui.app import WebUI

log = logging.getLogger("decapod.webui")

Event = dict[str, Any]
_CLIENT_ID = re.compile(r"[A-Za-z0-9_-]{8,64}")
HISTORY_MESSAGES = 100
#: the largest frame a page may send (bytes); the page refuses a longer message itself
MAX_FRAME = 256 * 1024
#: the close code of a socket whose login ended (the page goes to the login form)
SIGNED_OUT = 4401
#: files one message may carry
MAX_FILES = 10
#: how often an open socket's login is looked up again in the store (logout, revoke and
#: expiry close it at once; this catches a login ended some other way)
RECHECK_S = 300.0
#: the longest pause between two tries of a message storage refused
SUBMIT_RETRY_MOST_S = 10.0


class WebChatHub(Protocol):
    """What the web UI uses of the web channel (channels/web.py)."""

    last_seq: int
    #: the process the answer numbers are of (a restart starts a new one)
    process_id: str
    #: set at start: where notices sent outside a turn and uploaded files are kept
    outbox: Any
    uploads: Any

    async def submit(
        self,
        user_id: str,
        display_name: str,
        client_id: str,
        text: str,
        parts: tuple[Attachment, ...] = (),
    ) -> None: ...

    def attach(
        self, user_id: str, after: int | None, have: dict[str, int], process: str | None = None
    ) -> tuple[asyncio.Queue[Event], list[Event]]: ...

    def resume_after(self, after: int | None, process: str | None) -> int | None: ...

    def detach(self, user_id: str, queue: asyncio.Queue[Event]) -> None: ...


@dataclass(eq=False, slots=True)
class _Peer:
    """One open chat socket and the login it belongs to."""

    ws: web.WebSocketResponse
    #: the login's key (its session id's hash): a logout ends this login's sockets
    login: str
    #: the person: revoking a guest ends all their sockets
    user: str
    #: wall-clock time the login expires
    expires_at: float
    #: the login ended: set before the socket is closed, so nothing is sent meanwhile
    ended: bool = False

    def live(self) -> bool:
        return not self.ended and not self.ws.closed and time.time() < self.expires_at

    async def send(self, event: Event) -> bool:
        """Send `event` if the login still holds; False when the socket is done."""
        if not self.live():
            return False
        try:
            await self.ws.send_json(event)
        except ConnectionError:
            return False
        return True


class ChatSocket:
    def __init__(self, ui: WebUI) -> None:
        self.ui = ui
        self.open: dict[web.WebSocketResponse, _Peer] = {}
        self._closing: set[asyncio.Task[bool]] = set()

    async def close_all(self, app: web.Application) -> None:
        """On shutdown: a page that is still open must not hold the server's stop."""
        for ws in list(self.open):
            await ws.close(code=1001, message=b"server stopping")
        if self._closing:
            await asyncio.wait(set(self._closing))

    def sign_out(self, *, login: str | None = None, user: str | None = None) -> int:
        """End the open sockets of a login (a logout) or of a person (revoked): from now on
        nothing is sent to them, and each is closed with 4401. Returns how many."""
        ended = [p for p in self.open.values() if p.login == login or p.user == user]
        for peer in ended:
            self._end(peer)
        return len(ended)

    def _end(self, peer: _Peer) -> None:
        if peer.ended:
            return
        peer.ended = True
        # not awaited here: a close waits for the page's answer, and a sleeping laptop's
        # tab must not hold up the logout that ended it
        close = peer.ws.close(code=SIGNED_OUT, message=b"signed out")
        task = asyncio.create_task(close, name="webui-sign-out")
        self._closing.add(task)
        task.add_done_callback(self._closing.discard)

    @property
    def hub(self) -> WebChatHub:
        return cast(WebChatHub, self.ui.gw.channels["web"])

    async def handle(self, request: web.Request) -> web.StreamResponse:
        session: WebSession = request[SESSION]
        # a WebSocket is not bound by the same-origin policy: the Origin and the token are
        if "Origin" not in request.headers or not self.ui.fwd.same_origin(request):
            raise web.HTTPForbidden(text="foreign origin")
        if not csrf_ok(session.csrf, request.query.get("csrf")):
            raise web.HTTPForbidden(text="missing or wrong CSRF token")
        ws = web.WebSocketResponse(heartbeat=30.0, max_msg_size=MAX_FRAME)
        await ws.prepare(request)
        login = login_key(self.ui.session_id(request))
        peer = _Peer(ws, login, session.user, session.expires_at)
        self.open[ws] = peer
        queue: asyncio.Queue[Event] | None = None
        pump: asyncio.Task[None] | None = None
        try:
            hello = await self._hello(ws)
            if hello is None:
                return ws
            after, process, have = hello
            if after is None:
                history = await self._history(session)
                if not await peer.send({"type": "history", "items": history}):
                    return ws
            seq, ours = self.hub.last_seq, self.hub.process_id
            resumed = self.hub.resume_after(after, process)
            queue, replay = self.hub.attach(session.user, after, have, process)
            # a number not of this process: everything up to `seq` is replayed now
            kept = resumed is not None and resumed == after and process == ours
            ready: Event = {"type": "ready", "seq": after if kept else seq, "process": ours}
            for event in [ready, *replay]:
                if not await peer.send(event):
                    return ws
            pump = asyncio.create_task(self._pump(peer, queue, request))
            await self._read(ws, request, session, queue)
        finally:
            if not ws.closed and not peer.live():
                self._end(peer)  # it expired on the way: the page still learns why
            self.open.pop(ws, None)
            try:
                await cancel_and_wait(pump)
            finally:
                if queue is not None:
                    self.hub.detach(session.user, queue)
        return ws

    async def _hello(
        self, ws: web.WebSocketResponse
    ) -> tuple[int | None, str | None, dict[str, int]] | None:
        msg = await ws.receive(timeout=30)
        data = _parse(msg)
        if data is None or data.get("type") != "hello":
            await ws.close(code=4400, message=b"expected hello")
            return None
        after = data.get("after")
        have_raw = data.get("have") or {}
        if not isinstance(have_raw, dict):
            have_raw = {}
        have = {str(k): v for k, v in have_raw.items() if isinstance(v, int) and v >= 0}
        process = data.get("process")
        return (
            (after if isinstance(after, int) else None),
            (process if isinstance(process, str) else None),
            have,
        )

    async def _history(self, session: WebSession) -> list[Event]:
        key = Conversation("web", session.user, ConversationKind.DM).session_key
        rows = await self.ui.auth.repo.history(key, session.user, HISTORY_MESSAGES)
        # an answer says its id: a page then takes it as had, should another process replay it
        return [
            {"role": role, "text": text, **({"id": answer} if answer else {})}
            for role, text, answer in rows
        ]

    async def _read(
        self,
        ws: web.WebSocketResponse,
        request: web.Request,
        session: WebSession,
        queue: asyncio.Queue[Event],
    ) -> None:
        async for msg in ws:
            data = _parse(msg)
            if data is None or data.get("type") != "send":
                continue
            client_id, text = data.get("id"), data.get("text")
            if not isinstance(client_id, str) or not _CLIENT_ID.fullmatch(client_id):
                await ws.send_json({"type": "error", "text": "bad message id"})
                continue
            if not isinstance(text, str):
                continue
            files = data.get("files")
            if isinstance(files, list) and len(files) > MAX_FILES:
                too_many = (
                    f"a message can carry at most {MAX_FILES} files; send the rest in another"
                )
                _refuse(queue, client_id, too_many)
                continue
            try:
                outcome = await self._submit(ws, request, session, client_id, text, files, queue)
            except DecapodError as exc:
                queue.put_nowait({"type": "error", "id": client_id, "text": exc.user_message})
                continue
            if outcome == "left":
                return
            if outcome == "signed out":
                await ws.close(code=SIGNED_OUT, message=b"signed out")
                return
            if outcome == "unknown file":
                _refuse(queue, client_id, outcome)
                continue
            # through the queue: the ack is never sent ahead of events already queued
            queue.put_nowait({"type": "ack", "id": client_id})

    async def _submit(
        self,
        ws: web.WebSocketResponse,
        request: web.Request,
        session: WebSession,
        client_id: str,
        text: str,
        files: Any,
        queue: asyncio.Queue[Event],
    ) -> str:
        """Hand a message on ("sent"); while storage refuses it (a full disk, a lock held
        too long, a database out of reach), said once and tried again until it is stored:
        the page sends it again only after a reconnect, so without this it would be neither
        answered nor sent again. The reads before it (the login, the files) wait the same
        way. The messages sent after it wait (their order is kept). "left" when the page
        left meanwhile: nothing reads the socket during the wait, so `ws.closed` would not
        tell a dropped connection; the connection itself does."""
        pause = 1.0
        while True:
            try:
                # asked again for each message: a socket outlives its handshake, and a
                # logout, an expired login or a revoked guest must end what it may send
                if await self.ui.session_of(request) is None:
                    return "signed out"
                parts = await self._parts(session, files)
                if parts is None:
                    return "unknown file"
                await self.hub.submit(session.user, session.name, client_id, text, parts)
                return "sent"
            except StorageUnavailable as exc:
                if pause == 1.0:
                    log.warning("web UI: a chat message waits for storage: %s", exc.reason)
                    waits = (
                        f"Storage is {exc.reason}: your message waits, and is sent once it "
                        "can be saved."
                    )
                    wait = {"type": "error", "id": client_id, "text": waits, "wait": True}
                    queue.put_nowait(wait)
            await asyncio.sleep(pause)
            transport = request.transport
            if ws.closed or transport is None or transport.is_closing():
                return "left"  # the page sends it again, under its id, when it is back
            pause = min(pause * 2, SUBMIT_RETRY_MOST_S)

    async def _parts(self, session: WebSession, files: Any) -> tuple[Attachment, ...] | None:
        """The attachments of a message's upload ids; None if one is not this person's."""
        if files is None:
            return ()
        if not isinstance(files, list):
            return None
        parts = []
        for upload_id in files:
            upload = await self.ui.uploads.find(upload_id) if isinstance(upload_id, str) else None
            if upload is None or upload.user != session.user:
                return None
            parts.append(upload.attachment())
        return tuple(parts)

    async def _pump(self, peer: _Peer, queue: asyncio.Queue[Event], request: web.Request) -> None:
        """The person's events to the page while the login holds: at its expiry, or when
        the store no longer knows it, the socket is ended instead."""
        loop = asyncio.get_running_loop()
        check_at = loop.time() + RECHECK_S
        while True:
            until_expiry = peer.expires_at - time.time()
            try:
                async with asyncio.timeout_at(min(check_at, loop.time() + until_expiry)):
                    event = await queue.get()
            except TimeoutError:
                check_at = loop.time() + RECHECK_S
                if time.time() < peer.expires_at and await self._still_signed_in(request):
                    continue
                self._end(peer)
                return
            if not await peer.send(event):
                if not peer.ws.closed:
                    self._end(peer)  # expired between two events
                return

    async def _still_signed_in(self, request: web.Request) -> bool:
        """The periodic look-up of the login. A store that cannot answer now does not end
        the chat: the page keeps receiving until the expiry or a logout, and the look-up is
        tried again at the next check (each message sent is checked on its own)."""
        try:
            return await self.ui.session_of(request) is not None
        except Exception as exc:
            log.warning("web UI: could not check a chat's login, trying again later: %s", exc)
            return True

    async def upload(self, request: web.Request) -> web.StreamResponse:
        """One file per request, streamed to disk within the cap; answers its id."""
        from bot.webui.uploads import UploadTooLarge

        session: WebSession = request[SESSION]
        try:
            reader = await request.multipart()
            part = await reader.next()
        except (ValueError, AssertionError):
            raise web.HTTPBadRequest(text="expected a multipart upload") from None
        if not isinstance(part, BodyPartReader) or part.name != "file" or not part.filename:
            raise web.HTTPBadRequest(text="expected one file in the field `file`")
        try:
            upload = await self.ui.uploads.save(session.user, part)
        except UploadTooLarge as exc:
            raise web.HTTPRequestEntityTooLarge(
                max_size=self.ui.uploads.max_bytes, actual_size=0, text=str(exc)
            ) from None
        log.info("web UI: %s uploaded %s (%d bytes)", session.user, upload.kind, upload.size)
        return web.json_response(
            {"id": upload.id, "name": upload.name, "kind": upload.kind, "size": upload.size}
        )


def _refuse(queue: asyncio.Queue[Event], client_id: str, why: str) -> None:
    """A message refused for good: said once, and acknowledged, so that the page drops it
    instead of sending it again (and having it refused again) after each reconnect."""
    queue.put_nowait({"type": "error", "id": client_id, "text": why})
    queue.put_nowait({"type": "ack", "id": client_id})


def _parse(msg: Any) -> dict[str, Any] | None:
    if msg.type != WSMsgType.TEXT:
        return None
    try:
        data = json.loads(msg.data)
    except ValueError:
        return None
    return data if isinstance(data, dict) else None
