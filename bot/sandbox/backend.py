"""What every backend does around a command: the session workspace, its quota, and
stopping the running commands on close. A backend adds `_run`, `describe` and
`enforcement`."""

from __future__ import annotations

import asyncio
import logging
from abc import ABC, abstractmethod
from dataclasses import replace

from bot.errors import SandboxError
from bot.sandbox.base import ExecResult, InflightCommands, Limits, Watchdog, Workspace
from bot.sandbox.enforcement import Enforcement
from bot.sandbox.quota import Snapshot, WorkspaceQuota
from bot.sandbox.workspace import WorkspaceManager

log = logging.getLogger("decapod.sandbox")


class CommandBackend(ABC):
    name = "backend"

    def __init__(self, workspaces: WorkspaceManager) -> None:
        if workspaces.quota is None:
            raise SandboxError("the workspaces have no quota; commands cannot run without one")
        self.workspaces = workspaces
        self.quota: WorkspaceQuota = workspaces.quota
        self.quota.find_tool  # noqa: B018 (raises now, at start, when find is missing)
        self._inflight = InflightCommands()

    @property
    @abstractmethod
    def enforcement(self) -> Enforcement:
        """Which limits this backend enforces here, and which it cannot."""

    @abstractmethod
    def describe(self) -> str:
        """One line for the start-up log and `decapod doctor`."""

    @abstractmethod
    async def _run(
        self,
        ws: Workspace,
        argv: list[str],
        stdin: bytes | None,
        limits: Limits,
        wall_s: float,
        watchdog: Watchdog,
    ) -> ExecResult:
        """Run one command; stop it (the whole tree) when `watchdog` returns."""

    async def prepare(self, session_key: str) -> Workspace:
        return self.workspaces.prepare(session_key)

    async def exec(
        self,
        session_key: str,
        argv: list[str],
        *,
        stdin: bytes | None,
        limits: Limits,
        timeout: float,  # noqa: ASYNC109 (the SandboxBackend interface)
    ) -> ExecResult:
        ws = await self.prepare(session_key)
        wall_s = min(timeout, limits.wall_seconds)
        # no single file may outgrow the whole workspace
        quota_mb = max(1, self.quota.max_bytes >> 20)
        if limits.file_size_mb > quota_mb:
            limits = replace(limits, file_size_mb=quota_mb)
        return await self._inflight.run(self._within_quota(ws, argv, stdin, limits, wall_s))

    async def _within_quota(
        self, ws: Workspace, argv: list[str], stdin: bytes | None, limits: Limits, wall_s: float
    ) -> ExecResult:
        before = await self.quota.snapshot(ws.path)
        if before.usage.error:
            raise SandboxError(f"not run: {before.usage.error}")
        allowed = self.quota.allowed(before.usage)
        try:
            result = await self._run(
                ws, argv, stdin, limits, wall_s, lambda: self.quota.watch(ws.path, allowed)
            )
        except BaseException:
            # The command is gone either way; what it wrote past the quota must not stay.
            await asyncio.shield(self._settle_quietly(ws, before))
            raise
        return await self.quota.settle(ws.path, before, result)

    async def _settle_quietly(self, ws: Workspace, before: Snapshot) -> None:
        nothing = ExecResult(0, b"", b"", False, False, False, 0.0)
        try:
            settled = await self.quota.settle(ws.path, before, nothing)
        except Exception:
            log.exception("could not check the workspace quota after a failed command")
            return
        if settled.killed_reason:
            log.warning("sandbox: after a failed command: %s", settled.killed_reason)

    async def aclose(self) -> None:
        await self._inflight.close()
