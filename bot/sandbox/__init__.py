"""Sandboxed command execution and workspace files, one workspace per session.

    backend, why = await select_backend(config.sandbox, home)   # docker → bwrap → none
    workspaces = workspace_manager(config.sandbox, home)
    deps = dataclasses.replace(deps, sandbox=SandboxDeps(config.sandbox, workspaces, backend))
    registry = ToolRegistry([*sandbox_tools(), ...]); policy = SandboxToolPolicy(config.sandbox)

Importing this package does not import the docker SDK; only starting the docker backend does.
"""

from __future__ import annotations

from bot.sandbox.approval import ApprovalBroker, InMemoryApprovalBroker, PendingApproval
from bot.sandbox.base import ExecResult, Limits, SandboxBackend, Workspace
from bot.sandbox.config import SandboxConfig, SandboxLimits
from bot.sandbox.policy import SandboxToolPolicy
from bot.sandbox.selection import Selection, choose_backend, select_backend, workspace_manager
from bot.sandbox.tools import sandbox_tools
from bot.sandbox.workspace import WorkspaceInfo, WorkspaceManager

__all__ = [
    "ApprovalBroker",
    "ExecResult",
    "InMemoryApprovalBroker",
    "Limits",
    "PendingApproval",
    "SandboxBackend",
    "SandboxConfig",
    "SandboxLimits",
    "SandboxToolPolicy",
    "Selection",
    "Workspace",
    "WorkspaceInfo",
    "WorkspaceManager",
    "choose_backend",
    "sandbox_tools",
    "select_backend",
    "workspace_manager",
]
