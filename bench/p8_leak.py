"""P8: leak check. RSS of a gateway after 100k messages across 1k sessions, against its RSS
after 10k: growth <= 10 %.

Two paths, each in a fresh process (so nothing an earlier bench allocated counts):

- in-process: a channel that hands messages straight to the gateway, and a provider that
  answers at once (bench/load.py), so the gateway's own state is what is measured: sessions,
  caches, the store, tasks. 10k -> 100k messages (quick: 10k -> 30k). Each session's history
  window (40 messages) fills during the first 20k, so a quick run still compares two states
  with full windows only from 20k on.
- telegram: the real adapter (python-telegram-bot, long polling) against the fake Bot API in
  another process, same provider. 3k -> 15k messages (quick: 1k -> 5k): the adapter is slower,
  and what could leak there (per-chat state, request objects) shows at this size.

    python -m bench.p8_leak [--quick]
"""

from __future__ import annotations

import argparse
import json
import logging
import time
from typing import Any

from bench.common import child_json, rss_mb, run_child_main
from bench.load import InProcessLoad, InstantProvider, TelegramLoad

TARGET_GROWTH = 0.10
SESSIONS = 1000


async def _measure(path: str, first: int, last: int, sessions: int) -> dict[str, Any]:
    load_cls = InProcessLoad if path == "inprocess" else TelegramLoad
    started = time.perf_counter()
    checkpoints: dict[int, float] = {}
    async with load_cls(provider=InstantProvider()) as load:
        rounds = last // sessions
        for r in range(1, rounds + 1):
            await load.round(sessions, timeout=120)
            done = r * sessions
            if done in (first, last) or r == 1:
                checkpoints[done] = rss_mb()
        elapsed = time.perf_counter() - started
    at_first, at_last = checkpoints[first], checkpoints[last]
    growth = (at_last - at_first) / at_first
    return {
        "path": path,
        "sessions": sessions,
        "first_messages": first,
        "last_messages": last,
        "rss_first_round_mb": round(checkpoints[sessions], 1),
        "rss_at_first_mb": round(at_first, 1),
        "rss_at_last_mb": round(at_last, 1),
        "growth": round(growth, 4),
        "msgs_per_s": round(last / elapsed, 1),
        "ok": growth <= TARGET_GROWTH,
    }


def _child(path: str, first: int, last: int) -> None:
    logging.basicConfig(level=logging.ERROR)
    print(json.dumps(run_child_main(_measure(path, first, last, SESSIONS))), flush=True)


def _spawn(path: str, first: int, last: int, timeout: float) -> dict[str, Any]:
    result = child_json(["bench.p8_leak", "--child", path, str(first), str(last)], timeout)
    result.setdefault("path", path)
    return result


def run(quick: bool = False) -> dict[str, Any]:
    inproc = _spawn("inprocess", *((10_000, 30_000) if quick else (10_000, 100_000)), 600)
    telegram = _spawn("telegram", *((1_000, 5_000) if quick else (3_000, 15_000)), 600)
    for r in (inproc, telegram):
        if "error" in r:
            print(f"P8 {r['path']}: not run: {r['error']}")
        else:
            print(
                f"P8 {r['path']}: RSS {r['rss_at_first_mb']} MB after {r['first_messages']:,} "
                f"messages, {r['rss_at_last_mb']} MB after {r['last_messages']:,} "
                f"({r['growth']:+.1%}; {r['msgs_per_s']:.0f} msg/s)"
            )
    return {"P8": inproc, "P8_telegram": telegram}


def main() -> None:
    parser = argparse.ArgumentParser(description="P8 leak check")
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--child", nargs=3, metavar=("PATH", "FIRST", "LAST"))
    args = parser.parse_args()
    if args.child:
        path, first, last = args.child
        _child(path, int(first), int(last))
    else:
        print(json.dumps(run(args.quick), indent=2))


if __name__ == "__main__":
    main()
