"""nanobot's figures, measured in the same run as Decapod's and against the same fake LLM.

Everything nanobot runs happens in its own environment (bench/peer/environment.py) with HOME set
to a throwaway folder, so its config, sessions and workspace never touch the real home.
The config follows the published measurement: a custom OpenAI-compatible provider on the
fake, a large context window (offline, its token counter falls back to one token per byte),
and the background jobs (dream, heartbeat) off. Every process is started in a session of
its own and killed with its children at the end; every step has a time limit.
"""

from __future__ import annotations

import json
import os
import signal
import statistics
import subprocess
import tempfile
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

from bench.common import HEALTH_POLL_S, FakeLLMProcess, cpu_s, free_port, rss_mb
from bench.p7_prompt import breakdown
from bench.peer.environment import PeerEnv, PeerUnavailable, ensure_nanobot

HERE = Path(__file__).resolve().parent
STEP_TIMEOUT_S = 180.0
IDLE_S = 2.0  # as for Decapod's P5


def _config(home: Path, llm: FakeLLMProcess, gateway_port: int, ws_port: int) -> None:
    config = {
        "agents": {
            "defaults": {
                "model": "fake-model",
                "provider": "custom",
                "contextWindowTokens": 1_000_000,
                "maxTokens": 1024,
                "workspace": str(home / ".nanobot" / "workspace"),
                "timezone": "UTC",
                "dream": {"enabled": False},
            }
        },
        "providers": {"custom": {"apiKey": "sk-bench", "apiBase": llm.base_url + "/v1"}},
        "gateway": {"host": "127.0.0.1", "port": gateway_port, "heartbeat": {"enabled": False}},
        "channels": {
            "websocket": {
                "enabled": True,
                "host": "127.0.0.1",
                "port": ws_port,
                "websocketRequiresToken": False,
                "allowFrom": ["*"],
                "streaming": False,
            }
        },
    }
    (home / ".nanobot").mkdir(parents=True, exist_ok=True)
    (home / ".nanobot" / "config.json").write_text(json.dumps(config, indent=1))


def _summary(stdout: str) -> dict[str, Any]:
    for line in reversed(stdout.splitlines()):
        if line.startswith("SUMMARY "):
            return dict(json.loads(line[len("SUMMARY ") :]))
    raise PeerUnavailable("nanobot printed no summary")


def _run(env: PeerEnv, home: Path, *args: str) -> dict[str, Any]:
    cmd = [str(env.python), *args]
    proc = subprocess.Popen(
        cmd,
        env={**os.environ, "HOME": str(home)},
        cwd=home,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
    )
    try:
        out, err = proc.communicate(timeout=STEP_TIMEOUT_S)
    except subprocess.TimeoutExpired:
        _kill(proc)
        raise PeerUnavailable(f"{Path(args[0]).name} took over {STEP_TIMEOUT_S:.0f} s") from None
    except BaseException:  # Ctrl-C: nothing of nanobot's outlives the bench
        _kill(proc)
        raise
    if proc.returncode != 0:
        tail = err.strip().splitlines()[-1:] or ["no output"]
        raise PeerUnavailable(f"{Path(args[0]).name} failed: {tail[0][:200]}")
    return _summary(out)


def _kill(proc: subprocess.Popen[Any]) -> None:
    """Stop a process and everything it started."""
    if proc.poll() is not None:
        return
    for sig, wait in ((signal.SIGTERM, 10), (signal.SIGKILL, 5)):
        try:
            os.killpg(proc.pid, sig)
        except ProcessLookupError:
            return
        try:
            proc.wait(wait)
            return
        except subprocess.TimeoutExpired:
            continue


def _version_s(env: PeerEnv, home: Path, runs: int) -> float:
    times = []
    for _ in range(runs):
        start = time.perf_counter()
        subprocess.run(
            [str(env.bin / "nanobot"), "--version"],
            env={**os.environ, "HOME": str(home)},
            capture_output=True,
            timeout=60,
            check=True,
        )
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def _start_gateway(env: PeerEnv, home: Path, port: int) -> tuple[subprocess.Popen[bytes], float]:
    """`nanobot gateway` started, and the seconds until its /health first answered."""
    start = time.perf_counter()
    proc = subprocess.Popen(
        [str(env.bin / "nanobot"), "gateway", "--port", str(port)],
        env={**os.environ, "HOME": str(home)},
        cwd=home,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    try:
        while time.perf_counter() - start < 60:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/health", timeout=1):
                    return proc, time.perf_counter() - start
            except (urllib.error.HTTPError, OSError):
                if proc.poll() is not None:
                    raise PeerUnavailable("nanobot gateway exited at start") from None
                time.sleep(HEALTH_POLL_S)
        raise PeerUnavailable("nanobot gateway was not ready within 60 s")
    except BaseException:
        _kill(proc)
        raise


class GatewayStarts:
    """nanobot's gateway started until its /health answers, then stopped, as often as asked:
    P4 alternates these starts with Decapod's (bench/startup_bench.py), so that both sides
    of its ratio see the same load. Its own home and config, as for `measure`.

        with GatewayStarts(llm) as starts:
            seconds, cpu = starts.start()
    """

    def __init__(self, llm: FakeLLMProcess) -> None:
        self._llm = llm
        self._tmp: tempfile.TemporaryDirectory[str] | None = None

    def __enter__(self) -> GatewayStarts:
        self._env = ensure_nanobot()
        self._port = free_port()
        tmp = tempfile.TemporaryDirectory(prefix="decapod-peer-")
        try:
            _config(Path(tmp.name), self._llm, self._port, free_port())
        except BaseException:
            tmp.cleanup()  # __exit__ does not run for a failed __enter__
            raise
        self._tmp, self._home = tmp, Path(tmp.name)
        return self

    def start(self) -> tuple[float, float]:
        """Seconds from starting `nanobot gateway` until its /health first answered, and the
        CPU seconds it had used by then."""
        proc, ready = _start_gateway(self._env, self._home, self._port)
        try:
            return ready, cpu_s(proc.pid)
        finally:
            _kill(proc)

    def __exit__(self, *exc: object) -> None:
        if self._tmp is not None:
            self._tmp.cleanup()


def _gateway(
    env: PeerEnv, home: Path, port: int, ws_port: int, messages: int, starts: int
) -> dict[str, Any]:
    """`nanobot gateway`: until /health says ready (the median of `starts` starts, as P4
    takes the median of Decapod's), RSS when idle, then messages over its WebSocket channel."""
    readies = []
    for _ in range(starts - 1):
        proc, ready = _start_gateway(env, home, port)
        _kill(proc)
        readies.append(ready)
    proc, ready = _start_gateway(env, home, port)
    try:
        readies.append(ready)
        time.sleep(IDLE_S)
        idle_rss = rss_mb(proc.pid)
        ws = _run(env, home, str(HERE / "nb_ws.py"), str(ws_port), str(proc.pid), str(messages))
        return {"ready_s": statistics.median(readies), "idle_rss_mb": idle_rss, "ws": ws}
    finally:
        _kill(proc)


def measure(llm: FakeLLMProcess, quick: bool = False) -> dict[str, Any]:
    """nanobot's P1 (in-process, bus, WebSocket gateway), P4, P5 and P7 against `llm`.
    Raises PeerUnavailable with the reason when nanobot cannot be installed or run."""
    env = ensure_nanobot()
    messages = 20 if quick else 100
    with tempfile.TemporaryDirectory(prefix="decapod-peer-") as tmp:
        home = Path(tmp)
        gateway_port, ws_port = free_port(), free_port()
        _config(home, llm, gateway_port, ws_port)
        result: dict[str, Any] = {"version": env.version, "packages": env.packages}
        result["version_s"] = _version_s(env, home, 3 if quick else 5)
        sdk = _run(env, home, str(HERE / "nb_inproc.py"), "sdk", str(messages))
        bus = _run(env, home, str(HERE / "nb_inproc.py"), "bus", str(messages))
        llm.reset()
        _run(env, home, str(HERE / "nb_inproc.py"), "sdk", "1", "hello")
        result["prompt"] = breakdown(llm.last_body())
        gateway = _gateway(env, home, gateway_port, ws_port, messages, 2 if quick else 4)
    result["P1_inproc"] = sdk
    result["P1_bus"] = bus
    result["P1_ws"] = gateway["ws"]
    result["gateway_ready_s"] = round(gateway["ready_s"], 3)
    result["gateway_idle_rss_mb"] = round(gateway["idle_rss_mb"], 1)
    return result


def run(quick: bool = False) -> dict[str, Any]:
    """The peer's figures against a fake LLM of their own (for running this module alone)."""
    with FakeLLMProcess() as llm:
        return measure(llm, quick)


if __name__ == "__main__":
    print(json.dumps(run(quick=True), indent=2))
