"""The web UI's door: setup code then owner password, login with the failure throttle,
session cookie flags, CSRF on every form and the WebSocket, logout, and the page headers."""

from __future__ import annotations

import re
from typing import Any

from yarl import URL

from bot.gateway import Gateway
from bot.webui.auth import PASSWORD_KEY
from tests.fakes.llm import FakeLLM
from tests.webui.conftest import (
    PASSWORD,
    base_url,
    client,
    form_token,
    gateway_config,
    page_csrf,
    set_up,
)


async def test_setup_code_then_password_signs_in_and_makes_the_admin_token(
    gateway: Gateway,
) -> None:
    base = base_url(gateway)
    async with client() as http:
        async with http.get(base + "/") as resp:
            assert resp.status == 200
            page = await resp.text()
        assert 'name="code"' in page and 'name="password"' in page
        token = form_token(page)
        wrong = {"csrf": token, "code": "not-it", "password": PASSWORD, "confirm": PASSWORD}
        async with http.post(base + "/welcome", data=wrong) as resp:
            assert "not the setup code" in await resp.text()
        assert await gateway.store.kv.get(PASSWORD_KEY) is None  # nothing changed
        done = await set_up(http, gateway)
        admin_token = re.search(r'id="admin-token">([^<]+)<', done).group(1)  # type: ignore[union-attr]
        async with http.get(base + "/") as resp:  # the session cookie opens the chat
            assert 'id="chat"' in await resp.text()
        async with http.get(
            base + "/admin/status", headers={"Authorization": f"Bearer {admin_token}"}
        ) as resp:
            assert resp.status == 200
    stored = await gateway.store.kv.get(PASSWORD_KEY)
    assert stored is not None and stored.startswith("scrypt$") and PASSWORD not in stored
    async with client() as other, other.get(base + "/", allow_redirects=False) as resp:
        assert resp.status == 303 and resp.headers["Location"] == "/login"


async def test_setup_is_one_use(gateway: Gateway) -> None:
    async with client() as http:
        await set_up(http, gateway)
    async with client() as http:
        async with http.get(base_url(gateway) + "/login") as resp:
            token = form_token(await resp.text())
        data = {
            "csrf": token,
            "code": gateway.setup_code,
            "password": "x" * 12,
            "confirm": "x" * 12,
        }
        async with http.post(base_url(gateway) + "/welcome", data=data) as resp:
            assert resp.status == 403


async def test_session_cookie_is_httponly_and_samesite_strict(gateway: Gateway) -> None:
    async with client() as http:
        async with http.get(base_url(gateway) + "/") as resp:
            token = form_token(await resp.text())
        data = {
            "csrf": token,
            "code": gateway.setup_code,
            "password": PASSWORD,
            "confirm": PASSWORD,
        }
        async with http.post(base_url(gateway) + "/welcome", data=data) as resp:
            cookie = resp.headers["Set-Cookie"]
    assert cookie.startswith("decapod_session=")
    assert "HttpOnly" in cookie and "SameSite=Strict" in cookie
    assert "Secure" not in cookie  # plain http on 127.0.0.1: the browser would drop it


async def test_login_logout_and_the_failure_throttle(gateway: Gateway) -> None:
    base = base_url(gateway)
    async with client() as http:
        await set_up(http, gateway)
        async with http.get(base + "/") as resp:
            csrf = page_csrf(await resp.text())
        async with http.post(base + "/logout", data={"csrf": csrf}, allow_redirects=False) as resp:
            assert resp.status == 303
        async with http.get(base + "/", allow_redirects=False) as resp:
            assert resp.status == 303  # the old cookie opens nothing now
        for _ in range(5):
            async with http.get(base + "/login") as resp:
                token = form_token(await resp.text())
            async with http.post(
                base + "/login", data={"csrf": token, "password": "wrong"}
            ) as resp:
                assert "Wrong password" in await resp.text()
        async with http.post(base + "/login", data={"csrf": token, "password": PASSWORD}) as resp:
            assert resp.status == 429 and "Retry-After" in resp.headers
        # nor is a passkey's challenge issued (each one a write to the store)
        options = base + "/passkey/login/options"
        async with http.post(options, headers={"X-CSRF-Token": token}) as resp:
            assert resp.status == 429
    gateway.http.auth.throttle._fails.clear()  # type: ignore[union-attr]
    async with client() as http:
        async with http.get(base + "/login") as resp:
            token = form_token(await resp.text())
        async with http.post(base + "/login", data={"csrf": token, "password": PASSWORD}) as resp:
            assert resp.status == 200 and 'id="chat"' in await resp.text()


async def test_forms_need_their_csrf_token_and_this_origin(gateway: Gateway) -> None:
    base = base_url(gateway)
    async with client() as http:
        # the setup form without its token (a cross-site post has no cookie to match)
        data = {"code": gateway.setup_code, "password": PASSWORD, "confirm": PASSWORD}
        async with http.post(base + "/welcome", data=data) as resp:
            assert resp.status == 403
        await set_up(http, gateway)
        async with http.post(base + "/logout", data={}, allow_redirects=False) as resp:
            assert resp.status == 403
        async with http.get(base + "/") as resp:
            csrf = page_csrf(await resp.text())
        async with http.post(
            base + "/logout",
            data={"csrf": csrf},
            headers={"Origin": "https://evil.example"},
            allow_redirects=False,
        ) as resp:
            assert resp.status == 403
        async with http.get(base + "/", allow_redirects=False) as resp:
            assert resp.status == 200  # still signed in


async def test_websocket_needs_the_token_and_this_origin(gateway: Gateway) -> None:
    base = base_url(gateway)
    async with client() as http:
        await set_up(http, gateway)
        async with http.get(base + "/") as resp:
            csrf = page_csrf(await resp.text())
        for url, origin in [
            ("/ws", base),
            ("/ws?csrf=wrong", base),
            (f"/ws?csrf={csrf}", "http://evil.example"),
            (f"/ws?csrf={csrf}", None),
        ]:
            headers = {"Origin": origin} if origin else {}
            async with http.get(base + url, headers=headers) as resp:
                assert resp.status == 403, (url, origin)
        ws = await http.ws_connect(base + f"/ws?csrf={csrf}", headers={"Origin": base})
        await ws.close()


async def test_pages_have_a_strict_policy_and_no_inline_script(signed_in: Any) -> None:
    from bot.webui.panel import TABS

    for path in ["/", "/login", *(href for href, _ in TABS)]:
        async with signed_in.http.get(signed_in.base + path) as resp:
            html = await resp.text()
            policy = resp.headers["Content-Security-Policy"]
        assert "script-src 'self'" in policy and "unsafe-inline" not in policy
        assert "frame-ancestors 'none'" in policy
        assert resp.headers["X-Content-Type-Options"] == "nosniff"
        for tag in re.findall(r"<script[^>]*>", html):
            assert "src=" in tag, tag
        assert " on" not in "".join(re.findall(r"<[^>]+>", html)).replace(" one", "")


async def test_forwarded_headers_count_only_from_trusted_proxies(
    make_config: Any, fake_llm: FakeLLM
) -> None:
    config = gateway_config(make_config, fake_llm, webui={"trusted_proxies": ["127.0.0.1"]})
    async with Gateway(config) as gw, client() as http:
        base = base_url(gw)
        proxied = {"X-Forwarded-Proto": "https", "X-Forwarded-For": "203.0.113.9"}
        async with http.get(base + "/", headers=proxied) as resp:
            token = form_token(await resp.text())
            assert "Secure" in resp.headers["Set-Cookie"]
        data = {"csrf": token, "code": gw.setup_code, "password": PASSWORD, "confirm": PASSWORD}
        # the client's jar keeps a Secure cookie for https only: hand it over as a browser would
        cookie = {"Cookie": f"decapod_form={token}"}
        async with http.post(base + "/welcome", data=data, headers=proxied | cookie) as resp:
            assert resp.status == 200
            assert "Secure" in resp.headers["Set-Cookie"]


async def test_forwarded_headers_from_anyone_else_are_ignored(gateway: Gateway) -> None:
    async with client() as http:
        base = base_url(gateway)
        async with http.get(base + "/", headers={"X-Forwarded-Proto": "https"}) as resp:
            assert "Secure" not in resp.headers["Set-Cookie"]
        async with http.get(base + "/", headers={"X-Forwarded-For": "203.0.113.9"}) as resp:
            assert resp.status == 403  # forwarded through no proxy we know: not a local setup
        for _ in range(5):
            async with http.get(base + "/") as resp:
                token = form_token(await resp.text())
            data = {"csrf": token, "code": "wrong", "password": PASSWORD, "confirm": PASSWORD}
            async with http.post(base + "/welcome", data=data) as resp:
                assert resp.status == 200
        # another claimed address does not get another five guesses
        async with http.post(
            base + "/welcome", data=data, headers={"X-Forwarded-For": "198.51.100.7"}
        ) as resp:
            assert resp.status in (403, 429)


async def test_a_web_setup_code_exists_when_only_the_admin_token_does(
    make_config: Any, fake_llm: FakeLLM
) -> None:
    config = gateway_config(make_config, fake_llm)
    async with (
        Gateway(config) as gw,
        client() as http,
        http.post(base_url(gw) + "/setup", headers={"X-Setup-Code": gw.setup_code or ""}) as resp,
    ):
        assert resp.status == 200
    async with Gateway(config) as gw, client() as http:
        assert gw.setup_code is not None  # the web UI's own, for the password
        await set_up(http, gw)
    async with Gateway(config) as gw:
        assert gw.setup_code is None


async def _session_rows(gw: Gateway) -> list[tuple[str, str, float]]:
    return await gw.store.read(
        lambda c: c.execute("SELECT key, user, expires_at FROM web_sessions").fetchall()
    )


async def test_a_login_survives_a_restart_and_only_its_hash_is_stored(
    make_config: Any, fake_llm: FakeLLM
) -> None:
    config = gateway_config(make_config, fake_llm)
    async with client() as http:
        async with Gateway(config) as gw:
            await set_up(http, gw)
            base = base_url(gw)
            rows = await _session_rows(gw)
        cookie = http.cookie_jar.filter_cookies(URL(base))["decapod_session"].value
        assert len(rows) == 1 and rows[0][1] == "owner" and cookie not in rows[0][0]
        async with Gateway(config) as gw:  # the same home, a new process's state
            base = base_url(gw)
            http.cookie_jar.update_cookies({"decapod_session": cookie}, URL(base))
            async with http.get(base + "/", allow_redirects=False) as resp:
                assert resp.status == 200 and 'id="chat"' in await resp.text()
                csrf = page_csrf(await resp.text())
            async with http.post(
                base + "/logout", data={"csrf": csrf}, allow_redirects=False
            ) as resp:
                assert resp.status == 303
            assert await _session_rows(gw) == []  # logout deletes it
            http.cookie_jar.update_cookies({"decapod_session": cookie}, URL(base))
            async with http.get(base + "/", allow_redirects=False) as resp:
                assert resp.status == 303


async def test_an_expired_login_opens_nothing_and_is_deleted(
    signed_in: Any, gateway: Gateway
) -> None:
    await gateway.store.write(lambda c: c.execute("UPDATE web_sessions SET expires_at = 1"))
    async with signed_in.http.get(signed_in.base + "/", allow_redirects=False) as resp:
        assert resp.status == 303 and resp.headers["Location"] == "/login"
    assert await _session_rows(gateway) == []


async def test_passkey_endpoints_need_their_tokens_and_an_open_challenge(
    gateway: Gateway, signed_in: Any
) -> None:
    base = signed_in.base
    async with client() as http:
        async with http.get(base + "/login") as resp:
            page = await resp.text()
        assert "passkey-signin" not in page  # none registered: not offered
        token = form_token(page)
        async with http.post(base + "/passkey/login/options") as resp:
            assert resp.status == 403  # no form token
        async with http.post(base + "/passkey/register/options") as resp:
            assert resp.status == 403  # not signed in
        headers = {"X-CSRF-Token": token}
        body = {"rawId": "AAAA", "id": "AAAA", "response": {}, "type": "public-key"}
        async with http.post(base + "/passkey/login", json=body, headers=headers) as resp:
            assert resp.status == 400  # no challenge was issued to this page
        async with http.post(base + "/passkey/login/options", headers=headers) as resp:
            options = await resp.json()
        assert options["rpId"] == "127.0.0.1" and options["userVerification"] == "required"
        async with http.post(base + "/passkey/login", json=body, headers=headers) as resp:
            assert resp.status == 403  # an unknown credential
        async with http.post(base + "/passkey/login", json=body, headers=headers) as resp:
            assert resp.status == 400  # the challenge was used up by the failed try
    async with signed_in.http.post(signed_in.base + "/passkey/register/options") as resp:
        assert resp.status == 403  # signed in, but no CSRF header
    async with signed_in.http.post(
        signed_in.base + "/passkey/register/options", headers={"X-CSRF-Token": signed_in.csrf}
    ) as resp:
        options = await resp.json()
    assert options["authenticatorSelection"]["residentKey"] == "required"
    await gateway.store.write(
        lambda c: c.execute("INSERT INTO web_passkeys VALUES ('AAAA', x'00', 0, 1, NULL)")
    )
    async with client() as http, http.get(base + "/login") as resp:
        assert 'id="passkey-signin"' in await resp.text()


async def test_sign_in_challenges_are_counted_per_client_even_without_failed_logins(
    gateway: Gateway, signed_in: Any
) -> None:
    """Each challenge is an unsigned-in store write, and the store keeps a bounded number:
    one client asking again and again is refused before it pushes out the others'."""
    from bot.webui.passkeys import LOGIN_OPTIONS_PER_MINUTE

    async with client() as http:
        async with http.get(signed_in.base + "/login") as resp:
            headers = {"X-CSRF-Token": form_token(await resp.text())}
        options = signed_in.base + "/passkey/login/options"
        for _ in range(LOGIN_OPTIONS_PER_MINUTE):
            async with http.post(options, headers=headers) as resp:
                assert resp.status == 200
        async with http.post(options, headers=headers) as resp:
            assert resp.status == 429 and "Retry-After" in resp.headers
