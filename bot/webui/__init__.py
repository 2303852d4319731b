"""The web UI: a chat page (the `web` channel) and the owner's control panel, served by the
gateway's own HTTP server (127.0.0.1 by default; remote use goes through a TLS reverse proxy,
see docs/webui.md). Pages are rendered on the server; a small script drives the chat."""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING, cast

from bot.webui.config import WebChannelConfig, WebUIConfig

if TYPE_CHECKING:
    from bot.gateway import Gateway
    from bot.http import HttpServer

__all__ = ["CHAT_PAGE", "WebChannelConfig", "WebUIConfig", "start_webui"]

#: the signed-in chat page (a first start's setup form before the password exists)
CHAT_PAGE = "/"


async def start_webui(gw: Gateway, http: HttpServer) -> None:
    """Load the owner's password (or make the setup code) and mount the pages on `http`."""
    from bot.webui.app import WebUI
    from bot.webui.auth import WebAuth
    from bot.webui.chat import WebChatHub

    auth = WebAuth(gw.store, http.auth, session_ttl_s=gw.config.webui.session_ttl_s)
    gw.setup_code = await auth.start(gw.setup_code)
    ui = WebUI(gw, auth)
    channel = cast(WebChatHub, gw.channels["web"])
    await asyncio.to_thread(ui.uploads.start)
    from bot.webui.upload_rows import RowUploads

    if isinstance(ui.uploads, RowUploads):
        await ui.uploads.started()  # the expired rows go now, then hourly
        http.app.on_shutdown.append(ui.uploads.stop)
    channel.outbox = auth.repo
    channel.uploads = ui.uploads
    if gw.bus is not None:
        # replicas behind a balancer: an answer made here (by a turn of this process or of
        # its turn processes: the web channel is this one) reaches the pages open elsewhere
        from bot.cluster.web_answers import SharedWebAnswers, WebAnswers

        shared = SharedWebAnswers(
            cast(WebAnswers, channel), gw.bus, gw.store, str(gw.cluster.replica)
        )
        http.app.on_shutdown.append(shared.stop)
    for method, path, handler in ui.routes():
        http.add_route(method, path, handler, public=True)
    http.app.on_shutdown.append(ui.chat.close_all)
