"""S16: a stdio MCP server sees only the variables its entry names (on the host and in the
sandbox, where the gateway's home is out of reach too), and one that never answers times out
in the background without delaying the gateway, its tools never offered."""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import mcp
import pytest

from tests.fakes.llm import FakeLLM, Reply
from tests.mcp.conftest import SERVER, START_S, alive, running, stdio_entry, until

_SDK_LOGIN_VARIABLES = {"USER", "LOGNAME", "SHELL", "TERM"}


def _sandboxed(**extra: Any) -> dict[str, Any]:
    """The SDK test server on the system's Python, the SDK's packages bound read-only (the
    test sets PYTHONPATH=/opt/site)."""
    site = Path(mcp.__file__).resolve().parents[1]
    return {
        "transport": "stdio",
        "command": "/usr/bin/python3",
        "args": ["/opt/srv/" + SERVER.name],
        "env": ["PYTHONPATH"],
        "ro_binds": [f"{site}:/opt/site", f"{SERVER.parent}:/opt/srv"],
        "startup_timeout_s": START_S,
        **extra,
    }


async def test_s16_a_host_server_sees_only_the_variables_its_entry_names(
    gateway_config: Any, state: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("GATEWAY_ONLY_SECRET", "never-for-servers-0123456789")
    for name in _SDK_LOGIN_VARIABLES:
        monkeypatch.setenv(name, "from-the-gateway")
    config = gateway_config({"t": stdio_entry()})
    async with running(config, "t") as (gw, _):
        assert gw.mcp is not None
        result = await gw.mcp.connections["t"].call("environment", {})
    seen = json.loads(result.content[0].text)  # type: ignore[union-attr]
    assert set(seen) == {"PATH", "HOME", "LANG", "TZ", "MCP_TEST_STATE"}
    assert seen["HOME"] == str(config.home / "mcp" / "t")
    assert seen["PATH"] == "/usr/local/bin:/usr/bin:/bin"


@pytest.mark.skipif(shutil.which("bwrap") is None, reason="bubblewrap is not installed")
async def test_s16_a_sandboxed_server_sees_its_variables_and_folder_and_not_the_home(
    gateway_config: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("PYTHONPATH", "/opt/site")
    monkeypatch.setenv("GATEWAY_ONLY_SECRET", "never-for-servers-0123456789")
    config = gateway_config({"s": _sandboxed()})
    async with running(config, "s") as (gw, _):
        assert gw.mcp is not None
        conn = gw.mcp.connections["s"]
        env = json.loads((await conn.call("environment", {})).content[0].text)  # type: ignore[union-attr]
        home_db = (await conn.call("peek", {"path": str(config.db_path)})).content[0].text  # type: ignore[union-attr]
        work = (await conn.call("peek", {"path": "/work"})).content[0].text  # type: ignore[union-attr]
        (config.home / "mcp" / "s" / "note.txt").write_text("mine")
        work_after = (await conn.call("peek", {"path": "/work"})).content[0].text  # type: ignore[union-attr]
        nproc = (await conn.call("max_processes", {})).content[0].text  # type: ignore[union-attr]
        [(_, state, detail)] = gw.mcp.states()
    assert config.db_path.exists() and home_db.startswith("cannot read")
    # bwrap sets PWD to the folder it changed into
    assert set(env) == {"PATH", "HOME", "LANG", "TZ", "PYTHONPATH", "PWD"}
    assert env["HOME"] == env["PWD"] == "/work"
    assert work == "listed: " and work_after == "listed: note.txt"
    # no cgroup holds a server: RLIMIT_NPROC, set inside its user namespace, bounds its processes
    assert nproc == str(config.sandbox.limits.pids)
    assert state == "ready" and "stdio, sandboxed (bwrap)" in detail


@pytest.mark.skipif(shutil.which("bwrap") is None, reason="bubblewrap is not installed")
async def test_s16_a_sandboxed_server_reaches_the_network_only_when_allowed(
    gateway_config: Any, fake: FakeLLM, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("PYTHONPATH", "/opt/site")
    offline, online = _sandboxed(), _sandboxed(network=True)
    async with running(gateway_config({"off": offline, "on": online}), "off", "on") as (gw, _):
        assert gw.mcp is not None
        port = {"port": fake.port}  # listening on the host's loopback
        refused = await gw.mcp.connections["off"].call("connect", port)
        reached = await gw.mcp.connections["on"].call("connect", port)
    assert refused.content[0].text.startswith("cannot connect")  # type: ignore[union-attr]
    assert reached.content[0].text == "connected"  # type: ignore[union-attr]


async def test_s16_a_server_that_never_answers_initialize_does_not_delay_the_gateway(
    gateway_config: Any, fake: FakeLLM, state: Path
) -> None:
    fake.push(Reply(text="I am here."))
    hung = stdio_entry(args=[stdio_entry()["args"][0], "--hang"], startup_timeout_s=20)
    async with running(gateway_config({"hung": hung})) as (gw, channel):
        assert gw.mcp is not None
        # the gateway answers while the server is still starting
        await channel.push("hello", user="owner")
        assert await channel.wait_for_messages(1, timeout=30) == ["I am here."]
        await until(lambda: (state / "pid").exists())
        pid = int((state / "pid").read_text())
        [(_, first_state, _)] = gw.mcp.states()
        await until(lambda: gw.mcp is not None and gw.mcp.states()[0][1] == "restarting")
        [(_, _, detail)] = gw.mcp.states()
        await until(lambda: not alive(pid))
        notices = await channel.wait_for_messages(2, chat_id="owner", timeout=30)
    assert first_state == "starting"
    assert "no tools listed within 20 s" in detail
    assert notices[-1].startswith("MCP server hung is down: no tools listed")
    assert not [n for n in gw.tools.names() if n.startswith("hung__")]
