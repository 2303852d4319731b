"""The owner's control panel (filled in below)."""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from bot.webui.app import Handler, WebUI


class Panel:
    def __init__(self, ui: WebUI) -> None:
        self.ui = ui

    def routes(self) -> list[tuple[str, str, Handler]]:
        return []
