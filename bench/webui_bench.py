"""UI: the web UI's time to first byte of `/` (the signed-in chat page) and of a chat answer
over the WebSocket (send -> first streamed text, the fake LLM answering at once), p50 and p95,
and the chat page's weight (HTML + CSS + JS as served; target under 100 KB).

    python -m bench.webui_bench [--quick]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import re
import tempfile
import time
from pathlib import Path
from typing import Any

import aiohttp

from bench.common import median, pct
from bot.config import parse_config
from bot.gateway import Gateway
from tests.fakes.llm import FakeLLM

PASSWORD = "bench password 123"
PAGE_WEIGHT_TARGET = 100 * 1024


async def _signed_in(http: aiohttp.ClientSession, base: str, code: str) -> str:
    async with http.get(base + "/") as resp:
        token = re.search(r'name="csrf" value="([^"]+)"', await resp.text()).group(1)  # type: ignore[union-attr]
    data = {"csrf": token, "code": code, "password": PASSWORD, "confirm": PASSWORD}
    async with http.post(base + "/welcome", data=data) as resp:
        resp.raise_for_status()
    async with http.get(base + "/") as resp:
        return re.search(r'data-csrf="([^"]+)"', await resp.text()).group(1)  # type: ignore[union-attr]


async def _measure(samples: int) -> dict[str, Any]:
    os.environ.setdefault("BENCH_LLM_KEY", "sk-bench")
    with tempfile.TemporaryDirectory() as home:
        async with FakeLLM() as fake:
            config = parse_config(
                {
                    "http": {"port": 0},
                    "logging": {"file": ""},
                    "providers": {
                        "fake": {"base_url": fake.base_url + "/v1", "api_key_env": "BENCH_LLM_KEY"}
                    },
                    "models": {"chat": ["fake:bench"]},
                    "memory": {"enabled": False},
                    "sandbox": {"backend": "none"},
                },
                Path(home),
            )
            async with Gateway(config) as gw:
                assert gw.http is not None and gw.setup_code is not None
                base = f"http://127.0.0.1:{gw.http.port}"
                jar = aiohttp.CookieJar(unsafe=True)
                async with aiohttp.ClientSession(cookie_jar=jar) as http:
                    csrf = await _signed_in(http, base, gw.setup_code)
                    page = await _page_ttfb(http, base, samples)
                    weight = await _weight(http, base)
                    answer = await _answer_ttfb(http, base, csrf, samples)
    return {
        "samples": samples,
        "page_ttfb_p50_ms": round(median(page), 2),
        "page_ttfb_p95_ms": round(pct(page, 95), 2),
        "answer_ttfb_p50_ms": round(median(answer), 1),
        "answer_ttfb_p95_ms": round(pct(answer, 95), 1),
        **weight,
        "page_weight_ok": weight["page_weight_bytes"] < PAGE_WEIGHT_TARGET,
    }


async def _page_ttfb(http: aiohttp.ClientSession, base: str, samples: int) -> list[float]:
    out = []
    for i in range(samples + 5):
        start = time.perf_counter()
        async with http.get(base + "/") as resp:  # returns once the headers are in
            took = (time.perf_counter() - start) * 1000
            await resp.read()
        if i >= 5:  # warm-up: templates compile on first use
            out.append(took)
    return out


async def _weight(http: aiohttp.ClientSession, base: str) -> dict[str, int]:
    async with http.get(base + "/") as resp:
        html = await resp.read()
    assets = re.findall(rb'(?:href|src)="(/static/[^"]+)"', html)
    sizes = {"html_bytes": len(html), "asset_bytes": 0}
    for path in assets:
        async with http.get(base + path.decode()) as resp:
            sizes["asset_bytes"] += len(await resp.read())
    sizes["page_weight_bytes"] = sizes["html_bytes"] + sizes["asset_bytes"]
    return sizes


async def _answer_ttfb(
    http: aiohttp.ClientSession, base: str, csrf: str, samples: int
) -> list[float]:
    out = []
    async with http.ws_connect(f"{base}/ws?csrf={csrf}", headers={"Origin": base}) as ws:
        await ws.send_json({"type": "hello", "after": None, "have": {}})
        while (await ws.receive_json())["type"] != "ready":
            pass
        for i in range(samples + 3):
            client_id = f"bench-{i:08d}"
            start = time.perf_counter()
            await ws.send_json({"type": "send", "id": client_id, "text": f"question {i}"})
            first: float | None = None
            while True:
                event = await ws.receive_json(timeout=60)
                if event["type"] == "delta" and first is None:
                    first = (time.perf_counter() - start) * 1000
                if event["type"] == "done":
                    break
            if i >= 3 and first is not None:  # warm-up: the SDK's first client
                out.append(first)
    return out


def run(quick: bool = False) -> dict[str, Any]:
    result = asyncio.run(_measure(20 if quick else 100))
    print(
        f"web UI: / TTFB p50 {result['page_ttfb_p50_ms']} ms; chat answer TTFB p50 "
        f"{result['answer_ttfb_p50_ms']} ms; chat page {result['page_weight_bytes'] / 1024:.1f} KB"
    )
    return {"webui": result}


def main() -> None:
    parser = argparse.ArgumentParser(description="web UI latency and page weight")
    parser.add_argument("--quick", action="store_true")
    args = parser.parse_args()
    print(json.dumps(run(args.quick), indent=2))


if __name__ == "__main__":
    main()
