"""`decapod status` asks the running gateway; `decapod run` says where to chat and names only
endpoints that answer."""

from __future__ import annotations

import asyncio
import json
import re
import socket
import stat
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from bot.gateway import Gateway
from bot.operate import start_banner
from bot.runtime import RUNTIME_FILE, GatewayRuntime, write_runtime
from tests.cli.harness import decapod, fake_llm_config, start, stop, until, write_config
from tests.fakes.llm import FakeLLM


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


async def _read_banner(proc: asyncio.subprocess.Process) -> str:
    """Up to the end of the first start's setup lines (a fresh home has no admin token: the
    web UI's setup code, then how to make the admin token with it)."""
    assert proc.stdout is not None
    banner = ""
    while "X-Setup-Code" not in banner or not banner.endswith(
        "(one use; only from this machine)\n"
    ):
        line = await asyncio.wait_for(proc.stdout.readline(), 60)
        assert line, f"decapod run ended before its banner: {banner!r}"
        banner += line.decode()
    return banner


async def test_status_without_a_gateway_says_so_and_exits_3(home: Path) -> None:
    port = _free_port()
    write_config(home, f"[http]\nport = {port}\n")

    done = await decapod(home, "status")

    assert done.returncode == 3
    assert done.stdout == ""
    assert done.stderr == (
        f"no gateway is running at http://127.0.0.1:{port} (start one with `decapod run`)\n"
    )


async def test_status_says_when_the_config_turns_the_http_server_off(home: Path) -> None:
    write_config(home, "[http]\nenabled = false\n")

    done = await decapod(home, "status")

    assert done.returncode == 3
    assert "[http] enabled = false" in done.stderr


async def test_status_after_a_crash_ignores_the_stale_runtime_file(home: Path) -> None:
    write_config(home, "")
    stale = f"http://127.0.0.1:{_free_port()}"
    write_runtime(home, GatewayRuntime(stale, "old-token", 999999, 0.0))

    done = await decapod(home, "status")

    assert done.returncode == 3
    assert f"no gateway is running at {stale}" in done.stderr


async def test_status_of_a_running_gateway(home: Path) -> None:
    port = _free_port()
    async with FakeLLM() as fake:
        write_config(home, fake_llm_config(fake.base_url, f"[http]\nport = {port}\n"))
        run = await start(home, "run")
        try:
            banner = await _read_banner(run)
            runtime = home / RUNTIME_FILE
            assert stat.S_IMODE(runtime.stat().st_mode) == 0o600

            done = await decapod(home, "status")
            as_json = await decapod(home, "status", "--json")

            # after /setup an admin token exists: the runtime file's own token still works,
            # and a caller without it is refused
            code = re.search(r"X-Setup-Code: (\S+)'", banner)
            assert code is not None, banner
            async with (
                aiohttp.ClientSession() as http,
                http.post(
                    f"http://127.0.0.1:{port}/setup", headers={"X-Setup-Code": code.group(1)}
                ) as resp,
            ):
                token = (await resp.json())["token"]
            after_setup = await decapod(home, "status")
            moved = runtime.rename(home / "elsewhere.json")
            refused = await decapod(home, "status", "--url", f"http://127.0.0.1:{port}")
            with_env = await decapod(
                home, "status", "--url", f"http://127.0.0.1:{port}", DECAPOD_ADMIN_TOKEN=token
            )
            moved.rename(runtime)
        finally:
            stopped = await stop(run)
        gone = await decapod(home, "status")

    assert done.returncode == 0, done
    lines = done.stdout.splitlines()
    assert lines[0].startswith(f"gateway    ok at http://127.0.0.1:{port} (Decapod ")
    assert "providers  fake:m: closed" in lines
    assert "channels   web (web): running" in lines  # the web UI's chat, on by default
    assert any(line.startswith("sessions   0 open, 0 turn(s) running, 0 queued") for line in lines)
    report = json.loads(as_json.stdout)
    for key in ("channels", "providers", "sessions", "queue_depth", "active_turns", "uptime_s"):
        assert key in report, key
    assert after_setup.returncode == 0, after_setup
    assert refused.returncode == 4 and "refused the admin token" in refused.stderr
    assert with_env.returncode == 0, with_env
    assert stopped.returncode == 0, stopped
    assert not runtime.exists()  # a clean stop removes it
    assert gone.returncode == 3 and "no gateway is running" in gone.stderr


async def test_the_start_banner_says_where_to_chat_and_names_only_live_endpoints(
    home: Path,
) -> None:
    port = _free_port()
    async with FakeLLM() as fake:
        write_config(home, fake_llm_config(fake.base_url, f"[http]\nport = {port}\n"))
        run = await start(home, "run")
        try:
            banner = await _read_banner(run)
            base = f"http://127.0.0.1:{port}"
            assert "decapod chat" in banner
            assert f"{base}  /health" in banner
            named = set(re.findall(r"(?<![\w.])(/[a-z][\w/]*)", banner.replace(base, "")))
            assert "/health" in named and "/metrics" in named
            async with aiohttp.ClientSession() as http:
                for path in sorted(named - {"/setup"}):  # /setup is POST only
                    async with http.get(base + path) as resp:
                        assert resp.status != 404, (path, banner)
        finally:
            await stop(run)
    await until(lambda: run.returncode is not None)


def _gateway_config(make_config: Any, fake: FakeLLM, *, webui: bool) -> Any:
    return make_config(
        http={"port": 0},
        providers={"fake": fake.provider()},
        models={"chat": ["fake:m"]},
        sandbox={"backend": "none"},
        memory={"enabled": False},
        webui={"enabled": webui},
    )


async def test_with_the_web_ui_the_banner_names_its_chat_page_and_its_setup_code(
    make_config: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("FAKE_LLM_KEY", "sk-test-not-a-secret")
    async with FakeLLM() as fake, Gateway(_gateway_config(make_config, fake, webui=True)) as gw:
        assert gw.http is not None and gw.setup_code is not None
        base = f"http://127.0.0.1:{gw.http.port}"
        banner = start_banner(gw)
        async with aiohttp.ClientSession() as http, http.get(base + "/") as resp:
            page = await resp.text()

    lines = banner.splitlines()
    assert f"  chat in a browser:   {base}/" in lines
    assert f"First start: open {base}/ and enter the setup code" in lines
    assert f"  {gw.setup_code}" in lines
    assert "Or create the admin token for /metrics, /admin/status with" in lines
    assert resp.status == 200 and 'name="code"' in page  # the page named asks for that code
    # the web UI's own pages are not listed among the HTTP endpoints
    http_line = next(line for line in lines if line.startswith("  http:"))
    assert http_line.endswith(f"{base}  /health, /metrics, /admin/status"), http_line


async def test_without_the_web_ui_the_banner_names_no_browser_page(
    make_config: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("FAKE_LLM_KEY", "sk-test-not-a-secret")
    async with FakeLLM() as fake, Gateway(_gateway_config(make_config, fake, webui=False)) as gw:
        banner = start_banner(gw)

    assert "chat in a browser" not in banner
    assert "enter the setup code" not in banner
    assert "First start: create the admin token for /metrics, /admin/status with" in banner
