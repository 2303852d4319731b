"""P3: concurrency. 2,000 sessions each send one message at the same moment; the model (the
fake LLM in its own process) takes 2 s to answer each, through the real openai SDK. Every
message must be answered; latency is counted from the moment the burst is handed to the
gateway to each reply; p99 <= 1.25x the bare-client floor measured just before it
(bench/floors.py's burst, each request with the body a turn sends; three such pairs, the
median ratio) and RSS <= 300 MB.

The gateway runs with `gateway.max_concurrent_turns = 2000` (the default, 64, protects a
local model server; a hosted API takes 2,000 waiting requests). It runs in a fresh process,
so the RSS is the gateway's own.

    python -m bench.p3_concurrency [--quick]
    python -m bench.p3_concurrency --child 2000 [--processes 2]   # one run, no floor
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import time
from typing import Any

from bench.common import FakeLLMProcess, child_json, median, pct, rss_mb, run_child_main
from bench.load import CountingChannel, InProcessLoad

LLM_DELAY_S = 2.0
TARGET_RSS_MB = 300.0
#: P3 runs, each after a floor run of its own
PAIRS = 3


class _StampingChannel(CountingChannel):
    """Also records when each reply was sent."""

    def __init__(self) -> None:
        super().__init__()
        self.sent_at: list[float] = []

    async def _send_text(self, message: Any, text: str) -> Any:
        self.sent_at.append(time.perf_counter())
        return await super()._send_text(message, text)


async def _measure(sessions: int, processes: int = 1) -> dict[str, Any]:
    with FakeLLMProcess(delay_s=LLM_DELAY_S) as fake:
        gateway = {"max_concurrent_turns": sessions, "turn_processes": processes}
        load = InProcessLoad(fake.base_url, gateway=gateway)
        load.channel = channel = _StampingChannel()
        async with load:
            assert load.gateway is not None
            peak = rss_mb()
            start, start_epoch = time.perf_counter(), time.time()
            burst = [channel.inbound("hello", f"s{s}") for s in range(sessions)]
            done = channel.arm(sessions)
            accepted = asyncio.gather(*(load.gateway.handle_inbound(m) for m in burst))

            async def watch_rss() -> None:
                nonlocal peak
                while not done.is_set():
                    peak = max(peak, rss_mb())
                    await asyncio.sleep(0.1)

            watcher = asyncio.create_task(watch_rss())
            await accepted
            accepted_s = time.perf_counter() - start
            try:
                await asyncio.wait_for(done.wait(), 120)
            except TimeoutError:
                pass
            watcher.cancel()
            peak = max(peak, rss_mb())
            latencies = [t - start for t in channel.sent_at]
            answered, failed = channel.replies, channel.failed
            stats = fake.stats()
            calls = stats["chat_requests"]
            requests_out = [
                round(stats[k] - start_epoch, 3) if stats[k] else None
                for k in ("first_at", "last_at")
            ]
            arrivals = fake.arrivals(start_epoch)
    ok_answers = answered - failed
    p99 = pct(latencies, 99)
    return {
        "sessions": sessions,
        "turn_processes": processes,
        "llm_delay_s": LLM_DELAY_S,
        "answered": ok_answers,
        "failed": failed,
        "llm_calls": calls,
        "accepted_s": round(accepted_s, 3),
        #: when the first and the last request reached the model, from the burst
        "llm_requests_s": requests_out,
        #: and by percentile, beside the floor's (`floor_arrivals_s`)
        "arrivals_s": arrivals,
        "p50_s": round(median(latencies), 3),
        "p99_s": round(p99, 3),
        "max_s": round(max(latencies, default=float("nan")), 3),
        "peak_rss_mb": round(peak, 1),
        #: all answered within the memory bound; the p99 is judged against the floor
        "ok": ok_answers == sessions and peak <= TARGET_RSS_MB,
    }


def _child(sessions: int, processes: int = 1) -> None:
    logging.basicConfig(level=logging.ERROR)
    print(json.dumps(run_child_main(_measure(sessions, processes))), flush=True)


def run(quick: bool = False) -> dict[str, Any]:
    """P3 and its floor (bench/floors.py's burst) in turns, each in a fresh process: the
    floor moves with the machine's load by a second or more between runs, so each P3 run is
    judged against the floor measured just before it."""
    from bench.floors import burst_floor, turn_body

    sessions = 2000  # the figure is defined at this size; quick runs fewer pairs
    runs: list[dict[str, Any]] = []
    ratios: list[float] = []
    body = turn_body()  # the floor sends what a turn sends: the fake parses the same bytes
    for _ in range(2 if quick else PAIRS):
        floor = burst_floor(body, sessions)
        result = child_json(["bench.p3_concurrency", "--child", str(sessions)], 300)
        if "error" in result:
            print(f"P3 concurrency: not run: {result['error']}")
            return {"P3": result}
        result["floor_p99_s"] = floor.get("p99_s")
        result["floor_arrivals_s"] = floor.get("arrivals_s", {})
        if result["floor_p99_s"]:
            ratios.append(result["p99_s"] / result["floor_p99_s"])
        runs.append(result)
    # the run of the median ratio (or p99) stands for P3, with every pair beside it
    ranked = sorted(runs, key=lambda r: r["p99_s"] / (r["floor_p99_s"] or 1.0))
    chosen = dict(ranked[len(ranked) // 2])
    chosen["pairs"] = [
        {
            "p99_s": r["p99_s"],
            "floor_p99_s": r["floor_p99_s"],
            "peak_rss_mb": r["peak_rss_mb"],
            "arrivals_s": r["arrivals_s"],
            "floor_arrivals_s": r["floor_arrivals_s"],
        }
        for r in runs
    ]
    chosen["peak_rss_mb"] = max(r["peak_rss_mb"] for r in runs)
    chosen["ok"] = all(r["ok"] for r in runs)
    if ratios:
        chosen["floor_ratio"] = round(median(ratios), 3)
    print(
        f"P3 concurrency: {chosen['answered']}/{chosen['sessions']} answered "
        f"({chosen['failed']} failed), p50 {chosen['p50_s']} s, p99 {chosen['p99_s']} s "
        f"(floor {chosen['floor_p99_s']} s), peak RSS {chosen['peak_rss_mb']} MB"
    )
    for r in runs:  # the burst's shape at the model: when its requests arrived, by percentile
        ours, floor_at = _shape(r["arrivals_s"]), _shape(r["floor_arrivals_s"])
        print(f"  at the model: P3 {ours}; floor {floor_at}")
    return {"P3": chosen}


def _shape(arrivals: dict[str, float]) -> str:
    return " ".join(f"{k} {v:.2f}" for k, v in arrivals.items()) or "?"


def main() -> None:
    parser = argparse.ArgumentParser(description="P3 concurrency")
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--child", type=int, metavar="SESSIONS")
    parser.add_argument(
        "--processes",
        type=int,
        default=1,
        help="gateway.turn_processes of the child (the figure is defined with 1)",
    )
    args = parser.parse_args()
    if args.child:
        _child(args.child, args.processes)
    else:
        print(json.dumps(run(args.quick), indent=2))


if __name__ == "__main__":
    main()
