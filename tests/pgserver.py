"""A throwaway PostgreSQL cluster for the tests: initdb into a temporary folder, started on a
free port on 127.0.0.1 (and a socket in that folder), stopped and removed at the end of the
session. Each test that asks for `pg_url` gets a database of its own.

Skips, saying why, when the server binaries are missing (CI installs Debian's postgresql).
"""

from __future__ import annotations

import glob
import itertools
import os
import pwd
import shutil
import socket
import subprocess
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

#: a non-root account to run the server as when the tests run as root (initdb refuses root)
_ACCOUNTS = ("postgres", "decapod-ci", "nobody")
_counter = itertools.count()


@dataclass(frozen=True)
class PgServer:
    host: str
    port: int
    user: str

    def url(self, database: str) -> str:
        return f"postgresql://{self.user}@{self.host}:{self.port}/{database}"


def _binaries() -> Path | None:
    found = shutil.which("pg_ctl")
    if found:
        return Path(os.path.realpath(found)).parent
    candidates = sorted(glob.glob("/usr/lib/postgresql/*/bin/pg_ctl"))
    return Path(candidates[-1]).parent if candidates else None


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture(scope="session")
def pg_server() -> Iterator[PgServer]:
    bindir = _binaries()
    if bindir is None or not (bindir / "initdb").exists():
        pytest.skip("PostgreSQL server binaries (initdb, pg_ctl) are not installed")
    try:
        import psycopg  # noqa: F401
    except ImportError:
        pytest.skip("psycopg is not installed (pip install 'decapod[postgresql]')")
    run_as: list[str] = []
    root = tempfile.mkdtemp(prefix="decapod-pg-")
    if os.geteuid() == 0:
        account = next((a for a in _ACCOUNTS if _has_account(a)), None)
        if account is None:
            pytest.skip("running as root with no unprivileged account to run PostgreSQL as")
        entry = pwd.getpwnam(account)
        os.chown(root, entry.pw_uid, entry.pw_gid)
        run_as = ["runuser", "-u", account, "--"]
    data, port = f"{root}/data", _free_port()
    subprocess.run(
        [
            *run_as,
            str(bindir / "initdb"),
            "-D",
            data,
            "-U",
            "decapod",
            "--auth=trust",
            "-E",
            "UTF8",
        ],
        check=True,
        capture_output=True,
    )
    options = f"-k {root} -p {port} -c listen_addresses=127.0.0.1 -c fsync=off"
    log_file = f"{root}/log"
    subprocess.run(
        [*run_as, str(bindir / "pg_ctl"), "-D", data, "-o", options, "-l", log_file, "-w", "start"],
        check=True,
        capture_output=True,
    )
    try:
        yield PgServer("127.0.0.1", port, "decapod")
    finally:
        subprocess.run(
            [*run_as, str(bindir / "pg_ctl"), "-D", data, "-m", "immediate", "-w", "stop"],
            capture_output=True,
        )
        shutil.rmtree(root, ignore_errors=True)


def _has_account(name: str) -> bool:
    try:
        pwd.getpwnam(name)
    except KeyError:
        return False
    return True


@pytest.fixture
def pg_url(pg_server: PgServer) -> Iterator[str]:
    """A fresh, empty database on the session's server."""
    import psycopg

    name = f"t{os.getpid()}_{next(_counter)}"
    with psycopg.connect(pg_server.url("postgres"), autocommit=True) as conn:
        conn.execute(f"CREATE DATABASE {name}")
    yield pg_server.url(name)
    with psycopg.connect(pg_server.url("postgres"), autocommit=True) as conn:
        conn.execute(f"DROP DATABASE {name} WITH (FORCE)")
