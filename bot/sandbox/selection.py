"""Choose the sandbox backend once, at start: docker → bwrap → (host, if allowed) → none."""

from __future__ import annotations

import logging
import os
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path

from bot.errors import SandboxError
from bot.sandbox.base import SandboxBackend
from bot.sandbox.config import SandboxConfig
from bot.sandbox.docker_backend import DockerBackend
from bot.sandbox.enforcement import Enforcement, refusal
from bot.sandbox.local import BwrapBackend, HostBackend
from bot.sandbox.quota import WorkspaceQuota
from bot.sandbox.workspace import WorkspaceManager

log = logging.getLogger("decapod.sandbox")

_DAY_S = 86400.0

Starter = Callable[[SandboxConfig, WorkspaceManager], Awaitable[SandboxBackend]]


def workspace_manager(
    config: SandboxConfig, home: Path, ro_mounts: dict[str, Path] | None = None
) -> WorkspaceManager:
    """The session workspaces under `<home>/sandboxes`, owned by the sandbox uid when root.

    File tools need this even when no backend can run commands.
    """
    owner = (config.uid, config.gid) if os.geteuid() == 0 else None
    quota = WorkspaceQuota(
        config.workspace_quota_mb << 20,
        config.workspace_max_files,
        repair_access=os.geteuid() != 0,
    )
    return WorkspaceManager(home / "sandboxes", owner=owner, quota=quota, ro_mounts=ro_mounts)


@dataclass(frozen=True, slots=True)
class Selection:
    backend: SandboxBackend | None
    #: for the start-up log and `decapod doctor`: what runs commands, or why nothing does
    line: str
    #: what the chosen backend (or the last one refused for its limits) enforces
    enforcement: Enforcement | None


async def select_backend(
    config: SandboxConfig, home: Path, ro_mounts: dict[str, Path] | None = None
) -> tuple[SandboxBackend | None, str]:
    """The backend to run commands with, or None; and a line saying what and why."""
    selection = await choose_backend(config, home, ro_mounts)
    return selection.backend, selection.line


async def choose_backend(
    config: SandboxConfig, home: Path, ro_mounts: dict[str, Path] | None = None
) -> Selection:
    """Pick the backend, once, at start.

    An explicit `backend = "docker"` or `"bwrap"` never falls back to the other one: when
    the chosen sandbox is unavailable, exec is disabled rather than run somewhere unexpected.
    Host execution is used only with `allow_host_exec = true`, and only when `backend` is
    "auto" or "none". A backend that cannot enforce every limit is passed over unless
    `allow_unenforced_limits = true`.
    """
    workspaces = workspace_manager(config, home, ro_mounts)
    pruned = workspaces.prune(config.workspace_max_age_days * _DAY_S)
    if pruned:
        log.info(
            "removed %d sandbox workspaces unused for %g days",
            len(pruned),
            config.workspace_max_age_days,
        )

    starters: list[tuple[str, Starter]] = []
    if config.backend in ("auto", "docker"):
        starters.append(("docker", DockerBackend.start))
    if config.backend in ("auto", "bwrap"):
        starters.append(("bwrap", BwrapBackend.start))
    reasons: list[str] = []
    if config.backend == "none":
        reasons.append("sandbox.backend is none")
    if config.allow_host_exec and config.backend in ("auto", "none"):
        starters.append(("host", HostBackend.start))
    refused: Enforcement | None = None
    for name, start in starters:
        try:
            backend = await start(config, workspaces)
        except SandboxError as exc:
            reasons.append(f"{name}: {exc}")
            continue
        enforcement = backend.enforcement
        if enforcement.missing and not config.allow_unenforced_limits:
            reasons.append(f"{name}: {refusal(name, enforcement)}")
            refused = enforcement
            await backend.aclose()
            continue
        line = backend.describe()
        if enforcement.missing:
            line += " (allowed by sandbox.allow_unenforced_limits)"
            log.warning("sandbox: %s runs commands with limits it cannot enforce", name)
        if name == "host":
            log.warning("sandbox: running commands on the host (allow_host_exec = true)")
        if reasons:
            line += f" (not used: {'; '.join(reasons)})"
        log.info("sandbox: %s", line)
        return Selection(backend, line, enforcement)
    reason = "exec tools disabled: " + "; ".join(reasons)
    log.warning("sandbox: %s", reason)
    return Selection(None, reason, refused)
