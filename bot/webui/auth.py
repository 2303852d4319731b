"""The owner's password and browser sessions of the web UI.

- First visit: the one-time setup code printed in the terminal, then an owner password or a
  passkey (bot/webui/passkeys.py). The password is stored only as a scrypt hash (random salt)
  in the store's kv table. The owner is set up once either exists; a passkey-only owner has no
  password until one is chosen on the panel.
- A login is a random session id in an HttpOnly, SameSite=Strict cookie (Secure when the
  request came over TLS); the server keeps only its SHA-256, with a CSRF token and an expiry,
  in the store's `web_sessions` table: a login survives a restart; logout and expiry delete it.
- Wrong passwords and wrong setup codes are counted by the HTTP server's failure throttle.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import secrets
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from bot.store.webui import WebSessionRow, WebUIRepo

if TYPE_CHECKING:
    from bot.security.http_auth import AdminAuth
    from bot.store import Store

PASSWORD_KEY = "webui.owner_password"
MIN_PASSWORD_CHARS = 10
_SCRYPT_N, _SCRYPT_R, _SCRYPT_P = 2**15, 8, 1
_SCRYPT_MAXMEM = 64 * 1024 * 1024
_MAX_SESSIONS = 1000
#: how long a setup code spent on a passkey attempt stays good for the browser that spent it
SETUP_GRANT_TTL_S = 900.0
OWNER = "owner"
GUEST = "guest"


def _sha(value: str) -> str:
    return hashlib.sha256(value.encode()).hexdigest()


def hash_password(password: str) -> str:
    salt = secrets.token_bytes(16)
    digest = hashlib.scrypt(
        password.encode(), salt=salt, n=_SCRYPT_N, r=_SCRYPT_R, p=_SCRYPT_P, maxmem=_SCRYPT_MAXMEM
    )
    return f"scrypt${_SCRYPT_N}${_SCRYPT_R}${_SCRYPT_P}${salt.hex()}${digest.hex()}"


def verify_password(password: str, stored: str) -> bool:
    try:
        scheme, n, r, p, salt, digest = stored.split("$")
    except ValueError:
        return False
    if scheme != "scrypt":
        return False
    got = hashlib.scrypt(
        password.encode(),
        salt=bytes.fromhex(salt),
        n=int(n),
        r=int(r),
        p=int(p),
        maxmem=_SCRYPT_MAXMEM,
    )
    return hmac.compare_digest(got.hex(), digest)


@dataclass(frozen=True, slots=True)
class WebSession:
    #: the web chat's user id: "owner", or a guest's id (see bot/webui/guests.py)
    user: str
    name: str
    role: str  # OWNER or GUEST
    csrf: str
    expires_at: float

    @property
    def is_owner(self) -> bool:
        return self.role == OWNER


class WebAuth:
    def __init__(self, store: Store, admin: AdminAuth, *, session_ttl_s: float) -> None:
        self.store = store
        self.admin = admin
        self.session_ttl_s = session_ttl_s
        self._password_hash: str | None = None
        #: a code of our own when the admin token exists already but no password does
        self._own_code_hash: str | None = None
        self._has_passkey = False
        #: (holder's hash, code's hash, admin token or None, expiry): the setup code once
        #: accepted, so a cancelled passkey prompt can be retried without a new code
        self._grant: tuple[str, str, str | None, float] | None = None
        self.repo = WebUIRepo(store)

    async def start(self, admin_setup_code: str | None) -> str | None:
        """Load the password hash; returns the setup code to print when there is none yet."""
        await self.load()
        if self.configured:
            return None
        if admin_setup_code is not None:
            return admin_setup_code  # one code for both: redeeming it also makes the token
        code = secrets.token_urlsafe(24)
        self._own_code_hash = _sha(code)
        return code

    async def load(self) -> None:
        """Read the owner's credentials again: on PostgreSQL another replica may have set
        them up or changed the password since (the store is the truth, not this copy)."""
        self._password_hash = await self.store.kv.get(PASSWORD_KEY)
        self._has_passkey = bool(await self.repo.passkeys())
        if self.configured:
            self._own_code_hash = None
            self._grant = None

    async def is_configured(self) -> bool:
        """Whether the owner is set up, asking the store while this copy says not yet (once
        set up, an owner stays so until the credentials are deleted by hand and restarted)."""
        if not self.configured:
            await self.load()
        return self.configured

    @property
    def configured(self) -> bool:
        return self._password_hash is not None or self._has_passkey

    @property
    def has_password(self) -> bool:
        return self._password_hash is not None

    @property
    def has_passkey(self) -> bool:
        return self._has_passkey

    def passkeys_changed(self, remaining: int) -> None:
        self._has_passkey = remaining > 0
        if self.configured:
            self._grant = None

    async def verify_setup_code(
        self, code: str, client: str, holder: str
    ) -> tuple[bool, str | None]:
        """(accepted, admin token made by it if any) for the browser `holder` (its form token).
        The code itself works once; the browser that spent it may present it again until the
        setup is finished or the grant lapses, and nobody else may."""
        grant = self._grant
        if grant is not None and grant[3] > time.monotonic():
            holder_ok = hmac.compare_digest(grant[0], _sha(holder))
            if code and holder_ok and hmac.compare_digest(grant[1], _sha(code)):
                return True, grant[2]
            self.admin.throttle.failed("setup", client)
            return False, None
        accepted, token = await self.redeem_setup_code(code, client)
        if accepted:
            self._grant = (_sha(holder), _sha(code), token, time.monotonic() + SETUP_GRANT_TTL_S)
        return accepted, token

    async def redeem_setup_code(self, code: str, client: str) -> tuple[bool, str | None]:
        """(accepted, admin token made by it if any). One use; failures are counted."""
        if self._own_code_hash is not None:
            if code and hmac.compare_digest(_sha(code), self._own_code_hash):
                self._own_code_hash = None
                return True, None
            self.admin.throttle.failed("setup", client)
            return False, None
        token = await self.admin.redeem(code, client)
        return token is not None, token

    def setup_admin_token(self, holder: str) -> str | None:
        """The admin token the setup code made, for the browser that spent the code."""
        grant = self._grant
        if grant is None or not hmac.compare_digest(grant[0], _sha(holder)):
            return None
        return grant[2]

    async def set_password(self, password: str) -> None:
        hashed = await asyncio.to_thread(hash_password, password)
        await self.store.kv.set(PASSWORD_KEY, hashed)
        self._password_hash = hashed
        self._grant = None

    async def check_password(self, password: str) -> bool:
        # the stored hash, not this copy: a password changed on another replica is the one
        stored = self._password_hash = await self.store.kv.get(PASSWORD_KEY)
        if stored is None or not password:
            return False
        return await asyncio.to_thread(verify_password, password, stored)

    # sessions -------------------------------------------------------------------------------
    async def new_session(
        self, user: str = OWNER, *, name: str = OWNER, role: str = OWNER
    ) -> tuple[str, WebSession]:
        sid = secrets.token_urlsafe(32)
        row = WebSessionRow(
            user, name, role, secrets.token_urlsafe(24), time.time() + self.session_ttl_s
        )
        await self.repo.add_session(_sha(sid), row, keep=_MAX_SESSIONS)
        return sid, WebSession(row.user, row.name, row.role, row.csrf, row.expires_at)

    async def session(self, sid: str | None) -> WebSession | None:
        if not sid:
            return None
        key = _sha(sid)
        row = await self.repo.session(key)
        if row is None:
            return None
        if row.expires_at < time.time():
            await self.repo.end_session(key)
            return None
        return WebSession(row.user, row.name, row.role, row.csrf, row.expires_at)

    async def end_session(self, sid: str | None) -> None:
        if sid:
            await self.repo.end_session(_sha(sid))


def login_key(sid: str | None) -> str:
    """What names a login outside the cookie (the stored key): its session id's hash."""
    return _sha(sid or "")


def csrf_ok(expected: str, presented: str | None) -> bool:
    return bool(presented) and hmac.compare_digest(expected, presented or "")


def _session_key() -> Any:
    from aiohttp import web

    return web.RequestKey("webui_session", WebSession)


#: where a page handler finds the signed-in session
SESSION = _session_key()
