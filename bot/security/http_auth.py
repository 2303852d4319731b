"""Authentication of the HTTP surface.

- No default password, ever. On the first start without an admin credential, a one-time setup
  code (192 bits) is printed to the terminal (never logged); `POST /setup` with it, from a
  local caller only, returns the admin token once. Only the token's hash is stored.
- Admin routes (/metrics, /admin/..., the details of /health) need `Authorization: Bearer
  <token>`; before setup they are open to local callers only.
- The command line on this machine (`decapod status`) uses a second admin token, made fresh at
  each start and written to a 0600 file in the home (bot/runtime.py): whoever can read the
  home can read the database anyway, and the token dies with the process.
- A token in a query string is never accepted. Scopes come from the server's record, never
  from the request.
- "Local" means a loopback peer, no forwarding headers and a loopback Host (bot/http.py).
- Failed attempts are throttled per client address and per credential: wrong admin tokens
  (anywhere, /health included) lock that address out of requests that carry a token; wrong
  setup codes lock it out of /setup. Past the limit: 429 with Retry-After. Requests without a
  credential (the /health summary) are never throttled, and platform webhooks are judged by
  their own secrets only: behind a reverse proxy every client shares one address, and a
  stranger's guesses must not stop the platform's deliveries.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
import time
from collections import deque
from typing import TYPE_CHECKING, Literal

from aiohttp import web
from aiohttp.typedefs import Handler

from bot.http import is_local_request, is_loopback_host

if TYPE_CHECKING:
    from bot.store import Store

TOKEN_KEY = "http.admin_token_sha256"
_QUERY_CREDENTIALS = frozenset({"token", "access_token", "auth"})

#: what a failure was a guess at; each has its own count per client address
Credential = Literal["admin", "setup", "login"]


def _digest(value: str) -> str:
    return hashlib.sha256(value.encode()).hexdigest()


class FailureThrottle:
    def __init__(self, limit: int = 5, window_s: float = 60.0) -> None:
        self.limit, self.window_s = limit, window_s
        self._fails: dict[tuple[Credential, str], deque[float]] = {}

    def retry_after(self, credential: Credential, client: str) -> float:
        """Seconds until `client` may try `credential` again; 0 when it may now."""
        fails = self._fails.get((credential, client))
        if not fails:
            return 0.0
        now = time.monotonic()
        while fails and now - fails[0] > self.window_s:
            fails.popleft()
        if len(fails) < self.limit:
            return 0.0
        return self.window_s - (now - fails[0])

    def failed(self, credential: Credential, client: str) -> None:
        self._fails.setdefault((credential, client), deque()).append(time.monotonic())
        if len(self._fails) > 10_000:  # bounded memory under a scan
            self._fails.pop(next(iter(self._fails)))


class AdminAuth:
    def __init__(self, store: Store, *, throttle: FailureThrottle | None = None) -> None:
        self.store = store
        self.throttle = throttle or FailureThrottle()
        self._token_hash: str | None = None
        self._local_hash: str | None = None
        self._setup_hash: str | None = None
        #: platform webhooks: they verify their own signatures and nothing here touches them
        self.webhook_paths: set[str] = set()

    async def start(self) -> str | None:
        """Load the admin credential; returns a fresh setup code when none exists yet."""
        self._token_hash = await self.store.kv.get(TOKEN_KEY)
        if self._token_hash is not None:
            return None
        code = secrets.token_urlsafe(24)
        self._setup_hash = _digest(code)
        return code

    @property
    def configured(self) -> bool:
        return self._token_hash is not None

    def issue_local_token(self) -> str:
        """A fresh admin token for the command line of this machine, valid until the process
        ends (the caller writes it to the home; only its hash stays here)."""
        token = secrets.token_urlsafe(32)
        self._local_hash = _digest(token)
        return token

    def _bearer_ok(self, request: web.Request) -> bool:
        header = request.headers.get("Authorization", "")
        scheme, _, token = header.partition(" ")
        if scheme.lower() != "bearer" or not token:
            return False
        presented = _digest(token.strip())
        return any(
            known is not None and hmac.compare_digest(presented, known)
            for known in (self._token_hash, self._local_hash)
        )

    def is_admin(self, request: web.Request) -> bool:
        if self._token_hash is None and is_local_request(request):
            return True
        return self._bearer_ok(request)

    def _check_throttle(self, credential: Credential, client: str) -> None:
        wait = self.throttle.retry_after(credential, client)
        if wait > 0:
            raise web.HTTPTooManyRequests(headers={"Retry-After": str(int(wait) + 1)})

    @web.middleware
    async def middleware(self, request: web.Request, handler: Handler) -> web.StreamResponse:
        path = request.path
        if path in self.webhook_paths:
            return await handler(request)
        client = request.remote or "?"
        origin = request.headers.get("Origin")
        if origin is not None and not _local_origin(origin):
            raise web.HTTPForbidden(text="foreign origin")
        if any(k.lower() in _QUERY_CREDENTIALS for k in request.query):
            # refused, never checked: a guess here cannot succeed, so it is not counted either
            raise web.HTTPUnauthorized(text="tokens are accepted only in the Authorization header")
        if path == "/setup":
            self._check_throttle("setup", client)
            return await handler(request)
        presented = "Authorization" in request.headers
        if presented:
            self._check_throttle("admin", client)
        admin = self.is_admin(request)
        if presented and not admin:
            self.throttle.failed("admin", client)
        if path == "/health" or admin:
            return await handler(request)  # /health without the token shows the summary only
        raise web.HTTPUnauthorized(headers={"WWW-Authenticate": "Bearer"})

    async def setup(self, request: web.Request) -> web.Response:
        client = request.remote or "?"
        if self._setup_hash is None or not is_local_request(request):
            raise web.HTTPForbidden(text="setup is done, or not allowed from here")
        token = await self.redeem(request.headers.get("X-Setup-Code", ""), client)
        if token is None:
            raise web.HTTPForbidden(text="wrong setup code")
        return web.json_response({"token": token, "scopes": ["admin"]})

    async def redeem(self, code: str, client: str) -> str | None:
        """The admin token for the right setup code (once), else None and a counted failure.
        The caller checks the throttle and that the request is local."""
        if self._setup_hash is None:
            return None
        if not code or not hmac.compare_digest(_digest(code), self._setup_hash):
            self.throttle.failed("setup", client)
            return None
        token = secrets.token_urlsafe(32)
        self._setup_hash = None  # one use only
        self._token_hash = _digest(token)
        await self.store.kv.set(TOKEN_KEY, self._token_hash)
        return token


def _local_origin(origin: str) -> bool:
    from urllib.parse import urlsplit

    return is_loopback_host(urlsplit(origin).hostname or "")
