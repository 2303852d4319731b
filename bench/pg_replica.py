"""One replica of P2 pg (bench/pg_bench.py): a gateway in this process on the PostgreSQL
database it is given, fed its share of the sessions, as a load balancer with sticky sessions
would hand them to it. Prints READY once the gateway is up, waits for a line on stdin (every
replica starts together), runs the rounds, prints one JSON line of what it did.

    python -m bench.pg_replica --url postgresql://... --llm http://... --replica 0 \\
        --replicas 2 --sessions 1000 --rounds 3
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import json
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from bench.common import bench_config, run_child_main
from bench.load import QUICK_STOP, CountingChannel
from bot.gateway import Gateway
from bot.heap import settle_after_start
from bot.messages import InboundMessage


class ReplicaChannel(CountingChannel):
    """Delivery ids unique across replicas: the platform's ids, one sequence per platform."""

    def __init__(self, replica: int) -> None:
        super().__init__()
        self.replica = replica

    def inbound(self, text: str, chat_id: str) -> InboundMessage:
        message = super().inbound(text, chat_id)
        return dataclasses.replace(message, id=f"r{self.replica}-{message.id}")


async def _run(args: argparse.Namespace) -> dict[str, Any]:
    mine = [s for s in range(args.sessions) if s % args.replicas == args.replica]
    channel = ReplicaChannel(args.replica)
    with tempfile.TemporaryDirectory(prefix="decapod-replica-") as home:
        config = bench_config(
            Path(home), args.llm, store={"url": args.url}, gateway=dict(QUICK_STOP)
        )
        async with Gateway(config, channels={"bench": channel}) as gw:
            settle_after_start()  # as `decapod run` does once the gateway is up
            print("READY", flush=True)
            await asyncio.to_thread(sys.stdin.readline)
            start = time.perf_counter()
            for r in range(args.rounds):
                done = channel.arm(len(mine))
                for s in mine:
                    await gw.handle_inbound(channel.inbound(f"m{r}", f"s{s}"))
                await asyncio.wait_for(done.wait(), 600)
                if channel.failed:
                    raise RuntimeError(f"{channel.failed} of {len(mine)} turns failed")
            elapsed = time.perf_counter() - start
    return {"messages": len(mine) * args.rounds, "elapsed_s": elapsed}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--url", required=True)
    parser.add_argument("--llm", required=True)
    parser.add_argument("--replica", type=int, required=True)
    parser.add_argument("--replicas", type=int, required=True)
    parser.add_argument("--sessions", type=int, default=1000)
    parser.add_argument("--rounds", type=int, default=3)
    print(json.dumps(run_child_main(_run(parser.parse_args()))), flush=True)


if __name__ == "__main__":
    main()
