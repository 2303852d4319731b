"""The figures on PostgreSQL, next to their SQLite rows in `make bench`. The bench starts its
own throwaway cluster (testbed/pgcluster.py, as the tests do): PostgreSQL 16 with pgvector from
the `pgserver` wheel (a dev dependency) when installed, else the system's binaries (then P6 pg
measures the in-process fallback, and says so); skipped, saying why, when there are neither.
The server runs with PostgreSQL's durable defaults (fsync and synchronous_commit on).

- P6 pg: P6 (bench/memory_bench.py) with the store on PostgreSQL: the same items, queries and
  random embedder at 10k and 100k items, one person among 100, each database built through
  the memory repository, then VACUUM ANALYZE (what autovacuum reaches on its own).
- P2 pg: P2 with the store on PostgreSQL and 1, 2 and 4 replica processes (bench/pg_replica.py)
  on one database, the 1,000 sessions split across them by session (sticky sessions behind a
  load balancer), every replica starting together; messages per second from the start to the
  last reply of the last replica, and the ratio to one replica.

    python -m bench.pg_bench [--quick] [--only P2,P6]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from bench.common import ROOT, FakeLLMProcess
from bench.table import Row, ms, verdict
from bot.store.memory_vectors import VEC_TABLE
from bot.store.pg_vectors import hnsw_index
from testbed.pgcluster import (
    ClusterUnavailable,
    PgServer,
    create_database,
    debian_binaries,
    drop_database,
    pgvector_binaries,
    throwaway_cluster,
)

REPLICAS = (1, 2, 4)
SESSIONS = 1000
#: PostgreSQL's defaults (the tests' clusters turn fsync off)
DURABLE = ("fsync=on", "synchronous_commit=on")


@contextlib.contextmanager
def cluster() -> Iterator[PgServer]:
    """A throwaway server: pgvector's if installed, else the system's."""
    reasons = []
    for binaries in (pgvector_binaries, debian_binaries):
        try:
            bindir = binaries()
        except ClusterUnavailable as exc:
            reasons.append(str(exc))
            continue
        with throwaway_cluster(bindir, *DURABLE) as server:
            yield server
        return
    raise RuntimeError(f"no PostgreSQL to measure on: {'; '.join(reasons)}")


async def _describe(url: str) -> tuple[str, str]:
    """(server version, the vector search the store uses there)."""
    from bot.store.config import StoreConfig, open_store
    from bot.store.pg_store import PgStore

    async with open_store(StoreConfig(url=url), Path(tempfile.gettempdir())) as store:
        assert isinstance(store, PgStore)
        return await store.server_version(), store.vector_support.describe()


def _sql(url: str, statement: str) -> Any:
    import psycopg

    with psycopg.connect(url, autocommit=True) as conn:
        cur = conn.execute(statement)
        return cur.fetchone() if cur.description else None


@contextlib.contextmanager
def _index_after_loading() -> Iterator[None]:
    """The items are loaded through the memory repository without the HNSW index, which is
    built once after, as a bulk load would (one insert at a time into the graph costs far more
    on this machine); the index is there when searches are timed."""
    from bot.store import pg_vectors

    limit = pg_vectors.HNSW_MAX_DIM
    pg_vectors.HNSW_MAX_DIM = 0
    try:
        yield
    finally:
        pg_vectors.HNSW_MAX_DIM = limit


def p6(server: PgServer, quick: bool, dim: int = 256) -> dict[str, Any]:
    from bench import memory_bench as mb

    sizes = [10_000] if quick else [10_000, 100_000]
    embedder = mb.RandomUnitEmbedder(dim)
    results: dict[str, Any] = {"id": "P6 pg", "owners": mb.OWNERS, "dim": dim, "sizes": {}}
    with tempfile.TemporaryDirectory(prefix="decapod-p6pg-") as tmp, mb._quiet_memory_log():
        for size in sizes:
            name = f"p6_{size}"
            url = create_database(server, name)
            try:
                results["server"], results["vector_search"] = asyncio.run(_describe(url))
                start = time.perf_counter()
                with _index_after_loading():
                    asyncio.run(mb._build(Path(tmp) / "unused.db", size, embedder, size, url))
                    load_s = time.perf_counter() - start
                    _sql(url, f"SET maintenance_work_mem = '1GB'; {hnsw_index(VEC_TABLE)}")
                build_s = time.perf_counter() - start
                _sql(url, "VACUUM ANALYZE")
                figures = mb._measure(Path(tmp) / "unused.db", embedder, size, url)
                figures = asyncio.run(figures)
                figures["build_s"] = round(build_s, 2)
                figures["index_s"] = round(build_s - load_s, 2)
                size_bytes = _sql(url, "SELECT pg_database_size(current_database())")[0]
                figures["db_mb"] = round(size_bytes / 1e6, 1)
                figures["target_p95_ms"] = mb.TARGETS_MS[size]
                figures["ok"] = figures["hybrid"]["p95_ms"] <= mb.TARGETS_MS[size]
                results["sizes"][str(size)] = figures
            finally:
                drop_database(server, name)
    print(f"P6 pg: PostgreSQL {results['server']}, {results['vector_search']}")
    mb._print(results)
    return results


def _replicas(url: str, llm: str, replicas: int, rounds: int) -> dict[str, Any]:
    """`replicas` gateway processes on `url`, started together; their figures."""
    procs: list[subprocess.Popen[str]] = []
    with tempfile.TemporaryDirectory(prefix="decapod-p2pg-") as logs:
        try:
            for k in range(replicas):
                args = [
                    *("--url", url, "--llm", llm, "--replica", str(k)),
                    *("--replicas", str(replicas), "--sessions", str(SESSIONS)),
                    *("--rounds", str(rounds)),
                ]
                err = open(f"{logs}/{k}.err", "w")  # noqa: SIM115 (closed with the process)
                procs.append(
                    subprocess.Popen(
                        [sys.executable, "-m", "bench.pg_replica", *args],
                        cwd=ROOT,
                        stdin=subprocess.PIPE,
                        stdout=subprocess.PIPE,
                        stderr=err,
                        text=True,
                    )
                )
                err.close()
            for k, proc in enumerate(procs):
                assert proc.stdout is not None
                if proc.stdout.readline().strip() != "READY":
                    raise RuntimeError(f"replica {k} did not start: {_tail(logs, k)}")
            start = time.perf_counter()
            for proc in procs:
                assert proc.stdin is not None
                proc.stdin.write("GO\n")
                proc.stdin.flush()
            reports = []
            for k, proc in enumerate(procs):
                out, _ = proc.communicate(timeout=900)
                lines = [line for line in out.splitlines() if line.startswith("{")]
                if proc.returncode != 0 or not lines:
                    raise RuntimeError(f"replica {k} failed: {_tail(logs, k)}")
                reports.append(json.loads(lines[-1]))
            elapsed = time.perf_counter() - start
        finally:
            for proc in procs:
                if proc.poll() is None:
                    proc.kill()
                    proc.wait()
    total = sum(r["messages"] for r in reports)
    return {
        "replicas": replicas,
        "messages": total,
        "elapsed_s": round(elapsed, 2),
        "msgs_per_s": total / elapsed,
        "replica_msgs_per_s": [round(r["messages"] / r["elapsed_s"], 1) for r in reports],
    }


def _tail(logs: str, k: int) -> str:
    lines = Path(f"{logs}/{k}.err").read_text().strip().splitlines()
    return lines[-1][:200] if lines else "no output"


def p2(server: PgServer, llm: FakeLLMProcess, quick: bool) -> dict[str, Any]:
    rounds = 1 if quick else 3
    passes = 1 if quick else 2  # interleaved: 1, 2, 4, 1, 2, 4 (the machine's load drifts)
    runs: dict[int, list[dict[str, Any]]] = {n: [] for n in REPLICAS}
    version = ""
    for p in range(passes):
        for n in REPLICAS:
            name = f"p2_{n}_{p}"
            url = create_database(server, name)
            try:
                version, _ = asyncio.run(_describe(url))  # migrated before the replicas start
                runs[n].append(_replicas(url, llm.base_url, n, rounds))
            finally:
                drop_database(server, name)
    out: dict[str, Any] = {"server": version, "sessions": SESSIONS, "rounds": rounds}
    for n in REPLICAS:
        rates = [r["msgs_per_s"] for r in runs[n]]
        out[str(n)] = {"msgs_per_s": sum(rates) / len(rates), "runs": runs[n]}
    one = out["1"]["msgs_per_s"]
    for n in REPLICAS:
        out[str(n)]["ratio"] = out[str(n)]["msgs_per_s"] / one
        print(
            f"P2 pg, {n} replica(s): {out[str(n)]['msgs_per_s']:.0f} msg/s "
            f"({out[str(n)]['ratio']:.2f}x one); runs "
            + ", ".join(f"{r['msgs_per_s']:.0f}" for r in runs[n])
        )
    return out


def run(
    quick: bool = False, fake: FakeLLMProcess | None = None, figures: tuple[str, ...] = ("P2", "P6")
) -> dict[str, Any]:
    out: dict[str, Any] = {}
    with cluster() as server, contextlib.ExitStack() as stack:
        if "P6" in figures:
            out["P6 pg"] = p6(server, quick)
        if "P2" in figures:
            llm = fake if fake is not None else stack.enter_context(FakeLLMProcess())
            out["P2 pg"] = p2(server, llm, quick)
    return out


def rows(r: dict[str, Any], figure: str, errors: dict[str, str]) -> list[Row]:
    """The table's rows of `figure` on PostgreSQL (P2 or P6)."""
    if figure == "P6":
        p6 = r.get("P6 pg")
        if not p6:
            reason = errors.get("pg_bench", "no result")
            return [Row("P6 pg memory search", "not run", "", "not run", notes=[reason])]
        out = []
        for size, fig in p6["sizes"].items():
            out.append(
                Row(
                    f"P6 pg memory search p95, {int(size) // 1000}k items",
                    ms(fig["hybrid"]["p95_ms"]),
                    f"<= {fig['target_p95_ms']:g} ms",
                    verdict(fig["ok"]),
                    notes=[
                        f"PostgreSQL {p6['server']}, {p6['vector_search']}; vector-only p95 "
                        f"{ms(fig['vector']['p95_ms'])}, keyword-only "
                        f"{ms(fig['keyword']['p95_ms'])}"
                        f"; built in {fig['build_s']:.0f} s (HNSW index {fig['index_s']:.0f} s)"
                    ],
                )
            )
        return out
    p2 = r.get("P2 pg")
    if not p2:
        reason = errors.get("pg_bench", "no result")
        return [Row("P2 pg throughput", "not run", "", "not run", notes=[reason])]
    return [
        Row(
            f"P2 pg, {n} replica process{'es' if n > 1 else ''}",
            f"{p2[str(n)]['msgs_per_s']:.0f} msg/s",
            "(scale-out)",
            "info",
            notes=[f"{p2[str(n)]['ratio']:.2f}x one replica; PostgreSQL {p2['server']}"]
            if n > 1
            else [f"PostgreSQL {p2['server']}, durable commits; 1,000 sessions split by session"],
        )
        for n in REPLICAS
    ]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--only", default="P2,P6")
    args = parser.parse_args()
    figures = tuple(f.strip().upper() for f in args.only.split(",") if f.strip())
    print(json.dumps(run(args.quick, figures=figures), default=str)[:2000])


if __name__ == "__main__":
    main()
