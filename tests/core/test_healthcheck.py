"""`python -m bot.healthcheck` (the container's HEALTHCHECK) asks the configured /health."""

from __future__ import annotations

import asyncio
import socket
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from aiohttp import web

from bot import healthcheck


@pytest.fixture
async def health_server() -> AsyncIterator[tuple[int, dict[str, object]]]:
    """/health on 127.0.0.1 answering with `state["status"]` (503 unless it is "ok")."""
    state: dict[str, object] = {"status": "ok"}

    async def health(_request: web.Request) -> web.Response:
        code = 200 if state["status"] == "ok" else 503
        return web.json_response({"status": state["status"]}, status=code)

    app = web.Application()
    app.router.add_get("/health", health)
    runner = web.AppRunner(app)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", 0).start()
    yield runner.addresses[0][1], state
    await runner.cleanup()


async def test_healthy_when_the_configured_port_answers_ok_on_loopback(
    home: Path,
    health_server: tuple[int, dict[str, object]],
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    port, state = health_server
    # as in the image: listening on every interface, asked on loopback
    monkeypatch.setenv("DECAPOD_HTTP__HOST", "0.0.0.0")
    monkeypatch.setenv("DECAPOD_HTTP__PORT", str(port))
    monkeypatch.setenv("http_proxy", "http://127.0.0.1:9")  # never used for the gateway
    monkeypatch.delenv("no_proxy", raising=False)
    monkeypatch.delenv("NO_PROXY", raising=False)

    assert await asyncio.to_thread(healthcheck.main) == 0
    assert f"http://127.0.0.1:{port}/health: ok" in capsys.readouterr().out

    state["status"] = "degraded"
    assert await asyncio.to_thread(healthcheck.main) == 1
    assert "HTTP 503" in capsys.readouterr().out


async def test_unhealthy_when_nothing_listens_or_http_is_off(
    home: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    with socket.socket() as bound:  # bound, never listening: connections are refused
        bound.bind(("127.0.0.1", 0))
        monkeypatch.setenv("DECAPOD_HTTP__PORT", str(bound.getsockname()[1]))
        assert await asyncio.to_thread(healthcheck.main, 2.0) == 1

    monkeypatch.setenv("DECAPOD_HTTP__ENABLED", "false")
    assert await asyncio.to_thread(healthcheck.main) == 1
    assert "HTTP server is off" in capsys.readouterr().out


def test_a_bad_config_is_unhealthy_and_says_why(
    home: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("DECAPOD_HTTP__PORT", "eighty")

    assert healthcheck.main() == 1
    assert "DECAPOD_HTTP__PORT" in capsys.readouterr().err


def test_any_address_is_asked_on_loopback() -> None:
    assert healthcheck.health_url("0.0.0.0", 8787) == "http://127.0.0.1:8787/health"
    assert healthcheck.health_url("::", 1) == "http://[::1]:1/health"
    assert healthcheck.health_url("10.1.2.3", 2) == "http://10.1.2.3:2/health"
