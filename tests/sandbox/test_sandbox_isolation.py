"""S8–S12: the sandbox holds, on every backend (see RELIABILITY_SECURITY.md)."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import time
import uuid
from pathlib import Path

import pytest
from conftest import (
    TEST_LIMITS,
    docker_client,
    host_pids_matching,
    pgrep_count,
    run_py,
    run_sh,
)

from bot.errors import SandboxError
from bot.sandbox import SandboxBackend
from bot.sandbox.tools import format_result

ALLOWED_ENV = {"PATH", "HOME", "LANG", "TZ", "HOSTNAME", "PWD"}  # docker: HOSTNAME; bwrap: PWD
#: long enough for a container and three processes to start on a loaded machine
S12_TIMEOUT_S = 5.0


async def test_s8_sandbox_network_blocked(backend: SandboxBackend) -> None:
    hits: list[str] = []

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        hits.append("connection")
        writer.close()

    server = await asyncio.start_server(handle, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    code = f"""
import socket
def attempt(name, fn):
    try:
        fn()
        print(name, "CONNECTED")
    except OSError as exc:
        print(name, "blocked:", type(exc).__name__, exc)
attempt("internet", lambda: socket.create_connection(("1.1.1.1", 80), timeout=3))
attempt("gateway", lambda: socket.create_connection(("127.0.0.1", {port}), timeout=3))
attempt("dns", lambda: socket.getaddrinfo("example.com", 80))
"""
    try:
        result = await run_py(backend, "s8", code)
    finally:
        server.close()
        await server.wait_closed()
    out = result.stdout.decode()
    assert result.exit_code == 0, result
    for name in ("internet", "gateway", "dns"):
        assert f"{name} blocked:" in out, out
    assert "CONNECTED" not in out
    assert hits == [], "the gateway saw a connection from inside the sandbox"


async def test_s9_sandbox_fs_and_cross_session_isolation(
    backend: SandboxBackend, home: Path
) -> None:
    wrote = await run_sh(backend, "session-a", "echo secret-a > /work/a.txt")
    assert wrote.exit_code == 0, wrote
    ws_a = (await backend.prepare("session-a")).path
    assert (ws_a / "a.txt").read_text() == "secret-a\n"

    marker = f"s9-{uuid.uuid4().hex}"
    host_proc = subprocess.Popen(["python3", "-c", "import time; time.sleep(60)", marker])
    a_busy = asyncio.create_task(
        run_py(backend, "session-a", f"import time; time.sleep(60)  # {marker}-a", timeout=60)
    )
    try:
        code = f"""
import json, os
def readable(path):
    try:
        with open(path, "rb") as f:
            return f.read().decode(errors="replace")
    except OSError:
        return None
def writable(path):
    try:
        with open(path, "w") as f:
            f.write("x")
        return True
    except OSError:
        return False
procs = []
for pid in os.listdir("/proc"):
    if pid.isdigit():
        cmd = readable(f"/proc/{{pid}}/cmdline")
        procs.append(cmd or "")
print(json.dumps({{
    "work": sorted(os.listdir("/work")),
    "a_by_host_path": readable({str(ws_a / "a.txt")!r}),
    "home_visible": os.path.exists({str(home)!r}),
    "ssh_visible": os.path.exists({os.path.expanduser("~/.ssh")!r}),
    "environ_1": readable("/proc/1/environ"),
    "write_usr": writable("/usr/x"),
    "write_root": writable("/x"),
    "write_etc": writable("/etc/x"),
    "write_tmp": writable("/tmp/x"),
    "write_work": writable("/work/b.txt"),
    "procs": procs,
}}))
"""
        for _ in range(100):  # wait until A's sleeper runs, so B could see it if it leaked
            if host_pids_matching(f"{marker}-a"):
                break
            await asyncio.sleep(0.05)
        assert host_pids_matching(f"{marker}-a"), "session A's process never started"
        result = await run_py(backend, "session-b", code)
    finally:
        a_busy.cancel()
        await asyncio.gather(a_busy, return_exceptions=True)
        host_proc.kill()
        host_proc.wait()
    assert result.exit_code == 0, result
    seen = json.loads(result.stdout)
    assert seen["work"] == [], seen["work"]  # listed before B wrote anything
    assert seen["a_by_host_path"] is None
    assert not seen["home_visible"]
    assert not seen["ssh_visible"]
    assert "FAKE" not in (seen["environ_1"] or "")
    assert not seen["write_usr"] and not seen["write_root"] and not seen["write_etc"]
    assert seen["write_tmp"] and seen["write_work"]
    assert not any(marker in cmd for cmd in seen["procs"]), seen["procs"]
    assert len(seen["procs"]) <= 3, seen["procs"]  # bwrap's pid 1 or tini, and python
    assert not (ws_a / "b.txt").exists()
    assert host_pids_matching(f"{marker}-a") == [], "cancelling A's command left it running"


async def test_s10_sandbox_env_and_privileges(
    backend: SandboxBackend, monkeypatch: pytest.MonkeyPatch
) -> None:
    secret = f"sk-fake-{uuid.uuid4().hex}"
    monkeypatch.setenv("FAKE_API_KEY", secret)
    code = """
import json, os, subprocess
status = dict(line.split(":", 1) for line in open("/proc/self/status").read().splitlines())
def rc(argv):
    return subprocess.run(argv, capture_output=True).returncode
try:
    os.setuid(0)
    setuid = "succeeded"
except OSError as exc:
    setuid = type(exc).__name__
print(json.dumps({
    "env": dict(os.environ),
    "cap_eff": status["CapEff"].strip(),
    "no_new_privs": status["NoNewPrivs"].strip(),
    "uid": os.getuid(),
    "mount": rc(["mount", "-t", "tmpfs", "none", "/tmp"]),
    "nested_userns_mount": rc(["unshare", "-rm", "mount", "-t", "tmpfs", "none", "/tmp"]),
    "setuid": setuid,
}))
"""
    result = await run_py(backend, "s10", code)
    assert result.exit_code == 0, result
    assert secret.encode() not in result.stdout + result.stderr
    seen = json.loads(result.stdout)
    assert set(seen["env"]) <= ALLOWED_ENV, seen["env"]
    assert seen["env"]["HOME"] == "/work"
    assert seen["cap_eff"] == "0000000000000000"
    assert seen["no_new_privs"] == "1"
    assert seen["uid"] != 0
    assert seen["mount"] != 0 and seen["nested_userns_mount"] != 0
    assert seen["setuid"] != "succeeded"  # EPERM, or EINVAL where uid 0 is not mapped

    # Seen from the host, the sandboxed processes do not run as root (RLIMIT_NPROC applies).
    marker = f"s10-{uuid.uuid4().hex}"
    sleeper = asyncio.create_task(
        run_py(backend, "s10", f"import time; time.sleep(30)  # {marker}", timeout=30)
    )
    try:
        # Wait for the command itself: until the launcher has exec'd past its root-owned
        # first steps, its command line carries the marker too.
        pids: list[int] = []
        for _ in range(200):
            pids = host_pids_matching(marker)
            if any(_cmdline(pid).startswith(b"python3\0") for pid in pids):
                break
            await asyncio.sleep(0.05)
        assert pids, "the sandboxed process never showed up on the host"
        for pid in pids:
            uid_line = next(
                line
                for line in Path(f"/proc/{pid}/status").read_text().splitlines()
                if line.startswith("Uid:")
            )
            real, effective = (int(v) for v in uid_line.split()[1:3])
            assert real != 0 and effective != 0, uid_line
    finally:
        sleeper.cancel()
        await asyncio.gather(sleeper, return_exceptions=True)


def _cmdline(pid: int) -> bytes:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return b""


async def test_s11_sandbox_resource_limits(backend: SandboxBackend) -> None:
    memory = await run_py(backend, "s11", "b = b'x' * (1 << 30)\nprint('allocated')")
    assert b"allocated" not in memory.stdout
    assert b"MemoryError" in memory.stderr or "memory" in (memory.killed_reason or ""), memory

    forks = await run_py(
        backend,
        "s11",
        """
import os, time
n = 0
try:
    for _ in range(200):
        if os.fork() == 0:
            time.sleep(5)
            os._exit(0)
        n += 1
except OSError as exc:
    print("fork failed after", n, exc.errno)
else:
    print("forked", n)
""",
    )
    words = forks.stdout.decode().split()
    assert words[:3] == ["fork", "failed", "after"], forks
    assert int(words[3]) < TEST_LIMITS.pids

    start = time.monotonic()
    cpu = await run_py(backend, "s11", "while True: pass")
    assert not cpu.timed_out and time.monotonic() - start < 10
    assert cpu.exit_code in (128 + 9, 128 + 24), cpu  # SIGKILL or SIGXCPU

    big = await run_py(
        backend,
        "s11",
        "f = open('/work/big', 'wb')\nfor _ in range(200): f.write(b'x' * (1 << 20))",
    )
    assert big.exit_code != 0
    assert b"File too large" in big.stderr or big.exit_code == 128 + 25, big
    assert (await backend.prepare("s11")).path.joinpath("big").stat().st_size <= 10 << 20

    flood = await run_sh(backend, "s11", "head -c 100000000 /dev/zero")
    assert flood.exit_code == 0
    assert flood.truncated_stdout and len(flood.stdout) == TEST_LIMITS.output_bytes
    assert "[... stdout truncated" in format_result(flood)


async def test_s12_sandbox_timeout_kills_process_tree(backend: SandboxBackend) -> None:
    marker = f"s12-{uuid.uuid4().hex}"
    sleep = "python3 -c 'import time; time.sleep(300)'"
    script = f"""
setsid nohup {sleep} {marker}-setsid >/dev/null 2>&1 &
( ( nohup {sleep} {marker}-double >/dev/null 2>&1 & ) & )
{sleep} {marker}-main
"""
    start = time.monotonic()
    task = asyncio.create_task(run_sh(backend, "s12", script, timeout=S12_TIMEOUT_S))
    while pgrep_count(marker) < 3 and not task.done():  # the whole tree must really run
        await asyncio.sleep(0.05)
    assert pgrep_count(marker) >= 3, "the process tree never started before the timeout"
    result = await task
    elapsed = time.monotonic() - start
    # Order, not speed: the tree ran, the timeout fired no earlier than it was due, and
    # afterwards nothing of the tree is left. A busy machine only makes the kill later.
    assert result.timed_out and "timeout" in (result.killed_reason or ""), result
    assert S12_TIMEOUT_S <= elapsed < S12_TIMEOUT_S + 60, elapsed
    assert pgrep_count(marker) == 0
    if backend.name == "docker":
        session = backend.workspaces.hash_for("s12")
        client = docker_client()
        try:
            label = f"decapod.session={session}"
            assert client.api.containers(all=True, filters={"label": label}) == []
        finally:
            client.close()
    after = await run_sh(backend, "s12", "echo ok > /work/after && cat /work/after")
    assert after.exit_code == 0 and after.stdout == b"ok\n"


async def test_event_loop_stays_responsive_while_sandbox_burns_cpu(
    backend: SandboxBackend,
) -> None:
    burner = asyncio.create_task(run_py(backend, "burn", "while True: pass", timeout=5))
    await asyncio.sleep(0.3)
    gaps: list[float] = []

    async def tick() -> None:
        last = time.monotonic()
        while not burner.done():
            await asyncio.sleep(0.01)
            now = time.monotonic()
            gaps.append(now - last)
            last = now

    ticker = asyncio.create_task(tick())
    echo = await backend.exec("echo", ["echo", "hi"], stdin=None, limits=TEST_LIMITS, timeout=5)
    echo_while_burning = not burner.done()
    burned = await burner
    await ticker
    # Order, not speed: the echo ran while the burner still burned (5 s), and the loop kept
    # ticking; the gap bound is loose for a busy machine, a blocked loop stalls for seconds.
    assert echo.stdout == b"hi\n" and echo_while_burning, echo
    assert burned.timed_out or burned.killed_reason, burned
    assert len(gaps) > 20 and max(gaps) < 1.0, max(gaps)


async def test_stdin_reaches_the_command(backend: SandboxBackend) -> None:
    result = await run_sh(backend, "stdin", "tr a-z A-Z", stdin=b"hello\n")
    assert result.exit_code == 0 and result.stdout == b"HELLO\n"
    # A command that never reads a large stdin must not stall the call.
    ignored = await run_sh(backend, "stdin", "echo done", stdin=os.urandom(1 << 20))
    assert ignored.stdout == b"done\n" and ignored.duration_s < 5, ignored


async def test_closing_the_backend_stops_running_commands(backend: SandboxBackend) -> None:
    marker = f"close-{uuid.uuid4().hex}"
    running = asyncio.create_task(
        run_py(backend, "closing", f"import time; time.sleep(60)  # {marker}", timeout=60)
    )
    for _ in range(100):
        if host_pids_matching(marker):
            break
        await asyncio.sleep(0.05)
    assert host_pids_matching(marker), "the command never started"
    await backend.aclose()
    with pytest.raises(SandboxError, match="shut down while the command ran"):
        await running
    assert host_pids_matching(marker) == []
    with pytest.raises(SandboxError, match="shut down"):
        await run_sh(backend, "closing", "true")
