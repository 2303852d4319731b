"""The web UI's pages: first-run setup, login and logout, the chat page, and the shared
parts of every page (security headers, the session check, CSRF, static assets).

Every route here is mounted as its own gatekeeper (the admin token is not asked for): pages
need the owner's session cookie, and every POST and the WebSocket handshake need the session's
CSRF token and a same-origin (or no) Origin header. Before login, the setup and login forms
carry a double-submit token (a cookie and a form field that must match).
"""

from __future__ import annotations

import functools
import hashlib
import logging
import secrets
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from aiohttp import web

from bot.errors import StorageUnavailable
from bot.webui.auth import (
    MIN_PASSWORD_CHARS,
    OWNER,
    SESSION,
    WebAuth,
    WebSession,
    csrf_ok,
    login_key,
)
from bot.webui.proxy import Forwarding

if TYPE_CHECKING:
    import jinja2

    from bot.gateway import Gateway
    from bot.store.panel import PanelQueries

log = logging.getLogger("decapod.webui")

SESSION_COOKIE = "decapod_session"
FORM_COOKIE = "decapod_form"
CSRF_HEADER = "X-CSRF-Token"
_HERE = Path(__file__).parent
CSP = (
    "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
    "connect-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'"
)
_SECURITY_HEADERS = {
    "Content-Security-Policy": CSP,
    "X-Content-Type-Options": "nosniff",
    "X-Frame-Options": "DENY",
    # not no-referrer: under it a browser sends `Origin: null` with our own form posts
    "Referrer-Policy": "same-origin",
    "Cross-Origin-Opener-Policy": "same-origin",
}
_TYPES = {".css": "text/css", ".js": "text/javascript", ".svg": "image/svg+xml"}
SETUP_CODE_WRONG = "That is not the setup code (it is printed in the gateway's terminal)."
Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


class WebUI:
    def __init__(self, gw: Gateway, auth: WebAuth) -> None:
        self.gw = gw
        self.auth = auth
        self.fwd = Forwarding(gw.config.webui.trusted_proxies)
        from bot.webui.chat import ChatSocket

        self.chat = ChatSocket(self)
        from bot.webui.guests import GuestPages

        self.guests = GuestPages(self)
        from bot.webui.passkeys import Passkeys

        self.passkeys = Passkeys(self)
        #: a new session's CSRF token -> the admin token its setup made, shown once
        self.shown_once: dict[str, str] = {}
        from bot.webui.upload_rows import RowUploads
        from bot.webui.uploads import UPLOAD_DIR, UploadStore

        cap = int(gw.config.webui.upload_max_mb * 1024 * 1024)
        quota = int(gw.config.webui.upload_quota_mb * 1024 * 1024)
        # replicas on one database: in it, as the next request may reach another replica
        self.uploads: UploadStore | RowUploads = (
            RowUploads(gw.store, cap, quota, gw.config.home / UPLOAD_DIR)
            if gw.store.backend == "postgresql"
            else UploadStore(gw.config.home / UPLOAD_DIR, cap, quota)
        )
        #: name -> (bytes, content type, etag), read once at start
        self.assets: dict[str, tuple[bytes, str, str]] = {}
        for path in sorted((_HERE / "static").iterdir()):
            body = path.read_bytes()
            etag = '"' + hashlib.sha256(body).hexdigest()[:16] + '"'
            self.assets[path.name] = (body, _TYPES.get(path.suffix, "text/plain"), etag)

    @functools.cached_property
    def templates(self) -> jinja2.Environment:
        # jinja2 loads with the first page rendered, not before the gateway is ready
        import jinja2

        return jinja2.Environment(
            loader=jinja2.FileSystemLoader(_HERE / "templates"),
            autoescape=True,
            trim_blocks=True,
            lstrip_blocks=True,
        )

    @functools.cached_property
    def panel_queries(self) -> PanelQueries:
        """The control panel's reads, made with the first page that needs them (not before
        ready)."""
        from bot.store.panel import PanelQueries

        return PanelQueries(self.gw.store)

    def routes(self) -> list[tuple[str, str, Handler]]:
        from bot.webui import CHAT_PAGE
        from bot.webui.panel import Panel

        routes: list[tuple[str, str, Handler]] = [
            ("GET", CHAT_PAGE, self.page(self._index, login=False)),
            ("POST", "/welcome", self.page(self._welcome, login=False)),
            ("GET", "/welcome/done", self.page(self._welcome_done, owner=True)),
            ("GET", "/login", self.page(self._login_form, login=False)),
            ("POST", "/login", self.page(self._login, login=False)),
            ("POST", "/logout", self.page(self._logout)),
            ("GET", "/ws", self.page(self.chat.handle)),
            ("POST", "/upload", self.page(self.chat.upload)),
        ]
        routes += [("GET", f"/static/{name}", self._asset) for name in self.assets]
        public = self.guests.public_routes() + self.passkeys.public_routes()
        routes += [(m, p, self.page(h, login=False)) for m, p, h in public]
        routes += [(m, p, self.page(h, owner=True)) for m, p, h in Panel(self).routes()]
        return routes

    # the shared wrapper -----------------------------------------------------------------------
    def page(self, handler: Handler, *, login: bool = True, owner: bool = False) -> Handler:
        """`login`: a signed-in session is needed; `owner`: the owner's (a guest is refused)."""

        async def wrapped(request: web.Request) -> web.StreamResponse:
            try:
                if request.method != "GET" and not self.fwd.same_origin(request):
                    raise web.HTTPForbidden(text="foreign origin")
                if login:
                    session = await self.session_of(request)
                    if session is None:
                        if request.method == "GET" and request.path != "/ws":
                            raise web.HTTPSeeOther("/login")
                        raise web.HTTPForbidden(text="not signed in")
                    if owner and not session.is_owner:
                        raise web.HTTPForbidden(text="the control panel is the owner's")
                    request[SESSION] = session
                    if request.method == "POST":
                        # a script's request (an upload) names it in a header, a form in a field
                        token: Any = request.headers.get(CSRF_HEADER)
                        if token is None:
                            token = (await request.post()).get("csrf")
                        if not csrf_ok(session.csrf, token if isinstance(token, str) else None):
                            raise web.HTTPForbidden(text="missing or wrong CSRF token")
                response = await handler(request)
            except web.HTTPException as exc:
                exc.headers.update(_SECURITY_HEADERS)
                raise
            except StorageUnavailable as exc:
                # said plainly (not aiohttp's bare 500), and without the database's path
                log.warning("web UI: %s %s refused: %s", request.method, request.path, exc)
                raise web.HTTPServiceUnavailable(
                    text=f"Storage is {exc.reason}: nothing could be saved. Try again later.",
                    headers={**_SECURITY_HEADERS, "Retry-After": "60"},
                ) from None
            if not isinstance(response, web.WebSocketResponse):
                response.headers.update(_SECURITY_HEADERS)
                response.headers.setdefault("Cache-Control", "no-store")
            return response

        return wrapped

    def session_id(self, request: web.Request) -> str | None:
        return request.cookies.get(SESSION_COOKIE)

    async def session_of(self, request: web.Request) -> WebSession | None:
        session = await self.auth.session(self.session_id(request))
        if session is not None and not session.is_owner and not self.gw.config.webui.guest_chat:
            return None  # guest chat was turned off: their logins open nothing
        return session

    def render(self, request: web.Request, name: str, **context: Any) -> web.Response:
        session: WebSession | None = request.get(SESSION)
        html = self.templates.get_template(name).render(
            csrf=session.csrf if session else "",
            signed_in=session is not None,
            owner=session is not None and session.is_owner,
            **context,
        )
        return web.Response(text=html, content_type="text/html", charset="utf-8")

    def _cookie(
        self,
        response: web.StreamResponse,
        request: web.Request,
        name: str,
        value: str,
        max_age: float | None,
    ) -> None:
        response.set_cookie(
            name,
            value,
            path="/",
            max_age=None if max_age is None else int(max_age),
            httponly=True,
            samesite="Strict",
            secure=self.fwd.secure(request),
        )

    def _form_page(self, request: web.Request, name: str, **context: Any) -> web.Response:
        """A page with a pre-login form: its double-submit token goes in a cookie too."""
        token = request.cookies.get(FORM_COOKIE) or secrets.token_urlsafe(24)
        response = self.render(request, name, form_token=token, **context)
        self._cookie(response, request, FORM_COOKIE, token, None)
        return response

    async def _form_checked(self, request: web.Request) -> Any:
        form = await request.post()
        token = form.get("csrf")
        cookie = request.cookies.get(FORM_COOKIE)
        if not cookie or not csrf_ok(cookie, token if isinstance(token, str) else None):
            raise web.HTTPForbidden(text="missing or wrong form token; reload the page")
        return form

    async def _signed_in(
        self,
        request: web.Request,
        location: str,
        *,
        user: str = OWNER,
        name: str = OWNER,
        role: str = OWNER,
        **context: Any,
    ) -> web.Response:
        sid, session = await self.auth.new_session(user, name=name, role=role)
        request[SESSION] = session
        if not context:
            redirect = web.HTTPSeeOther(location)
            self._cookie(redirect, request, SESSION_COOKIE, sid, self.auth.session_ttl_s)
            raise redirect
        response = self.render(request, "welcome_done.html", **context)
        self._cookie(response, request, SESSION_COOKIE, sid, self.auth.session_ttl_s)
        return response

    def _throttled(self, request: web.Request, credential: Any) -> None:
        wait = self.auth.admin.throttle.retry_after(credential, self.fwd.client(request))
        if wait > 0:
            raise web.HTTPTooManyRequests(
                text="too many failed attempts; try again later",
                headers={"Retry-After": str(int(wait) + 1)},
            )

    # handlers -------------------------------------------------------------------------------
    async def _index(self, request: web.Request) -> web.StreamResponse:
        if not await self.auth.is_configured():
            if not self.fwd.may_set_up(request):
                raise web.HTTPForbidden(text="first-run setup is only offered on this machine")
            return self._welcome_page(request)
        session = await self.session_of(request)
        if session is None:
            raise web.HTTPSeeOther("/login")
        request[SESSION] = session
        from bot.webui.chat import MAX_FRAME

        return self.render(request, "chat.html", page="chat", max_frame=MAX_FRAME)

    async def setup_allowed(self, request: web.Request) -> None:
        if await self.auth.is_configured() or not self.fwd.may_set_up(request):
            raise web.HTTPForbidden(text="setup is done, or not allowed from here")

    def _welcome_page(self, request: web.Request, **context: Any) -> web.Response:
        return self._form_page(
            request,
            "welcome.html",
            min_chars=MIN_PASSWORD_CHARS,
            passkey_by_name=self.passkeys.host_name_instead(request),
            **context,
        )

    async def _welcome(self, request: web.Request) -> web.StreamResponse:
        await self.setup_allowed(request)
        client = self.fwd.client(request)
        self._throttled(request, "setup")
        form = await self._form_checked(request)
        code, password = str(form.get("code", "")).strip(), str(form.get("password", ""))
        error = None
        if len(password) < MIN_PASSWORD_CHARS:
            error = f"The password needs at least {MIN_PASSWORD_CHARS} characters."
        elif password != form.get("confirm"):
            error = "The two passwords differ."
        if error is None:
            holder = request.cookies.get(FORM_COOKIE, "")
            accepted, token = await self.auth.verify_setup_code(code, client, holder)
            if not accepted:
                error = SETUP_CODE_WRONG
            else:
                await self.auth.set_password(password)
                log.info("web UI: owner password set")
                return await self._signed_in(
                    request, "/", admin_token=token or "", page="welcome", method="password"
                )
        return self._welcome_page(request, error=error)

    async def _welcome_done(self, request: web.Request) -> web.StreamResponse:
        """The page after a passkey setup (the script's fetch set the cookie, then came here)."""
        session: WebSession = request[SESSION]
        token = self.shown_once.pop(session.csrf, "")
        return self.render(
            request, "welcome_done.html", admin_token=token, page="welcome", method="passkey"
        )

    async def _login_form(self, request: web.Request) -> web.StreamResponse:
        if not await self.auth.is_configured():
            raise web.HTTPSeeOther("/")
        return await self._login_page(request)

    async def _login(self, request: web.Request) -> web.StreamResponse:
        client = self.fwd.client(request)
        self._throttled(request, "login")
        form = await self._form_checked(request)
        if await self.auth.check_password(str(form.get("password", ""))):
            return await self._signed_in(request, "/")
        self.auth.admin.throttle.failed("login", client)
        log.warning("web UI: failed login from %s", client)
        return await self._login_page(request, error="Wrong password.")

    async def _login_page(self, request: web.Request, **context: Any) -> web.Response:
        await self.auth.load()  # a password set on another replica is offered here too
        return self._form_page(
            request,
            "login.html",
            passkeys=self.auth.has_passkey,
            password=self.auth.has_password,
            **context,
        )

    async def _logout(self, request: web.Request) -> web.StreamResponse:
        sid = self.session_id(request)
        await self.auth.end_session(sid)
        # its open chat tabs too: on a shared computer the next person must not read along
        self.chat.sign_out(login=login_key(sid))
        redirect = web.HTTPSeeOther("/login")
        redirect.del_cookie(SESSION_COOKIE, path="/")
        raise redirect

    async def _asset(self, request: web.Request) -> web.StreamResponse:
        body, content_type, etag = self.assets[request.path.rsplit("/", 1)[1]]
        headers = {"ETag": etag, "Cache-Control": "no-cache", **_SECURITY_HEADERS}
        if request.headers.get("If-None-Match") == etag:
            return web.Response(status=304, headers=headers)
        return web.Response(body=body, content_type=content_type, headers=headers)
