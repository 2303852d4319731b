"""`proxy_for`: the proxy the environment names for a URL, as aiohttp and urllib read it;
`ProxyLookup`: the same for aiohttp's sessions, once per address."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest
from yarl import URL

from bot.proxy_env import ProxyLookup, proxy_for
from tests.fakes.forward_proxy import thread_hops

_VARIABLES = ("HTTP_PROXY", "http_proxy", "HTTPS_PROXY", "https_proxy", "NO_PROXY", "no_proxy")


@pytest.fixture
def environ(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> pytest.MonkeyPatch:
    """No proxy variable and an empty ~/.netrc, for the test to set its own."""
    for name in _VARIABLES:
        monkeypatch.delenv(name, raising=False)
    (tmp_path / "netrc").write_text("")
    monkeypatch.setenv("NETRC", str(tmp_path / "netrc"))
    return monkeypatch


def test_the_scheme_picks_the_variable_and_websockets_follow_their_http_scheme(
    environ: pytest.MonkeyPatch,
) -> None:
    assert proxy_for("https://discord.com/api/v10") is None
    environ.setenv("HTTPS_PROXY", "http://secure:3128")
    environ.setenv("HTTP_PROXY", "http://plain:3128")
    assert proxy_for("https://discord.com/api/v10") == "http://secure:3128"
    assert proxy_for("wss://gateway.discord.gg/") == "http://secure:3128"
    assert proxy_for("http://127.0.0.1:8080/api") == "http://plain:3128"
    assert proxy_for("ws://127.0.0.1:8080/gateway") == "http://plain:3128"


def test_no_proxy_is_honoured_and_the_lower_case_name_wins(environ: pytest.MonkeyPatch) -> None:
    environ.setenv("HTTPS_PROXY", "http://upper:3128")
    environ.setenv("https_proxy", "http://lower:3128")
    environ.setenv("NO_PROXY", "localhost, .internal.example")
    assert proxy_for("https://discord.com/") == "http://lower:3128"
    assert proxy_for("https://api.internal.example/v1") is None
    assert proxy_for("https://localhost:8443/") is None
    environ.setenv("no_proxy", "*")
    assert proxy_for("https://discord.com/") is None
    environ.delenv("no_proxy")
    environ.setenv("https_proxy", "")  # empty, as urllib reads it: no proxy, not the upper one
    assert proxy_for("https://discord.com/") is None


def test_the_proxy_takes_its_credentials_from_netrc(
    environ: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """As the sessions' lookup does: discord.py gets them in the URL it is given."""
    (tmp_path / "netrc").write_text("machine proxy.example login user password s3cret\n")
    environ.setenv("HTTPS_PROXY", "http://proxy.example:3128")
    assert proxy_for("wss://gateway.discord.gg/") == "http://user:s3cret@proxy.example:3128"


async def test_the_lookup_is_made_once_per_address_not_per_url(environ: pytest.MonkeyPatch) -> None:
    """Telegram's URLs name the method and the file: one lookup for the address, whatever the
    path, and another for another port or scheme."""
    environ.setenv("HTTP_PROXY", "http://user:s3cret@proxy.example:3128")
    environ.setenv("NO_PROXY", "127.0.0.1")
    lookup = ProxyLookup()
    with thread_hops(environ) as hops:
        found = [
            await lookup.for_url(f"http://api.example:8081/bot123:abc/{method}")
            for method in ("getMe", "sendMessage", "editMessageText", "file/doc.pdf")
        ]
        elsewhere = await lookup.for_url("http://api.example:8082/bot123:abc/getMe")
        secure = await lookup.for_url("https://api.example:8081/bot123:abc/getMe")
        bypassed = await lookup.for_url("http://127.0.0.1:8081/getMe")
    proxy = URL("http://user:s3cret@proxy.example:3128")
    assert found == [proxy] * 4 and elsewhere == proxy
    assert secure is None, "HTTP_PROXY is not for https:// URLs"
    assert bypassed is None, "NO_PROXY names the host"
    assert len(hops) == 4, hops


async def test_the_proxy_s_credentials_come_from_netrc_when_its_url_has_none(
    environ: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    (tmp_path / "netrc").write_text("machine proxy.example login ops password s3cret\n")
    (tmp_path / "netrc").chmod(0o600)
    environ.setenv("HTTPS_PROXY", "http://proxy.example:3128")
    found = await ProxyLookup().for_url("https://api.telegram.org/bot1:x/getMe")
    assert found == URL("http://ops:s3cret@proxy.example:3128")


async def test_a_burst_of_first_requests_shares_one_lookup_that_a_cancelled_one_leaves_running(
    environ: pytest.MonkeyPatch,
) -> None:
    environ.setenv("HTTP_PROXY", "http://proxy.example:3128")
    lookup = ProxyLookup()
    with thread_hops(environ) as hops:
        requests = [asyncio.create_task(lookup.for_url(f"http://a.example/{n}")) for n in range(4)]
        await asyncio.sleep(0)  # all four wait for the lookup now
        requests[0].cancel()
        found = await asyncio.gather(*requests[1:])
        assert requests[0].cancelled()
        assert await lookup.for_url("http://a.example/after") == found[0]
    assert found == [URL("http://proxy.example:3128")] * 3
    assert len(hops) == 1, hops


async def test_a_lookup_that_failed_is_made_again_at_the_next_request(
    environ: pytest.MonkeyPatch,
) -> None:
    """Not a failure kept for good: the variable is checked at the start, so this is a
    change (or a ~/.netrc) that the next request may find mended."""
    environ.setenv("HTTP_PROXY", "http://[::1:3128")
    lookup = ProxyLookup()
    with pytest.raises(ValueError, match="IPv6"):
        await lookup.for_url("http://a.example/first")
    environ.setenv("HTTP_PROXY", "http://proxy.example:3128")
    found = await lookup.for_url("http://a.example/second")
    assert found == URL("http://proxy.example:3128")
