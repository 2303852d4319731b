"""A fake Telegram Bot API server on 127.0.0.1, for the real python-telegram-bot.

    async with FakeTelegram() as fake:
        channel config: api_base_url = fake.base_url, file_base_url = fake.file_base_url
        fake.push_private("hello", user_id=42)          # user -> bot, through getUpdates
        sent = await fake.wait_for("sendMessage", chat_id=42)

Wire format as PTB speaks it: `POST /bot<TOKEN>/<method>`, form-encoded with non-string values
JSON-encoded; answers `{"ok": true, "result": ...}` or `{"ok": false, "error_code", "description",
"parameters"}`. Like Telegram it confirms updates below the `offset` of a getUpdates call,
validates the HTML of `parse_mode=HTML` texts (known tags, balanced, escaped; 4096 UTF-16 units
after parsing), refuses to edit a message into its own text ("message is not modified"), and
redirects sends to a migrated group. Faults: `fail_next(method, status, description,
count=..., after=..., retry_after=...)`, `refuse(chat_id, status, description, thread_id=...)`
for every send to a chat or topic until `allow(chat_id)`, `status_override` for every call,
`reject_html`, `batch_order` (reorders each getUpdates batch, e.g. [5, 3, 4]). Pollers:
`polling`/`max_polling` count long polls waiting at once; `one_poller` answers 409 Conflict
to the earlier of two, as Telegram does (counted in `conflicts`). Files:
`add_file(bytes)`, then getFile and `/file/bot<TOKEN>/<path>`. Uploads: sendDocument,
sendPhoto, sendVoice and sendAudio (multipart, as PTB sends them) are kept in `.uploads`
(`Upload`: method, chat, name, bytes, caption); `fail_next` and `refuse(...,
methods=("sendDocument",))` apply to them too. Webhooks: setWebhook is recorded and
`deliver(url, update)` posts an update the way Telegram does, with the secret header.
Inline keyboards: a sent message keeps its `reply_markup` (callback_data over 64 bytes is
refused as Telegram does), an edit without one drops it; `buttons(chat_id)` shows the latest
keyboard, `push_press(chat_id, message_id, data, user_id=...)` queues the callback_query a tap
makes, and answerCallbackQuery is recorded.
"""

from __future__ import annotations

import asyncio
import contextlib
import html
import itertools
import json
import re
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import aiohttp
from aiohttp import web

TOKEN = "7000000001:AAHfakeTokenForTestsOnly_abcdefghijk"
BOT_ID = 7000000001
USERNAME = "decapod_test_bot"

_JSON_KEYS = {"reply_markup", "entities", "commands", "allowed_updates", "scope",
              "link_preview_options", "reply_parameters"}  # fmt: skip
_INT_KEYS = {"chat_id", "message_id", "offset", "limit", "timeout", "message_thread_id",
             "max_connections"}  # fmt: skip
_ALWAYS_TRUE = {"setMyCommands", "sendChatAction"}
_BOOL_KEYS = {"drop_pending_updates", "disable_notification", "protect_content", "show_alert"}
_ALLOWED_TAGS = {"b", "strong", "i", "em", "u", "ins", "s", "strike", "del", "a", "code", "pre",
                 "tg-spoiler", "span", "blockquote", "tg-emoji"}  # fmt: skip
_TAG = re.compile(r"<(/?)([a-zA-Z][a-zA-Z-]*)((?:\s+[a-z-]+(?:=\"[^\"<>]*\")?)*)\s*>")
_ENTITY = re.compile(r"&(?:lt|gt|amp|quot|#\d+|#x[0-9a-fA-F]+);")
NOT_MODIFIED = (
    "Bad Request: message is not modified: specified new message content and reply markup "
    "are exactly the same as a current content and reply markup of the message"
)


def utf16_len(text: str) -> int:
    return len(text.encode("utf-16-le")) // 2


def parse_html(text: str) -> str:
    """The visible text of Telegram HTML; ValueError worded like Telegram's refusal."""
    stack: list[str] = []
    visible: list[str] = []
    pos = 0
    for match in _TAG.finditer(text):
        visible.append(text[pos : match.start()])
        pos = match.end()
        closing, tag = match.group(1), match.group(2).lower()
        if tag not in _ALLOWED_TAGS:
            raise ValueError(f'Unsupported start tag "{tag}" at byte offset {match.start()}')
        if not closing:
            stack.append(tag)
        elif not stack or stack.pop() != tag:
            raise ValueError(f'Unmatched end tag at byte offset {match.start()}, expected "{tag}"')
    visible.append(text[pos:])
    if stack:
        raise ValueError(f'Can\'t find end tag corresponding to start tag "{stack[-1]}"')
    raw = "".join(visible)
    if "<" in raw or ">" in raw or "&" in _ENTITY.sub("", raw):
        raise ValueError("Unexpected character: a raw <, > or & must be escaped")
    return html.unescape(raw)


@dataclass
class Call:
    method: str
    params: dict[str, Any]
    at: float = field(default_factory=time.monotonic)
    #: the HTTP status the fake answered with
    status: int = 0


@dataclass
class Upload:
    method: str
    chat_id: int
    name: str
    data: bytes
    caption: str = ""


@dataclass
class Fault:
    status: int
    description: str
    parameters: dict[str, Any] | None = None


class FakeTelegram:
    def __init__(self, token: str = TOKEN, *, host: str = "127.0.0.1") -> None:
        assert host.startswith("127.") or host == "localhost", "the fake binds to loopback only"
        self.token, self.host = token, host
        self.bot_id, self.username = BOT_ID, USERNAME
        self.calls: list[Call] = []
        self.pending: list[dict[str, Any]] = []  # updates not confirmed by an offset yet
        self.offsets: list[int | None] = []  # the offset of every getUpdates, in order
        self.messages: dict[tuple[int, int], dict[str, Any]] = {}
        self.sent_order: list[tuple[int, int]] = []
        self.files: dict[str, bytes] = {}
        self.uploads: list[Upload] = []
        self.file_sizes: dict[str, int] = {}
        self.migrated: dict[int, int] = {}  # old group id -> supergroup id
        self.webhook: dict[str, Any] = {}
        self.faults: dict[str, deque[Fault | None]] = {}  # None: that call goes through
        self.refusals: dict[tuple[int, int | None], tuple[tuple[str, ...], Fault]] = {}
        self.status_override: int | None = None
        #: a method's answers wait until its event is set (a slow Telegram, call by call)
        self.held: dict[str, asyncio.Event] = {}
        self.reject_html = False
        #: a call of these methods is recorded, then its connection closed unanswered (the
        #: request reached Telegram; its answer is lost on the way back)
        self.hang_up: set[str] = set()
        #: the body of these methods' requests is never read (an upload stalls); the fake
        #: hangs up after this many seconds, or with `stop` (None)
        self.unread: dict[str, float | None] = {}
        #: file downloads send half of the file, then nothing more until `stop`
        self.stall_files = False
        #: file downloads answer 302 to this address instead (a file Telegram moved)
        self.redirect_files: str | None = None
        #: reorders each getUpdates batch (Telegram's own order is by update_id)
        self.batch_order: Callable[[list[Any]], list[Any]] | None = None
        #: long polls waiting now from clients still connected, and the most there ever were
        #: at once (more than one: two processes poll with one token)
        self.polling = 0
        self.max_polling = 0
        #: like Telegram, a long poll ends the one still waiting with 409 Conflict
        self.one_poller = False
        #: the polls ended that way
        self.conflicts = 0
        self._poll_generation = 0
        self.port = 0
        self._last_update_id = 99
        self._message_ids = itertools.count(5000)
        self._press_ids = 0
        self._file_ids = itertools.count(1)
        self._new_update = asyncio.Event()
        self._changed = asyncio.Condition()
        self._released = False
        self._sent: set[int] = set()
        self._runner: web.AppRunner | None = None

    # lifecycle -----------------------------------------------------------------------------
    async def start(self) -> FakeTelegram:
        app = web.Application()
        app.router.add_route("POST", "/bot{token}/{method}", self._handle)
        app.router.add_route("GET", "/file/bot{token}/{path:.*}", self._file)
        self._runner = web.AppRunner(app, access_log=None, handle_signals=False)
        await self._runner.setup()
        await web.TCPSite(self._runner, self.host, self.port).start()
        self.port = self._runner.addresses[0][1]  # kept: a restart listens on the same port
        self._released = False
        return self

    async def stop(self) -> None:
        self.release_pollers()
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    async def __aenter__(self) -> FakeTelegram:
        return await self.start()

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()

    def release_pollers(self) -> None:
        """Answer every waiting long poll now (a clean teardown)."""
        self._released = True
        self._new_update.set()

    @property
    def base_url(self) -> str:
        return f"http://{self.host}:{self.port}/bot"

    @property
    def file_base_url(self) -> str:
        return f"http://{self.host}:{self.port}/file/bot"

    # user -> bot ---------------------------------------------------------------------------
    def push_update(self, payload: dict[str, Any]) -> dict[str, Any]:
        """Queue an update; a payload's own update_id is kept (a redelivery), later ones
        are numbered after it, as Telegram's ids only grow."""
        update = dict(payload)
        if not isinstance(update.get("update_id"), int):
            update["update_id"] = self._last_update_id + 1
        self._last_update_id = max(self._last_update_id, update["update_id"])
        self.pending.append(update)
        self.pending.sort(key=_update_id)
        self._new_update.set()
        return update

    def push_raw(self, anything: Any) -> None:
        """Queue whatever a broken server might send as an update (answered once)."""
        self.pending.append(anything)
        self._new_update.set()

    def message(
        self,
        text: str,
        *,
        chat: dict[str, Any],
        user_id: int,
        first_name: str = "Alice",
        **extra: Any,
    ) -> dict[str, Any]:
        """A message as Telegram shows it, with command and mention entities."""
        sender = {"id": user_id, "is_bot": False, "first_name": first_name}
        msg = {"message_id": next(self._message_ids), "date": int(time.time()), "chat": chat,
               "from": sender, "text": text, **extra}  # fmt: skip
        if entities := _entities(text):
            msg["entities"] = entities
        return msg

    def push_private(self, text: str, *, user_id: int = 42, **extra: Any) -> dict[str, Any]:
        chat = {"id": user_id, "type": "private", "first_name": extra.get("first_name", "Alice")}
        return self.push_update(
            {"message": self.message(text, chat=chat, user_id=user_id, **extra)}
        )

    def push_group(
        self,
        text: str,
        *,
        chat_id: int = -1001234567890,
        user_id: int = 42,
        thread_id: int | None = None,
        reply_to: dict[str, Any] | None = None,
        chat_type: str = "supergroup",
        **extra: Any,
    ) -> dict[str, Any]:
        chat: dict[str, Any] = {"id": chat_id, "type": chat_type, "title": "Test group"}
        if thread_id is not None:
            chat["is_forum"] = True
            extra.update(message_thread_id=thread_id, is_topic_message=True)
            reply_to = reply_to or {
                "message_id": thread_id,
                "date": int(time.time()),
                "chat": chat,
                "from": {"id": user_id, "is_bot": False, "first_name": "Alice"},
                "forum_topic_created": {"name": f"Topic {thread_id}", "icon_color": 7322096},
            }
        if reply_to is not None:
            extra["reply_to_message"] = reply_to
        msg = self.message(text, chat=chat, user_id=user_id, **extra)
        return self.push_update({"message": msg})

    def push_press(
        self,
        chat_id: int,
        message_id: int,
        data: str,
        *,
        user_id: int = 42,
        first_name: str = "Alice",
    ) -> dict[str, Any]:
        """The callback_query of a tap on an inline button of a bot message."""
        shown = {k: v for k, v in self.messages[(chat_id, message_id)].items() if k != "html"}
        self._press_ids += 1
        query = {
            "id": f"{user_id}{self._press_ids:08d}",
            "from": {"id": user_id, "is_bot": False, "first_name": first_name},
            "message": shown,
            "chat_instance": f"ci{chat_id}",
            "data": data,
        }
        return self.push_update({"callback_query": query})

    def buttons(self, chat_id: int) -> tuple[int, list[tuple[str, str]]]:
        """(message id, [(label, callback_data)]) of the newest bot message in a chat that
        shows an inline keyboard now; (0, []) when none does."""
        for key in reversed(self.sent_order):
            markup = self.messages[key].get("reply_markup")
            if key[0] == chat_id and markup:
                rows = markup["inline_keyboard"]
                return key[1], [(b["text"], b["callback_data"]) for row in rows for b in row]
        return 0, []

    def confirmed_below(self) -> int:
        """Every update below this id has been confirmed by an offset."""
        offsets = [o for o in self.offsets if o]
        return max(offsets, default=0)

    # bot -> user: assertions ---------------------------------------------------------------
    def calls_of(self, method: str, **match: Any) -> list[Call]:
        return [
            c
            for c in self.calls
            if c.method == method and all(c.params.get(k) == v for k, v in match.items())
        ]

    async def wait_for(self, method: str, timeout: float = 30.0, **match: Any) -> dict[str, Any]:
        """The first `method` call whose params include `match`, waiting for it."""

        def found() -> list[Call]:
            return self.calls_of(method, **match)

        async with self._changed:
            await asyncio.wait_for(self._changed.wait_for(found), timeout)
        return found()[0].params

    async def wait_until(self, predicate: Any, timeout: float = 30.0) -> None:
        async with self._changed:
            await asyncio.wait_for(self._changed.wait_for(predicate), timeout)

    def texts(self, chat_id: int) -> list[str]:
        """What the bot's messages in a chat show now (after edits), in send order."""
        return [self.messages[k]["text"] for k in self.sent_order if k[0] == chat_id]

    # faults and files ----------------------------------------------------------------------
    def fail_next(
        self,
        method: str,
        status: int,
        description: str,
        *,
        count: int = 1,
        after: int = 0,
        **parameters: Any,
    ) -> None:
        """The next `count` calls of `method`, once `after` more went through, answer this."""
        fault = Fault(status, description, parameters or None)
        self.faults.setdefault(method, deque()).extend([None] * after + [fault] * count)

    def refuse(
        self,
        chat_id: int,
        status: int,
        description: str,
        *,
        thread_id: int | None = None,
        methods: tuple[str, ...] = ("sendMessage", "editMessageText", "sendChatAction"),
    ) -> None:
        """Every call of `methods` to this chat (with `thread_id`: to this forum topic)
        answers this error, until `allow(chat_id)`: a deleted topic, a bot that was blocked."""
        self.refusals[(chat_id, thread_id)] = (methods, Fault(status, description))

    def allow(self, chat_id: int) -> None:
        self.refusals = {k: v for k, v in self.refusals.items() if k[0] != chat_id}

    def add_file(self, content: bytes, *, reported_size: int | None = None) -> str:
        file_id = f"FILE{next(self._file_ids)}"
        self.files[file_id] = content
        self.file_sizes[file_id] = len(content) if reported_size is None else reported_size
        return file_id

    async def deliver(self, url: str, update: Any, secret: str | None = None) -> int:
        """POST an update to a webhook as Telegram does; the HTTP status it got."""
        token = self.webhook.get("secret_token", "") if secret is None else secret
        headers = {"X-Telegram-Bot-Api-Secret-Token": token} if token else {}
        async with (
            aiohttp.ClientSession() as http,
            http.post(url, json=update, headers=headers) as resp,
        ):
            return resp.status

    # server --------------------------------------------------------------------------------
    async def _params(self, request: web.Request) -> dict[str, Any]:
        params: dict[str, Any] = dict(request.query)
        if request.content_type == "application/json":
            params.update(await request.json())
        elif request.body_exists:
            params.update((await request.post()).items())
        for key, value in list(params.items()):
            if isinstance(value, str) and key in _JSON_KEYS:
                params[key] = json.loads(value)
            elif isinstance(value, str) and key in _BOOL_KEYS:
                params[key] = value == "true"
            elif isinstance(value, str) and key in _INT_KEYS:
                params[key] = int(value) if re.fullmatch(r"-?\d+", value) else value
        return params

    @staticmethod
    def _ok(result: Any) -> web.Response:
        return web.json_response({"ok": True, "result": result})

    @staticmethod
    def _error(status: int, description: str, parameters: Any = None) -> web.Response:
        body: dict[str, Any] = {"ok": False, "error_code": status, "description": description}
        if parameters:
            body["parameters"] = parameters
        return web.json_response(body, status=status)

    async def _handle(self, request: web.Request) -> web.Response:
        arrived = time.monotonic()
        if request.match_info["token"] != self.token:
            return self._error(401, "Unauthorized")
        method = request.match_info["method"]
        if method in self.unread:
            return await self._never_read(request, self.unread[method])
        params = await self._params(request)
        if method == "getUpdates":
            if self.status_override is not None:
                return self._error(self.status_override, "Internal Server Error")
            return await self._get_updates(params, request)
        call = Call(method, params, arrived)
        self.calls.append(call)
        if method in self.hang_up:
            return self._hung_up(request)
        if (gate := self.held.get(method)) is not None:
            await gate.wait()
        response = await self._answer(method, params)
        call.status = response.status
        async with self._changed:
            self._changed.notify_all()
        return response

    @staticmethod
    def _hung_up(request: web.Request) -> web.Response:
        if request.transport is not None:
            request.transport.close()
        return web.Response(status=204)  # written nowhere: the connection is gone

    async def _never_read(self, request: web.Request, wait_s: float | None) -> web.Response:
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(wait_s):
                while not self._released:
                    await asyncio.sleep(0.05)
        return self._hung_up(request)

    async def _answer(self, method: str, params: dict[str, Any]) -> web.Response:
        if self.status_override is not None:
            return self._error(self.status_override, "Internal Server Error")
        chat, thread = params.get("chat_id"), params.get("message_thread_id")
        refusal = self.refusals.get((chat, thread)) or self.refusals.get((chat, None))
        if refusal is not None and method in refusal[0]:
            return self._error(refusal[1].status, refusal[1].description)
        queue = self.faults.get(method)
        fault = queue.popleft() if queue else None
        if fault is not None:
            return self._error(fault.status, fault.description, fault.parameters)
        if method in _ALWAYS_TRUE:
            return self._ok(True)
        handler = getattr(self, f"_m_{method}", None)
        if handler is None:
            return self._error(404, f"Not Found: method {method}")
        response: web.Response = await handler(params)
        return response

    async def _get_updates(
        self, params: dict[str, Any], request: web.Request | None = None
    ) -> web.Response:
        offset = params.get("offset")
        self.offsets.append(offset)
        self._poll_generation += 1
        generation = self._poll_generation
        # confirmed updates go, and so do id-less ones already answered once
        self.pending = [
            u
            for u in self.pending
            if (id(u) not in self._sent if _update_id(u) < 0 else _update_id(u) >= (offset or 0))
        ]
        deadline = time.monotonic() + float(params.get("timeout") or 0)
        waiting = time.monotonic() < deadline
        self.polling += waiting
        self.max_polling = max(self.max_polling, self.polling)
        try:
            while not self.pending and not self._released and time.monotonic() < deadline:
                if request is not None and _gone(request):
                    return web.Response(status=499)  # the client gave up: nobody reads this
                if self.one_poller and generation != self._poll_generation:
                    self.conflicts += 1
                    return self._error(
                        409,
                        "Conflict: terminated by other getUpdates request; make sure that "
                        "only one bot instance is running",
                    )
                self._new_update.clear()
                # in slices: a client that left, or a later poll, is noticed while waiting
                wait = min(0.1, deadline - time.monotonic())
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._new_update.wait(), wait)
        finally:
            self.polling -= waiting
        async with self._changed:
            self._changed.notify_all()
        batch = self.pending[: int(params.get("limit") or 100)]
        if self.batch_order is not None:
            batch = self.batch_order(batch)
        self._sent.update(id(u) for u in batch)
        return self._ok(batch)

    def _bot_user(self) -> dict[str, Any]:
        return {"id": self.bot_id, "is_bot": True, "first_name": "Decapod",
                "username": self.username, "can_join_groups": True,
                "can_read_all_group_messages": False, "supports_inline_queries": False}  # fmt: skip

    async def _m_getMe(self, params: dict[str, Any]) -> web.Response:
        return self._ok(self._bot_user())

    async def _m_deleteWebhook(self, params: dict[str, Any]) -> web.Response:
        if params.get("drop_pending_updates"):
            self.pending.clear()
        self.webhook = {}
        return self._ok(True)

    async def _m_setWebhook(self, params: dict[str, Any]) -> web.Response:
        self.webhook = params
        return self._ok(True)

    async def _m_getWebhookInfo(self, params: dict[str, Any]) -> web.Response:
        return self._ok({"url": self.webhook.get("url", ""), "has_custom_certificate": False,
                         "pending_update_count": len(self.pending)})  # fmt: skip

    def _visible(self, params: dict[str, Any]) -> str:
        text = str(params.get("text", ""))
        if params.get("parse_mode") == "HTML":
            if self.reject_html:
                raise ValueError('Unsupported start tag "b" at byte offset 0')
            text = parse_html(text)
        if not text.strip():
            raise ValueError("message text is empty")
        if utf16_len(text) > 4096:
            raise ValueError("message is too long")
        return text

    async def _m_sendMessage(self, params: dict[str, Any]) -> web.Response:
        chat_id = params["chat_id"]
        if chat_id in self.migrated:
            return self._error(400, "Bad Request: group chat was upgraded to a supergroup chat",
                               {"migrate_to_chat_id": self.migrated[chat_id]})  # fmt: skip
        try:
            text = self._visible(params)
        except ValueError as exc:
            return self._error(400, _bad_request(exc))
        message_id = next(self._message_ids)
        chat = {"id": chat_id, "type": "private" if chat_id > 0 else "supergroup"}
        markup = params.get("reply_markup")
        for row in (markup or {}).get("inline_keyboard", []):
            if any(len(b.get("callback_data", "").encode()) > 64 for b in row):
                return self._error(400, "Bad Request: BUTTON_DATA_INVALID")
        msg = {"message_id": message_id, "date": int(time.time()), "chat": chat,
               "from": self._bot_user(), "text": text, "html": params.get("text")}  # fmt: skip
        if markup:
            msg["reply_markup"] = markup
        self.messages[(chat_id, message_id)] = msg
        self.sent_order.append((chat_id, message_id))
        return self._ok({k: v for k, v in msg.items() if k != "html"})

    async def _m_editMessageText(self, params: dict[str, Any]) -> web.Response:
        key = (params.get("chat_id"), params.get("message_id"))
        msg = self.messages.get(key)  # type: ignore[arg-type]
        if msg is None:
            return self._error(400, "Bad Request: message to edit not found")
        try:
            text = self._visible(params)
        except ValueError as exc:
            return self._error(400, _bad_request(exc))
        markup = params.get("reply_markup")
        if (
            text == msg["text"]
            and params.get("text") == msg["html"]
            and markup == msg.get("reply_markup")
        ):
            return self._error(400, NOT_MODIFIED)
        msg.update(text=text, html=params.get("text"), edit_date=int(time.time()))
        # like Telegram: an edit that sends no reply_markup takes the inline keyboard away
        msg.pop("reply_markup", None)
        if markup:
            msg["reply_markup"] = markup
        return self._ok({k: v for k, v in msg.items() if k != "html"})

    async def _m_answerCallbackQuery(self, params: dict[str, Any]) -> web.Response:
        return self._ok(True)

    async def _upload(self, method: str, field_name: str, params: dict[str, Any]) -> web.Response:
        part = params.get(field_name)
        if not isinstance(part, web.FileField):
            return self._error(400, f"Bad Request: there is no {field_name} in the request")
        data = part.file.read()
        if not data:
            return self._error(400, "Bad Request: file must be non-empty")
        chat_id = params["chat_id"]
        caption = str(params.get("caption") or "")
        self.uploads.append(Upload(method, chat_id, part.filename, data, caption))
        message_id = next(self._message_ids)
        chat = {"id": chat_id, "type": "private" if chat_id > 0 else "supergroup"}
        msg = {"message_id": message_id, "date": int(time.time()), "chat": chat,
               "from": self._bot_user(), "caption": caption}  # fmt: skip
        return self._ok(msg)

    async def _m_sendDocument(self, params: dict[str, Any]) -> web.Response:
        return await self._upload("sendDocument", "document", params)

    async def _m_sendPhoto(self, params: dict[str, Any]) -> web.Response:
        return await self._upload("sendPhoto", "photo", params)

    async def _m_sendVoice(self, params: dict[str, Any]) -> web.Response:
        return await self._upload("sendVoice", "voice", params)

    async def _m_sendAudio(self, params: dict[str, Any]) -> web.Response:
        return await self._upload("sendAudio", "audio", params)

    async def _m_getFile(self, params: dict[str, Any]) -> web.Response:
        file_id = params.get("file_id", "")
        if file_id not in self.files:
            return self._error(400, "Bad Request: invalid file_id")
        return self._ok({"file_id": file_id, "file_unique_id": f"u{file_id}",
                         "file_size": self.file_sizes[file_id],
                         "file_path": f"documents/{file_id}.bin"})  # fmt: skip

    async def _file(self, request: web.Request) -> web.StreamResponse:
        if request.match_info["token"] != self.token:
            return web.Response(status=401)
        file_id = request.match_info["path"].rpartition("/")[2].removesuffix(".bin")
        if file_id not in self.files:
            return web.Response(status=404)
        if self.redirect_files is not None:
            raise web.HTTPFound(self.redirect_files)
        if self.stall_files:
            return await self._stalled_file(request, self.files[file_id])
        return web.Response(body=self.files[file_id])

    async def _stalled_file(self, request: web.Request, content: bytes) -> web.StreamResponse:
        response = web.StreamResponse(headers={"Content-Length": str(len(content))})
        await response.prepare(request)
        await response.write(content[: len(content) // 2])
        while not self._released:
            await asyncio.sleep(0.05)
        return self._hung_up(request)


def _gone(request: web.Request) -> bool:
    transport = request.transport
    return transport is None or transport.is_closing()


def _update_id(update: Any) -> int:
    value = update.get("update_id") if isinstance(update, dict) else None
    return value if isinstance(value, int) else -1


def _bad_request(exc: ValueError) -> str:
    text = str(exc)
    if text.startswith(("message", "Bad")):
        return f"Bad Request: {text}"
    return f"Bad Request: can't parse entities: {text}"


def _entities(text: str) -> list[dict[str, Any]]:
    """bot_command for a leading /command, mention for every @name (UTF-16 offsets)."""
    found = []
    for match in re.finditer(r"(?<!\w)(/[a-zA-Z0-9_]+(?:@\w+)?|@\w{5,})", text):
        kind = "bot_command" if match.group(0).startswith("/") else "mention"
        if kind == "bot_command" and match.start() != 0:
            continue
        offset = utf16_len(text[: match.start()])
        found.append({"type": kind, "offset": offset, "length": utf16_len(match.group(0))})
    return found
