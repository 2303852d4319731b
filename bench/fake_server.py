"""tests/fakes/llm.py's FakeLLM in a process of its own, for the benches.

A bench drives Decapod (and the peer) against this one server on 127.0.0.1, so the fake's
own work runs on the other core and is not counted as the gateway's. Besides the fake's
routes it serves, on a second port of its own:

    GET  /bench/stats   {"chat_requests": n, "chat_bytes": [size of each body],
                         "first_at": t, "last_at": t,   (epoch seconds of the first and last)
                         "chat_times": [t, ...]}        (when each body was read, in order)
    GET  /bench/last    the raw body of the latest chat request
    POST /bench/reset   forget the requests seen so far

    python -m bench.fake_server [--delay 2.0] [--fail-model M]
        prints "PORT <llm> <control>", then serves until killed; requests for model M get
        HTTP 429 with Retry-After: 0
"""

from __future__ import annotations

import argparse
import asyncio
import json
import signal
import time

from aiohttp import web

from tests.fakes.llm import FakeLLM, RecordedRequest, Reply

REPLY_TEXT = "pong from fake llm"


class BenchFakeLLM(FakeLLM):
    """Records the size and the raw bytes of each chat request, and keeps no bodies (a long
    run sends hundreds of thousands of requests)."""

    def __init__(self, delay_s: float = 0.0, fail_model: str = "") -> None:
        super().__init__()
        self.chat_bytes: list[int] = []
        self.chat_times: list[float] = []
        self.last_body = b""
        self.default_text = REPLY_TEXT
        answer = Reply(text=REPLY_TEXT, delay_s=delay_s)
        refusal = Reply.error(429, retry_after=0)
        self.reply_fn = lambda r: refusal if fail_model and r.model == fail_model else answer

    async def start(self, port: int = 0) -> BenchFakeLLM:
        # FakeLLM.start with a listen backlog fit for 2,000 clients connecting at once (the
        # default, 128, drops the rest's SYNs, and the kernel retries them a second later)
        app = web.Application()
        app.router.add_post("/v1/chat/completions", self._openai_chat)
        app.router.add_post("/v1/embeddings", self._embeddings)
        app.router.add_get("/v1/models", self._models)
        self._runner = web.AppRunner(app, access_log=None, shutdown_timeout=0.5)
        await self._runner.setup()
        site = web.TCPSite(self._runner, self.host, port, backlog=4096, reuse_address=True)
        await site.start()
        self._port = self._runner.addresses[0][1]
        return self

    async def _record(self, request: web.Request) -> RecordedRequest:
        raw = await request.read()
        body = json.loads(raw) if raw else {}
        if request.path.endswith("/chat/completions"):
            self.chat_bytes.append(len(raw))
            self.chat_times.append(time.time())
            self.last_body = raw
        return RecordedRequest(request.method, request.path, dict(request.headers), body)


async def _serve(delay_s: float, fail_model: str) -> None:
    fake = BenchFakeLLM(delay_s, fail_model)
    app = web.Application()

    async def stats(_request: web.Request) -> web.Response:
        times = fake.chat_times
        return web.json_response(
            {
                "chat_requests": len(fake.chat_bytes),
                "chat_bytes": fake.chat_bytes,
                "first_at": min(times, default=None),
                "last_at": max(times, default=None),
                "chat_times": times,
            }
        )

    async def last(_request: web.Request) -> web.Response:
        return web.Response(body=fake.last_body, content_type="application/json")

    async def reset(_request: web.Request) -> web.Response:
        fake.chat_bytes.clear()
        fake.chat_times.clear()
        fake.last_body = b""
        return web.json_response({"ok": True})

    app.router.add_get("/bench/stats", stats)
    app.router.add_get("/bench/last", last)
    app.router.add_post("/bench/reset", reset)
    await fake.start()
    control = web.AppRunner(app, access_log=None)
    await control.setup()
    await web.TCPSite(control, "127.0.0.1", 0).start()
    control_port = control.addresses[0][1]
    print(f"PORT {fake.port} {control_port}", flush=True)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    await stop.wait()
    await control.cleanup()
    await fake.stop()


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="the fake LLM server for the benches")
    parser.add_argument("--delay", type=float, default=0.0, help="seconds before each answer")
    parser.add_argument("--fail-model", default="", help="answer 429 to requests for this model")
    args = parser.parse_args(argv)
    asyncio.run(_serve(args.delay, args.fail_model))


if __name__ == "__main__":
    main()
