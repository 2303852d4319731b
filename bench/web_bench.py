"""WF: web_fetch overhead on a 200 KB page: the fetch from a loopback server and the
extraction to Markdown, p50 and p95, through the tool as the model calls it (the cache off,
so every call fetches). The fetch alone and the extraction alone are reported beside it.

    python -m bench.web_bench [--quick]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import time
from pathlib import Path
from typing import Any

from bench.common import median, pct
from bot.deps import Deps
from bot.messages import Conversation, ConversationKind, Identity
from bot.store import Store
from bot.tools import ToolContext
from bot.web.config import WebConfig
from bot.web.extract import page_text
from bot.web.fetch import Fetcher
from bot.web.guard import AddressGuard
from bot.web.net import open_session, system_network
from bot.web.tools import WebTools
from tests.fakes.web import FakePages


async def _measure(samples: int) -> dict[str, Any]:
    # the page server is on 127.0.0.1, which the guard refuses unless it is allowed
    config = WebConfig(allow_hosts=["127.0.0.1"], cache_ttl_s=0, fetches_per_minute=100_000)
    guard = AddressGuard(allow_hosts=config.allow_hosts)
    ctx = ToolContext(
        identity=Identity("bench", "1"),
        conversation=Conversation("bench", "1", ConversationKind.DM),
        session_key="bench:dm:1",
        deps=Deps(store=Store(Path("/nonexistent/unused.db")), redact=str),
        person_id="p1",
        role="owner",
    )
    async with FakePages() as pages:
        session = open_session(system_network(), user_agent=config.user_agent, guard=guard)
        try:
            fetcher = Fetcher(config, session, guard)
            tools = WebTools(config, fetcher=fetcher, search=None, redact=str, saver=None)
            url = pages.url("/page-200k")
            size = len((await fetcher.get(url)).body)
            for _ in range(3):  # warm-up: the extractor's import, connections
                await tools.web_fetch(ctx, url, max_chars=1000)
            whole, fetch, extract = [], [], []
            for _ in range(samples):
                start = time.perf_counter()
                out = await tools.web_fetch(ctx, url, max_chars=1000)
                whole.append((time.perf_counter() - start) * 1000)
                start = time.perf_counter()
                fetched = await fetcher.get(url)
                fetch.append((time.perf_counter() - start) * 1000)
                start = time.perf_counter()
                page_text(fetched)
                extract.append((time.perf_counter() - start) * 1000)
            if "hermit crab" not in out:
                raise RuntimeError("the page text did not come back")
        finally:
            await session.close()
    return {
        "samples": samples,
        "page_bytes": size,
        "p50_ms": round(median(whole), 1),
        "p95_ms": round(pct(whole, 95), 1),
        "fetch_p50_ms": round(median(fetch), 2),
        "extract_p50_ms": round(median(extract), 1),
    }


def run(quick: bool = False) -> dict[str, Any]:
    result = asyncio.run(_measure(10 if quick else 40))
    print(
        f"web_fetch, {result['page_bytes'] // 1000} KB page: p50 {result['p50_ms']} ms "
        f"(p95 {result['p95_ms']} ms); fetch alone {result['fetch_p50_ms']} ms, "
        f"extraction alone {result['extract_p50_ms']} ms"
    )
    return {"web_fetch": result}


def main() -> None:
    parser = argparse.ArgumentParser(description="web_fetch overhead")
    parser.add_argument("--quick", action="store_true")
    args = parser.parse_args()
    print(json.dumps(run(args.quick), indent=2))


if __name__ == "__main__":
    main()
