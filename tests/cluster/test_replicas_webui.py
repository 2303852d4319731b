"""The web UI behind a balancer: each request may reach another replica, so the owner's
password set up (or changed) through one must be the one every replica asks for. Two
gateways in one process, each with a home of its own, on one PostgreSQL database."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import aiohttp
import pytest

from bot.config import parse_config
from bot.gateway import Gateway
from bot.providers.testing import ScriptedProvider
from tests.webui.conftest import PASSWORD, base_url, client, form_token, page_csrf, set_up

pytestmark = [pytest.mark.replicas]

NEW_PASSWORD = "a different passphrase"


def _config(home: Path, pg_url: str) -> Any:
    data: dict[str, Any] = {
        "store": {"url": pg_url},
        "http": {"enabled": True, "port": 0},
        "logging": {"file": ""},
        "gateway": {"shutdown_grace_s": 0.5, "session_lease_s": 3},
        "sandbox": {"backend": "none"},
        "memory": {"enabled": False},
        "scheduler": {"poll_seconds": 3600},
    }
    return parse_config(data, home)


async def _login(http: aiohttp.ClientSession, gw: Gateway, password: str) -> int:
    """The status of a password login on `gw` (303: signed in)."""
    base = base_url(gw)
    async with http.get(base + "/login", allow_redirects=False) as resp:
        assert resp.status == 200, "no login form: the replica offers the first-run setup"
        token = form_token(await resp.text())
    data = {"csrf": token, "password": password}
    async with http.post(base + "/login", data=data, allow_redirects=False) as resp:
        return resp.status


async def test_a_password_set_or_changed_through_one_replica_is_the_one_every_replica_asks(
    tmp_path: Path, pg_url: str
) -> None:
    provider = ScriptedProvider([])
    async with (
        Gateway(_config(tmp_path / "a", pg_url), provider=provider) as a,
        Gateway(_config(tmp_path / "b", pg_url), provider=provider) as b,
    ):
        async with client() as owner:
            await set_up(owner, a)  # the first run happened to reach replica a
            async with owner.get(base_url(a) + "/panel/passkeys") as resp:
                csrf = page_csrf(await resp.text())
        async with client() as other:
            # the next page load reaches replica b: its login, not a second first run
            assert await _login(other, b, PASSWORD) == 303
        async with client() as owner:
            assert await _login(owner, a, PASSWORD) == 303
            async with owner.get(base_url(a) + "/panel/passkeys") as resp:
                csrf = page_csrf(await resp.text())
            form = {
                "csrf": csrf,
                "current": PASSWORD,
                "password": NEW_PASSWORD,
                "confirm": NEW_PASSWORD,
            }
            async with owner.post(
                base_url(a) + "/panel/password", data=form, allow_redirects=False
            ) as resp:
                assert "password+saved" in resp.headers["Location"]
        async with client() as thief:
            # the old password (changed because it leaked, say) opens no replica
            assert await _login(thief, b, PASSWORD) == 200
            assert await _login(thief, a, PASSWORD) == 200
        async with client() as owner:
            assert await _login(owner, b, NEW_PASSWORD) == 303
