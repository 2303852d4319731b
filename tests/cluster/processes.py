"""`decapod run` replicas as real processes on one PostgreSQL database, for the kill tests:
the part of their config every replica shares, a handle to start one, read its health and
count its running turns, and a load balancer in front of them."""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import socket
import sys
import time
from collections.abc import Awaitable, Callable, Iterator
from pathlib import Path
from typing import Any, Generic, TypeVar

import aiohttp

from tests.fakes.llm import FakeLLM, RecordedRequest, Reply

T = TypeVar("T")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def base_config(pg_url: str, llm: FakeLLM, port: int, extra: str = "") -> str:
    """Everything but the channel: short leases so a dead replica's sessions are taken over
    within seconds, no memory, no sandbox, the fake model. A live holder frozen for a third
    of its lease between its fence check and the platform's accepting a send can still double
    an answer (docs/architecture.md), so the lease is long enough for a loaded machine's
    pauses; DECAPOD_TEST_LEASE_S shortens it, to make a lost lease likely in repeated runs."""
    return f"""
[store]
url = "{pg_url}"

[gateway]
shutdown_grace_s = 2
session_lease_s = {os.environ.get("DECAPOD_TEST_LEASE_S", "6")}

[http]
enabled = true
port = {port}

[logging]
file = "decapod.log"

[memory]
enabled = false

[sandbox]
backend = "none"
{extra}
[providers.fake]
base_url = "{llm.base_url}/v1"
api_key_env = "FAKE_LLM_KEY"

[models]
chat = ["fake:m"]
"""


class ReplicaProcess:
    def __init__(self, index: int, home: Path, port: int, env: dict[str, str]) -> None:
        self.index, self.home, self.port = index, home, port
        self._env = env
        self.proc: asyncio.subprocess.Process | None = None
        self.stderr: Any = None

    @property
    def model_key(self) -> str:
        """The Authorization header of this replica's model requests."""
        return f"Bearer sk-replica-{self.index}"

    def url(self, path: str) -> str:
        return f"http://127.0.0.1:{self.port}{path}"

    async def start(self) -> None:
        self.stderr = (self.home / "stderr.txt").open("wb")
        env = {
            **os.environ,
            "DECAPOD_HOME": str(self.home),
            # a key per replica: the fake model tells which replica asked
            "FAKE_LLM_KEY": self.model_key.removeprefix("Bearer "),
            **self._env,
        }
        self.proc = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "bot",
            "run",
            env=env,
            stdout=asyncio.subprocess.DEVNULL,
            stderr=self.stderr,
        )

    async def health(self, http: aiohttp.ClientSession) -> dict[str, Any] | None:
        try:
            async with http.get(self.url("/health")) as resp:
                return dict(await resp.json())
        except aiohttp.ClientError:
            return None

    async def turns_running(self, http: aiohttp.ClientSession) -> int:
        async with http.get(self.url("/metrics")) as resp:
            text = await resp.text()
        line = next(x for x in text.splitlines() if x.startswith("decapod_active_turns "))
        return int(float(line.split()[1]))


def make_replicas(
    tmp_path: Path, count: int, config: Callable[[int], str], env: dict[str, str]
) -> list[ReplicaProcess]:
    """`count` replicas, not started, each with a home of its own under `tmp_path` holding
    `config(port)` as its config.toml."""
    replicas = []
    for i in range(count):
        home = tmp_path / f"replica{i}"
        home.mkdir()
        port = free_port()
        (home / "config.toml").write_text(config(port))
        replicas.append(ReplicaProcess(i, home, port, env))
    return replicas


def _asked(request: RecordedRequest) -> str:
    return str(request.body["messages"][-1]["content"])


def answer_what_was_asked(llm: FakeLLM) -> None:
    """The model answers "answer to <the last message>", so a reply names its message."""
    llm.reply_fn = lambda request: Reply(text=f"answer to {_asked(request)}")


def assert_victims_turns_taken_over(llm: FakeLLM, held_from: int, victim: ReplicaProcess) -> None:
    """Every message the killed replica asked the model about while its answers were held
    was asked again by another replica."""
    key = victim.model_key
    after_hold = [r for r in llm.requests[held_from:] if r.path == "/v1/chat/completions"]
    cut_off = {_asked(r) for r in after_hold if r.headers.get("Authorization") == key}
    asked_again = {_asked(r) for r in after_hold if r.headers.get("Authorization") != key}
    assert cut_off and cut_off <= asked_again, "the victim's turns were taken over"


class LoadBalancer(Generic[T]):
    """Hands each platform request to the replicas in turn, as a load balancer does: first to
    the replica `first` picks; when that one refuses the connection or answers other than
    200, after a short pause to the next, skipping the replicas in `down` (those its health
    check took out). `send(replica, request, attempt)` makes one try (attempt 0 is the
    first) and returns the HTTP status."""

    def __init__(
        self,
        replicas: list[ReplicaProcess],
        send: Callable[[ReplicaProcess, T, int], Awaitable[int]],
    ) -> None:
        self.replicas = replicas
        self._send = send
        self.down: set[int] = set()
        #: requests a replica took, and tries after a request's first
        self.taken = 0
        self.retries = 0

    async def post(self, request: T, first: int, name: str) -> None:
        count = len(self.replicas)
        for attempt in range(count * 20):
            target = self.replicas[(first + attempt) % count]
            if target.index in self.down:
                continue
            if attempt:
                self.retries += 1
            try:
                if await self._send(target, request, attempt) == 200:
                    self.taken += 1
                    return
            except aiohttp.ClientError:
                pass
            await asyncio.sleep(0.05)
        raise AssertionError(f"no replica took {name}")

    async def until_taken(self, count: int) -> None:
        while self.taken < count:
            await asyncio.sleep(0.05)


async def start_all(replicas: list[ReplicaProcess], http: aiohttp.ClientSession) -> None:
    """Start every replica at once and wait until each answers /health."""
    await asyncio.gather(*(r.start() for r in replicas))
    for r in replicas:
        deadline = time.monotonic() + 90
        while await r.health(http) is None:
            assert time.monotonic() < deadline, f"replica {r.index} did not start"
            await asyncio.sleep(0.2)


async def kill_once_its_turns_wait(
    victim: ReplicaProcess, llm: FakeLLM, http: aiohttp.ClientSession
) -> tuple[int, int]:
    """Hold the victim's model answers and SIGKILL it once each of its running turns waits
    for one: (index of the first model request made while held, turns killed waiting)."""
    key = victim.model_key
    llm.hold_only = lambda request: request.headers.get("Authorization") == key
    llm.hold.clear()
    held_from = len(llm.requests)
    kill_by = time.monotonic() + 60
    while True:
        waiting = sum(
            1
            for r in llm.requests[held_from:]
            if r.path == "/v1/chat/completions" and r.headers.get("Authorization") == key
        )
        if waiting and await victim.turns_running(http) == waiting:
            break
        assert time.monotonic() < kill_by, "the victim's turns did not reach the model"
        await asyncio.sleep(0.1)
    assert victim.proc is not None
    victim.proc.send_signal(signal.SIGKILL)
    await victim.proc.wait()
    return held_from, waiting


async def settle(replicas: list[ReplicaProcess], http: Any) -> None:
    """Once every answer is in: past a lease and a sweep (nothing may come twice), then until
    no live replica (one whose process runs) has anything queued. A replica may still be
    going through the wake-ups of sessions already run (each a lease round trip that finds
    nothing to do), longer on a busy machine; the answers are counted after it."""
    from tests.cluster.replicas import eventually

    await asyncio.sleep(4)

    async def drained() -> bool:
        live = [r for r in replicas if r.proc is not None and r.proc.returncode is None]
        reports = [await r.health(http) for r in live]
        return all(rep is not None and rep["queue_depth"] == 0 for rep in reports)

    await eventually(drained, 120, "every replica's queue empty")


async def stop_all(replicas: list[ReplicaProcess]) -> None:
    """SIGTERM to every replica still running, then a wait (SIGKILL after 30 s)."""
    for r in replicas:
        if r.proc is not None and r.proc.returncode is None:
            r.proc.send_signal(signal.SIGTERM)
    for r in replicas:
        if r.proc is not None and r.proc.returncode is None:
            try:
                await asyncio.wait_for(r.proc.wait(), 30)
            except TimeoutError:
                r.proc.kill()
        if r.stderr is not None:
            r.stderr.close()


#: of each replica's log on a failure: its last lines, and its warnings and errors before them
TAIL_LINES = 60
NOTABLE_LINES = 80


def log_tails(replicas: list[ReplicaProcess]) -> str:
    """Each replica's log as a failed run needs it: the warnings and errors (lost leases,
    failed renewals) and the last lines, then the end of its stderr."""
    out: list[str] = []
    for r in replicas:
        for name in ("decapod.log", "stderr.txt"):
            path = r.home / name
            if not path.exists():
                continue
            lines = path.read_text(errors="replace").splitlines()
            head, tail = lines[:-TAIL_LINES], lines[-TAIL_LINES:]
            notable = [x for x in head if "warning" in x.lower() or "error" in x.lower()][
                -NOTABLE_LINES:
            ]
            out.append(f"===== replica {r.index} {name}: {len(lines)} lines =====")
            if notable:
                out += ["-- its warnings and errors before the tail --", *notable, "-- tail --"]
            out += tail
    return "\n".join(out)


@contextlib.contextmanager
def logs_on_failure(replicas: list[ReplicaProcess]) -> Iterator[None]:
    """Print each replica's log tail when the block fails (pytest shows it with the failure),
    so a failure in CI can be read without running it again."""
    try:
        yield
    except BaseException:
        print(log_tails(replicas))
        raise
