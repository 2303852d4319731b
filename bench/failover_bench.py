"""Failover overhead: with the primary answering 429, the extra time before the fallback's
answer starts, beyond the fallback's own latency (target < 50 ms).

Two chains built from config as the gateway builds them (ProviderSet, the real openai SDK),
against the fake LLM in its own process:

- fallback only: ["fallback:good"]
- failover:      ["primary:busy", "fallback:good"], where every request for "busy" gets
                 HTTP 429 with Retry-After: 0

The failover chain keeps trying the primary on every turn (its 429 cooldown and breaker are
set to let it), so each sample pays the 429 round trip and the switch. Time to the first text
is measured for each chain, interleaved, on warm connections; the overhead is the difference
of the medians (and of the p95s).

    python -m bench.failover_bench [--quick]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import time
from typing import Any

from bench.common import FakeLLMProcess, median, pct
from bot.providers.base import ChatMessage, ChatRequest, TextDelta
from bot.providers.build import ProviderSet
from bot.providers.config import ModelsConfig, ProviderConfig

TARGET_MS = 50.0


def _providers(base_url: str) -> dict[str, ProviderConfig]:
    os.environ.setdefault("BENCH_LLM_KEY", "sk-bench")
    common = {"base_url": base_url + "/v1", "api_key_env": "BENCH_LLM_KEY", "health_probe": False}
    return {"primary": ProviderConfig(**common), "fallback": ProviderConfig(**common)}


def _models(chain: list[str]) -> ModelsConfig:
    # the primary stays in the rotation: no cooldown after a 429, no breaker opening
    return ModelsConfig(
        chat=chain,
        rate_limit_min_cooldown_s=0,
        failure_threshold=1_000_000,
        failure_rate_min_calls=1_000_000,
    )


async def _first_text_ms(chain: Any) -> float:
    request = ChatRequest(model="", messages=(ChatMessage("user", "hello"),))
    start = time.perf_counter()
    first = None
    async for event in chain.stream(request):
        if first is None and isinstance(event, TextDelta):
            first = time.perf_counter()
    if first is None:
        raise RuntimeError("no text came back")
    return (first - start) * 1000


async def _measure(samples: int) -> dict[str, Any]:
    with FakeLLMProcess(fail_model="busy") as fake:
        providers = _providers(fake.base_url)
        direct = ProviderSet(providers, _models(["fallback:good"]))
        failover = ProviderSet(providers, _models(["primary:busy", "fallback:good"]))
        async with direct, failover:
            one, two = direct.for_purpose("chat"), failover.for_purpose("chat")
            for _ in range(20):  # warm-up: connections, SDK caches
                await _first_text_ms(one)
                await _first_text_ms(two)
            fake.reset()
            base, over = [], []
            for _ in range(samples):
                base.append(await _first_text_ms(one))
                over.append(await _first_text_ms(two))
            refused = fake.stats()["chat_requests"] - 2 * samples
    extra_p50 = median(over) - median(base)
    extra_p95 = pct(over, 95) - pct(base, 95)
    return {
        "samples": samples,
        "fallback_only_p50_ms": round(median(base), 2),
        "failover_p50_ms": round(median(over), 2),
        "extra_p50_ms": round(extra_p50, 2),
        "extra_p95_ms": round(extra_p95, 2),
        "primary_429s": refused,
        "ok": extra_p50 < TARGET_MS and refused == samples,
    }


def run(quick: bool = False) -> dict[str, Any]:
    result = asyncio.run(_measure(50 if quick else 200))
    print(
        f"Failover: first text {result['fallback_only_p50_ms']} ms on the fallback alone, "
        f"{result['failover_p50_ms']} ms after a 429 from the primary: "
        f"+{result['extra_p50_ms']} ms (p95 +{result['extra_p95_ms']} ms)"
    )
    return {"failover": result}


def main() -> None:
    parser = argparse.ArgumentParser(description="failover overhead")
    parser.add_argument("--quick", action="store_true")
    args = parser.parse_args()
    print(json.dumps(run(args.quick), indent=2))


if __name__ == "__main__":
    main()
