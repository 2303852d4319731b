"""Choose the sandbox backend once, at start: docker → bwrap → (host, if allowed) → none."""

from __future__ import annotations

import logging
import os
from pathlib import Path

from bot.errors import SandboxError
from bot.sandbox.base import SandboxBackend
from bot.sandbox.config import SandboxConfig
from bot.sandbox.docker_backend import DockerBackend
from bot.sandbox.local import BwrapBackend, HostBackend
from bot.sandbox.workspace import WorkspaceManager

log = logging.getLogger("decapod.sandbox")

_DAY_S = 86400.0


def workspace_manager(
    config: SandboxConfig, home: Path, ro_mounts: dict[str, Path] | None = None
) -> WorkspaceManager:
    """The session workspaces under `<home>/sandboxes`, owned by the sandbox uid when root.

    File tools need this even when no backend can run commands.
    """
    owner = (config.uid, config.gid) if os.geteuid() == 0 else None
    return WorkspaceManager(home / "sandboxes", owner=owner, ro_mounts=ro_mounts)


async def select_backend(
    config: SandboxConfig, home: Path, ro_mounts: dict[str, Path] | None = None
) -> tuple[SandboxBackend | None, str]:
    """The backend to run commands with, or None; and a line saying what and why.

    An explicit `backend = "docker"` or `"bwrap"` never falls back to the other one: when
    the chosen sandbox is unavailable, exec is disabled rather than run somewhere unexpected.
    Host execution is used only with `allow_host_exec = true`, and only when `backend` is
    "auto" or "none".
    """
    workspaces = workspace_manager(config, home, ro_mounts)
    pruned = workspaces.prune(config.workspace_max_age_days * _DAY_S)
    if pruned:
        log.info(
            "removed %d sandbox workspaces unused for %g days",
            len(pruned),
            config.workspace_max_age_days,
        )

    reasons: list[str] = []
    if config.backend in ("auto", "docker"):
        try:
            docker = await DockerBackend.start(config, workspaces)
        except SandboxError as exc:
            reasons.append(f"docker: {exc}")
        else:
            return _chosen(docker, docker.describe())
    if config.backend in ("auto", "bwrap"):
        try:
            bwrap = await BwrapBackend.start(config, workspaces)
        except SandboxError as exc:
            reasons.append(f"bwrap: {exc}")
        else:
            return _chosen(bwrap, _noting(bwrap.describe(), reasons))
    if config.backend == "none":
        reasons.append("sandbox.backend is none")
    if config.allow_host_exec and config.backend in ("auto", "none"):
        try:
            host = await HostBackend.start(config, workspaces)
        except SandboxError as exc:
            reasons.append(f"host: {exc}")
        else:
            log.warning("sandbox: running commands on the host (allow_host_exec = true)")
            return _chosen(host, _noting(host.describe(), reasons))
    reason = "exec tools disabled: " + "; ".join(reasons)
    log.warning("sandbox: %s", reason)
    return None, reason


def _noting(description: str, reasons: list[str]) -> str:
    return f"{description} (not used: {'; '.join(reasons)})" if reasons else description


def _chosen(backend: SandboxBackend, description: str) -> tuple[SandboxBackend, str]:
    log.info("sandbox: %s", description)
    return backend, description
