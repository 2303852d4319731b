"""First run with a passkey instead of a password: the setup code is checked before any
registration challenge exists, it stays single-use (only the browser that spent it may retry),
a passkey-only owner is still set up after a restart, and the panel's password form."""

from __future__ import annotations

from typing import Any

from bot.gateway import Gateway
from bot.store.webui import WebUIRepo
from bot.webui.auth import PASSWORD_KEY
from tests.fakes.llm import FakeLLM
from tests.webui.conftest import PASSWORD, base_url, client, form_token, gateway_config, page_csrf

CREDENTIAL = {"rawId": "AAAA", "id": "AAAA", "response": {}, "type": "public-key"}


async def _welcome_token(http: Any, base: str) -> str:
    async with http.get(base + "/") as resp:
        return form_token(await resp.text())


async def test_a_passkey_challenge_needs_the_form_token_and_the_setup_code(
    gateway: Gateway,
) -> None:
    base = base_url(gateway)
    async with client() as http:
        token = await _welcome_token(http, base)
        headers = {"X-CSRF-Token": token}
        options_url, register_url = base + "/welcome/passkey/options", base + "/welcome/passkey"
        async with http.post(options_url, json={"code": gateway.setup_code}) as resp:
            assert resp.status == 403  # no form token
        async with http.post(
            options_url, json={"code": gateway.setup_code}, headers={"X-CSRF-Token": "forged"}
        ) as resp:
            assert resp.status == 403  # not the page's token
        async with http.post(options_url, json={}, headers=headers) as resp:
            assert resp.status == 400 and "setup code" in await resp.text()
        async with http.post(options_url, json={"code": "not-it"}, headers=headers) as resp:
            assert resp.status == 403 and "not the setup code" in await resp.text()
            assert "challenge" not in await resp.text()
        # no challenge was issued for the wrong code: a credential has nothing to answer
        async with http.post(register_url, json=CREDENTIAL, headers=headers) as resp:
            assert resp.status == 400 and "no passkey request" in await resp.text()

        async with http.post(
            options_url, json={"code": gateway.setup_code}, headers=headers
        ) as resp:
            assert resp.status == 200
            options = await resp.json()
        assert options["rp"]["id"] == "127.0.0.1" and options["challenge"]
        assert options["authenticatorSelection"]["residentKey"] == "required"
        async with http.post(register_url, json=CREDENTIAL, headers=headers) as resp:
            assert resp.status == 400  # a made-up credential is refused; nothing is stored
        assert (
            await gateway.store.read(
                lambda c: c.execute("SELECT COUNT(*) FROM web_passkeys").fetchone()[0]
            )
            == 0
        )
        # the same browser may try again (a cancelled prompt) with the code it spent
        async with http.post(
            options_url, json={"code": gateway.setup_code}, headers=headers
        ) as resp:
            assert resp.status == 200

    async with client() as other:  # anyone else: the code is spent
        token = await _welcome_token(other, base)
        async with other.post(
            options_url, json={"code": gateway.setup_code}, headers={"X-CSRF-Token": token}
        ) as resp:
            assert resp.status == 403
        data = {"csrf": token, "code": gateway.setup_code, "password": PASSWORD}
        async with other.post(base + "/welcome", data=data | {"confirm": PASSWORD}) as resp:
            assert "not the setup code" in await resp.text()
    assert await gateway.store.kv.get(PASSWORD_KEY) is None


async def test_the_browser_that_spent_the_code_on_a_passkey_may_choose_a_password(
    gateway: Gateway,
) -> None:
    base = base_url(gateway)
    async with client() as http:
        token = await _welcome_token(http, base)
        async with http.post(
            base + "/welcome/passkey/options",
            json={"code": gateway.setup_code},
            headers={"X-CSRF-Token": token},
        ) as resp:
            assert resp.status == 200
        data = {"csrf": token, "code": gateway.setup_code, "password": PASSWORD}
        async with http.post(base + "/welcome", data=data | {"confirm": PASSWORD}) as resp:
            page = await resp.text()
        assert 'id="admin-token"' in page  # the admin token the code made, shown once
        assert await gateway.store.kv.get(PASSWORD_KEY) is not None
        async with http.post(
            base + "/welcome/passkey/options",
            json={"code": gateway.setup_code},
            headers={"X-CSRF-Token": token},
        ) as resp:
            assert resp.status == 403  # set up now: no more setup challenges


async def test_wrong_codes_for_a_passkey_are_throttled(gateway: Gateway) -> None:
    base = base_url(gateway)
    async with client() as http:
        token = await _welcome_token(http, base)
        statuses = []
        for _ in range(6):
            async with http.post(
                base + "/welcome/passkey/options",
                json={"code": "guess"},
                headers={"X-CSRF-Token": token},
            ) as resp:
                statuses.append(resp.status)
        assert statuses[:5] == [403] * 5 and statuses[5] == 429
        async with http.post(
            base + "/welcome/passkey/options",
            json={"code": gateway.setup_code},
            headers={"X-CSRF-Token": token},
        ) as resp:
            assert resp.status == 429  # even the right code waits out the throttle


async def test_a_passkey_only_owner_stays_set_up_across_a_restart(
    make_config: Any, fake_llm: FakeLLM
) -> None:
    config = gateway_config(make_config, fake_llm)
    async with Gateway(config) as gw:
        assert gw.setup_code is not None
        await gw.store.write(
            lambda c: c.execute("INSERT INTO web_passkeys VALUES ('AAAA', x'00', 0, 1, NULL)")
        )
    async with Gateway(config) as gw, client() as http:
        assert gw.setup_code is None  # set up: no new code, no setup page
        base = base_url(gw)
        async with http.get(base + "/", allow_redirects=False) as resp:
            assert resp.status == 303 and resp.headers["Location"] == "/login"
        async with http.get(base + "/login") as resp:
            page = await resp.text()
        assert 'id="no-password"' in page and 'id="passkey-signin"' in page
        assert 'name="password"' not in page
        token = page_csrf(page)  # the passkey button's form token
        async with http.post(
            base + "/welcome/passkey/options",
            json={"code": "anything"},
            headers={"X-CSRF-Token": token},
        ) as resp:
            assert resp.status == 403
        async with http.post(base + "/login", data={"csrf": token, "password": ""}) as resp:
            assert "Wrong password" in await resp.text()


async def test_the_panel_password_form_needs_csrf_and_the_current_password(
    signed_in: Any, gateway: Gateway
) -> None:
    before = await gateway.store.kv.get(PASSWORD_KEY)
    new = "a brand new passphrase"
    async with signed_in.http.post(
        signed_in.base + "/panel/password",
        data={"current": PASSWORD, "password": new, "confirm": new},
    ) as resp:
        assert resp.status == 403  # no CSRF token
    async with await signed_in.post(
        "/panel/password", current="wrong one!", password=new, confirm=new
    ) as resp:
        assert "current+password+is+wrong" in resp.headers["Location"]
    async with await signed_in.post(
        "/panel/password", current=PASSWORD, password="short", confirm="short"
    ) as resp:
        assert "at+least" in resp.headers["Location"]
    assert await gateway.store.kv.get(PASSWORD_KEY) == before
    async with await signed_in.post(
        "/panel/password", current=PASSWORD, password=new, confirm=new
    ) as resp:
        assert resp.headers["Location"].endswith("note=password+saved")
    async with client() as http:
        async with http.get(signed_in.base + "/login") as resp:
            token = form_token(await resp.text())
        for password, signed in ((PASSWORD, False), (new, True)):
            async with http.post(
                signed_in.base + "/login",
                data={"csrf": token, "password": password},
                allow_redirects=False,
            ) as resp:
                assert (resp.status == 303) is signed


async def test_the_setup_done_page_is_only_for_a_signed_in_owner(gateway: Gateway) -> None:
    async with (
        client() as http,
        http.get(base_url(gateway) + "/welcome/done", allow_redirects=False) as resp,
    ):
        assert resp.status == 303 and resp.headers["Location"] == "/login"


async def test_guessing_the_current_password_on_the_panel_is_throttled(
    signed_in: Any, gateway: Gateway
) -> None:
    """The current password guards the change against a browser left signed in: five wrong
    guesses a minute, then even the right one is refused until the throttle lets go."""
    before = await gateway.store.kv.get(PASSWORD_KEY)
    new = "a brand new passphrase"
    for n in range(5):
        async with await signed_in.post(
            "/panel/password", current=f"guess number {n}", password=new, confirm=new
        ) as resp:
            assert "current+password+is+wrong" in resp.headers["Location"]
    async with await signed_in.post(
        "/panel/password", current=PASSWORD, password=new, confirm=new
    ) as resp:
        assert resp.status == 429 and "Retry-After" in resp.headers
    assert await gateway.store.kv.get(PASSWORD_KEY) == before


async def test_the_only_passkey_is_kept_when_the_store_holds_no_password(
    signed_in: Any, gateway: Gateway
) -> None:
    """The password was deleted from the store by hand (or by another replica) after this
    process read it: removing the only passkey would lock the owner out, and is refused by
    what the store says, not by this process's old copy."""
    await WebUIRepo(gateway.store).add_passkey("only-key", b"public key", 0)
    await gateway.store.write(lambda c: c.execute("DELETE FROM kv WHERE key = ?", (PASSWORD_KEY,)))
    async with await signed_in.post("/panel/passkeys/remove", credential="only-key") as resp:
        assert "set+a+password+before+removing" in resp.headers["Location"]
    assert [p.credential_id for p in await WebUIRepo(gateway.store).passkeys()] == ["only-key"]
