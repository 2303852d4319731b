"""`proxy_for`: the proxy the environment names for a URL, as aiohttp and urllib read it."""

from __future__ import annotations

from bot.proxy_env import proxy_for


def test_the_scheme_picks_the_variable_and_websockets_follow_their_http_scheme() -> None:
    environ = {"HTTPS_PROXY": "http://secure:3128", "HTTP_PROXY": "http://plain:3128"}
    assert proxy_for("https://discord.com/api/v10", environ) == "http://secure:3128"
    assert proxy_for("wss://gateway.discord.gg/", environ) == "http://secure:3128"
    assert proxy_for("http://127.0.0.1:8080/api", environ) == "http://plain:3128"
    assert proxy_for("ws://127.0.0.1:8080/gateway", environ) == "http://plain:3128"
    assert proxy_for("https://discord.com/api/v10", {}) is None


def test_no_proxy_is_honoured_and_the_lower_case_name_wins() -> None:
    environ = {
        "HTTPS_PROXY": "http://upper:3128",
        "https_proxy": "http://lower:3128",
        "NO_PROXY": "localhost, .internal.example",
    }
    assert proxy_for("https://discord.com/", environ) == "http://lower:3128"
    assert proxy_for("https://api.internal.example/v1", environ) is None
    assert proxy_for("https://localhost:8443/", environ) is None
    assert proxy_for("https://discord.com/", {**environ, "no_proxy": "*"}) is None
    assert proxy_for("https://discord.com/", {"HTTPS_PROXY": ""}) is None
