"""Shared bench helpers: percentiles, RSS, a channel that times replies, a config on a fake."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
import socket
import statistics
import subprocess
import sys
import time
import urllib.request
from collections.abc import Coroutine
from pathlib import Path
from typing import Any, TypeVar

from bot.messages import (
    Conversation,
    ConversationKind,
    Identity,
    InboundMessage,
    OutboundMessage,
    SentRef,
)
from channels.base import BaseChannel

#: how often a start bench asks /health whether a process is ready (Decapod's, the floor's,
#: nanobot's: the same for all, so the polling favours none)
HEALTH_POLL_S = 0.005
#: the percentiles of a burst's arrivals at the fake model that P3 and its floor report
ARRIVAL_PCTS = (1, 10, 50, 90, 99)


def cpu_s(pid: int, thread: int | None = None) -> float:
    """User + system CPU seconds the process (or one of its threads) has used so far
    (Linux)."""
    path = f"/proc/{pid}/stat" if thread is None else f"/proc/{pid}/task/{thread}/stat"
    with open(path, encoding="ascii") as stat:
        fields = stat.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def pct(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    k = min(len(ordered) - 1, max(0, round(q / 100 * (len(ordered) - 1))))
    return ordered[k]


def median(values: list[float]) -> float:
    return statistics.median(values) if values else float("nan")


def rss_mb(pid: int | None = None) -> float:
    with open(f"/proc/{pid or 'self'}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return float("nan")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


ROOT = Path(__file__).resolve().parent.parent
T = TypeVar("T")


def run_child(args: list[str], timeout: float) -> tuple[int, str, str]:
    """`python -m <args>` in a process group of its own: (exit code, stdout, stderr). On
    timeout the whole group (the servers it started too) is killed and TimeoutError raised."""
    proc = subprocess.Popen(
        [sys.executable, "-m", *args],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
    )
    try:
        out, err = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        for sig in (signal.SIGTERM, signal.SIGKILL):
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, sig)
            try:
                proc.communicate(timeout=15)
                break
            except subprocess.TimeoutExpired:
                continue
        raise TimeoutError(f"did not finish in {timeout:.0f} s") from None
    return proc.returncode, out, err


def run_child_main(main: Coroutine[Any, Any, T]) -> T:
    """asyncio.run for a child bench: SIGTERM (run_child's time limit) cancels `main`, so its
    `async with` blocks stop the gateway and the servers and remove the temporary folders."""

    async def cancellable() -> T:
        task = asyncio.current_task()
        assert task is not None
        asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, task.cancel)
        return await main

    return asyncio.run(cancellable())


def child_json(args: list[str], timeout: float) -> dict[str, Any]:
    """The last JSON line a child bench printed, or {"error": why there is none}."""
    try:
        code, out, err = run_child(args, timeout)
    except TimeoutError as exc:
        return {"error": str(exc)}
    lines = [line for line in out.splitlines() if line.startswith("{")]
    if code != 0 or not lines:
        tail = err.strip().splitlines()[-1:] or [f"exit code {code}, no output"]
        return {"error": tail[0][:200]}
    return dict(json.loads(lines[-1]))


class ServerProcess:
    """A bench server in a process of its own, for as long as the block runs. The child
    prints one line when it listens (`_parse` reads it) and stops on SIGTERM."""

    def __init__(self, *args: str) -> None:
        self.args = args
        self.proc: subprocess.Popen[str] | None = None

    def __enter__(self) -> Any:
        cmd = [sys.executable, "-m", *self.args]
        self.proc = subprocess.Popen(cmd, cwd=ROOT, stdout=subprocess.PIPE, text=True)
        assert self.proc.stdout is not None
        line = self.proc.stdout.readline()
        try:
            self._parse(line)
        except Exception as exc:
            self.__exit__()
            raise RuntimeError(f"{self.args[0]} did not start: {line.strip()[:200]}") from exc
        return self

    def _parse(self, line: str) -> None:
        raise NotImplementedError

    def __exit__(self, *exc: object) -> None:
        if self.proc is not None:
            self.proc.terminate()
            try:
                self.proc.wait(5)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
            self.proc = None

    def _get(self, port: int, path: str, method: str = "GET") -> bytes:
        request = urllib.request.Request(f"http://127.0.0.1:{port}{path}", method=method)
        with urllib.request.urlopen(request, timeout=30) as response:
            return bytes(response.read())


class FakeLLMProcess(ServerProcess):
    """The fake LLM (bench/fake_server.py) in its own process.

    with FakeLLMProcess(delay_s=2.0) as fake:
        config = bench_config(home, fake.base_url)
    """

    def __init__(self, delay_s: float = 0.0, fail_model: str = "") -> None:
        super().__init__("bench.fake_server", "--delay", str(delay_s), "--fail-model", fail_model)
        self.port = 0
        self.control_port = 0

    def __enter__(self) -> FakeLLMProcess:
        return super().__enter__()  # type: ignore[no-any-return]

    def _parse(self, line: str) -> None:
        word, port, control = line.split()
        assert word == "PORT"
        self.port, self.control_port = int(port), int(control)

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def stats(self) -> dict[str, Any]:
        """{"chat_requests": n, "chat_bytes": [...], "chat_times": [...]} since the last
        reset (bench/fake_server.py)."""
        return dict(json.loads(self._get(self.control_port, "/bench/stats")))

    def arrivals(self, since_epoch: float) -> dict[str, float]:
        """When the requests reached the model, in seconds from `since_epoch`, by percentile:
        a burst's shape at the model (how soon the first went out, how soon the last)."""
        times = [t - since_epoch for t in self.stats()["chat_times"]]
        return {f"p{p}": round(pct(times, p), 3) for p in ARRIVAL_PCTS} if times else {}

    def last_body(self) -> bytes:
        return self._get(self.control_port, "/bench/last")

    def reset(self) -> None:
        self._get(self.control_port, "/bench/reset", "POST")


class PlatformFakes(ServerProcess):
    """The fake Telegram, Slack and Discord (bench/platform_fakes.py) in their own process;
    `info` says where each listens."""

    def __init__(self) -> None:
        super().__init__("bench.platform_fakes")
        self.info: dict[str, Any] = {}

    def __enter__(self) -> PlatformFakes:
        return super().__enter__()  # type: ignore[no-any-return]

    def _parse(self, line: str) -> None:
        self.info = json.loads(line)

    def telegram_push(self, first: int, count: int, text: str = "hello") -> None:
        query = f"/telegram/push?first={first}&count={count}&text={text}"
        self._get(self.info["control_port"], query, "POST")

    def telegram_sent(self) -> dict[str, int]:
        """Messages the bot sent (and edited) since the last call."""
        return dict(json.loads(self._get(self.info["control_port"], "/telegram/sent")))


class TimingChannel(BaseChannel):
    """Records when each conversation's reply was sent."""

    type = "bench"
    max_message_len = 100_000

    def __init__(self, name: str = "bench") -> None:
        super().__init__(name)
        # its senders are the operator, as a terminal's are: no pairing, the owner's turn
        self.operator_console = name
        self.sent: dict[str, asyncio.Future[float]] = {}
        self._seq = 0

    def expect(self, chat_id: str) -> asyncio.Future[float]:
        fut: asyncio.Future[float] = asyncio.get_running_loop().create_future()
        self.sent[chat_id] = fut
        return fut

    async def _send_text(self, message: OutboundMessage, text: str) -> SentRef:
        fut = self.sent.get(message.conversation.chat_id)
        if fut is not None and not fut.done():
            fut.set_result(time.perf_counter())
        self._seq += 1
        return SentRef(message.conversation, str(self._seq))

    def inbound(self, text: str, chat_id: str) -> InboundMessage:
        self._seq += 1
        return InboundMessage(
            id=f"b{self._seq}",
            identity=Identity(self.name, chat_id),
            conversation=Conversation(self.name, chat_id, ConversationKind.DM),
            text=text,
        )


def bench_config(home: Path, llm_base_url: str, **extra: Any) -> Any:
    from bot.config import parse_config

    os.environ.setdefault("BENCH_LLM_KEY", "sk-bench")
    data: dict[str, Any] = {
        "http": {"enabled": False},
        "logging": {"file": "", "level": "WARNING"},
        "providers": {
            "fake": {
                "base_url": llm_base_url + "/v1",
                "api_key_env": "BENCH_LLM_KEY",
                "health_probe": False,
            }
        },
        "models": {"chat": ["fake:bench-model"]},
    }
    data.update(extra)
    return parse_config(data, home)
