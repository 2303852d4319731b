"""web_fetch(..., save_as=...): a download written into the session's workspace, confined
like the file tools (no "..", no symlinks followed, the file size limit), and, once
untrusted content reached the conversation, only with the owner's approval."""

from __future__ import annotations

import asyncio
import os
import stat
from typing import TYPE_CHECKING

from bot.errors import ToolError
from bot.sandbox.approval import ask_owner
from bot.sandbox.policy import write_approval_reason
from bot.sandbox.safe_fs import split_workspace_path
from bot.sandbox.tools import session_workspace_fs

if TYPE_CHECKING:
    from bot.sandbox.approval import ApprovalBroker
    from bot.sandbox.config import SandboxConfig
    from bot.sandbox.workspace import WorkspaceManager
    from bot.tools import ToolContext


class WorkspaceSaver:
    def __init__(
        self,
        workspaces: WorkspaceManager,
        config: SandboxConfig,
        approvals: ApprovalBroker | None,
    ) -> None:
        self.workspaces = workspaces
        self.config = config
        self.approvals = approvals

    async def approve(
        self, ctx: ToolContext, path: str, source: str, *, overwrite: bool = False
    ) -> str:
        """Check the path and, where needed, get the owner's approval, before anything is
        downloaded; returns the path as the sandbox sees it. A file already there is
        replaced only with `overwrite`: a download named like one of the person's files
        must not take its place unasked."""
        parts = split_workspace_path(path)
        # "/work/downloads/" or "downloads/." read as a file name would download first and
        # fail after (or make a file called "downloads"): say so before anything is fetched
        # or asked, as for a folder that is there
        names_folder = not parts or path.strip().split("/")[-1] in ("", ".")
        there = None if names_folder else await self._entry(ctx, path)
        if names_folder or (there is not None and stat.S_ISDIR(there.st_mode)):
            raise ToolError(
                f"refused: save_as names a file, like /work/downloads/report.pdf, and {path!r} "
                "is a folder"
            )
        shown = "/work/" + "/".join(parts)
        if there is not None and not overwrite:
            raise ToolError(
                f"refused: {shown} already exists; nothing was fetched. Call again with "
                "overwrite=true to replace it, or choose another name"
            )
        why = write_approval_reason(self.config, ctx)
        if why is not None:
            replacing = ", replacing the file there" if there is not None else ""
            await self._ask(ctx, f"save {source} as {shown}{replacing}", why)
        return shown

    async def _entry(self, ctx: ToolContext, path: str) -> os.stat_result | None:
        fs = session_workspace_fs(self.workspaces, self.config, ctx.session_key)
        return await asyncio.to_thread(fs.entry, path)

    async def write(
        self, ctx: ToolContext, path: str, shown: str, data: bytes, *, overwrite: bool
    ) -> None:
        """Write the download. Without `overwrite` only where nothing is, checked in the same
        step as the write: a file made there since `approve` looked is kept."""
        fs = session_workspace_fs(self.workspaces, self.config, ctx.session_key)
        if overwrite:
            await asyncio.to_thread(fs.write, path, data)
        elif not await asyncio.to_thread(fs.create, path, data):
            raise ToolError(
                f"refused: {shown} was made while the download ran; it is kept and nothing "
                "was saved. Call again with overwrite=true to replace it, or choose another name"
            )

    async def _ask(self, ctx: ToolContext, what: str, why: str) -> None:
        who = ctx.identity.display_name or ctx.identity.key
        summary = f"{who} wants to {what}, because {why}"
        wait = self.config.approval_timeout_s
        await ask_owner(ctx, self.approvals, summary, wait, why=why, refused="not saved")
