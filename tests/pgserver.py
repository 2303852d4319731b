"""Throwaway PostgreSQL servers for the tests (testbed/pgcluster.py), one per kind for the whole
session: `pg_server` on the system's binaries (Debian's, what CI installs), `pgvector_server`
on the `pgserver` wheel's (PostgreSQL 16 with pgvector). Each test that asks for `pg_url` or
`pgvector_url` gets a database of its own.

Each skips, saying why, when its binaries are missing; with DECAPOD_TEST_REQUIRE_PGVECTOR=1
(CI, where the wheel installs) a missing pgvector server is an error instead.
"""

from __future__ import annotations

import itertools
import os
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from testbed.pgcluster import (
    ClusterUnavailable,
    PgServer,
    create_database,
    debian_binaries,
    drop_database,
    pgvector_binaries,
    throwaway_cluster,
)

__all__ = ["PgServer"]
_counter = itertools.count()


def _server(binaries: Callable[[], Path], required: bool = False) -> Iterator[PgServer]:
    try:
        with throwaway_cluster(binaries()) as server:
            yield server
    except ClusterUnavailable as exc:
        if required:
            pytest.fail(f"DECAPOD_TEST_REQUIRE_PGVECTOR is set: {exc}")
        pytest.skip(str(exc))


def _database(server: PgServer) -> Iterator[str]:
    name = f"t{os.getpid()}_{next(_counter)}"
    url = create_database(server, name)
    yield url
    drop_database(server, name)


@pytest.fixture(scope="session")
def pg_server() -> Iterator[PgServer]:
    yield from _server(debian_binaries)


@pytest.fixture(scope="session")
def pgvector_server() -> Iterator[PgServer]:
    yield from _server(pgvector_binaries, os.environ.get("DECAPOD_TEST_REQUIRE_PGVECTOR") == "1")


@pytest.fixture
def pg_url(pg_server: PgServer) -> Iterator[str]:
    """A fresh, empty database on the session's server."""
    yield from _database(pg_server)


@pytest.fixture
def pgvector_url(pgvector_server: PgServer) -> Iterator[str]:
    """A fresh, empty database on the session's pgvector-enabled server."""
    yield from _database(pgvector_server)
