"""Passkeys (WebAuthn) for the owner, beside the password or instead of it.

The first-run page offers "Use a passkey instead" of a password: the setup code is checked
(and spent) before a registration challenge is issued, and the new passkey signs the owner in;
no password exists until one is chosen on the panel. The signed-in owner adds more passkeys on
the panel's Passkeys page; the login page then offers "Sign in with a passkey". The browser
talks to its authenticator; the server checks every answer with py_webauthn (`webauthn` on
PyPI): the challenge it issued (one use, five minutes), the origin (this page's scheme and
host), the relying party id (the host, without the port; browsers refuse an IP address there,
so passkeys need a name such as `localhost` or the proxy's domain), user verification, and the
signature against the stored public key. Only public keys are stored (`web_passkeys`), with the
signature counter.

The JSON endpoints carry the page's token in the `X-CSRF-Token` header: the session's token
when signed in, the setup or login form's double-submit token before.
"""

from __future__ import annotations

import ipaddress
import logging
import secrets
import time
from typing import TYPE_CHECKING, Any

from aiohttp import web

from bot.security.http_auth import FailureThrottle
from bot.store.web_shared import WebSharedRepo
from bot.webui.auth import MIN_PASSWORD_CHARS, SESSION, WebSession, csrf_ok

if TYPE_CHECKING:
    from bot.webui.app import Handler, WebUI
    from bot.webui.panel import Panel

log = logging.getLogger("decapod.webui")

CHALLENGE_TTL_S = 300.0
_MAX_CHALLENGES = 100
#: sign-in challenges one client address may ask for a minute: each is a store write, and
#: past the store's bound of challenges a new one pushes out another page's
LOGIN_OPTIONS_PER_MINUTE = 10
_OWNER_HANDLE = b"decapod-owner"


class Passkeys:
    def __init__(self, ui: WebUI) -> None:
        self.ui = ui
        self.repo = ui.auth.repo
        #: token of the page that asked -> its challenge, one use each; in the store, as the
        #: answer may reach another replica than the one that issued it
        self.challenges = WebSharedRepo(ui.auth.repo.store)
        #: every sign-in challenge asked for, per client address (not only failed logins)
        self.login_options_asked = FailureThrottle(LOGIN_OPTIONS_PER_MINUTE, window_s=60.0)

    def public_routes(self) -> list[tuple[str, str, Handler]]:
        return [
            ("POST", "/passkey/login/options", self.login_options),
            ("POST", "/passkey/login", self.login),
            ("POST", "/welcome/passkey/options", self.setup_options),
            ("POST", "/welcome/passkey", self.setup),
        ]

    def owner_routes(self, panel: Panel) -> list[tuple[str, str, Handler]]:
        self.panel = panel
        return [
            ("GET", "/panel/passkeys", self.page),
            ("POST", "/passkey/register/options", self.register_options),
            ("POST", "/passkey/register", self.register),
            ("POST", "/panel/passkeys/remove", self.remove),
            ("POST", "/panel/password", self.password),
        ]

    # the relying party ------------------------------------------------------------------------
    def _origin(self, request: web.Request) -> tuple[str, str]:
        """(origin, relying party id) of the page that asked."""
        host = self.ui.fwd.host(request)
        scheme = "https" if self.ui.fwd.secure(request) else "http"
        rp_id = host.rsplit(":", 1)[0] if not host.endswith("]") else host
        return f"{scheme}://{host}", rp_id.lower()

    def host_name_instead(self, request: web.Request) -> str | None:
        """`localhost:port` when the page was opened by IP address, which browsers refuse as
        a relying party id; None when a passkey can be made right here."""
        _, rp_id = self._origin(request)
        try:
            ipaddress.ip_address(rp_id.strip("[]"))
        except ValueError:
            return None
        port = request.url.port
        return f"localhost:{port}" if port else "localhost"

    async def _challenge(self, key: str) -> bytes:
        challenge = secrets.token_bytes(32)
        await self.challenges.put_challenge(key, challenge, CHALLENGE_TTL_S, keep=_MAX_CHALLENGES)
        return challenge

    async def _take_challenge(self, key: str) -> bytes:
        found = await self.challenges.take_challenge(key)
        if found is None:
            raise web.HTTPBadRequest(text="no passkey request is open here; try again")
        return found

    @staticmethod
    async def _credential(request: web.Request) -> dict[str, Any]:
        try:
            body = await request.json()
        except ValueError:
            raise web.HTTPBadRequest(text="expected the credential as JSON") from None
        if not isinstance(body, dict) or not isinstance(body.get("rawId"), str):
            raise web.HTTPBadRequest(text="expected a credential with a rawId")
        return body

    # registering (the signed-in owner) --------------------------------------------------------
    async def page(self, request: web.Request) -> web.StreamResponse:
        return self.panel._render(
            request,
            "panel_passkeys.html",
            passkeys=await self.repo.passkeys(),
            note=request.query.get("note", ""),
            when=_when,
            has_password=self.ui.auth.has_password,
            min_chars=MIN_PASSWORD_CHARS,
        )

    async def _registration_options(self, request: web.Request, key: str) -> web.Response:
        from webauthn import generate_registration_options, options_to_json
        from webauthn.helpers import base64url_to_bytes
        from webauthn.helpers.structs import (
            AuthenticatorSelectionCriteria,
            PublicKeyCredentialDescriptor,
            ResidentKeyRequirement,
            UserVerificationRequirement,
        )

        _, rp_id = self._origin(request)
        existing = await self.repo.passkeys()
        options = generate_registration_options(
            rp_id=rp_id,
            rp_name="Decapod",
            user_id=_OWNER_HANDLE,
            user_name="owner",
            user_display_name="Decapod owner",
            challenge=await self._challenge(key),
            authenticator_selection=AuthenticatorSelectionCriteria(
                resident_key=ResidentKeyRequirement.REQUIRED,
                user_verification=UserVerificationRequirement.REQUIRED,
            ),
            exclude_credentials=[
                PublicKeyCredentialDescriptor(id=base64url_to_bytes(p.credential_id))
                for p in existing
            ],
        )
        return web.Response(text=options_to_json(options), content_type="application/json")

    async def _register(self, request: web.Request, key: str) -> None:
        from webauthn import verify_registration_response
        from webauthn.helpers import bytes_to_base64url
        from webauthn.helpers.exceptions import WebAuthnException

        credential = await self._credential(request)
        challenge = await self._take_challenge(key)
        origin, rp_id = self._origin(request)
        try:
            verified = verify_registration_response(
                credential=credential,
                expected_challenge=challenge,
                expected_rp_id=rp_id,
                expected_origin=origin,
                require_user_verification=True,
            )
        except WebAuthnException as exc:
            raise web.HTTPBadRequest(text=f"the passkey was not accepted: {exc}") from None
        credential_id = bytes_to_base64url(verified.credential_id)
        await self.repo.add_passkey(
            credential_id, verified.credential_public_key, verified.sign_count
        )
        self.ui.auth.passkeys_changed(len(await self.repo.passkeys()))
        log.info("web UI: passkey %s… added", credential_id[:8])

    async def register_options(self, request: web.Request) -> web.StreamResponse:
        session: WebSession = request[SESSION]
        return await self._registration_options(request, "register:" + session.csrf)

    async def register(self, request: web.Request) -> web.StreamResponse:
        session: WebSession = request[SESSION]
        await self._register(request, "register:" + session.csrf)
        return web.json_response({"ok": True})

    async def remove(self, request: web.Request) -> web.StreamResponse:
        credential_id = str((await request.post()).get("credential", ""))
        # the store's word on the password: it may have been set on another replica, or
        # deleted by hand, since this copy was read
        await self.ui.auth.load()
        known = await self.repo.passkeys()
        if not self.ui.auth.has_password and [p.credential_id for p in known] == [credential_id]:
            # the owner's only way in: removing it would lock them out
            raise web.HTTPSeeOther("/panel/passkeys?note=set+a+password+before+removing+this")
        removed = await self.repo.remove_passkey(credential_id)
        self.ui.auth.passkeys_changed(len(known) - removed)
        raise web.HTTPSeeOther("/panel/passkeys?note=" + ("removed" if removed else "not+found"))

    async def password(self, request: web.Request) -> web.StreamResponse:
        """Set the owner password (a passkey-only owner) or change it (the old one first)."""
        form = await request.post()
        new, confirm = str(form.get("password", "")), str(form.get("confirm", ""))
        auth = self.ui.auth
        await auth.load()  # one set on another replica is asked for here too
        if auth.has_password:
            # asked before the check, as the login form does: else guesses run unbounded
            self.ui._throttled(request, "login")
        if auth.has_password and not await auth.check_password(str(form.get("current", ""))):
            auth.admin.throttle.failed("login", self.ui.fwd.client(request))
            note = "the current password is wrong"
        elif len(new) < MIN_PASSWORD_CHARS:
            note = f"the password needs at least {MIN_PASSWORD_CHARS} characters"
        elif new != confirm:
            note = "the two passwords differ"
        else:
            await auth.set_password(new)
            log.info("web UI: owner password set on the panel")
            note = "password saved"
        raise web.HTTPSeeOther("/panel/passkeys?note=" + note.replace(" ", "+"))

    # the first run: a passkey instead of a password ----------------------------------------------
    async def setup_options(self, request: web.Request) -> web.StreamResponse:
        """A registration challenge, only after the setup code was checked (and spent)."""
        from bot.webui.app import SETUP_CODE_WRONG

        await self.ui.setup_allowed(request)
        self.ui._throttled(request, "setup")
        token = self._form_token(request)
        try:
            body = await request.json()
        except ValueError:
            body = None
        code = body.get("code") if isinstance(body, dict) else None
        if not isinstance(code, str) or not code.strip():
            raise web.HTTPBadRequest(text="enter the setup code first")
        client = self.ui.fwd.client(request)
        accepted, _ = await self.ui.auth.verify_setup_code(code.strip(), client, token)
        if not accepted:
            log.warning("web UI: wrong setup code from %s", client)
            raise web.HTTPForbidden(text=SETUP_CODE_WRONG)
        return await self._registration_options(request, "setup:" + token)

    async def setup(self, request: web.Request) -> web.StreamResponse:
        await self.ui.setup_allowed(request)
        token = self._form_token(request)
        admin_token = self.ui.auth.setup_admin_token(token)
        # the challenge exists only if this page's setup code was accepted
        await self._register(request, "setup:" + token)
        from bot.webui.app import SESSION_COOKIE

        log.info("web UI: owner set up with a passkey (no password)")
        sid, session = await self.ui.auth.new_session()
        if admin_token:
            self.ui.shown_once[session.csrf] = admin_token
        response = web.json_response({"next": "/welcome/done"})
        self.ui._cookie(response, request, SESSION_COOKIE, sid, self.ui.auth.session_ttl_s)
        return response

    # signing in -------------------------------------------------------------------------------
    def _form_token(self, request: web.Request) -> str:
        """The login page's double-submit token, from its cookie and the request's header."""
        from bot.webui.app import CSRF_HEADER, FORM_COOKIE

        cookie = request.cookies.get(FORM_COOKIE)
        if not cookie or not csrf_ok(cookie, request.headers.get(CSRF_HEADER)):
            raise web.HTTPForbidden(text="missing or wrong form token; reload the page")
        return cookie

    async def login_options(self, request: web.Request) -> web.StreamResponse:
        from webauthn import generate_authentication_options, options_to_json
        from webauthn.helpers.structs import UserVerificationRequirement

        # unsigned-in, and each call writes a challenge: held back with the failed logins,
        # and counted on its own so one client cannot push out the challenges of others
        self.ui._throttled(request, "login")
        client = self.ui.fwd.client(request)
        wait = self.login_options_asked.retry_after("login", client)
        if wait > 0:
            raise web.HTTPTooManyRequests(
                text="too many sign-in requests; try again later",
                headers={"Retry-After": str(int(wait) + 1)},
            )
        token = self._form_token(request)
        if not await self.ui.auth.is_configured():
            raise web.HTTPForbidden(text="finish the setup first")
        self.login_options_asked.failed("login", client)
        _, rp_id = self._origin(request)
        options = generate_authentication_options(
            rp_id=rp_id,
            challenge=await self._challenge("login:" + token),
            user_verification=UserVerificationRequirement.REQUIRED,
        )
        return web.Response(text=options_to_json(options), content_type="application/json")

    async def login(self, request: web.Request) -> web.StreamResponse:
        from webauthn import verify_authentication_response
        from webauthn.helpers.exceptions import WebAuthnException

        client = self.ui.fwd.client(request)
        self.ui._throttled(request, "login")
        token = self._form_token(request)
        credential = await self._credential(request)
        challenge = await self._take_challenge("login:" + token)
        origin, rp_id = self._origin(request)
        known = {p.credential_id: p for p in await self.repo.passkeys()}
        stored = known.get(credential["rawId"])
        try:
            if stored is None:
                raise WebAuthnException("this passkey is not one of this Decapod's")
            verified = verify_authentication_response(
                credential=credential,
                expected_challenge=challenge,
                expected_rp_id=rp_id,
                expected_origin=origin,
                credential_public_key=stored.public_key,
                credential_current_sign_count=stored.sign_count,
                require_user_verification=True,
            )
        except WebAuthnException as exc:
            self.ui.auth.admin.throttle.failed("login", client)
            log.warning("web UI: failed passkey login from %s: %s", client, exc)
            raise web.HTTPForbidden(text="that passkey was not accepted") from None
        await self.repo.passkey_used(stored.credential_id, verified.new_sign_count)
        log.info("web UI: owner signed in with passkey %s…", stored.credential_id[:8])
        # the page's fetch follows the redirect; the session cookie comes with it
        return await self.ui._signed_in(request, "/")


def _when(ts: float | None) -> str:
    return time.strftime("%Y-%m-%d %H:%M", time.localtime(ts)) if ts else ""
