"""Shared bench helpers: percentiles, RSS, a channel that times replies, a config on a fake."""

from __future__ import annotations

import asyncio
import os
import socket
import statistics
import time
from pathlib import Path
from typing import Any

from bot.messages import (
    Conversation,
    ConversationKind,
    Identity,
    InboundMessage,
    OutboundMessage,
    SentRef,
)
from channels.base import BaseChannel


def pct(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    k = min(len(ordered) - 1, max(0, round(q / 100 * (len(ordered) - 1))))
    return ordered[k]


def median(values: list[float]) -> float:
    return statistics.median(values) if values else float("nan")


def rss_mb(pid: int | None = None) -> float:
    with open(f"/proc/{pid or 'self'}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return float("nan")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class TimingChannel(BaseChannel):
    """Records when each conversation's reply was sent."""

    type = "bench"
    max_message_len = 100_000

    def __init__(self, name: str = "bench") -> None:
        super().__init__(name)
        self.sent: dict[str, asyncio.Future[float]] = {}
        self._seq = 0

    def expect(self, chat_id: str) -> asyncio.Future[float]:
        fut: asyncio.Future[float] = asyncio.get_running_loop().create_future()
        self.sent[chat_id] = fut
        return fut

    async def _send_text(self, message: OutboundMessage, text: str) -> SentRef:
        fut = self.sent.get(message.conversation.chat_id)
        if fut is not None and not fut.done():
            fut.set_result(time.perf_counter())
        self._seq += 1
        return SentRef(message.conversation, str(self._seq))

    def inbound(self, text: str, chat_id: str) -> InboundMessage:
        self._seq += 1
        return InboundMessage(
            id=f"b{self._seq}",
            identity=Identity(self.name, chat_id),
            conversation=Conversation(self.name, chat_id, ConversationKind.DM),
            text=text,
        )


def bench_config(home: Path, llm_base_url: str, **extra: Any) -> Any:
    from bot.config import parse_config

    os.environ.setdefault("BENCH_LLM_KEY", "sk-bench")
    data: dict[str, Any] = {
        "http": {"enabled": False},
        "logging": {"file": "", "level": "WARNING"},
        "providers": {
            "fake": {
                "base_url": llm_base_url + "/v1",
                "api_key_env": "BENCH_LLM_KEY",
                "health_probe": False,
            }
        },
        "models": {"chat": ["fake:bench-model"]},
    }
    data.update(extra)
    return parse_config(data, home)
