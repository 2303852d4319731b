"""A fake Slack on 127.0.0.1 for the real slack-bolt / slack-sdk: Web API, Socket Mode,
response_urls, private files, and signed Events API deliveries.

    async with FakeSlack() as fake:
        client = AsyncWebClient(token=fake.bot_token, base_url=fake.api_url)
        ack = await fake.socket_send("events_api", fake.event("dm_message", text="hi"))
        posted = await fake.wait_for("chat.postMessage", channel="D0001")

Web API: POST /api/<method> with a JSON, form or query body and `Authorization: Bearer`.
auth.test, chat.postMessage/update/postEphemeral, reactions.add/remove,
assistant.threads.setStatus (or `missing_scope` when `assistant_status = False`),
apps.connections.open (checks the xapp token), users.info, conversations.info. `fail(method,
...)` makes the next calls answer an error, e.g. HTTP 429 with Retry-After; `refuse(channel,
error)` answers every post and update in a channel with an error until `allow(channel)`.
Every call is recorded in `.calls` with the monotonic time it arrived; what the bot's
messages show now (after updates) is `texts(channel)`; chat.update of a message that does
not exist answers `message_not_found`.

File uploads (the external flow `files_upload_v2` runs): files.getUploadURLExternal gives
an upload URL on the fake, the bytes POSTed there are held, and
files.completeUploadExternal shares them in a channel: each shared file is an `Upload` in
`.uploads`. `fail("upload", status=500)` fails the POST of the bytes; `fail(method, ...)`
any step of the API.

Socket Mode: apps.connections.open returns ws://127.0.0.1/link; the fake says hello, then
`socket_send` pushes an envelope (with retry_attempt/retry_reason) and returns the client's
ack, or None when none came in time.

Events API: `post_signed(url, body)` signs like Slack (v0 HMAC-SHA256) and can add
X-Slack-Retry-Num / X-Slack-Retry-Reason; it returns the status, body and elapsed time.

Buttons: a posted message keeps its `blocks`; `buttons(channel)` shows the newest actions
block, `block_actions(channel, ts, action_id, user=...)` builds the payload a tap sends (over
Socket Mode as an `interactive` envelope) with a response_url bound to that message: a POST
there with `replace_original` replaces the message, an ephemeral one is only recorded.

Payloads are real-shaped JSON in tests/channels/payloads/slack/; `event(name, **fields)`
loads one with fresh ids and timestamps and overrides fields of its `event`.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import itertools
import json
import time
import urllib.parse
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp
from aiohttp import web

PAYLOADS = Path(__file__).resolve().parents[1] / "channels" / "payloads" / "slack"
BOT_USER_ID, BOT_ID, TEAM_ID, APP_ID = "UBOT", "BBOT", "T0001", "A0001"


@dataclass
class ApiCall:
    method: str
    params: dict[str, Any]
    at: float  # time.monotonic() on arrival
    status: int = 200


@dataclass
class Upload:
    """A file shared in a channel through files.completeUploadExternal."""

    file_id: str
    channel: str
    name: str
    data: bytes
    thread_ts: str | None = None
    comment: str = ""


@dataclass
class Ack:
    envelope_id: str
    payload: dict[str, Any] | None
    elapsed: float  # seconds from sending the envelope to the ack


@dataclass
class HttpResult:
    status: int
    text: str
    elapsed: float


@dataclass
class _Failure:
    status: int
    error: str
    retry_after: float | None
    times: int
    after: int  # calls still let through before this failure starts


class FakeSlack:
    def __init__(
        self,
        host: str = "127.0.0.1",
        *,
        bot_token: str = "xoxb-decapod-fake-bot-token",
        app_token: str = "xapp-decapod-fake-app-token",
        signing_secret: str = "decapod-fake-signing-secret",
    ) -> None:
        assert host.startswith("127.") or host == "localhost", "the fake binds to loopback only"
        self.host = host
        self.bot_token, self.app_token, self.signing_secret = bot_token, app_token, signing_secret
        self.calls: list[ApiCall] = []
        self.responses: list[ApiCall] = []  # payloads POSTed to response_urls
        self.files: dict[str, tuple[bytes, str]] = {}
        self.file_requests: list[dict[str, str]] = []
        #: file names answered with a response that is not HTTP (a broken proxy on the way)
        self.garbled_files: set[str] = set()
        self.uploads: list[Upload] = []
        self._staged: dict[str, tuple[str, bytes | None]] = {}  # file id -> (name, bytes)
        #: whether assistant.threads.setStatus works (an app with the assistant scope)
        self.assistant_status = True
        self._failures: dict[str, list[_Failure]] = {}
        self.refusals: dict[str, str] = {}  # channel -> error for posts and updates
        self.messages: dict[tuple[str, str], str] = {}  # (channel, ts) -> text shown
        self.blocks: dict[tuple[str, str], list[Any]] = {}  # (channel, ts) -> blocks shown
        self._response_targets: dict[str, tuple[str, str]] = {}  # response_url id -> message
        self._changed = asyncio.Condition()
        self._seq = itertools.count(1)
        #: Socket Mode upgrades answered only after this long (a connect that times out)
        self.socket_delay_s = 0.0
        self._ws: web.WebSocketResponse | None = None
        self._ws_ready = asyncio.Event()
        self._acks: dict[str, asyncio.Future[dict[str, Any]]] = {}
        self._runner: web.AppRunner | None = None
        self.port = 0

    # lifecycle ---------------------------------------------------------------------------------
    async def start(self) -> FakeSlack:
        app = web.Application()
        app.router.add_post("/api/{method}", self._api)
        app.router.add_get("/link", self._socket)
        app.router.add_post("/respond/{rid}", self._respond)
        app.router.add_get("/files-pri/{name}", self._file)
        app.router.add_post("/upload/{file_id}", self._upload)
        self._runner = web.AppRunner(app, access_log=None, shutdown_timeout=0.5)
        await self._runner.setup()
        await web.TCPSite(self._runner, self.host, 0).start()
        self.port = self._runner.addresses[0][1]
        return self

    async def stop(self) -> None:
        if self._ws is not None and not self._ws.closed:
            await self._ws.close()
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    async def __aenter__(self) -> FakeSlack:
        return await self.start()

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()

    @property
    def base_url(self) -> str:
        return f"http://{self.host}:{self.port}"

    @property
    def api_url(self) -> str:
        return f"{self.base_url}/api/"

    def response_url(self) -> str:
        return f"{self.base_url}/respond/{uuid.uuid4().hex}"

    def add_file(self, name: str, data: bytes, mime: str = "text/plain") -> str:
        self.files[name] = (data, mime)
        return f"{self.base_url}/files-pri/{name}"

    def fail(
        self,
        method: str,
        *,
        status: int = 429,
        error: str = "ratelimited",
        retry_after: float | None = 1,
        times: int = 1,
        after: int = 0,
    ) -> None:
        """`times` calls of `method`, after the next `after` ones, answer this error."""
        failure = _Failure(status, error, retry_after, times, after)
        self._failures.setdefault(method, []).append(failure)

    def refuse(self, channel: str, error: str) -> None:
        """Posts and updates in `channel` answer `error` (HTTP 200, ok: false), as Slack does
        for `not_in_channel` or `is_archived`, until `allow(channel)`."""
        self.refusals[channel] = error

    def allow(self, channel: str) -> None:
        self.refusals.pop(channel, None)

    def texts(self, channel: str) -> list[str]:
        """What the bot's messages in a channel show now, in the order they were posted."""
        return [text for (where, _ts), text in self.messages.items() if where == channel]

    def timestamps(self, channel: str) -> list[str]:
        """The ts of the bot's messages in a channel, in the order they were posted."""
        return [ts for where, ts in self.messages if where == channel]

    # assertions --------------------------------------------------------------------------------
    def method_calls(self, method: str, status: int | None = 200) -> list[ApiCall]:
        return [c for c in self.calls if c.method == method and status in (None, c.status)]

    async def wait_for(
        self, method: str, start: int = 0, timeout: float = 30.0, **match: Any
    ) -> dict[str, Any]:
        """The params of the first successful call of `method` (from index `start` of .calls)
        whose params include `match`."""

        def found() -> dict[str, Any] | None:
            for call in self.calls[start:]:
                matches = all(call.params.get(k) == v for k, v in match.items())
                if call.method == method and call.status == 200 and matches:
                    return call.params
            return None

        async with self._changed:
            await asyncio.wait_for(self._changed.wait_for(lambda: found() is not None), timeout)
        result = found()
        assert result is not None
        return result

    async def wait_for_responses(self, count: int, timeout: float = 30.0) -> list[ApiCall]:
        async with self._changed:
            await asyncio.wait_for(
                self._changed.wait_for(lambda: len(self.responses) >= count), timeout
            )
        return self.responses

    async def _record(self, items: list[ApiCall], call: ApiCall) -> None:
        async with self._changed:
            items.append(call)
            self._changed.notify_all()

    # Web API -----------------------------------------------------------------------------------
    async def _api(self, request: web.Request) -> web.Response:
        method = request.match_info["method"]
        params: dict[str, Any] = dict(request.query)
        if request.body_exists:
            if request.content_type == "application/json":
                params.update(await request.json())
            else:
                params.update(dict(await request.post()))
        token = request.headers.get("Authorization", "").removeprefix("Bearer ")
        token = token or str(params.get("token", ""))
        call = ApiCall(method, params, time.monotonic())
        failure = self._take_failure(method)
        if failure is not None:
            call.status = failure.status
            await self._record(self.calls, call)
            headers = {}
            if failure.retry_after is not None:
                headers["Retry-After"] = str(int(failure.retry_after))
            body = {"ok": False, "error": failure.error}
            return web.json_response(body, status=failure.status, headers=headers)
        await self._record(self.calls, call)
        if method == "apps.connections.open":
            if token != self.app_token:
                return web.json_response({"ok": False, "error": "invalid_auth"})
            ticket = uuid.uuid4().hex
            return web.json_response(
                {"ok": True, "url": f"ws://{self.host}:{self.port}/link?{ticket}"}
            )
        if token != self.bot_token:
            return web.json_response({"ok": False, "error": "invalid_auth"})
        return web.json_response(self._answer(method, params))

    def _take_failure(self, method: str) -> _Failure | None:
        queue = self._failures.get(method)
        if not queue:
            return None
        failure = queue[0]
        if failure.after > 0:
            failure.after -= 1
            return None
        failure.times -= 1
        if failure.times <= 0:
            queue.pop(0)
        return failure

    def _answer(self, method: str, params: dict[str, Any]) -> dict[str, Any]:
        if method == "auth.test":
            return {
                "ok": True,
                "url": "https://fake.slack.com/",
                "team": "Fake",
                "user": "decapod",
                "team_id": TEAM_ID,
                "user_id": BOT_USER_ID,
                "bot_id": BOT_ID,
                "is_enterprise_install": False,
            }
        if method in ("chat.postMessage", "chat.update") and params.get("channel") in self.refusals:
            return {"ok": False, "error": self.refusals[params["channel"]]}
        if (
            method == "chat.update"
            and (params.get("channel"), params.get("ts")) not in self.messages
        ):
            return {"ok": False, "error": "message_not_found"}
        if method in ("chat.postMessage", "chat.update"):
            key = (str(params.get("channel")), str(params.get("ts") or self.next_ts()))
            self.messages[key] = str(params.get("text", ""))
            blocks = params.get("blocks")
            self.blocks[key] = json.loads(blocks) if isinstance(blocks, str) else blocks or []
            params = {**params, "ts": key[1]}
        if method in ("chat.postMessage", "chat.update", "chat.postEphemeral"):
            ts = params.get("ts") or self.next_ts()
            message = {"type": "message", "text": params.get("text", ""), "user": BOT_USER_ID}
            message.update({"bot_id": BOT_ID, "ts": ts})
            if params.get("thread_ts"):
                message["thread_ts"] = params["thread_ts"]
            if method == "chat.postEphemeral":
                return {"ok": True, "message_ts": ts}
            return {"ok": True, "channel": params.get("channel"), "ts": ts, "message": message}
        if method == "assistant.threads.setStatus":
            return (
                {"ok": True} if self.assistant_status else {"ok": False, "error": "missing_scope"}
            )
        if method in ("reactions.add", "reactions.remove", "conversations.join"):
            return {"ok": True}
        if method == "files.getUploadURLExternal":
            file_id = f"F{next(self._seq):06d}"
            self._staged[file_id] = (str(params.get("filename", "")), None)
            url = f"{self.base_url}/upload/{file_id}"
            return {"ok": True, "file_id": file_id, "upload_url": url}
        if method == "files.completeUploadExternal":
            return self._complete_upload(params)
        if method == "users.info":
            user = {"id": params.get("user"), "name": "alice", "real_name": "Alice"}
            return {"ok": True, "user": {**user, "is_bot": False}}
        if method == "conversations.info":
            channel = {"id": params.get("channel"), "name": "general", "is_channel": True}
            return {"ok": True, "channel": channel}
        return {"ok": False, "error": "unknown_method"}

    def _complete_upload(self, params: dict[str, Any]) -> dict[str, Any]:
        files = params.get("files")
        files = json.loads(files) if isinstance(files, str) else files or []
        shared = []
        for entry in files:
            name, data = self._staged.get(entry.get("id", ""), ("", None))
            if data is None:
                return {"ok": False, "error": "file_not_found"}
            channel = str(params.get("channel_id", ""))
            if channel in self.refusals:
                return {"ok": False, "error": self.refusals[channel]}
            comment = str(params.get("initial_comment") or "")
            thread = params.get("thread_ts") or None
            self.uploads.append(Upload(entry["id"], channel, name, data, thread, comment))
            shared.append({"id": entry["id"], "name": name, "title": entry.get("title") or name})
        return {"ok": True, "files": shared}

    async def _upload(self, request: web.Request) -> web.Response:
        file_id = request.match_info["file_id"]
        failure = self._take_failure("upload")
        if failure is not None:
            return web.Response(status=failure.status, text=failure.error)
        if file_id not in self._staged:
            return web.Response(status=404, text="unknown upload")
        self._staged[file_id] = (self._staged[file_id][0], await request.read())
        return web.Response(text="OK - 1")

    async def _respond(self, request: web.Request) -> web.Response:
        body = await request.json()
        target = self._response_targets.get(request.match_info["rid"])
        if target is not None and body.get("replace_original"):
            self.messages[target] = str(body.get("text", ""))
            self.blocks[target] = body.get("blocks") or []
        await self._record(self.responses, ApiCall("response_url", body, time.monotonic()))
        return web.Response(text="ok")

    # buttons -----------------------------------------------------------------------------------
    def buttons(self, channel: str) -> tuple[str, list[tuple[str, str]]]:
        """(ts, [(label, action_id)]) of the newest bot message in `channel` that shows
        buttons now; ("", []) when none does."""
        for (where, ts), blocks in reversed(list(self.blocks.items())):
            actions = [b for b in blocks if b.get("type") == "actions"]
            if where == channel and actions:
                elements = actions[0]["elements"]
                return ts, [(e["text"]["text"], e["action_id"]) for e in elements]
        return "", []

    def block_actions(
        self, channel: str, ts: str, action_id: str, *, user: str = "U0001", name: str = "alice"
    ) -> dict[str, Any]:
        """The payload of a tap on the button `action_id` of the bot's message `ts`."""
        rid = uuid.uuid4().hex
        self._response_targets[rid] = (channel, ts)
        message = {"type": "message", "user": BOT_USER_ID, "ts": ts, "bot_id": BOT_ID,
                   "text": self.messages.get((channel, ts), ""),
                   "blocks": self.blocks.get((channel, ts), [])}  # fmt: skip
        return {
            "type": "block_actions",
            "user": {"id": user, "username": name, "name": name, "team_id": TEAM_ID},
            "api_app_id": APP_ID,
            "token": "ZZZZZZWSxiZZZ2yIvs3peJ",
            "container": {
                "type": "message",
                "message_ts": ts,
                "channel_id": channel,
                "is_ephemeral": False,
            },
            "trigger_id": f"{time.time():.6f}.{uuid.uuid4().hex}",
            "team": {"id": TEAM_ID, "domain": "fake"},
            "channel": {"id": channel, "name": "directmessage"},
            "message": message,
            "response_url": f"{self.base_url}/respond/{rid}",
            "actions": [
                {
                    "action_id": action_id,
                    "block_id": "b1",
                    "type": "button",
                    "value": action_id.partition(":")[2],
                    "action_ts": self.next_ts(),
                    "text": {"type": "plain_text", "text": "button"},
                }
            ],
        }

    async def _file(self, request: web.Request) -> web.Response:
        self.file_requests.append(dict(request.headers))
        if request.headers.get("Authorization") != f"Bearer {self.bot_token}":
            # what Slack does without a token: a login page, not the file
            return web.Response(text="<html>sign in</html>", content_type="text/html")
        if request.match_info["name"] in self.garbled_files and request.transport is not None:
            request.transport.write(b"HTTP/1.1 2OO Fine\r\n\r\n")
            request.transport.close()
            return web.Response()
        found = self.files.get(request.match_info["name"])
        if found is None:
            return web.Response(status=404)
        data, mime = found
        return web.Response(body=data, content_type=mime)

    # Socket Mode -------------------------------------------------------------------------------
    async def _socket(self, request: web.Request) -> web.WebSocketResponse:
        await asyncio.sleep(self.socket_delay_s)
        ws = web.WebSocketResponse(autoping=True)  # answers the SDK's pings
        await ws.prepare(request)
        self._ws = ws
        hello = {"type": "hello", "num_connections": 1, "connection_info": {"app_id": APP_ID}}
        await ws.send_json(
            {**hello, "debug_info": {"host": "fake", "approximate_connection_time": 18060}}
        )
        self._ws_ready.set()
        async for frame in ws:
            if frame.type == aiohttp.WSMsgType.TEXT:
                data = json.loads(frame.data)
                future = self._acks.pop(data.get("envelope_id"), None)
                if future is not None and not future.done():
                    future.set_result(data)
        self._ws_ready.clear()
        return ws

    @property
    def socket_open(self) -> bool:
        """A Socket Mode connection is open now."""
        return self._ws_ready.is_set()

    async def wait_connected(self, timeout: float = 30.0) -> None:
        await asyncio.wait_for(self._ws_ready.wait(), timeout)

    async def socket_send(
        self,
        type_: str,
        payload: dict[str, Any],
        *,
        retry_attempt: int = 0,
        retry_reason: str = "",
        accepts_response_payload: bool = False,
        timeout: float = 30.0,
    ) -> Ack | None:
        """Push an envelope; the client's ack, or None if none came within `timeout`."""
        await self.wait_connected(timeout)
        assert self._ws is not None
        envelope_id = str(uuid.uuid4())
        future: asyncio.Future[dict[str, Any]] = asyncio.get_running_loop().create_future()
        self._acks[envelope_id] = future
        started = time.monotonic()
        envelope = {
            "envelope_id": envelope_id,
            "type": type_,
            "payload": payload,
            "accepts_response_payload": accepts_response_payload,
            "retry_attempt": retry_attempt,
            "retry_reason": retry_reason,
        }
        await self._ws.send_json(envelope)
        try:
            data = await asyncio.wait_for(future, timeout)
        except TimeoutError:
            self._acks.pop(envelope_id, None)
            return None
        return Ack(envelope_id, data.get("payload"), time.monotonic() - started)

    async def socket_send_raw(self, text: str) -> None:
        await self.wait_connected()
        assert self._ws is not None
        await self._ws.send_str(text)

    # Events API --------------------------------------------------------------------------------
    def sign(
        self, body: str, timestamp: int | None = None, secret: str | None = None
    ) -> dict[str, str]:
        ts = str(timestamp or int(time.time()))
        base = f"v0:{ts}:{body}".encode()
        key = (secret or self.signing_secret).encode()
        signature = "v0=" + hmac.new(key, base, hashlib.sha256).hexdigest()
        return {"X-Slack-Request-Timestamp": ts, "X-Slack-Signature": signature}

    async def post_signed(
        self,
        session: aiohttp.ClientSession,
        url: str,
        body: dict[str, Any] | str,
        *,
        form: bool = False,
        retry_num: int | None = None,
        retry_reason: str | None = None,
        secret: str | None = None,
    ) -> HttpResult:
        """POST like Slack: JSON (events) or a form (slash commands), signed."""
        if isinstance(body, str):
            raw, content_type = body, "application/json"
        elif form:
            raw, content_type = urllib.parse.urlencode(body), "application/x-www-form-urlencoded"
        else:
            raw, content_type = json.dumps(body), "application/json"
        headers = {"Content-Type": content_type, **self.sign(raw, secret=secret)}
        if retry_num is not None:
            headers["X-Slack-Retry-Num"] = str(retry_num)
            headers["X-Slack-Retry-Reason"] = retry_reason or "http_timeout"
        started = time.monotonic()
        async with session.post(url, data=raw.encode(), headers=headers) as resp:
            text = await resp.text()
        return HttpResult(resp.status, text, time.monotonic() - started)

    # payloads ----------------------------------------------------------------------------------
    def next_ts(self) -> str:
        return f"{int(time.time())}.{next(self._seq):06d}"

    def event(self, name: str, **fields: Any) -> dict[str, Any]:
        """A payload file with a fresh event_id, ts and client_msg_id; `fields` override (or,
        set to None, remove) fields of its event."""
        body = payload(name)
        body["event_id"] = "Ev" + uuid.uuid4().hex[:12].upper()
        event = body["event"]
        ts = self.next_ts()
        event["ts"] = event["event_ts"] = ts
        if "client_msg_id" in event:
            event["client_msg_id"] = str(uuid.uuid4())
        for key, value in fields.items():
            if value is None:
                event.pop(key, None)
            else:
                event[key] = value
        return body

    def slash(self, text: str, *, response_url: str | None = None, **fields: Any) -> dict[str, Any]:
        form = payload("slash_command")
        form.update(text=text, response_url=response_url or self.response_url())
        form["trigger_id"] = f"{time.time():.6f}.{uuid.uuid4().hex}"
        form.update(fields)
        return form


def payload(name: str) -> dict[str, Any]:
    """A payload file of tests/channels/payloads/slack/ as it is."""
    data: dict[str, Any] = json.loads((PAYLOADS / f"{name}.json").read_text())
    return data


def same_message(first: dict[str, Any], second: dict[str, Any]) -> dict[str, Any]:
    """`second` made a redelivery of `first`'s message under its own event_id (what Slack
    does for a channel mention: one `message` and one `app_mention`)."""
    event = second["event"]
    for key in ("ts", "event_ts", "client_msg_id"):
        event[key] = first["event"][key]
    return second
