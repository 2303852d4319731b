"""Floors: what a bare client costs against the same fake LLM process, in the same run, so that
P2 and P3 read as ratios to what this machine can do at all.

- throughput: 3,000 streamed requests, 1,000 at a time, each with the body a gateway turn
  sends (taken at the fake) and one SQLite insert, in bare asyncio: through the openai SDK
  (its aiohttp transport, chunks as typed models), and through plain aiohttp with SSE parsing.
  Messages per second, and CPU per request.
- burst: 2,000 requests at once against the fake answering after 2 s, through plain aiohttp
  with a pool of 2,000, each with the body a gateway turn sends (`--body`: the fake reads and
  parses each, as it does P3's); p50/p99 from the burst to each finished stream (P3's floor).
  In a process of its own, as P3 runs.

    python -m bench.floors [--quick]
    python -m bench.floors --burst 2000 [--body FILE]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import sqlite3
import tempfile
import time
from pathlib import Path
from typing import Any

from bench.common import FakeLLMProcess, bench_config, child_json, median, pct, run_child_main

REQUESTS, CONCURRENCY, BURST, BURST_DELAY_S = 3000, 1000, 2000, 2.0


async def _one_turn(base_url: str) -> None:
    """One plain gateway turn, so that the fake holds the body it sends."""
    from bench.load import CountingChannel
    from bot.gateway import Gateway

    with tempfile.TemporaryDirectory() as tmp:
        channel = CountingChannel()
        async with Gateway(bench_config(Path(tmp), base_url), channels={"bench": channel}) as gw:
            done = channel.arm(1)
            await gw.handle_inbound(channel.inbound("hello", "alice"))
            await asyncio.wait_for(done.wait(), 30)


async def _raw_stream(session: Any, url: str, body: bytes) -> int:
    chunks = 0
    headers = {"Authorization": "Bearer floor", "Content-Type": "application/json"}
    async with session.post(url, data=body, headers=headers) as response:
        buffer = b""
        async for data in response.content.iter_any():
            *events, buffer = (buffer + data).split(b"\n\n")
            for event in events:
                if event.startswith(b"data: ") and event[6:] != b"[DONE]":
                    json.loads(event[6:])
                    chunks += 1
    return chunks


def _insert(db: sqlite3.Connection, n: int) -> None:
    db.execute("INSERT INTO t VALUES (?, ?)", (n, "reply"))


async def _throughput(kind: str, base_url: str, body: bytes) -> dict[str, float]:
    import aiohttp

    payload = json.loads(body)
    url = base_url + "/v1/chat/completions"
    with tempfile.TemporaryDirectory() as tmp:
        db = sqlite3.connect(Path(tmp) / "f.db", isolation_level=None)
        db.execute("PRAGMA journal_mode = WAL")
        db.execute("PRAGMA synchronous = NORMAL")
        db.execute("CREATE TABLE t (n INTEGER, text TEXT)")
        gate = asyncio.Semaphore(CONCURRENCY)
        if kind == "raw":
            session = aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=CONCURRENCY))

            async def one(n: int) -> None:
                async with gate:
                    await _raw_stream(session, url, body)
                    _insert(db, n)

            close = session.close
        else:
            import httpx2
            import openai

            client = openai.AsyncOpenAI(
                api_key="floor",
                base_url=base_url + "/v1",
                max_retries=0,
                http_client=openai.DefaultAioHttpClient(
                    limits=httpx2.Limits(
                        max_connections=CONCURRENCY, max_keepalive_connections=CONCURRENCY
                    )
                ),
            )
            extra = {k: v for k, v in payload.items() if k in ("messages", "tools")}

            async def one(n: int) -> None:
                async with gate:
                    stream = await client.chat.completions.create(
                        model=payload["model"],
                        messages=(),
                        extra_body=extra,
                        stream=True,
                        stream_options={"include_usage": True},
                    )
                    async for _ in stream:
                        pass
                    _insert(db, n)

            close = client.close
        try:
            await asyncio.gather(*(one(n) for n in range(100)))  # warm: connections, imports
            cpu, wall = time.process_time(), time.perf_counter()
            await asyncio.gather(*(one(n) for n in range(REQUESTS)))
            cpu, wall = time.process_time() - cpu, time.perf_counter() - wall
        finally:  # a request that failed (a timeout on a loaded machine) leaves none open
            await close()
            db.close()
    return {"msgs_per_s": REQUESTS / wall, "cpu_ms_per_request": cpu / REQUESTS * 1000}


def turn_body() -> bytes:
    """The request body of a plain gateway turn, as the fake received it."""
    with FakeLLMProcess() as fake:
        asyncio.run(_one_turn(fake.base_url))
        return fake.last_body()


async def _burst(sessions: int, body: bytes | None = None) -> dict[str, Any]:
    import aiohttp

    with FakeLLMProcess(delay_s=BURST_DELAY_S) as fake:
        body = (
            body
            or json.dumps(
                {"model": "m", "stream": True, "messages": [{"role": "user", "content": "hello"}]}
            ).encode()
        )
        url = fake.base_url + "/v1/chat/completions"
        connector = aiohttp.TCPConnector(limit=sessions)
        async with aiohttp.ClientSession(connector=connector) as session:
            start = time.perf_counter()
            done: list[float] = []

            async def one() -> None:
                await _raw_stream(session, url, body)
                done.append(time.perf_counter() - start)

            start_epoch = time.time()
            await asyncio.gather(*(one() for _ in range(sessions)))
        arrivals = fake.arrivals(start_epoch)
    return {
        "sessions": sessions,
        "body_bytes": len(body),
        #: when the requests reached the model, from the burst, by percentile
        "arrivals_s": arrivals,
        "p50_s": round(median(done), 3),
        "p99_s": round(pct(done, 99), 3),
    }


async def _throughput_both(base_url: str, body: bytes) -> dict[str, Any]:
    out: dict[str, Any] = {"body_bytes": len(body)}
    for kind in ("sdk", "raw"):
        out[kind] = await _throughput(kind, base_url, body)
    return out


def burst_floor(body: bytes, sessions: int = BURST) -> dict[str, Any]:
    """The burst floor in a process of its own, each request with `body`."""
    with tempfile.NamedTemporaryFile(suffix=".json") as file:
        file.write(body)
        file.flush()
        return child_json(["bench.floors", "--burst", str(sessions), "--body", file.name], 300)


def run(quick: bool = False, fake: FakeLLMProcess | None = None) -> dict[str, Any]:
    with contextlib.nullcontext(fake) if fake is not None else FakeLLMProcess() as llm:
        asyncio.run(_one_turn(llm.base_url))
        body = llm.last_body()
        throughput = asyncio.run(_throughput_both(llm.base_url, body))
    burst = burst_floor(body)
    sdk, raw = throughput["sdk"], throughput["raw"]
    print(
        f"floors: SDK {sdk['msgs_per_s']:.0f} msg/s ({sdk['cpu_ms_per_request']:.2f} ms CPU), "
        f"raw {raw['msgs_per_s']:.0f} msg/s ({raw['cpu_ms_per_request']:.2f} ms CPU); "
        f"burst of {BURST} x {BURST_DELAY_S:.0f} s: p99 {burst.get('p99_s', '?')} s"
    )
    return {"floors": {**throughput, "burst": burst}}


def main() -> None:
    parser = argparse.ArgumentParser(description="bare-client floors")
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--burst", type=int, metavar="SESSIONS")
    parser.add_argument("--body", type=Path, help="the request body of each burst request")
    args = parser.parse_args()
    if args.burst:
        body = args.body.read_bytes() if args.body else None
        print(json.dumps(run_child_main(_burst(args.burst, body))), flush=True)
    else:
        print(json.dumps(run(args.quick), indent=2))


if __name__ == "__main__":
    main()
