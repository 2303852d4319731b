"""A fake Discord (REST v10 + gateway) on 127.0.0.1 for discord.py 2.x, end to end.

    async with FakeDiscord(heartbeat_interval_s=0.25) as fake:
        # the channel's config: api_base_url = fake.api_base, gateway_url = fake.gateway_url
        await fake.send_message("hi", dm=True)
        call = await fake.wait_for("POST", "/messages")

Gateway: HELLO, heartbeat ACKs, IDENTIFY -> READY + GUILD_CREATE, RESUME -> the events the
client missed (and any `resume_duplicates`) followed by RESUMED, RECONNECT on demand, a deaf
mode that stops ACKing heartbeats, and raw frames for malformed dispatches. Frames are TEXT
JSON, or one zlib stream when the client asks for compress=zlib-stream.

REST: login, app info, command sync (global and per guild), channel messages and typing, DM
channels, interaction callbacks, webhook followups, reads and edits (@original included), a CDN
stand-in for attachments, and messages with files (multipart: `payload_json` and `files[n]`,
kept as `Call.files` and shown as the message's `attachments`). Interactions behave like
Discord's: a callback later than 3 s gets 404 (10062) and webhook calls after 15 minutes
get 401 (50027). `rate_limit()` answers the next matching calls with 429, `retry_after` and
the X-RateLimit headers; `fail()` answers them with any Discord error (404 10008 on an edit,
403 50001 on a send, a 502), and `expire_token()` lets an interaction's token run out after a
number of webhook edits.
Buttons: a message keeps its `components`; `buttons_in(channel_id)` shows the newest message's
buttons, `press(message_id, custom_id, user=...)` dispatches the component INTERACTION_CREATE a
tap makes (with the message), and a type 7 callback (UPDATE_MESSAGE) edits that message.

Interactions endpoint (HTTP interactions mode): the fake holds the application's Ed25519 key
(`public_key`, also the application's `verify_key`); `post_interaction(url, data)` POSTs an
interaction payload signed with it, as Discord does, and returns the status and body. The
callback, @original and followup routes answer such interactions as they answer those sent
over the gateway.

Payload shapes come from tests/channels/payloads/discord/*.json; ids are fresh snowflakes
that encode the current time, as Discord's do. REST replies carry a Content-Type of exactly
`application/json`: discord.py parses nothing else.
"""

from __future__ import annotations

import asyncio
import copy
import datetime as dt
import itertools
import json
import time
import zlib
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path
from typing import Any

import aiohttp
from aiohttp import web
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

PAYLOADS = Path(__file__).resolve().parent.parent / "channels" / "payloads" / "discord"
DISCORD_EPOCH_MS = 1_420_070_400_000
#: a well-formed bot token: base64 of the bot's user id, a timestamp part and an HMAC part
TOKEN = "MTIzNDU2Nzg5MDEyMzQ1Njc4OQ.GfAke1.fake-hmac-for-tests-only-000000000000000"
BOT_ID = "1234567890123456789"
GUILD_ID = "1100000000000000001"
CHANNEL_ID = "1100000000000000003"
BOT_ROLE_ID = "1100000000000000002"
ALICE = "1200000000000000001"
BOB = "1200000000000000002"
INTERACTION_CALLBACK_S = 3.0
#: the longest content Discord takes in a message (an edit past it is refused)
MAX_CONTENT = 2000
INTERACTION_TOKEN_TTL_S = 15 * 60.0

_counter = itertools.count()
_BODY: web.RequestKey[Any] = web.RequestKey("body", object)
_FILES: web.RequestKey[list[tuple[str, str, bytes]]] = web.RequestKey("files", list)


@cache
def _template(name: str) -> dict[str, Any]:
    data: dict[str, Any] = json.loads((PAYLOADS / f"{name}.json").read_text())
    return data


def payload(name: str) -> dict[str, Any]:
    """A fresh copy of one recorded payload shape."""
    return copy.deepcopy(_template(name))


def snowflake(at: float | None = None) -> str:
    """An id that encodes `at` (default: now), like Discord's."""
    ms = int((time.time() if at is None else at) * 1000) - DISCORD_EPOCH_MS
    return str((ms << 22) | (next(_counter) & 0x3FFFFF))


def now_iso() -> str:
    return dt.datetime.now(dt.UTC).isoformat()


def _json(obj: Any, status: int = 200, headers: dict[str, str] | None = None) -> web.Response:
    # web.json_response would add "; charset=utf-8", and discord.py would then see a str
    return web.Response(
        body=json.dumps(obj).encode(),
        status=status,
        headers={"Content-Type": "application/json", **(headers or {})},
    )


def _error(status: int, code: int, message: str) -> web.Response:
    return _json({"message": message, "code": code}, status)


@dataclass
class Call:
    """One REST request the fake received."""

    method: str
    path: str
    body: Any
    query: dict[str, str]
    status: int = 200
    at: float = field(default_factory=time.monotonic)
    #: the files of a multipart request: (filename, content type, bytes)
    files: list[tuple[str, str, bytes]] = field(default_factory=list)


@dataclass
class _RateLimit:
    method: str
    path_part: str
    retry_after: float
    times: int
    via: bool


@dataclass
class _Fault:
    method: str
    path_part: str
    status: int
    code: int
    message: str
    times: int | None  # None: every matching call
    after: int = 0  # matching calls let through first


@dataclass
class _Connection:
    ws: web.WebSocketResponse
    compressor: Any
    acks: bool = True
    draining: bool = False


class FakeDiscord:
    def __init__(
        self, *, host: str = "127.0.0.1", token: str = TOKEN, heartbeat_interval_s: float = 41.25
    ) -> None:
        assert host.startswith("127.") or host == "localhost", "the fake binds to loopback only"
        self.host = host
        self.token = token
        self.heartbeat_interval_s = heartbeat_interval_s
        self.bot_user: dict[str, Any] = payload("ready")["user"]
        self.application: dict[str, Any] = payload("application")
        #: the application's key pair: interactions POSTed to an endpoint are signed with it
        self.signing_key = Ed25519PrivateKey.generate()
        self.public_key = (
            self.signing_key.public_key().public_bytes(Encoding.Raw, PublicFormat.Raw).hex()
        )
        self.application["verify_key"] = self.public_key
        #: interactions POSTed to an endpoint, by token
        self.posted: dict[str, dict[str, Any]] = {}
        self.calls: list[Call] = []
        #: what the client sent on the gateway, in order
        self.gateway_log: list[dict[str, Any]] = []
        self.commands: dict[str, list[dict[str, Any]]] = {}  # "global" or guild id -> commands
        #: bot messages by id, as they look now (sent, then edited)
        self.messages: dict[str, dict[str, Any]] = {}
        self.interaction_tokens: dict[str, float] = {}  # token -> created (epoch seconds)
        self.originals: dict[str, str] = {}  # interaction token -> original message id
        self.threads: dict[str, dict[str, Any]] = {}
        self.attachments: dict[str, bytes] = {}
        #: attachment name -> the Location its CDN URL redirects to (302)
        self.cdn_moves: dict[str, str] = {}
        #: the attachment names the CDN was asked for, in order
        self.cdn_asked: list[str] = []
        #: events the next RESUME replays although the client saw them already
        self.resume_duplicates: list[tuple[str, dict[str, Any]]] = []
        self.connections = 0
        self.identifies = 0
        self.resumes = 0
        self.intents: int | None = None
        self._history: list[tuple[int, str, dict[str, Any] | None]] = []
        self._seq = 0
        self._session_id = "fake-session-" + snowflake()
        self._live: _Connection | None = None
        self._limits: list[_RateLimit] = []
        self._faults: list[_Fault] = []
        self._edits_until_expiry: dict[str, int] = {}  # interaction token -> edits left
        self._changed = asyncio.Condition()
        self._runner: web.AppRunner | None = None
        self.port = 0

    # lifecycle ------------------------------------------------------------------------------
    async def start(self) -> FakeDiscord:
        app = web.Application(middlewares=[self._middleware])
        app.router.add_get("/gateway", self._gateway)
        app.router.add_get("/cdn/attachments/{name}", self._cdn)
        api = "/api/v10"
        routes: list[tuple[str, str, Callable[..., Any]]] = [
            ("GET", "/users/@me", self._me),
            ("GET", "/oauth2/applications/@me", self._app_info),
            ("GET", "/gateway", self._gateway_info),
            ("GET", "/gateway/bot", self._gateway_info),
            ("PUT", "/applications/{app}/commands", self._sync_commands),
            ("PUT", "/applications/{app}/guilds/{guild}/commands", self._sync_commands),
            ("POST", "/users/@me/channels", self._open_dm),
            ("GET", "/channels/{channel}", self._get_channel),
            ("POST", "/channels/{channel}/messages", self._create_message),
            ("PATCH", "/channels/{channel}/messages/{message}", self._edit_message),
            ("POST", "/channels/{channel}/typing", self._typing),
            ("POST", "/interactions/{interaction}/{token}/callback", self._callback),
            ("POST", "/webhooks/{app}/{token}", self._followup),
            ("GET", "/webhooks/{app}/{token}/messages/{message}", self._get_webhook_message),
            ("PATCH", "/webhooks/{app}/{token}/messages/{message}", self._edit_webhook_message),
        ]
        for method, path, handler in routes:
            app.router.add_route(method, api + path, handler)
        # the API moved: each request under /moved/ is redirected (307) to its path without it
        app.router.add_route("*", "/moved/{path:.*}", self._moved)
        self._runner = web.AppRunner(app, access_log=None, shutdown_timeout=0.5)
        await self._runner.setup()
        await web.TCPSite(self._runner, self.host, 0).start()
        self.port = self._runner.addresses[0][1]
        return self

    async def stop(self) -> None:
        if self._live is not None and not self._live.ws.closed:
            await self._live.ws.close()
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    async def __aenter__(self) -> FakeDiscord:
        return await self.start()

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()

    @property
    def api_base(self) -> str:
        return f"http://{self.host}:{self.port}/api/v10"

    @property
    def gateway_url(self) -> str:
        return f"ws://{self.host}:{self.port}/gateway"

    @property
    def connected(self) -> bool:
        return self._live is not None

    # assertions -----------------------------------------------------------------------------
    async def _notify(self) -> None:
        async with self._changed:
            self._changed.notify_all()

    async def until(self, predicate: Callable[[], Any], timeout: float = 30.0) -> Any:
        """Wait until `predicate()` is truthy (re-checked on every request and frame)."""

        async def wait() -> Any:
            async with self._changed:
                return await self._changed.wait_for(predicate)

        return await asyncio.wait_for(wait(), timeout)

    def calls_to(
        self, method: str, path_part: str = "", *, start: int = 0, status: int | None = 200
    ) -> list[Call]:
        return [
            c
            for c in self.calls[start:]
            if c.method == method and path_part in c.path and (status is None or c.status == status)
        ]

    async def wait_for(
        self,
        method: str,
        path_part: str = "",
        *,
        start: int = 0,
        count: int = 1,
        timeout: float = 30.0,
    ) -> Call:
        """The `count`-th successful call matching, once it has arrived."""
        await self.until(
            lambda: len(self.calls_to(method, path_part, start=start)) >= count, timeout
        )
        return self.calls_to(method, path_part, start=start)[count - 1]

    def texts_in(self, channel_id: str) -> list[str]:
        """What the bot's messages in a channel show now, oldest first."""
        return [m["content"] for m in self.messages.values() if m["channel_id"] == channel_id]

    def interaction_texts(self, token: str) -> list[str]:
        """The original response and the followups of one interaction, as they show now."""
        return [m["content"] for m in self.messages.values() if m.get("_token") == token]

    # gateway ----------------------------------------------------------------------------------
    async def _gateway(self, request: web.Request) -> web.WebSocketResponse:
        ws = web.WebSocketResponse(autoping=True, max_msg_size=0)
        await ws.prepare(request)
        zlib_stream = request.query.get("compress") == "zlib-stream"
        conn = _Connection(ws, zlib.compressobj() if zlib_stream else None)
        self._live = conn
        self.connections += 1
        hello = {"heartbeat_interval": int(self.heartbeat_interval_s * 1000)}
        await self._send(conn, {"op": 10, "d": hello, "s": None, "t": None})
        async for msg in ws:
            if msg.type is not aiohttp.WSMsgType.TEXT:
                continue
            frame = json.loads(msg.data)
            self.gateway_log.append(frame)
            op, data = frame.get("op"), frame.get("d")
            if op == 1 and conn.acks:
                await self._send(conn, {"op": 11, "d": None, "s": None, "t": None})
            elif op == 2:
                await self._identify(conn, data)
            elif op == 6:
                await self._resume(conn, data)
            await self._notify()
        if self._live is conn:
            self._live = None
        return ws

    async def _send(self, conn: _Connection, frame: dict[str, Any] | str) -> None:
        raw = frame if isinstance(frame, str) else json.dumps(frame)
        if conn.ws.closed:
            return
        if conn.compressor is None:
            await conn.ws.send_str(raw)
        else:
            data = conn.compressor.compress(raw.encode()) + conn.compressor.flush(zlib.Z_SYNC_FLUSH)
            await conn.ws.send_bytes(data)

    async def _identify(self, conn: _Connection, data: dict[str, Any]) -> None:
        if data.get("token") != self.token:
            await conn.ws.close(code=4004, message=b"Authentication failed.")
            return
        self.identifies += 1
        self.intents = data.get("intents")
        ready = payload("ready")
        ready.update(session_id=self._session_id, resume_gateway_url=self.gateway_url)
        await self.dispatch("READY", ready)
        guild = payload("guild_create")
        guild["threads"] = list(self.threads.values())
        await self.dispatch("GUILD_CREATE", guild)

    async def _resume(self, conn: _Connection, data: dict[str, Any]) -> None:
        if data.get("token") != self.token or data.get("session_id") != self._session_id:
            await self._send(conn, {"op": 9, "d": False, "s": None, "t": None})
            return
        self.resumes += 1
        missed = [(e, d) for s, e, d in self._history if s > (data.get("seq") or 0)]
        replays, self.resume_duplicates = [*self.resume_duplicates, *missed], []
        for event, body in replays:
            await self.dispatch(event, body)
        await self.dispatch("RESUMED", {})

    async def dispatch(self, event: str, data: dict[str, Any] | None) -> None:
        """Send an event, or keep it for the next RESUME while no connection is live."""
        self._seq += 1
        self._history.append((self._seq, event, data))
        conn = self._live
        if conn is not None and not conn.draining:
            await self._send(conn, {"op": 0, "t": event, "s": self._seq, "d": data})

    async def send_raw(self, frame: dict[str, Any] | str) -> None:
        """Send a frame as it is (malformed dispatches, unknown opcodes)."""
        assert self._live is not None, "no client connected"
        await self._send(self._live, frame)

    async def force_reconnect(self) -> None:
        """op 7 RECONNECT. Events dispatched until the client is back are replayed on RESUME."""
        conn = self._live
        assert conn is not None, "no client connected"
        await self._send(conn, {"op": 7, "d": None, "s": None, "t": None})
        conn.draining = True

    def stop_acks(self) -> None:
        """The live connection stays open but stops acknowledging heartbeats."""
        assert self._live is not None, "no client connected"
        self._live.acks = False

    # inbound builders ---------------------------------------------------------------------
    def user(self, user_id: str = ALICE, name: str = "alice") -> dict[str, Any]:
        user: dict[str, Any] = payload("message_create_guild")["author"]
        user.update(id=user_id, username=name, global_name=name.title())
        return user

    def dm_channel_id(self, user_id: str) -> str:
        return str(int(user_id) + 7_000_000)

    def message(
        self,
        content: str,
        *,
        dm: bool = False,
        channel_id: str | None = None,
        author: dict[str, Any] | None = None,
        mention: bool = False,
        reply_to: dict[str, Any] | None = None,
        attachments: dict[str, bytes] | None = None,
    ) -> dict[str, Any]:
        """A MESSAGE_CREATE payload: in #general unless `dm` or `channel_id` say otherwise."""
        author = author or self.user()
        data = payload("message_create_dm" if dm else "message_create_guild")
        data.update(id=snowflake(), author=author, content=content, timestamp=now_iso())
        data["nonce"] = snowflake()
        data["channel_id"] = self.dm_channel_id(author["id"]) if dm else channel_id or CHANNEL_ID
        if mention:
            data["content"] = f"<@{BOT_ID}> {content}"
            data["mentions"] = [self.bot_user]
        if reply_to is not None:
            data["type"] = 19
            data["message_reference"] = {
                "type": 0,
                "message_id": reply_to["id"],
                "channel_id": reply_to["channel_id"],
                "guild_id": GUILD_ID,
            }
            data["referenced_message"] = reply_to
        for name, blob in (attachments or {}).items():
            self.attachments[name] = blob
            data["attachments"].append(
                {
                    "id": snowflake(),
                    "filename": name,
                    "size": len(blob),
                    "url": f"http://{self.host}:{self.port}/cdn/attachments/{name}",
                    "proxy_url": f"http://{self.host}:{self.port}/cdn/attachments/{name}",
                    # by the name's extension, as Discord does; text when it knows none
                    "content_type": _content_type(name),
                }
            )
        return data

    async def send_message(self, content: str, **kwargs: Any) -> dict[str, Any]:
        data = self.message(content, **kwargs)
        await self.dispatch("MESSAGE_CREATE", data)
        return data

    async def create_thread(self, name: str = "project notes", *, announce: bool = True) -> str:
        """A public thread in #general. Unannounced, the client learns of it only from
        GET /channels/{id} (a thread it was added to while offline, say)."""
        thread = payload("thread_create")
        thread.update(id=snowflake(), name=name, parent_id=CHANNEL_ID)
        self.threads[thread["id"]] = thread
        if announce:
            await self.dispatch("THREAD_CREATE", thread)
        return str(thread["id"])

    def interaction(
        self,
        name: str,
        options: dict[str, Any] | None = None,
        *,
        dm: bool = False,
        user: dict[str, Any] | None = None,
        channel_id: str | None = None,
        created_at: float | None = None,
    ) -> dict[str, Any]:
        """An INTERACTION_CREATE payload for a slash command."""
        data = payload("interaction_create_dm" if dm else "interaction_create_guild")
        user = user or self.user()
        created = time.time() if created_at is None else created_at
        data.update(id=snowflake(created), token="itok-" + snowflake(created))
        if dm:
            data["user"] = user
            data["channel_id"] = data["channel"]["id"] = self.dm_channel_id(user["id"])
            data["channel"]["recipients"] = [user]
        else:
            data["member"]["user"] = user
            if channel_id in self.threads:
                data["channel"] = {**self.threads[channel_id], "permissions": "2222085186637376"}
            data["channel_id"] = data["channel"]["id"] = channel_id or CHANNEL_ID
        scope = "global" if "global" in self.commands else next(iter(self.commands), "")
        registered = {c["name"]: c for c in self.commands.get(scope, [])}
        data["data"] = {
            "id": registered[name]["id"] if name in registered else snowflake(),
            "name": name,
            "type": 1,
        }
        if options:
            data["data"]["options"] = [
                {"name": key, "type": 3, "value": value} for key, value in options.items()
            ]
        self.interaction_tokens[data["token"]] = created
        return data

    def component_interaction(
        self, message_id: str, custom_id: str, *, user: dict[str, Any] | None = None
    ) -> dict[str, Any]:
        """The INTERACTION_CREATE of a tap on a button of the bot's message `message_id`
        (a DM's when the message is in one, else #general's)."""
        message = self.messages[message_id]
        user = user or self.user()
        dm = message["channel_id"] != CHANNEL_ID and message["channel_id"] not in self.threads
        data = payload("interaction_create_dm" if dm else "interaction_create_guild")
        created = time.time()
        data.update(id=snowflake(created), token="itok-" + snowflake(created), type=3)
        if dm:
            data["user"] = user
            data["channel"]["recipients"] = [user]
        else:
            data["member"]["user"] = user
        data["channel_id"] = data["channel"]["id"] = message["channel_id"]
        data["message"] = {k: v for k, v in message.items() if not k.startswith("_")}
        data["data"] = {"custom_id": custom_id, "component_type": 2}
        self.interaction_tokens[data["token"]] = created
        return data

    async def press(
        self, message_id: str, custom_id: str, *, user: dict[str, Any] | None = None
    ) -> dict[str, Any]:
        data = self.component_interaction(message_id, custom_id, user=user)
        await self.dispatch("INTERACTION_CREATE", data)
        return data

    def buttons_in(self, channel_id: str) -> tuple[str, list[tuple[str, str]]]:
        """(message id, [(label, custom_id)]) of the newest message in a channel that shows
        buttons now; ("", []) when none does."""
        for message in reversed(list(self.messages.values())):
            rows = message.get("components") or []
            if message["channel_id"] == channel_id and rows:
                found = [(b["label"], b["custom_id"]) for row in rows for b in row["components"]]
                return str(message["id"]), found
        return "", []

    def callback_answers(self, interaction: dict[str, Any]) -> list[dict[str, Any]]:
        """The callback bodies the bot answered an interaction with."""
        path = f"/interactions/{interaction['id']}/{interaction['token']}/callback"
        return [c.body for c in self.calls if c.path == path and c.status == 200]

    async def send_slash_command(
        self, name: str, options: dict[str, Any] | None = None, **kw: Any
    ) -> dict[str, Any]:
        data = self.interaction(name, options, **kw)
        await self.dispatch("INTERACTION_CREATE", data)
        return data

    # interactions endpoint ------------------------------------------------------------------
    def sign(
        self, body: bytes, *, timestamp: int | None = None, key: Ed25519PrivateKey | None = None
    ) -> dict[str, str]:
        """Discord's signature headers for `body`: Ed25519 over timestamp + body."""
        stamp = str(int(time.time()) if timestamp is None else timestamp)
        signature = (key or self.signing_key).sign(stamp.encode() + body)
        return {"X-Signature-Ed25519": signature.hex(), "X-Signature-Timestamp": stamp}

    async def post_interaction(
        self,
        url: str,
        data: dict[str, Any] | bytes,
        *,
        headers: dict[str, str] | None = None,
        timestamp: int | None = None,
        key: Ed25519PrivateKey | None = None,
    ) -> tuple[int, Any]:
        """POST an interaction as Discord does, signed unless `headers` are given; the
        endpoint's status and its body (parsed when JSON, None when empty)."""
        if isinstance(data, dict):
            self.posted[data["token"]] = data
        body = data if isinstance(data, bytes) else json.dumps(data).encode()
        sent = {"Content-Type": "application/json"}
        sent.update(self.sign(body, timestamp=timestamp, key=key) if headers is None else headers)
        async with (
            aiohttp.ClientSession() as session,
            session.post(url, data=body, headers=sent) as resp,
        ):
            raw = await resp.read()
            is_json = resp.content_type == "application/json"
            return resp.status, json.loads(raw) if raw and is_json else raw.decode() or None

    # faults -------------------------------------------------------------------------------
    def rate_limit(
        self, method: str, path_part: str, *, retry_after: float, times: int = 1, via: bool = True
    ) -> None:
        """Answer the next `times` matching calls with 429. Without `via`, the 429 looks like
        Cloudflare's, which discord.py does not retry by itself."""
        self._limits.append(_RateLimit(method, path_part, retry_after, times, via))

    def fail(
        self,
        method: str,
        path_part: str,
        status: int,
        code: int,
        message: str,
        *,
        times: int | None = 1,
        after: int = 0,
    ) -> None:
        """Answer `times` matching calls (None: all of them) with Discord's error
        `{"code": code, "message": message}` and `status`, once `after` went through."""
        self._faults.append(_Fault(method, path_part, status, code, message, times, after))

    def expire_token(self, token: str, *, after_edits: int) -> None:
        """The interaction's token expires once its webhook has edited `after_edits`
        messages: every webhook call after that gets 401 50027, as after 15 minutes."""
        self._edits_until_expiry[token] = after_edits

    def _take_fault(self, method: str, path: str) -> web.Response | None:
        for fault in self._faults:
            if fault.method == method and fault.path_part in path and fault.times != 0:
                if fault.after > 0:
                    fault.after -= 1
                    continue
                if fault.times is not None:
                    fault.times -= 1
                return _error(fault.status, fault.code, fault.message)
        return None

    def _take_limit(self, method: str, path: str) -> _RateLimit | None:
        for limit in self._limits:
            if limit.times > 0 and limit.method == method and limit.path_part in path:
                limit.times -= 1
                return limit
        return None

    # REST -----------------------------------------------------------------------------------
    @web.middleware
    async def _middleware(self, request: web.Request, handler: Any) -> web.StreamResponse:
        path = request.path.removeprefix("/api/v10")
        if request.path.startswith("/gateway") or request.path.startswith("/cdn/"):
            return await handler(request)  # type: ignore[no-any-return]
        body: Any = None
        files: list[tuple[str, str, bytes]] = []
        if request.body_exists and request.content_type == "application/json":
            body = await request.json()
        elif request.body_exists and request.content_type == "multipart/form-data":
            body, files = await _multipart(request)
        call = Call(request.method, path, body, dict(request.query), files=files)
        self.calls.append(call)
        request[_BODY] = body
        request[_FILES] = files
        token_free = path.startswith(("/interactions/", "/webhooks/"))
        if not token_free and request.headers.get("Authorization") != f"Bot {self.token}":
            call.status = 401
            response = _error(401, 0, "401: Unauthorized")
        elif limit := self._take_limit(request.method, path):
            call.status = 429
            response = self._too_many(limit)
        elif (fault := self._take_fault(request.method, path)) is not None:
            call.status = fault.status
            response = fault
        else:
            response = await handler(request)
            call.status = response.status
        await self._notify()
        return response

    def _too_many(self, limit: _RateLimit) -> web.Response:
        headers = {
            "Retry-After": str(int(limit.retry_after + 0.999)),
            "X-RateLimit-Limit": "5",
            "X-RateLimit-Remaining": "0",
            "X-RateLimit-Reset": f"{time.time() + limit.retry_after:.3f}",
            "X-RateLimit-Reset-After": f"{limit.retry_after:.3f}",
            "X-RateLimit-Bucket": "fake-bucket-" + limit.path_part.strip("/"),
            "X-RateLimit-Scope": "user",
        }
        if limit.via:
            headers["Via"] = "1.1 google"
        body = {
            "message": "You are being rate limited.",
            "retry_after": limit.retry_after,
            "global": False,
        }
        return _json(body, 429, headers)

    async def _moved(self, request: web.Request) -> web.Response:
        raise web.HTTPTemporaryRedirect("/" + request.match_info["path"])

    async def _me(self, request: web.Request) -> web.Response:
        return _json(self.bot_user)

    async def _app_info(self, request: web.Request) -> web.Response:
        return _json(self.application)

    async def _gateway_info(self, request: web.Request) -> web.Response:
        limit = {"total": 1000, "remaining": 999, "reset_after": 0, "max_concurrency": 1}
        return _json({"url": self.gateway_url, "shards": 1, "session_start_limit": limit})

    async def _sync_commands(self, request: web.Request) -> web.Response:
        scope = request.match_info.get("guild", "global")
        self.commands[scope] = [
            {
                **c,
                "id": snowflake(),
                "application_id": BOT_ID,
                "version": snowflake(),
                "default_member_permissions": None,
                "type": c.get("type", 1),
            }
            for c in request[_BODY]
        ]
        return _json(self.commands[scope])

    async def _open_dm(self, request: web.Request) -> web.Response:
        user_id = request[_BODY]["recipient_id"]
        channel = payload("dm_channel")
        channel["id"] = self.dm_channel_id(str(user_id))
        channel["recipients"] = [self.user(str(user_id))]
        return _json(channel)

    async def _get_channel(self, request: web.Request) -> web.Response:
        channel_id = request.match_info["channel"]
        if channel_id in self.threads:
            return _json(self.threads[channel_id])
        if channel_id == CHANNEL_ID:
            return _json(payload("guild_create")["channels"][0])
        return _error(404, 10003, "Unknown Channel")

    def _bot_message(self, channel_id: str, body: dict[str, Any]) -> dict[str, Any]:
        message = payload("message_create_guild")
        for key in ("guild_id", "member", "nonce"):
            message.pop(key)
        message.update(
            id=snowflake(),
            channel_id=channel_id,
            author=self.bot_user,
            content=body.get("content") or "",
            timestamp=now_iso(),
            flags=body.get("flags") or 0,
            components=body.get("components") or [],
        )
        self.messages[message["id"]] = message
        return message

    def _attachments(self, files: list[tuple[str, str, bytes]]) -> list[dict[str, Any]]:
        shown = []
        for name, mime, data in files:
            file_id = snowflake()
            url = f"http://{self.host}:{self.port}/cdn/attachments/{file_id}"
            self.attachments[file_id] = data
            shown.append({"id": file_id, "filename": name, "size": len(data), "url": url,
                          "proxy_url": url, "content_type": mime})  # fmt: skip
        return shown

    def _edit(self, message_id: str, body: dict[str, Any]) -> web.Response:
        message = self.messages.get(message_id)
        if message is None:
            return _error(404, 10008, "Unknown Message")
        if len(body.get("content") or "") > MAX_CONTENT:  # code points, as Discord counts
            return _error(400, 50035, "Invalid Form Body")
        if "content" in body:
            message["content"] = body["content"]
        if "components" in body:
            message["components"] = body["components"] or []
        message["edited_timestamp"] = now_iso()
        return _json({k: v for k, v in message.items() if not k.startswith("_")})

    async def _create_message(self, request: web.Request) -> web.Response:
        message = self._bot_message(request.match_info["channel"], request[_BODY] or {})
        if request[_FILES]:
            message["attachments"] = self._attachments(request[_FILES])
        return _json(message)

    async def _edit_message(self, request: web.Request) -> web.Response:
        return self._edit(request.match_info["message"], request[_BODY] or {})

    async def _typing(self, request: web.Request) -> web.Response:
        return web.Response(status=204)

    async def _callback(self, request: web.Request) -> web.Response:
        token = request.match_info["token"]
        created = self.interaction_tokens.get(token)
        if created is None or time.time() - created > INTERACTION_CALLBACK_S:
            return _error(404, 10062, "Unknown interaction")
        if token in self.originals:
            return _error(400, 40060, "Interaction has already been acknowledged.")
        body = request[_BODY] or {}
        kind = body.get("type")
        data = body.get("data") or {}
        channel = self._interaction_channel(token)
        if kind == 7:  # UPDATE_MESSAGE: the message whose button was pressed
            pressed = self._interaction_message(token)
            edited = self._edit(pressed, data)
            if edited.status != 200:
                return edited
            message = self.messages[pressed]
        else:
            message = self._bot_message(channel, data)
            message["_token"] = token
        self.originals[token] = message["id"]
        interaction = {
            "id": request.match_info["interaction"],
            "type": 2,
            "response_message_id": message["id"],
            "response_message_loading": kind == 5,
            "response_message_ephemeral": bool(data.get("flags", 0) & 64),
        }
        public = {k: v for k, v in message.items() if not k.startswith("_")}
        return _json({"interaction": interaction, "resource": {"type": kind, "message": public}})

    def _interaction_message(self, token: str) -> str:
        if token in self.posted:
            return str((self.posted[token].get("message") or {}).get("id", ""))
        for frame in reversed(self._history):
            data = frame[2]
            if frame[1] == "INTERACTION_CREATE" and data and data.get("token") == token:
                return str((data.get("message") or {}).get("id", ""))
        return ""

    def _interaction_channel(self, token: str) -> str:
        if token in self.posted:
            return str(self.posted[token]["channel_id"])
        for frame in reversed(self._history):
            data = frame[2]
            if frame[1] == "INTERACTION_CREATE" and data and data.get("token") == token:
                return str(data["channel_id"])
        return CHANNEL_ID

    def _webhook_problem(self, request: web.Request) -> web.Response | None:
        token = request.match_info["token"]
        created = self.interaction_tokens.get(token)
        if request.match_info["app"] != BOT_ID or created is None:
            return _error(404, 10015, "Unknown Webhook")
        left = self._edits_until_expiry.get(token)
        if left is not None and request.method == "PATCH":
            self._edits_until_expiry[token] = left - 1
            if left <= 0:  # from now on the token is as old as Discord allows
                self.interaction_tokens[token] = time.time() - INTERACTION_TOKEN_TTL_S - 1
                created = self.interaction_tokens[token]
        if time.time() - created > INTERACTION_TOKEN_TTL_S:
            return _error(401, 50027, "Invalid Webhook Token")
        return None

    async def _followup(self, request: web.Request) -> web.Response:
        problem = self._webhook_problem(request)
        if problem is not None:
            return problem
        token = request.match_info["token"]
        message = self._bot_message(self._interaction_channel(token), request[_BODY] or {})
        message["_token"] = token
        return _json({k: v for k, v in message.items() if not k.startswith("_")})

    def _webhook_message_id(self, request: web.Request) -> str:
        """The id of a message this interaction's webhook sent ("" if it sent no such one)."""
        token, message_id = request.match_info["token"], request.match_info["message"]
        if message_id == "@original":
            return self.originals.get(token, "")
        message = self.messages.get(message_id)
        return message_id if message is not None and message.get("_token") == token else ""

    async def _get_webhook_message(self, request: web.Request) -> web.Response:
        problem = self._webhook_problem(request)
        if problem is not None:
            return problem
        message = self.messages.get(self._webhook_message_id(request))
        if message is None:
            return _error(404, 10008, "Unknown Message")
        return _json({k: v for k, v in message.items() if not k.startswith("_")})

    async def _edit_webhook_message(self, request: web.Request) -> web.Response:
        problem = self._webhook_problem(request)
        if problem is not None:
            return problem
        return self._edit(self._webhook_message_id(request), request[_BODY] or {})

    def cdn_url(self, name: str) -> str:
        return f"http://{self.host}:{self.port}/cdn/attachments/{name}"

    async def _cdn(self, request: web.Request) -> web.Response:
        self.cdn_asked.append(request.match_info["name"])
        moved = self.cdn_moves.get(request.match_info["name"])
        if moved is not None:
            return web.Response(status=302, headers={"Location": moved})
        blob = self.attachments.get(request.match_info["name"])
        if blob is None:
            return web.Response(status=404)
        return web.Response(body=blob, content_type="text/plain")


def _content_type(name: str) -> str:
    import mimetypes

    guessed = mimetypes.guess_type(name)[0]
    return guessed if guessed and not guessed.startswith("text/") else "text/plain; charset=utf-8"


async def _multipart(request: web.Request) -> tuple[Any, list[tuple[str, str, bytes]]]:
    """discord.py's multipart body: the JSON in `payload_json`, each file in `files[n]`."""
    body: Any = None
    files: list[tuple[str, str, bytes]] = []
    reader = await request.multipart()
    while (part := await reader.next()) is not None:
        assert isinstance(part, aiohttp.BodyPartReader)
        if part.name == "payload_json":
            body = json.loads(await part.text())
        else:
            mime = part.headers.get("Content-Type", "application/octet-stream")
            files.append((part.filename or "", mime, bytes(await part.read())))
    return body, files
