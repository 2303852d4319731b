"""A text that goes out in several messages and fails part way (the Bot API answers 502 on
the Nth sendMessage, past the channel's own retries): the error says how far it got, and
sending what it names as unsent shows the person what one clean send would have, nothing
twice and nothing missing. Faults are injected at the fake Bot API."""

from __future__ import annotations

import re
from collections.abc import Awaitable, Callable

import pytest

from bot.errors import ChannelError
from bot.messages import Conversation, ConversationKind, OutboundMessage
from channels.base import BaseChannel
from channels.telegram import TelegramChannel
from tests.channels.telegram.conftest import ALICE
from tests.fakes.telegram import FakeTelegram

BOB = 43
PROSE = "\n\n".join(f"Paragraph {i}: " + "the markets moved a little. " * 12 for i in range(40))
CODE = (
    "Here is the script.\n\n```python\n"
    + "\n".join(f"total_{i} = compute(step={i})  # keep the running sum" for i in range(200))
    + "\n```\n\nRun it once a day."
)


@pytest.fixture(autouse=True)
def _quick_retries(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(BaseChannel, "retry_backoff_s", 0.01)


def _dm(user: int) -> Conversation:
    return Conversation("tg", str(user), ConversationKind.DM)


@pytest.mark.parametrize("text", [PROSE, CODE], ids=["prose", "cut-inside-a-code-block"])
@pytest.mark.parametrize("sent_before_outage", [0, 1, 2])
async def test_a_text_cut_off_by_an_outage_is_sent_on_from_where_it_stopped(
    fake: FakeTelegram,
    start_channel: Callable[..., Awaitable[TelegramChannel]],
    text: str,
    sent_before_outage: int,
) -> None:
    channel = await start_channel()
    chunks = channel.split(text)
    assert len(chunks) >= 3
    await channel.send(OutboundMessage(_dm(BOB), text))  # the clean send, to compare with
    clean = fake.texts(BOB)

    fake.fail_next(
        "sendMessage",
        502,
        "Bad Gateway",
        after=sent_before_outage,
        count=channel.max_transient_attempts,
    )
    with pytest.raises(ChannelError) as caught:
        await channel.send(OutboundMessage(_dm(ALICE), text))
    assert fake.texts(ALICE) == clean[:sent_before_outage]
    shown = chunks[sent_before_outage - 1].end if sent_before_outage else 0
    assert caught.value.delivered == shown

    await channel.send(OutboundMessage(_dm(ALICE), caught.value.unsent(text)))
    # Telegram cuts a piece again where its HTML outgrows the limit, so the messages of the
    # rest may end elsewhere; what they show is the same, every line once and in order
    assert _lines(fake.texts(ALICE)) == _lines(clean)
    # and the code stays code: a rest that starts inside a code block opens it again
    assert _lines(_code(fake, ALICE)) == _lines(_code(fake, BOB))


def _lines(texts: list[str]) -> list[str]:
    return [line for text in texts for line in text.splitlines() if line.strip()]


def _code(fake: FakeTelegram, chat_id: int) -> list[str]:
    """The text of every code block the chat's messages show, from the HTML sent."""
    sent = [fake.messages[key]["html"] for key in fake.sent_order if key[0] == chat_id]
    blocks = [block for html in sent for block in re.findall(r"<pre>(.*?)</pre>", html, re.S)]
    return [re.sub(r"<[^>]+>", "", block) for block in blocks]  # the <code> inside
