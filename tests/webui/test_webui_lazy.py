"""The web UI's templates load with the first page, not before the gateway is ready."""

from __future__ import annotations

from bot.gateway import Gateway
from bot.webui.app import WebUI
from tests.webui.conftest import base_url, client


def _web_ui(gw: Gateway) -> WebUI:
    assert gw.http is not None
    for route in gw.http.app.router.routes():
        owner = getattr(route.handler, "__self__", None)
        if isinstance(owner, WebUI):
            return owner
    raise AssertionError("no web UI page is mounted")


async def test_first_page_loads_the_templates_after_ready(gateway: Gateway) -> None:
    ui = _web_ui(gateway)
    # a cached_property that has not run yet is absent from the instance's dict
    assert "templates" not in vars(ui)
    async with client() as http, http.get(base_url(gateway) + "/") as resp:
        assert resp.status == 200
        assert "<html" in (await resp.text()).lower()
    assert "templates" in vars(ui)
