"""Who is offered which sandbox tool (owner DM / user / group / host exec)."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import pytest
from conftest import make_ctx

from bot.providers.base import ToolCall
from bot.sandbox import SandboxConfig, SandboxToolPolicy, sandbox_tools, workspace_manager
from bot.tools import ToolRegistry, tool


@dataclass
class NamedBackend:
    """Only the name matters to the policy."""

    name: str


FS = {"read_file", "write_file", "list_files", "edit_file"}
ALL = FS | {"exec"}


def offered(config: SandboxConfig, backend: object, **ctx_kw: object) -> set[str]:
    registry = ToolRegistry(sandbox_tools())
    ctx = make_ctx(sandbox=backend, **ctx_kw)  # type: ignore[arg-type]
    return {t.name for t in registry.available(ctx, SandboxToolPolicy(config))}


@pytest.mark.parametrize(
    ("flags", "role", "group", "expected"),
    [
        ({}, "owner", False, ALL),
        ({}, "owner", True, FS),
        ({"exec_in_groups": True}, "owner", True, ALL),
        ({}, "user", False, FS),
        ({}, "operator", False, FS),
        ({"exec_for_users": True}, "user", False, ALL),
        ({"exec_for_users": True}, "user", True, FS),
        ({"exec_in_groups": True}, "user", True, FS),
        ({"exec_for_users": True, "exec_in_groups": True}, "user", True, ALL),
    ],
)
def test_policy_matrix(flags: dict[str, bool], role: str, group: bool, expected: set[str]) -> None:
    config = SandboxConfig(**flags)  # type: ignore[arg-type]
    assert offered(config, NamedBackend("bwrap"), role=role, group=group) == expected


@pytest.mark.parametrize(
    ("role", "group", "expected"),
    [("owner", False, ALL), ("owner", True, FS), ("user", False, FS), ("user", True, FS)],
)
def test_host_exec_only_for_the_owner_in_a_dm(role: str, group: bool, expected: set[str]) -> None:
    config = SandboxConfig(allow_host_exec=True, exec_for_users=True, exec_in_groups=True)
    assert offered(config, NamedBackend("host"), role=role, group=group) == expected
    # host exec without the setting is offered to nobody
    assert "exec" not in offered(SandboxConfig(), NamedBackend("host"), role="owner")


def test_without_a_backend_only_file_tools_remain(home: Path) -> None:
    config = SandboxConfig()
    assert offered(config, None, role="owner") == set()
    with_workspaces = offered(
        config, None, role="owner", workspaces=workspace_manager(config, home)
    )
    assert with_workspaces == FS


def test_untagged_tools_keep_the_default_policy() -> None:
    async def ping(ctx: object) -> str:
        """Answer pong."""
        return "pong"

    policy = SandboxToolPolicy(SandboxConfig())
    assert policy.allows(tool(ping), make_ctx(role="user", group=True))


async def test_exec_tool_enforces_the_policy_itself(home: Path) -> None:
    """Even called without a policy, exec refuses people the policy would refuse."""
    registry = ToolRegistry(sandbox_tools())
    for kw in ({"role": "user"}, {"role": "owner", "group": True}):
        ctx = make_ctx(sandbox=NamedBackend("bwrap"), **kw)  # type: ignore[arg-type]
        result = await registry.call(ToolCall("c", "exec", json.dumps({"command": "id"})), ctx)
        assert not result.ok and result.content.startswith("error: not run:"), result
    host = make_ctx(sandbox=NamedBackend("host"), role="user")
    result = await registry.call(ToolCall("c", "exec", json.dumps({"command": "id"})), host)
    assert not result.ok and "only the owner" in result.content
    missing = make_ctx(role="owner")
    result = await registry.call(ToolCall("c", "exec", json.dumps({"command": "id"})), missing)
    assert not result.ok and "no sandbox is available" in result.content
