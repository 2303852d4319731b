"""A text sent in several messages that fails part way: the error from `send` says how far
it got (`delivered`, `unsent`), and sending the rest shows each part once, with the buttons
of a message with choices under its last message (or its choice lines after the text)."""

from __future__ import annotations

import pytest

from bot.errors import ChannelError
from bot.messages import Choice, Conversation, OutboundMessage
from tests.fakes.channel import RecordingChannel

CHAT = Conversation("test", "c1")
TEXT = "Markets opened calm today.\n\nBonds rallied after the data.\n\nOil slipped at the close."
PARTS = ["Markets opened calm today.", "Bonds rallied after the data.", "Oil slipped at the close."]
CHOICES = (Choice("More", "/more"), Choice("Stop", "/stop"))


def _channel() -> RecordingChannel:
    channel = RecordingChannel(max_message_len=40, console=True)
    channel.retry_backoff_s = 0.01
    return channel


async def _cut_off(channel: RecordingChannel, message: OutboundMessage, sent: int) -> ChannelError:
    channel.sends_before_outage = sent
    with pytest.raises(ChannelError) as caught:
        await channel.send(message)
    channel.sends_before_outage = None
    return caught.value


@pytest.mark.parametrize("sent", [0, 1, 2])
async def test_the_rest_of_a_cut_off_text_goes_on_under_the_same_buttons(sent: int) -> None:
    channel = _channel()
    channel.supports_buttons = True
    error = await _cut_off(channel, OutboundMessage(CHAT, TEXT, choices=CHOICES), sent)
    assert channel.texts() == PARTS[:sent]
    assert error.delivered == ([0] + [chunk.end for chunk in channel.split(TEXT)])[sent]

    await channel.send(OutboundMessage(CHAT, error.unsent(TEXT), choices=CHOICES))
    assert channel.texts() == PARTS
    last = channel.order[-1][1]
    assert list(channel.button_rows) == [last]  # the buttons went out once, under the end
    assert [b.label for b in channel.button_rows[last]] == ["More", "Stop"]


async def test_choice_lines_sent_as_text_are_not_counted_as_delivered() -> None:
    """Without buttons the choices are lines after the text; cut off among them, the text
    counts as shown whole, and its retry sends only the choice lines."""
    channel = _channel()
    text = "Markets opened calm today."
    error = await _cut_off(channel, OutboundMessage(CHAT, text, choices=CHOICES), 1)
    assert channel.texts() == [text]
    assert error.delivered == len(text) and error.unsent(text) == ""

    await channel.send(OutboundMessage(CHAT, error.unsent(text), choices=CHOICES))
    assert channel.texts()[0] == text and "Markets" not in " ".join(channel.texts()[1:])
    assert "/more" in channel.texts()[-1] and "/stop" in channel.texts()[-1]
