"""A throwaway PostgreSQL cluster: initdb into a temporary folder, started on a free port on
127.0.0.1 (and a socket in that folder), stopped and removed at the end. Used by the tests'
fixtures (tests/pgserver.py) and by the benchmarks (bench/pg_bench.py), so it needs no pytest.

Two kinds of server binaries: Debian's (`postgresql` package, what CI installs), and the ones
the `pgserver` wheel bundles (PostgreSQL 16 with the pgvector extension; a dev dependency).
`ClusterUnavailable` says why a cluster cannot be had here.
"""

from __future__ import annotations

import contextlib
import glob
import importlib.util
import os
import pwd
import shutil
import socket
import subprocess
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

#: a non-root account to run the server as when running as root (initdb refuses root)
_ACCOUNTS = ("postgres", "decapod-ci", "nobody")


class ClusterUnavailable(Exception):
    """No cluster of the kind asked for can be started here; the message says why."""


@dataclass(frozen=True)
class PgServer:
    host: str
    port: int
    user: str
    #: the server binaries' folder
    bindir: Path

    def url(self, database: str) -> str:
        return f"postgresql://{self.user}@{self.host}:{self.port}/{database}"


def debian_binaries() -> Path:
    """The folder of the system's server binaries (Debian's `postgresql` package)."""
    found = shutil.which("pg_ctl")
    if found:
        bindir = Path(os.path.realpath(found)).parent
    else:
        candidates = sorted(glob.glob("/usr/lib/postgresql/*/bin/pg_ctl"))
        if not candidates:
            raise ClusterUnavailable(
                "PostgreSQL server binaries (initdb, pg_ctl) are not installed"
            )
        bindir = Path(candidates[-1]).parent
    if not (bindir / "initdb").exists():
        raise ClusterUnavailable(f"no initdb next to {bindir / 'pg_ctl'}")
    return bindir


def pgvector_binaries() -> Path:
    """The folder of the `pgserver` wheel's server binaries, which come with pgvector."""
    spec = importlib.util.find_spec("pgserver")
    if spec is None or spec.origin is None:
        raise ClusterUnavailable(
            "pgserver is not installed (a dev dependency on x86-64 Linux, Python 3.11/3.12): "
            "no PostgreSQL with pgvector to test against"
        )
    root = Path(spec.origin).parent / "pginstall"
    if not (root / "bin" / "initdb").exists() or not glob.glob(f"{root}/lib/**/vector.so"):
        raise ClusterUnavailable(f"pgserver at {root} has no initdb or no pgvector")
    return root / "bin"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _has_account(name: str) -> bool:
    try:
        pwd.getpwnam(name)
    except KeyError:
        return False
    return True


def _run_as(folder: str) -> list[str]:
    """The command prefix that runs the server unprivileged (initdb refuses root); the folder
    is given to that account."""
    if os.geteuid() != 0:
        return []
    account = next((a for a in _ACCOUNTS if _has_account(a)), None)
    if account is None:
        raise ClusterUnavailable("running as root with no unprivileged account for PostgreSQL")
    entry = pwd.getpwnam(account)
    os.chown(folder, entry.pw_uid, entry.pw_gid)
    return ["runuser", "-u", account, "--"]


def _reachable(bindir: Path, run_as: list[str], folder: str) -> Path:
    """`bindir`, or a copy of its installation in `folder` when the unprivileged account
    cannot reach it (a virtualenv under root's home, as on CI)."""
    if not run_as:
        return bindir
    probe = subprocess.run([*run_as, "test", "-x", str(bindir / "postgres")], capture_output=True)
    if probe.returncode == 0:
        return bindir
    # the same layout two levels up: a wheel's binaries find their libraries through
    # $ORIGIN/../../../<package>.libs (auditwheel)
    top = bindir.parents[2]
    inside = bindir.parent.relative_to(top)
    copy = Path(folder) / "install"
    for part in ("bin", "lib", "share"):
        if (bindir.parent / part).is_dir():
            shutil.copytree(bindir.parent / part, copy / inside / part, symlinks=True)
    libs = top / f"{inside.parts[0]}.libs"
    if libs.is_dir():
        shutil.copytree(libs, copy / libs.name, symlinks=True)
    return copy / inside / "bin"


@contextlib.contextmanager
def throwaway_cluster(bindir: Path, *settings: str) -> Iterator[PgServer]:
    """A fresh cluster from `bindir`'s binaries, trusted local logins for the superuser
    `decapod`, fsync off; `settings` are more `-c name=value` server options."""
    try:
        import psycopg  # noqa: F401
    except ImportError:
        raise ClusterUnavailable(
            "psycopg is not installed (pip install 'decapod[postgresql]')"
        ) from None
    root = tempfile.mkdtemp(prefix="decapod-pg-")
    try:
        run_as = _run_as(root)
        bindir = _reachable(bindir, run_as, root)
        data, port = f"{root}/data", _free_port()
        initdb = [str(bindir / "initdb"), "-D", data, "-U", "decapod", "--auth=trust", "-E", "UTF8"]
        done = subprocess.run([*run_as, *initdb], capture_output=True, text=True)
        if done.returncode != 0:
            raise ClusterUnavailable(f"initdb failed: {done.stderr.strip()[-300:]}")
        options = " ".join(
            [f"-k {root} -p {port} -c listen_addresses=127.0.0.1 -c fsync=off"]
            + [f"-c {s}" for s in settings]
        )
        pg_ctl = [str(bindir / "pg_ctl"), "-D", data, "-l", f"{root}/log"]
        done = subprocess.run(
            [*run_as, *pg_ctl, "-o", options, "-w", "start"], capture_output=True, text=True
        )
        if done.returncode != 0:
            raise ClusterUnavailable(f"pg_ctl start failed: {done.stderr.strip()[-300:]}")
        try:
            yield PgServer("127.0.0.1", port, "decapod", bindir)
        finally:
            subprocess.run([*run_as, *pg_ctl, "-m", "immediate", "-w", "stop"], capture_output=True)
    finally:
        shutil.rmtree(root, ignore_errors=True)


def create_database(server: PgServer, name: str) -> str:
    """A new empty database on `server`; its URL."""
    import psycopg

    with psycopg.connect(server.url("postgres"), autocommit=True) as conn:
        conn.execute(f"CREATE DATABASE {name}")
    return server.url(name)


def drop_database(server: PgServer, name: str) -> None:
    import psycopg

    with psycopg.connect(server.url("postgres"), autocommit=True) as conn:
        conn.execute(f"DROP DATABASE {name} WITH (FORCE)")
