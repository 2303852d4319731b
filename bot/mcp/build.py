"""From a server's config entry to its transport opener: the environment values it names, its
folder, and for a sandboxed stdio server the bwrap launcher (probed once, shared by all)."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

from bot.config import secret_from_env
from bot.errors import SandboxError
from bot.mcp.config import HttpServerConfig, StdioServerConfig
from bot.mcp.launch import server_folder, server_limits, stdio_launch
from bot.mcp.transport import HttpOpener, StdioOpener, TransportOpener
from bot.sandbox.config import SandboxConfig

if TYPE_CHECKING:
    from bot.sandbox.local import BwrapBackend


class ServerBuilder:
    def __init__(self, home: Path, sandbox: SandboxConfig, redact: Callable[[str], str]) -> None:
        self.home = home
        self.sandbox_config = sandbox
        self.redact = redact
        self._bwrap: BwrapBackend | None = None
        self._bwrap_problem: str | None = None
        self._lock = asyncio.Lock()

    async def opener(
        self, name: str, entry: StdioServerConfig | HttpServerConfig
    ) -> TransportOpener:
        """Raises ConfigError (an unset variable) or SandboxError: problems no restart fixes."""
        key = f"mcp.servers.{name}"
        if isinstance(entry, HttpServerConfig):
            headers = {
                header: secret_from_env(var, f"{key}.headers_env.{header}")
                for header, var in entry.headers_env.items()
            }
            return HttpOpener(entry, headers, entry.startup_timeout_s)
        values = {var: secret_from_env(var, f"{key}.env") for var in entry.env}
        sandbox = await self._sandbox() if entry.run_in_sandbox else None
        folder = server_folder(self.home, name, sandbox.drop_to if sandbox else None)
        limits = self.sandbox_config.limits
        launch = stdio_launch(
            entry,
            folder,
            values,
            sandbox=sandbox,
            limits=server_limits(entry.memory_mb, limits.pids, limits.file_size_mb, limits.nofile),
        )
        return StdioOpener(name, launch, self.redact, entry.run_in_sandbox)

    async def _sandbox(self) -> BwrapBackend:
        async with self._lock:
            if self._bwrap is None and self._bwrap_problem is None:
                from bot.sandbox.local import BwrapBackend
                from bot.sandbox.selection import workspace_manager

                cfg = self.sandbox_config
                try:
                    self._bwrap = await BwrapBackend.start(cfg, workspace_manager(cfg, self.home))
                except SandboxError as exc:
                    self._bwrap_problem = str(exc)
        if self._bwrap is None:
            raise SandboxError(
                f"run_in_sandbox = true, but the sandbox cannot run here: {self._bwrap_problem}"
            )
        return self._bwrap

    async def aclose(self) -> None:
        if self._bwrap is not None:
            await self._bwrap.aclose()
