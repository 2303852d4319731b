"""P4: cold start (`decapod --version`; `decapod run` until /health answers) and P5: idle RSS
of `decapod run`, with three channels (Telegram, Slack, Discord) configured against the fakes
of tests/fakes/, which run in a process of their own (bench/platform_fakes.py).

Given nanobot (`peer_llm`, bench/peer/), each `decapod run` is paired with a start of
nanobot's gateway, the two alternating which goes first, and P4's ratio to nanobot is the
median of the pairs' ratios: a load that changes during the bench moves both sides of a pair
alike, where two medians measured minutes apart each saw a load of their own."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from bench.common import HEALTH_POLL_S, PlatformFakes, cpu_s, free_port, median, rss_mb
from bench.platform_fakes import channels_env
from bench.platform_fakes import channels_toml as fake_channels_toml

if TYPE_CHECKING:
    from bench.common import FakeLLMProcess

IDLE_S = 2.0
#: the packages the timed processes (`decapod run`, the floor) import from this tree
PROJECT_PACKAGES = ("bot", "channels", "bench")


def compile_bytecode() -> None:
    """Compile the project's modules to bytecode, as installing the package does (pip
    compiles what it installs; the Dockerfile's image has them). From a checkout with
    PYTHONDONTWRITEBYTECODE set, every start would otherwise compile ~200 modules again
    (~0.4 s of CPU, and more under load), a cost no installed gateway pays and that the
    floor and nanobot, whose packages are compiled, do not pay either."""
    import compileall

    root = Path(__file__).resolve().parent.parent
    for package in PROJECT_PACKAGES:
        compileall.compile_dir(root / package, quiet=1)
    # and the table of generated code (bot/code_cache.py), as the image's build fills it: a
    # start writes it itself, but not with PYTHONDONTWRITEBYTECODE set. In a process of its
    # own, as it imports every module of the project
    done = subprocess.run(
        [sys.executable, "-m", "bot.code_cache"], capture_output=True, text=True, cwd=root
    )
    if done.returncode:
        raise RuntimeError(f"python -m bot.code_cache failed:\n{done.stderr}")


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


def _health(port: int, timeout: float = 1.0) -> tuple[int, dict[str, Any]]:
    """(status, body) of GET /health; 503 (a channel not running yet) is an answer too."""
    url = f"http://127.0.0.1:{port}/health"
    try:
        with urllib.request.urlopen(url, timeout=timeout) as r:
            return r.status, dict(json.loads(r.read()))
    except urllib.error.HTTPError as exc:
        return exc.code, dict(json.loads(exc.read() or b"{}"))


def _run_until_health(
    home: Path,
    port: int,
    env: dict[str, str],
    command: list[str] | None = None,
    idle_s: float = IDLE_S,
) -> dict[str, float]:
    """Seconds until /health first answers and until it says every channel runs, and the
    process's CPU seconds by then (the start's own work, less moved by the load than the wall
    time); RSS in MB after `idle_s` idle; channels running then. `command`: another process to
    time the same way (the floor)."""
    start = time.perf_counter()
    proc = subprocess.Popen(
        command or [sys.executable, "-m", "bot", "run"],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
        # as nanobot's gateway is started (bench/peer/measure.py): with the kernel's
        # autogroup scheduling a new session gets a CPU share of its own on a busy machine
        start_new_session=True,
    )
    answered = 0.0
    try:
        while True:
            try:
                status, _ = _health(port)
            except OSError:
                status = 0
            now = time.perf_counter() - start
            if status and not answered:
                answered = now
            if status == 200 or now > 30:
                break
            if proc.poll() is not None:
                err = (proc.stderr.read() if proc.stderr else "").strip().splitlines()
                raise RuntimeError(f"decapod run exited early: {err[-1:]}")
            time.sleep(HEALTH_POLL_S)
        all_up = time.perf_counter() - start
        # and the main thread's: the event loop's, which /health waits on (work done in
        # worker threads after ready, such as the warm-up's imports, counts in the first)
        cpu, loop_cpu = cpu_s(proc.pid), cpu_s(proc.pid, proc.pid)
        time.sleep(idle_s)
        # not timed: a loaded machine may keep the answer longer than the polls' second
        channels = _health(port, timeout=10.0)[1].get("channels") or {}
        running = sum(1 for c in channels.values() if isinstance(c, dict) and c.get("running"))
        return {
            "answered": answered,
            "all_up": all_up,
            "cpu": cpu,
            "loop_cpu": loop_cpu,
            "rss": rss_mb(proc.pid),
            "up": running,
        }
    finally:
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def paired_ratio(ours: list[float], peers: list[float]) -> float:
    """The median of the pairs' ratios, ours over the peer's: each pair's two starts ran one
    right after the other, so a load that changed between pairs moves both alike."""
    if not ours or len(ours) != len(peers):
        raise ValueError(f"pairs need as many of ours as of the peer's ({len(ours)}, {len(peers)})")
    return median([o / p for o, p in zip(ours, peers, strict=True)])


def run(
    quick: bool = False,
    channels_toml: str | None = None,
    env: dict[str, str] | None = None,
    peer_llm: FakeLLMProcess | None = None,
) -> dict[str, Any]:
    """`channels_toml`: the channel tables to configure; None: the three fakes. `peer_llm`:
    pair each start with one of nanobot's gateway (configured on that fake LLM); when nanobot
    cannot be had, P4 is measured alone and says why."""
    if channels_toml is None:
        with PlatformFakes() as fakes, contextlib.ExitStack() as stack:
            toml = fake_channels_toml(fakes.info)
            full_env = {**channels_env(fakes.info), **(env or {})}
            peer, peer_error = _peer_starts(peer_llm, stack)
            result = _measure(quick, toml, full_env, 3, peer)
            if peer_error:
                result["P4"]["peer_error"] = peer_error
            # nanobot's start has one channel: the same with Telegram alone, like for like
            telegram = toml.split("\n[channels.slack]", 1)[0]
            result["P4_one_channel"] = _one_channel(quick, telegram, full_env)
            return result
    return _measure(quick, channels_toml, env or {}, channels_toml.count("[channels."))


def _peer_starts(
    llm: FakeLLMProcess | None, stack: contextlib.ExitStack
) -> tuple[Callable[[], tuple[float, float]] | None, str]:
    """nanobot's gateway start for the pairs, or None and why not."""
    if llm is None:
        return None, ""
    from bench.peer.environment import PeerUnavailable
    from bench.peer.measure import GatewayStarts

    try:
        return stack.enter_context(GatewayStarts(llm)).start, ""
    except PeerUnavailable as exc:
        print(f"P4 not paired with nanobot: {exc}", flush=True)
        return None, str(exc)


def _one_channel(quick: bool, channels_toml: str, env: dict[str, str]) -> dict[str, Any]:
    runs = []
    for _ in range(2 if quick else 3):
        with tempfile.TemporaryDirectory() as tmp:
            home, port = Path(tmp) / "home", free_port()
            _write_config(home, port, channels_toml)
            runs.append(
                _run_until_health(home, port, {**os.environ, **env, "DECAPOD_HOME": str(home)})
            )
    return {
        "run_to_channels_up_s": median([r["all_up"] for r in runs]),
        "run_cpu_s": median([r["cpu"] for r in runs]),
        "idle_rss_mb": median([r["rss"] for r in runs]),
        "channels_running": min(r["up"] for r in runs),
    }


def _measure(
    quick: bool,
    channels_toml: str,
    env: dict[str, str],
    channels: int,
    peer: Callable[[], tuple[float, float]] | None = None,
) -> dict[str, Any]:
    compile_bytecode()
    version = _version_times(3 if quick else 7)
    runs, floors = [], []
    peers: list[float] = []
    peer_cpus: list[float] = []
    peer_error = ""

    def peer_start() -> None:
        nonlocal peer, peer_error
        from bench.peer.environment import PeerUnavailable

        assert peer is not None
        try:
            ready, cpu = peer()
            peers.append(ready)
            peer_cpus.append(cpu)
        except PeerUnavailable as exc:  # P4 goes on alone, as without nanobot
            print(f"P4 not paired with nanobot any more: {exc}", flush=True)
            peer, peer_error = None, str(exc)
            peers.clear()
            peer_cpus.clear()

    pairs = (3 if quick else 5) if peer else (2 if quick else 4)
    for n in range(-1 if peer else 0, pairs):
        # n == -1: one untimed start of each side first, when paired, so that neither side
        # alone meets a cold page cache
        with tempfile.TemporaryDirectory() as tmp:
            home, port = Path(tmp) / "home", free_port()
            _write_config(home, port, channels_toml)
            full_env = {**os.environ, **env, "DECAPOD_HOME": str(home)}
            if n < 0:
                peer_start()
                peers.clear()
                peer_cpus.clear()
                _run_until_health(home, port, full_env, idle_s=0)
                continue
            # the floor (bench/startup_floor.py) first: the load moves it with the run
            floor = [sys.executable, "-m", "bench.startup_floor", str(port)]
            floors.append(_run_until_health(home, port, full_env, floor))
            # then the pair, nanobot's start first in every other one, so that neither side
            # always follows the floor (whose imports are Decapod's SDKs) or the other side
            if peer and n % 2 == 0:
                peer_start()
            runs.append(_run_until_health(home, port, full_env))
            if peer and n % 2 == 1:
                peer_start()
    result = {
        "P4": {
            "version_s": median(version),
            "run_to_health_s": median([r["answered"] for r in runs]),
            "run_to_channels_up_s": median([r["all_up"] for r in runs]),
            #: CPU seconds of `decapod run` (and of the floor) until /health said ok
            "run_cpu_s": median([r["cpu"] for r in runs]),
            "run_loop_cpu_s": median([r["loop_cpu"] for r in runs]),
            "floor_cpu_s": median([f["cpu"] for f in floors]),
            "channels": channels,
            "channels_running": min(r["up"] for r in runs),
            #: the bare imports of pydantic, aiohttp and the three SDKs, then /health
            "floor_s": median([f["all_up"] for f in floors]),
            "floor_ratio": median(
                [r["all_up"] / f["all_up"] for r, f in zip(runs, floors, strict=True)]
            ),
        },
        "P5": {
            "idle_rss_mb": median([r["rss"] for r in runs]),
            "idle_s": IDLE_S,
            "floor_rss_mb": median([f["rss"] for f in floors]),
        },
    }
    if peer_error:
        result["P4"]["peer_error"] = peer_error
    if peers:
        ours = [r["all_up"] for r in runs]
        result["P4"].update(
            peer_pairs=[[o, p] for o, p in zip(ours, peers, strict=True)],
            peer_ready_s=median(peers),
            #: nanobot's CPU seconds by then, beside Decapod's run_cpu_s
            peer_cpu_s=median(peer_cpus),
            peer_ratio=paired_ratio(ours, peers),
        )
    return result


if __name__ == "__main__":
    print(asyncio.run(asyncio.to_thread(run, True)))
