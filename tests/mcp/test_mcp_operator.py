"""The operator's view: `decapod mcp list` and `test`, the doctor's MCP lines, and the audit
flagging servers that run on the host."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

import pytest

from bot.cli import main
from bot.config import load_config, parse_config
from bot.doctor import check_mcp
from bot.security.audit import audit
from tests.mcp.conftest import SERVER, START_S

CONFIG = f"""
[mcp.servers.t]
transport = "stdio"
command = {json.dumps(sys.executable)}
args = [{json.dumps(str(SERVER))}]
run_in_sandbox = false
env = ["MCP_TEST_STATE"]
startup_timeout_s = {START_S}
tools = ["echo", "fail"]

[mcp.servers.broken]
transport = "stdio"
command = "/nonexistent/mcp-server"
run_in_sandbox = false
startup_timeout_s = {START_S}

[mcp.servers.off]
transport = "http"
url = "http://127.0.0.1:9/mcp"
enabled = false
"""


def decapod(argv: list[str]) -> int:
    """The command run in-process; the test run's own logging stays as it set it."""
    return main(argv, configure_logging=False)


@pytest.fixture
def config_file(home: Path, state: Path) -> Path:
    home.mkdir(parents=True, exist_ok=True)
    path = home / "config.toml"
    path.write_text(CONFIG)
    return path


def test_mcp_list_starts_each_server_and_shows_state_and_tools(
    config_file: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code = decapod(["--config", str(config_file), "mcp", "list"])
    lines = capsys.readouterr().out.splitlines()
    assert code == 1  # one server failed
    assert lines[0].split()[:2] == ["t", "ready"] and "stdio, host process" in lines[0]
    assert [line.split()[0] for line in lines[1:3]] == ["t__echo", "t__fail"]
    broken = next(line for line in lines if line.startswith("broken"))
    assert broken.split()[1] == "FAIL" and "/nonexistent/mcp-server" in broken
    assert next(line for line in lines if line.startswith("off")).split() == ["off", "disabled"]


def test_mcp_test_calls_one_tool(config_file: Path, capsys: pytest.CaptureFixture[str]) -> None:
    args = ["--config", str(config_file), "mcp", "test", "t"]
    assert decapod([*args, "--call", "echo", "--args", '{"text": "hi", "times": 2}']) == 0
    out = capsys.readouterr().out.splitlines()
    assert out[0].startswith("t: ready: ") and out[-1] == "hihi"
    assert decapod([*args, "--call", "t__fail", "--args", '{"reason": "nope"}']) == 1
    assert capsys.readouterr().out.splitlines()[-1] == "error: Error executing tool fail: nope"
    # refused by the server with a JSON-RPC error: the server works, the call did not
    refusal = json.dumps({"code": -32602, "message": "no such page"})
    assert decapod([*args, "--call", "reject", "--args", refusal]) == 1
    out = capsys.readouterr().out.splitlines()
    assert out[0].startswith("t: ready: ") and out[-1] == "error: t refused the call: no such page"
    assert decapod([*args, "--call", "echo", "--args", "[1]"]) == 2
    assert decapod(["--config", str(config_file), "mcp", "test", "nosuch"]) == 2


async def test_doctor_shows_each_server(config_file: Path, home: Path) -> None:
    checks = {
        what: (ok, detail) for what, ok, detail in await check_mcp(load_config(config_file, home))
    }
    assert checks["mcp t"] == (True, "2 tools, stdio, host process")
    assert checks["mcp broken"][0] is False and "/nonexistent/mcp-server" in checks["mcp broken"][1]
    assert checks["mcp off"] == (True, "disabled")


def _servers(**servers: Any) -> Any:
    return parse_config({"mcp": {"servers": servers}})


def test_audit_flags_servers_on_the_host() -> None:
    stdio = {"transport": "stdio", "command": "x"}
    config = _servers(
        boxed=stdio,
        host={**stdio, "run_in_sandbox": False},
        shared={**stdio, "run_in_sandbox": False, "roles": ["owner", "user"]},
        idle={**stdio, "run_in_sandbox": False, "enabled": False},
        plain={"transport": "http", "url": "http://mcp.example.com/mcp", "headers_env": {"A": "B"}},
        local={"transport": "http", "url": "http://127.0.0.1:1/mcp", "headers_env": {"A": "B"}},
    )
    found = {f.what.split()[0]: f.risk for f in audit(config) if f.what.startswith("mcp.")}
    assert found == {
        "mcp.servers.host": "medium",
        "mcp.servers.shared": "high",
        "mcp.servers.plain": "medium",
    }
