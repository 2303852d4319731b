"""A load generator: thousands of sessions driven through the gateway, in rounds of one
message per session, either in-process (a channel that hands messages straight to the gateway)
or through a real adapter against its fake platform (Telegram, in a process of its own).

    async with InProcessLoad(config, provider=...) as load:
        await load.round(sessions=1000)               # one message per session, all answered

Every reply is counted; a round fails loudly when one is missing or says the model failed.
"""

from __future__ import annotations

import asyncio
import tempfile
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

from bench.common import PlatformFakes, TimingChannel, bench_config
from bot.gateway import Gateway
from bot.heap import settle_after_start
from bot.messages import OutboundMessage, SentRef
from bot.providers.base import ChatEvent, ChatRequest, Finish, TextDelta, Usage, UsageEvent

REPLY = "pong"
#: a bench that is stopped stops now, not after the default 10 s of grace for running turns
QUICK_STOP = {"shutdown_grace_s": 0.5}
FAILED_HINTS = ("not answering", "Sorry", "went wrong")


class InstantProvider:
    """Answers every request at once and keeps nothing: the gateway's own cost, no SDK."""

    name = "instant"

    async def stream(self, request: ChatRequest) -> AsyncIterator[ChatEvent]:
        yield TextDelta(REPLY)
        yield UsageEvent(Usage(input_tokens=10, output_tokens=1))
        yield Finish(reason="stop", provider=self.name, model="instant")

    async def probe(self) -> None:
        return None

    async def aclose(self) -> None:
        return None


class CountingChannel(TimingChannel):
    """Counts replies (and failed ones) and wakes a round when all have arrived."""

    def __init__(self, name: str = "bench") -> None:
        super().__init__(name)
        self.replies = 0
        self.failed = 0
        self._want = 0
        self._done: asyncio.Event | None = None

    def arm(self, want: int) -> asyncio.Event:
        self.replies, self.failed, self._want = 0, 0, want
        self._done = asyncio.Event()
        return self._done

    async def _send_text(self, message: OutboundMessage, text: str) -> SentRef:
        self.replies += 1
        if REPLY not in text and any(h in text for h in FAILED_HINTS):
            self.failed += 1
        if self._done is not None and self.replies >= self._want:
            self._done.set()
        return await super()._send_text(message, text)


class InProcessLoad:
    """A gateway in this process with one CountingChannel; `round()` sends one message per
    session (concurrently, as a burst) and waits for every reply."""

    def __init__(self, llm_base_url: str = "", provider: Any = None, **config: Any) -> None:
        self._url = llm_base_url or "http://127.0.0.1:9"
        self._provider = provider
        self._config = config
        self._tmp: tempfile.TemporaryDirectory[str] | None = None
        self.gateway: Gateway | None = None
        self.channel = CountingChannel()
        self.sent = 0
        self._msg = 0

    async def __aenter__(self) -> InProcessLoad:
        self._tmp = tempfile.TemporaryDirectory(prefix="decapod-load-")
        extra = dict(self._config)
        extra["gateway"] = {**QUICK_STOP, **extra.get("gateway", {})}
        config = bench_config(Path(self._tmp.name), self._url, **extra)
        self.gateway = Gateway(config, provider=self._provider, channels={"bench": self.channel})
        await self.gateway.start()
        settle_after_start()  # as `decapod run` does once the gateway is up
        return self

    async def __aexit__(self, *exc: object) -> None:
        if self.gateway is not None:
            await self.gateway.stop()
        if self._tmp is not None:
            self._tmp.cleanup()

    async def round(self, sessions: int, timeout: float = 600.0) -> float:
        """One message to each of `sessions` sessions at once; seconds until all answered."""
        assert self.gateway is not None
        done = self.channel.arm(sessions)
        start = time.perf_counter()
        messages = []
        for s in range(sessions):
            self._msg += 1
            messages.append(self.channel.inbound(f"message {self._msg}", f"s{s}"))
        await asyncio.gather(*(self.gateway.handle_inbound(m) for m in messages))
        await asyncio.wait_for(done.wait(), timeout)
        self.sent += sessions
        if self.channel.failed:
            raise RuntimeError(f"{self.channel.failed} of {sessions} replies were failures")
        return time.perf_counter() - start


class TelegramLoad:
    """A gateway in this process with the real Telegram adapter (python-telegram-bot, long
    polling) against the fake Bot API in another process; `round()` queues one private
    message from each of `sessions` users and waits until the bot sent as many replies."""

    def __init__(self, llm_base_url: str = "", provider: Any = None) -> None:
        self._url = llm_base_url or "http://127.0.0.1:9"
        self._provider = provider
        self._fakes: PlatformFakes | None = None
        self._tmp: tempfile.TemporaryDirectory[str] | None = None
        self.gateway: Gateway | None = None
        self.sent = 0

    async def __aenter__(self) -> TelegramLoad:
        import os

        from bench.platform_fakes import TELEGRAM_TOKEN_ENV

        self._fakes = PlatformFakes().__enter__()
        tg = self._fakes.info["telegram"]
        os.environ[TELEGRAM_TOKEN_ENV] = tg["token"]
        self._tmp = tempfile.TemporaryDirectory(prefix="decapod-load-tg-")
        channel = {
            "type": "telegram",
            "token_env": TELEGRAM_TOKEN_ENV,
            "api_base_url": tg["api_base_url"],
            "file_base_url": tg["file_base_url"],
            "stream": False,
            "chat_interval_s": 0.0,
            "messages_per_second": 1_000_000,
            "poll_timeout_s": 1,
            "access": {"dm_policy": "open"},
        }
        config = bench_config(
            Path(self._tmp.name), self._url, channels={"tg": channel}, gateway=QUICK_STOP
        )
        self.gateway = Gateway(config, provider=self._provider)
        try:
            await self.gateway.start()
        except BaseException:
            self._fakes.__exit__()
            raise
        return self

    async def __aexit__(self, *exc: object) -> None:
        if self.gateway is not None:
            await self.gateway.stop()
        if self._fakes is not None:
            self._fakes.__exit__()
        if self._tmp is not None:
            self._tmp.cleanup()

    async def round(self, sessions: int, timeout: float = 600.0) -> float:
        assert self._fakes is not None
        fakes = self._fakes
        start = time.perf_counter()
        await asyncio.to_thread(fakes.telegram_push, 1, sessions, f"message{self.sent}")
        replies = 0
        deadline = time.monotonic() + timeout
        while replies < sessions:
            if time.monotonic() > deadline:
                raise TimeoutError(f"{replies} of {sessions} Telegram replies arrived")
            await asyncio.sleep(0.05)
            replies += (await asyncio.to_thread(fakes.telegram_sent))["sendMessage"]
        self.sent += sessions
        return time.perf_counter() - start
