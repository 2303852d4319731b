"""What the replica tests share: a model whose answers can be held, a store of its own, a
wait for a condition, the test database closed to new connections, and replicas (gateways)
on one PostgreSQL database."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator, Callable
from typing import Any

import psycopg
import pytest

from bot.gateway import Gateway
from bot.providers.base import ChatRequest
from bot.providers.testing import FunctionProvider
from bot.store.config import StoreConfig, open_store
from bot.store.pg_store import PgStore
from tests.fakes.channel import RecordingChannel


async def until(check: Callable[[], Any], timeout: float = 20.0) -> None:
    """Until `check()` is true; `timeout` only bounds a failing test's wait."""
    deadline = time.monotonic() + timeout
    while not (await check() if asyncio.iscoroutinefunction(check) else check()):
        assert time.monotonic() < deadline, "condition not met in time"
        await asyncio.sleep(0.02)


@contextlib.asynccontextmanager
async def pg_store(pg_url: str) -> AsyncIterator[PgStore]:
    store = open_store(StoreConfig(url=pg_url), None)  # type: ignore[arg-type]
    assert isinstance(store, PgStore)
    await store.start()
    try:
        yield store
    finally:
        await store.stop()


class DatabaseAdmin:
    """A superuser connection to the server's `postgres` database, from which the test
    database is closed to new connections and its connections are cut."""

    def __init__(self, conn: psycopg.AsyncConnection[Any], name: str) -> None:
        self.conn = conn
        self.name = name

    async def allow_connections(self, allowed: bool) -> None:
        await self.conn.execute(
            f'ALTER DATABASE "{self.name}" ALLOW_CONNECTIONS {"true" if allowed else "false"}'
        )

    async def cut(self, backend_pid: int) -> None:
        """End one connection to the test database (its client finds it lost)."""
        await self.conn.execute("SELECT pg_terminate_backend(%s)", (backend_pid,))


@contextlib.asynccontextmanager
async def database_admin(pg_url: str) -> AsyncIterator[DatabaseAdmin]:
    """The test database's admin; at the end it takes new connections again, whatever
    happened (the next test's replicas need them)."""
    base, name = pg_url.rsplit("/", 1)
    async with await psycopg.AsyncConnection.connect(f"{base}/postgres", autocommit=True) as conn:
        admin = DatabaseAdmin(conn, name)
        try:
            yield admin
        finally:
            await admin.allow_connections(True)


class Model:
    """Answers "answer to <text>"; an answer to a text in `held` waits for `release`."""

    def __init__(self) -> None:
        self.asked: list[str] = []
        self.held: set[str] = set()
        self.release = asyncio.Event()
        self.waiting = asyncio.Event()

    async def __call__(self, request: ChatRequest) -> str:
        text = str(request.messages[-1].content)
        self.asked.append(text)
        if text in self.held:
            self.waiting.set()
            await self.release.wait()
        return f"answer to {text}"


@pytest.fixture
def replica(make_config: Any, pg_url: str) -> Callable[..., Any]:
    def make(model: Model, channel: RecordingChannel, **gateway: Any) -> Gateway:
        config = make_config(
            store={"url": pg_url},
            gateway={"session_lease_s": 3, **gateway},
            scheduler={"poll_seconds": 3600},
            memory={"enabled": False},
        )
        return Gateway(config, provider=FunctionProvider(model), channels={"test": channel})

    return make
