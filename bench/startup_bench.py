"""P4: cold start (`decapod --version`; `decapod run` until /health answers) and P5: idle RSS
of `decapod run`."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path
from typing import Any

from bench.common import free_port, median, rss_mb


def _version_times(runs: int) -> list[float]:
    times = []
    for _ in range(runs):
        start = time.perf_counter()
        subprocess.run([sys.executable, "-m", "bot", "--version"], check=True, capture_output=True)
        times.append(time.perf_counter() - start)
    return times


def _write_config(home: Path, port: int, extra: str) -> None:
    home.mkdir(parents=True, exist_ok=True)
    (home / "config.toml").write_text(
        f'[http]\nport = {port}\n\n[logging]\nfile = ""\nlevel = "WARNING"\n\n'
        '[providers.local]\npreset = "ollama"\nhealth_probe = false\n\n'
        '[models]\nchat = ["local:m"]\n' + extra
    )


def _run_until_health(home: Path, port: int, env: dict[str, str]) -> tuple[float, float]:
    start = time.perf_counter()
    proc = subprocess.Popen(
        [sys.executable, "-m", "bot", "run"],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        while True:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/health", timeout=1) as r:
                    if r.status in (200, 503):
                        break
            except OSError:
                if proc.poll() is not None:
                    raise RuntimeError("decapod run exited early") from None
                time.sleep(0.005)
        ready = time.perf_counter() - start
        time.sleep(2.0)  # idle
        return ready, rss_mb(proc.pid)
    finally:
        proc.terminate()
        proc.wait(10)


def run(
    quick: bool = False, channels_toml: str = "", env: dict[str, str] | None = None
) -> dict[str, Any]:
    version = _version_times(3 if quick else 7)
    readies, rss = [], []
    for _ in range(2 if quick else 4):
        with tempfile.TemporaryDirectory() as tmp:
            home, port = Path(tmp) / "home", free_port()
            _write_config(home, port, channels_toml)
            full_env = {**os.environ, **(env or {}), "DECAPOD_HOME": str(home)}
            ready, idle = _run_until_health(home, port, full_env)
            readies.append(ready)
            rss.append(idle)
    return {
        "P4": {"version_s": median(version), "run_to_health_s": median(readies)},
        "P5": {"idle_rss_mb": median(rss)},
    }


if __name__ == "__main__":
    print(asyncio.run(asyncio.to_thread(run, True)))
