"""The tests' own server (`serving`): a start that fails part way still cleans up what it
started, so a failed test leaves no app half running behind it."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest
from aiohttp import web

from tests.webui.conftest import serving


async def test_a_start_that_fails_still_cleans_the_app_up() -> None:
    events: list[str] = []

    async def resources(app: web.Application) -> AsyncIterator[None]:
        events.append("started")
        yield
        events.append("cleaned up")

    async def fails(app: web.Application) -> None:
        raise OSError("address already in use")

    app = web.Application()
    app.cleanup_ctx.append(resources)
    app.on_startup.append(fails)

    with pytest.raises(OSError, match="address already in use"):
        async with serving(app):
            pytest.fail("served although its start failed")

    assert events == ["started", "cleaned up"]
