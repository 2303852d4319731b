"""R8 (Telegram): bursts stay within ~1/s per chat, 20/min per group and 30/s overall; after a
429 every send pauses for retry_after; nothing is lost or reordered.

The burst runs on the real adapter against the fake with the windows scaled down twenty
times, so it takes seconds; the default windows are checked on a virtual clock. Rates are
measured where the adapter hands a request to the HTTP client, so the jitter of a busy
machine between there and the fake does not blur them; what arrived, and in which order, is
checked at the fake."""

from __future__ import annotations

import asyncio
import bisect
import itertools
import time
from collections.abc import Awaitable, Callable
from typing import Any

from bot.errors import RateLimited
from bot.messages import Conversation, ConversationKind, OutboundMessage, SentRef
from channels.telegram import TelegramChannel
from channels.telegram_pacing import RateLimits, SendPacer
from tests.channels.telegram.conftest import ALICE, GROUP
from tests.fakes.telegram import FakeTelegram

SCALED = RateLimits(
    chat_interval_s=0.05, group_limit=20, group_window_s=3.0, global_limit=30, global_window_s=0.5
)
EPSILON = 1e-6


def _most_in_window(stamps: list[float], window: float) -> int:
    stamps = sorted(stamps)
    return max(
        (bisect.bisect_left(stamps, t + window - EPSILON) - i for i, t in enumerate(stamps)),
        default=0,
    )


class Dispatches:
    """When the adapter let each request go, to which chat (the pacer's own clock readings:
    a stamp taken later, at the send, would also hold however long the OS preempted the
    process in between, and a busy machine could make two paced sends look too close), and
    when a 429 was learned."""

    def __init__(self, channel: TelegramChannel) -> None:
        self.sent: list[tuple[float, str]] = []
        self.limited_at: list[float] = []
        self._send = channel._send_text
        channel._send_text = self._timed  # type: ignore[method-assign]
        record = channel.pacer.record

        def recorded(chat_id: str, is_group: bool, now: float) -> None:
            self.sent.append((now, chat_id))
            record(chat_id, is_group, now)

        channel.pacer.record = recorded  # type: ignore[method-assign]

    async def _timed(self, message: OutboundMessage, text: str) -> SentRef:
        try:
            return await self._send(message, text)
        except RateLimited:
            self.limited_at.append(time.monotonic())
            raise

    def times(self, chat_id: str | None = None) -> list[float]:
        return [t for t, chat in self.sent if chat_id is None or chat == chat_id]


async def test_r8_outbound_rate_limits_and_429(
    fake: FakeTelegram, start_channel: Callable[..., Awaitable[TelegramChannel]]
) -> None:
    channel = await start_channel(chat_interval_s=1.0)
    channel.pacer = SendPacer(SCALED)
    dispatches = Dispatches(channel)
    dm = Conversation("tg", str(ALICE), ConversationKind.DM)
    group = Conversation("tg", str(GROUP), ConversationKind.GROUP)
    others = [Conversation("tg", str(1000 + i), ConversationKind.DM) for i in range(30)]
    sends = [channel.send(OutboundMessage(dm, f"dm {i}")) for i in range(50)]
    sends += [channel.send(OutboundMessage(group, f"group {i}")) for i in range(40)]
    sends += [
        channel.send(OutboundMessage(c, f"{c.chat_id} {i}")) for i in range(2) for c in others
    ]
    burst = asyncio.gather(*sends)
    await fake.wait_until(lambda: len(fake.calls_of("sendMessage")) >= 40)
    fake.fail_next("sendMessage", 429, "Too Many Requests: retry after 1", retry_after=1)
    await asyncio.wait_for(burst, 30)

    # nothing lost, nothing doubled, nothing reordered within a chat
    assert fake.texts(ALICE) == [f"dm {i}" for i in range(50)]
    assert fake.texts(GROUP) == [f"group {i}" for i in range(40)]
    for c in others:
        assert fake.texts(int(c.chat_id)) == [f"{c.chat_id} 0", f"{c.chat_id} 1"]
    assert len([c for c in fake.calls_of("sendMessage") if c.status == 429]) == 1

    # once the 429 was known, no chat sent anything for retry_after
    (learned,) = dispatches.limited_at
    later = [t - learned for t in dispatches.times() if t > learned]
    assert later and min(later) >= 1.0

    # the rates
    dm_times = dispatches.times(str(ALICE))
    assert min(b - a for a, b in itertools.pairwise(dm_times)) >= SCALED.chat_interval_s
    group_times = dispatches.times(str(GROUP))
    # the limit holds; that the pacer uses all of it is checked on the virtual clock below
    # (here a busy machine may send slower than the pacer would allow)
    assert _most_in_window(group_times, SCALED.group_window_s) <= 20
    assert group_times[-1] - group_times[0] >= SCALED.group_window_s
    assert _most_in_window(dispatches.times(), SCALED.global_window_s) <= 30


def test_default_limits_on_a_virtual_clock() -> None:
    """100 messages to one group and 100 to one person, as fast as the pacer allows."""
    pacer = SendPacer(RateLimits())
    now = 0.0
    sent: dict[str, list[float]] = {"group": [], "dm": []}
    queue: list[tuple[str, bool]] = [("group", True), ("dm", False)] * 100
    while queue:
        waits = [(pacer.wait(chat, is_group, now), i) for i, (chat, is_group) in enumerate(queue)]
        wait, index = min(waits)
        if wait > 0:
            now += wait
            continue
        chat, is_group = queue.pop(index)
        pacer.record(chat, is_group, now)
        sent[chat].append(now)
    for stamps in sent.values():
        assert min(b - a for a, b in itertools.pairwise(stamps)) >= 1.0
    assert _most_in_window(sent["group"], 60.0) == 20
    assert sent["group"][-1] >= 4 * 60.0  # 100 messages need at least five windows
    assert sent["dm"][-1] == 99.0


def test_the_bot_wide_limit_holds_across_many_chats() -> None:
    pacer = SendPacer(RateLimits())
    now, stamps = 0.0, []
    chats: list[Any] = [str(i) for i in range(100)]
    for chat in chats:
        wait = pacer.wait(chat, False, now)
        now += max(wait, 0.0)
        pacer.record(chat, False, now)
        stamps.append(now)
    assert _most_in_window(stamps, 1.0) == 30
    assert stamps[-1] >= 3.0
