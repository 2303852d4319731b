"""P7: prompt weight. The bytes of the request body of a plain "hello" turn with the default
tools, as the fake LLM receives it (target <= 8 KB).

The gateway runs on the default config (sandbox, memory and every other default on) and the
message comes from the owner in a DM, who is offered the most tools; the body is taken at
the fake LLM, then split into its parts (system prompt, tool schemas, messages).

    python -m bench.p7_prompt
"""

from __future__ import annotations

import asyncio
import json
import tempfile
from pathlib import Path
from typing import Any

from bench.common import FakeLLMProcess, TimingChannel, bench_config

TARGET_BYTES = 8 * 1024


def _size(value: Any) -> int:
    return len(json.dumps(value, separators=(",", ":")).encode())


def breakdown(body: bytes) -> dict[str, Any]:
    """Sizes of a chat-completions request body and of its parts."""
    data = json.loads(body)
    messages = data.get("messages", [])
    system = [m for m in messages if m.get("role") == "system"]
    tools = data.get("tools") or []
    return {
        "bytes": len(body),
        "system_bytes": sum(len(str(m.get("content", "")).encode()) for m in system),
        "tools": len(tools),
        "tools_bytes": _size(tools) if tools else 0,
        "tool_names": [t.get("function", {}).get("name") for t in tools],
        "messages": len(messages),
    }


async def _measure() -> dict[str, Any]:
    from bot.gateway import Gateway

    with FakeLLMProcess() as fake, tempfile.TemporaryDirectory(prefix="decapod-p7-") as tmp:
        channel = TimingChannel()
        config = bench_config(Path(tmp), fake.base_url)
        async with Gateway(config, channels={"bench": channel}) as gateway:
            done = channel.expect("owner")
            await gateway.handle_inbound(channel.inbound("hello", "owner"))
            await asyncio.wait_for(done, 30)
        body = fake.last_body()
    result = breakdown(body)
    result["ok"] = result["bytes"] <= TARGET_BYTES
    return result


def run(quick: bool = False) -> dict[str, Any]:
    result = asyncio.run(_measure())
    print(
        f"P7 prompt weight: {result['bytes']:,} bytes ({result['tools']} tools, "
        f"{result['tools_bytes']:,} bytes; system prompt {result['system_bytes']:,} bytes)"
    )
    return {"P7": result}


if __name__ == "__main__":
    print(json.dumps(run(), indent=2))
