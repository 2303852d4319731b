"""Buttons under a message: a channel without native buttons shows them as commands to type."""

from __future__ import annotations

from bot.messages import Choice, Conversation, OutboundMessage
from tests.fakes.channel import RecordingChannel


async def test_choices_become_typed_commands_without_native_buttons() -> None:
    channel = RecordingChannel(console=True)
    conversation = Conversation("test", "c1")
    choices = (Choice("Approve", "/approve a1"), Choice("Deny", "/deny a1"))
    await channel.send(OutboundMessage(conversation, "Run `ls`?", choices=choices))
    assert channel.texts() == ["Run `ls`?\nApprove: /approve a1\nDeny: /deny a1"]


async def test_a_channel_with_buttons_keeps_the_text_as_written() -> None:
    channel = RecordingChannel(console=True)
    channel.supports_buttons = True
    conversation = Conversation("test", "c1")
    choices = (Choice("Approve", "/approve a1"),)
    await channel.send(OutboundMessage(conversation, "Run `ls`?", choices=choices))
    assert channel.texts() == ["Run `ls`?"]
