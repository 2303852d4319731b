"""S6: the setup code is strong, shown only on the terminal, single-use, and throttled."""

from __future__ import annotations

import asyncio
import base64
import os
import re
import sys
from pathlib import Path
from typing import Any

import aiohttp

from bench.common import free_port
from bot.gateway import Gateway
from bot.providers.testing import ScriptedProvider


async def test_code_is_printed_to_the_terminal_never_to_the_log(tmp_path: Path) -> None:
    home, port = tmp_path / "home", free_port()
    home.mkdir()
    (home / "config.toml").write_text(
        f'[http]\nport = {port}\n[logging]\nfile = "logs/decapod.log"\n'
        '[providers.local]\npreset = "ollama"\nhealth_probe = false\n'
    )
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "bot",
        "run",
        env={**os.environ, "DECAPOD_HOME": str(home)},
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    try:
        out = b""
        while b"X-Setup-Code" not in out:
            chunk = await asyncio.wait_for(proc.stdout.read(4096), 20)  # type: ignore[union-attr]
            assert chunk, out
            out += chunk
        code = re.search(rb"X-Setup-Code: ([A-Za-z0-9_-]+)", out).group(1).decode()  # type: ignore[union-attr]
        assert len(base64.urlsafe_b64decode(code + "=" * (-len(code) % 4))) * 8 >= 128
        async with aiohttp.ClientSession() as http:
            url = f"http://127.0.0.1:{port}/setup"
            async with http.post(url, headers={"X-Setup-Code": code}) as resp:
                assert resp.status == 200
            async with http.post(url, headers={"X-Setup-Code": code}) as resp:
                assert resp.status == 403, "a second use is rejected"
    finally:
        proc.terminate()
        _, err = await asyncio.wait_for(proc.communicate(), 20)
    log = (home / "logs" / "decapod.log").read_text()
    assert log and code not in log and code.encode() not in err


async def test_wrong_codes_are_throttled_with_retry_after(make_config: Any) -> None:
    config = make_config(http={"enabled": True, "port": 0})
    async with Gateway(config, provider=ScriptedProvider([])) as gw:
        url = f"http://127.0.0.1:{gw.http.port}/setup"
        statuses = []
        async with aiohttp.ClientSession() as http:
            for i in range(30):
                async with http.post(url, headers={"X-Setup-Code": f"guess-{i}"}) as resp:
                    statuses.append(resp.status)
                    retry_after = resp.headers.get("Retry-After")
            # even the right code waits out the throttle
            async with http.post(url, headers={"X-Setup-Code": gw.setup_code}) as resp:
                assert resp.status == 429
        assert statuses[0] == 403 and statuses[-1] == 429
        assert retry_after is not None and int(retry_after) > 0
        assert gw.http.auth.configured is False, "no default credential exists"
