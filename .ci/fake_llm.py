"""The fake LLM (tests/fakes/llm.py) in a process of its own, for the install checks.

    PYTHONPATH=. python .ci/fake_llm.py [--model NAME]...
        prints "PORT <n>" once it listens on 127.0.0.1, then serves until SIGTERM or SIGINT

It lists the given models on GET /v1/models and answers any chat with REPLY. A message
"run: CMD" gets an `exec` tool call for CMD instead, and the tool's result comes back as
"sandbox said: <result>": a check that reads CMD's output in the reply knows the command
really ran in the sandbox.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import signal
from typing import Any

from bot.providers.base import ToolCall
from tests.fakes.llm import FakeLLM, RecordedRequest, Reply

REPLY = "pong from the fake model"
RUN = "run: "


def _text(message: dict[str, Any]) -> str:
    content = message.get("content") or ""
    if isinstance(content, list):  # content parts
        return "".join(part.get("text", "") for part in content if isinstance(part, dict))
    return str(content)


def reply_to(request: RecordedRequest) -> Reply:
    messages = request.body.get("messages") or [{}]
    last = messages[-1]
    if last.get("role") == "tool":
        return Reply(text=f"sandbox said: {_text(last)}")
    text = _text(last)
    if last.get("role") == "user" and text.startswith(RUN):
        arguments = json.dumps({"command": text.removeprefix(RUN)})
        return Reply(tool_calls=[ToolCall(id="call_exec_1", name="exec", arguments=arguments)])
    return Reply(text=REPLY)


async def serve(models: list[str]) -> None:
    fake = FakeLLM()
    fake.model_ids = models
    fake.reply_fn = reply_to
    await fake.start()
    print(f"PORT {fake.port}", flush=True)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    try:
        await stop.wait()
    finally:
        await fake.stop()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", action="append", default=[], help="a model to list")
    args = parser.parse_args()
    asyncio.run(serve(args.model or ["llama3.2"]))


if __name__ == "__main__":
    main()
