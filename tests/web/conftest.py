"""Every test here runs on a network that resolves only the names below and connects only
to 127.0.0.1: a guard that let something through fails the test (`violations`) instead of
sending traffic anywhere."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Iterator
from typing import Any

import pytest

import bot.web.net
from bot.web.config import WebConfig
from bot.web.fetch import Fetcher
from bot.web.guard import AddressGuard
from tests.fakes.web import FakePages, LoopbackNetwork

NAMES: dict[str, str | list[str]] = {
    "page.test": "127.0.0.1",
    "searxng.test": "127.0.0.1",
    "brave.test": "127.0.0.1",
    "tavily.test": "127.0.0.1",
    "internal.test": "10.0.0.1",
    "metadata.test": "169.254.169.254",
    "v6-loopback.test": "::1",
    "mapped.test": "::ffff:127.0.0.1",
    "rebind.test": ["93.184.216.34", "10.0.0.1"],
    "localhost": "127.0.0.1",
}


@pytest.fixture(autouse=True)
def net(monkeypatch: pytest.MonkeyPatch) -> Iterator[LoopbackNetwork]:
    network = LoopbackNetwork(NAMES)
    monkeypatch.setattr(bot.web.net, "system_network", network.network)
    yield network
    assert not network.violations, f"connections past the guard: {network.violations}"


@pytest.fixture
async def pages() -> AsyncIterator[FakePages]:
    async with FakePages() as server:
        yield server


@contextlib.asynccontextmanager
async def open_fetcher(**overrides: Any) -> AsyncIterator[Fetcher]:
    """A Fetcher as start_web builds it; the test server's name is allowed explicitly."""
    config = WebConfig.model_validate({"allow_hosts": ["page.test"], **overrides})
    guard = AddressGuard(allow_private=config.allow_private, allow_hosts=config.allow_hosts)
    network = bot.web.net.system_network()
    session = bot.web.net.open_session(network, user_agent=config.user_agent, guard=guard)
    routes = bot.web.net.proxy_routes(network, session, guard, user_agent=config.user_agent)
    try:
        yield Fetcher(config, session, guard, routes)
    finally:
        await routes.close()
        await session.close()
