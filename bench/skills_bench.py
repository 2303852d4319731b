"""P10: skill reload. The time from writing a changed SKILL.md to the moment a new turn
would see it (the reload swapped in, debounce included), and proof that the next turn's
request carries it; then the prompt weight with 50 skills installed.

The gateway runs on the default config against the fake LLM; each round rewrites one
skill's description and waits for the reload event, then sends a turn and checks the
system prompt the fake LLM received.

    python -m bench.skills_bench
"""

from __future__ import annotations

import asyncio
import json
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

from bench.common import FakeLLMProcess, TimingChannel, bench_config
from bench.p7_prompt import TARGET_BYTES, breakdown

TARGET_S = 1.0
SKILLS_FOR_WEIGHT = 50


def _skill(name: str, description: str) -> str:
    return f"---\nname: {name}\ndescription: {description}\n---\n\nSteps for {name}.\n"


def _system(body: bytes) -> str:
    messages = json.loads(body).get("messages", [])
    return "".join(str(m.get("content", "")) for m in messages if m.get("role") == "system")


async def _measure(rounds: int) -> dict[str, Any]:
    from bot.gateway import Gateway

    with FakeLLMProcess() as fake, tempfile.TemporaryDirectory(prefix="decapod-p10-") as tmp:
        channel = TimingChannel()
        config = bench_config(Path(tmp), fake.base_url)
        skills_dir = config.home / config.skills.dir
        async with Gateway(config, channels={"bench": channel}) as gateway:
            await gateway.warmup.wait()  # the skills start after ready
            assert gateway.deps.skills is not None
            runtime = gateway.deps.skills.runtime
            await asyncio.wait_for(runtime.watching.wait(), 30)
            folder = skills_dir / "bench-skill"
            folder.mkdir(exist_ok=True)
            reloads: list[float] = []
            seen_by_next_turn = 0
            for i in range(rounds):
                generation = runtime.current.generation
                marker = f"version {i} of the bench skill"
                started = time.perf_counter()
                (folder / "SKILL.md").write_text(_skill("bench-skill", marker))
                await asyncio.wait_for(runtime.wait_for_generation(generation + 1), 30)
                reloads.append(time.perf_counter() - started)
                done = channel.expect("owner")
                await gateway.handle_inbound(channel.inbound("hello", "owner"))
                await asyncio.wait_for(done, 30)
                seen_by_next_turn += marker in _system(fake.last_body())
            # up to 50 offered skills in all (the shipped ones count)
            for i in range(SKILLS_FOR_WEIGHT - len(runtime.current.available)):
                description = f"Does bench task {i} in a few careful steps; use it for task {i}."
                (skills_dir / f"task-{i:02d}").mkdir()
                (skills_dir / f"task-{i:02d}" / "SKILL.md").write_text(
                    _skill(f"task-{i:02d}", description)
                )
            generation = runtime.current.generation
            await asyncio.wait_for(runtime.wait_for_generation(generation + 1), 30)
            while len(runtime.current.available) < SKILLS_FOR_WEIGHT:
                await asyncio.wait_for(
                    runtime.wait_for_generation(runtime.current.generation + 1), 30
                )
            # a fresh conversation, as P7 measures it
            done = channel.expect("fresh")
            await gateway.handle_inbound(channel.inbound("hello", "fresh"))
            await asyncio.wait_for(done, 30)
            weight = breakdown(fake.last_body())
    reloads.sort()
    return {
        "rounds": rounds,
        "reload_p50_ms": statistics.median(reloads) * 1000,
        "reload_max_ms": reloads[-1] * 1000,
        "seen_by_next_turn": seen_by_next_turn,
        "skills_installed": len(runtime.current.available),
        "system_bytes_50": weight["system_bytes"],
        "body_bytes_50": weight["bytes"],
        "ok": reloads[-1] <= TARGET_S
        and seen_by_next_turn == rounds
        and weight["bytes"] <= TARGET_BYTES,
    }


def run(quick: bool = False) -> dict[str, Any]:
    result = asyncio.run(_measure(5 if quick else 20))
    print(
        f"P10 skill reload: p50 {result['reload_p50_ms']:.0f} ms, max "
        f"{result['reload_max_ms']:.0f} ms over {result['rounds']} edits "
        f"({result['seen_by_next_turn']} seen by the next turn); with "
        f"{result['skills_installed']} skills: system prompt {result['system_bytes_50']:,} "
        f"bytes, request {result['body_bytes_50']:,} bytes"
    )
    return {"P10": result}


if __name__ == "__main__":
    print(json.dumps(run(), indent=2))
