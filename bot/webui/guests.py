"""Chat for people the owner lets in (`[webui] guest_chat = true`, off by default).

The owner makes a one-time pairing link in the panel for a name. Whoever opens it and presses
Join becomes a new person on the `web` channel, paired (approved) by the owner in the same
transaction that uses the link up, and is signed in: a chat of their own (their own session
and memory) with the role `user`. They never get the owner's rights, and the panel refuses
them. Revoking the pairing signs them out; with `guest_chat` off, their logins open nothing.
The link's token is stored only as a SHA-256.
"""

from __future__ import annotations

import hashlib
import logging
import secrets
import time
from typing import TYPE_CHECKING, Any

from aiohttp import web

from bot.security.access import WEB_CHAT, WEB_OWNER_ID
from bot.webui.auth import GUEST

if TYPE_CHECKING:
    from bot.webui.app import Handler, WebUI
    from bot.webui.panel import Panel

log = logging.getLogger("decapod.webui")

JOIN_PAGE = "/join"
MAX_NAME = 60


def _when(ts: float) -> str:
    return time.strftime("%Y-%m-%d %H:%M", time.localtime(ts))


def _sha(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


class GuestPages:
    def __init__(self, ui: WebUI) -> None:
        self.ui = ui
        self.config = ui.gw.config.webui
        self.repo = ui.auth.repo

    def public_routes(self) -> list[tuple[str, str, Handler]]:
        """The link's page and its form, for someone not signed in."""
        return [("GET", JOIN_PAGE, self.join_form), ("POST", JOIN_PAGE, self.join)]

    def panel_routes(self, panel: Panel) -> list[tuple[str, str, Handler]]:
        self.panel = panel
        return [
            ("GET", "/panel/guests", self.guests),
            ("POST", "/panel/guests/invite", self.invite),
            ("POST", "/panel/guests/revoke", self.revoke),
        ]

    # the owner's side -------------------------------------------------------------------------
    async def guests(self, request: web.Request, **context: Any) -> web.StreamResponse:
        paired = await self.ui.gw.store.access.paired()
        return self.panel._render(
            request,
            "panel_guests.html",
            enabled=self.config.guest_chat,
            invites=await self.repo.open_invites(),
            guests=[(uid, name) for channel, uid, name in paired if channel == WEB_CHAT],
            note=request.query.get("note", ""),
            when=_when,
            **context,
        )

    async def invite(self, request: web.Request) -> web.StreamResponse:
        if not self.config.guest_chat:
            raise web.HTTPBadRequest(text="guest chat is off ([webui] guest_chat)")
        name = " ".join(str((await request.post()).get("name", "")).split())[:MAX_NAME]
        if not name:
            raise web.HTTPSeeOther("/panel/guests?note=give+the+person+a+name")
        token = secrets.token_urlsafe(24)
        await self.repo.add_invite(_sha(token), name, self.config.invite_ttl_s)
        scheme = "https" if self.ui.fwd.secure(request) else "http"
        link = f"{scheme}://{self.ui.fwd.host(request)}{JOIN_PAGE}?invite={token}"
        log.info("web UI: pairing link made for %s", name)
        return await self.guests(request, link=link, link_name=name)

    async def revoke(self, request: web.Request) -> web.StreamResponse:
        user_id = str((await request.post()).get("user", ""))
        revoked = await self.ui.gw.store.access.revoke(WEB_CHAT, user_id)
        ended = 0
        if user_id != WEB_OWNER_ID:
            ended = await self.repo.end_sessions_of(user_id)
            self.ui.chat.sign_out(user=user_id)  # and their open chat tabs
        log.info("web UI: guest %s revoked (%d logins ended)", user_id, ended)
        raise web.HTTPSeeOther("/panel/guests?note=" + ("revoked" if revoked else "not+found"))

    # the invited person's side ----------------------------------------------------------------
    async def _name_of(self, request: web.Request, token: str) -> str:
        name = await self.repo.invite(_sha(token)) if token and self.config.guest_chat else None
        if name is None:
            raise web.HTTPNotFound(text="this link is used up, expired, or not valid here")
        return name

    async def join_form(self, request: web.Request) -> web.StreamResponse:
        token = request.query.get("invite", "")
        name = await self._name_of(request, token)
        return self.ui._form_page(request, "join.html", guest_name=name, invite=token)

    async def join(self, request: web.Request) -> web.StreamResponse:
        self.ui._throttled(request, "login")
        form = await self.ui._form_checked(request)
        token = str(form.get("invite", ""))
        if not self.config.guest_chat:
            raise web.HTTPNotFound(text="guest chat is off")
        user_id = "guest-" + secrets.token_hex(6)
        name = await self.repo.redeem_invite(_sha(token), WEB_CHAT, user_id, "web:owner")
        if name is None:
            self.ui.auth.admin.throttle.failed("login", self.ui.fwd.client(request))
            raise web.HTTPNotFound(text="this link is used up, expired, or not valid here")
        log.info("web UI: %s joined the web chat as %s", name, user_id)
        return await self.ui._signed_in(request, "/", user=user_id, name=name, role=GUEST)
