"""Servers that cannot start for a reason no restart fixes: they stay down, say why, tell the
owner once, and a sandboxed one never runs outside the sandbox."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from tests.mcp.conftest import running, stdio_entry, until


async def _failed(gateway_config: Any, entry: dict[str, Any]) -> tuple[str, list[str], list[str]]:
    async with running(gateway_config({"x": entry})) as (gw, channel):
        assert gw.mcp is not None
        await until(lambda: gw.mcp is not None and gw.mcp.states()[0][1] == "failed")
        [(_, _, detail)] = gw.mcp.states()
        notices = await channel.wait_for_messages(1, chat_id="owner", timeout=30)
        tools = [n for n in gw.tools.names() if n.startswith("x__")]
    return detail, notices, tools


async def test_an_unset_variable_keeps_the_server_down_and_names_the_key(
    gateway_config: Any, state: Path
) -> None:
    entry = stdio_entry(env=["MCP_TEST_STATE", "MCP_UNSET_TOKEN"])
    detail, notices, tools = await _failed(gateway_config, entry)
    assert detail == "mcp.servers.x.env: environment variable MCP_UNSET_TOKEN is not set"
    assert notices == [f"MCP server x cannot start: {detail}. It stays off until fixed."]
    assert tools == [] and not (state / "pid").exists()


async def test_a_sandboxed_server_without_a_sandbox_never_runs_on_the_host(
    gateway_config: Any, state: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import bot.sandbox.local as local

    real_which = local.shutil.which
    monkeypatch.setattr(
        local.shutil, "which", lambda name, *a, **k: None if name == "bwrap" else real_which(name)
    )
    entry = stdio_entry(run_in_sandbox=True)
    detail, notices, tools = await _failed(gateway_config, entry)
    assert detail.startswith("run_in_sandbox = true, but the sandbox cannot run here: bwrap")
    assert len(notices) == 1 and tools == []
    assert not (state / "pid").exists()  # the server never started anywhere
