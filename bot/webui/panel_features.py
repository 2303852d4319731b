"""Panel pages of the optional features: sandbox workspaces (look inside, delete one after a
confirmation), skills (enabled, unavailable, broken, drafts waiting for approval) and MCP
servers (state, tools, last error). A feature that is not configured says so."""

from __future__ import annotations

import asyncio
import logging
import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from aiohttp import web

if TYPE_CHECKING:
    from bot.sandbox.workspace import WorkspaceInfo
    from bot.webui.app import Handler
    from bot.webui.panel import Panel

log = logging.getLogger("decapod.webui")

#: files listed per workspace (the size counts all of them)
LIST_FILES = 50


@dataclass(frozen=True, slots=True)
class WorkspaceView:
    info: WorkspaceInfo
    files: list[tuple[str, int]]  # (relative path, bytes), the first LIST_FILES
    file_count: int


@dataclass(frozen=True, slots=True)
class McpView:
    name: str
    state: str
    detail: str
    tools: int
    last_error: str
    last_error_at: float | None


class FeaturePages:
    def __init__(self, panel: Panel) -> None:
        self.panel = panel
        self.gw = panel.gw

    def routes(self) -> list[tuple[str, str, Handler]]:
        return [
            ("GET", "/panel/workspaces", self.workspaces),
            ("POST", "/panel/workspaces/delete", self.workspace_delete),
            ("GET", "/panel/skills", self.skills),
            ("GET", "/panel/mcp", self.mcp),
        ]

    # sandbox workspaces -----------------------------------------------------------------------
    async def workspaces(self, request: web.Request) -> web.StreamResponse:
        sandbox = self.gw.deps.sandbox
        views = await asyncio.to_thread(_views, sandbox.workspaces.ls()) if sandbox else []
        return self.panel._render(
            request,
            "panel_workspaces.html",
            enabled=sandbox is not None,
            workspaces=views,
            quota_mb=sandbox.config.workspace_quota_mb if sandbox else 0,
            max_files=sandbox.config.workspace_max_files if sandbox else 0,
            note=request.query.get("note", ""),
            when=_when,
            size=_size,
        )

    async def workspace_delete(self, request: web.Request) -> web.StreamResponse:
        sandbox = self.gw.deps.sandbox
        if sandbox is None:
            raise web.HTTPBadRequest(text="the sandbox is not configured")
        form = await request.post()
        wanted = str(form.get("workspace", ""))
        found = next((w for w in sandbox.workspaces.ls() if w.hash == wanted), None)
        if found is None:
            raise web.HTTPSeeOther("/panel/workspaces?note=no+such+workspace")
        if form.get("confirm") != "yes":
            # the first press only asks: the files are gone for good after the second
            return self.panel._render(
                request,
                "panel_workspace_delete.html",
                workspace=(await asyncio.to_thread(_views, [found]))[0],
                size=_size,
            )
        await asyncio.to_thread(sandbox.workspaces.rm, found.hash)
        log.info("web UI: workspace %s (%s) deleted", found.hash, found.session_key)
        raise web.HTTPSeeOther("/panel/workspaces?note=deleted")

    # skills -----------------------------------------------------------------------------------
    async def skills(self, request: web.Request) -> web.StreamResponse:
        await self.panel.warmed_up()
        skills = self.gw.deps.skills
        drafts = await asyncio.to_thread(skills.library.drafts) if skills else []
        current = skills.current if skills else None
        return self.panel._render(
            request,
            "panel_skills.html",
            enabled=skills is not None,
            available=sorted(current.available.values(), key=lambda s: s.name) if current else [],
            unavailable=current.unavailable if current else (),
            broken=current.broken if current else (),
            drafts=drafts,
        )

    # MCP servers ------------------------------------------------------------------------------
    async def mcp(self, request: web.Request) -> web.StreamResponse:
        manager = self.gw.mcp
        views = []
        if manager is not None:
            for name, state, detail in manager.states():
                conn = manager.connections.get(name)
                last = conn.last_error if conn is not None else None
                views.append(
                    McpView(
                        name,
                        state,
                        self.gw.redactor.redact(detail),
                        len(conn.tools) if conn is not None and state == "ready" else 0,
                        self.gw.redactor.redact(last[1]) if last else "",
                        last[0] if last else None,
                    )
                )
        return self.panel._render(
            request, "panel_mcp.html", enabled=manager is not None, servers=views, when=_when
        )


def _views(infos: list[WorkspaceInfo]) -> list[WorkspaceView]:
    return [WorkspaceView(info, *_files(info.path)) for info in infos]


def _files(root: Path) -> tuple[list[tuple[str, int]], int]:
    """The first files under `root` in name order, and how many there are. Symlinks are
    listed, never followed."""
    listed: list[tuple[str, int]] = []
    count = 0
    for dirpath, dirs, files in os.walk(root):
        dirs.sort()
        for name in sorted(files):
            count += 1
            if len(listed) < LIST_FILES:
                path = os.path.join(dirpath, name)
                try:
                    size = os.lstat(path).st_size
                except OSError:
                    continue
                listed.append((os.path.relpath(path, root), size))
    return listed, count


def _when(ts: float | None) -> str:
    return time.strftime("%Y-%m-%d %H:%M", time.localtime(ts)) if ts else ""


def _size(n: float) -> str:
    for unit in ("B", "KB", "MB", "GB"):
        if n < 1024 or unit == "GB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return ""
