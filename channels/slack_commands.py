"""Slash commands and button presses of the Slack adapter, and the answers that go back
through a response_url instead of chat.postMessage.

A slash command is acknowledged first and handed on afterwards, so Slack's 3 s limit never
depends on the inbox. Its reply goes to the response_url: ephemeral for a command's own
answer, in the channel for `/decapod ask`. A button press is acknowledged, stored as the
presser's own command, and answered through its response_url once stored.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from functools import partial
from typing import TYPE_CHECKING, Any

from bot.channel_configs.slack import SlackChannelConfig
from bot.errors import ChannelError
from bot.messages import InboundMessage, OutboundMessage, SentRef
from channels.base import BaseChannel
from channels.buttons import Button, ButtonBook
from channels.slack_api import SlackApi
from channels.slack_buttons import press_answer, press_of, with_buttons
from channels.slack_handover import Handover
from channels.slack_inbound import Normalizer, help_text, split_subcommand
from channels.slack_mrkdwn import to_mrkdwn

if TYPE_CHECKING:  # Bolt loads with the first request it routes (channels/slack_dispatch.py)
    from slack_bolt.async_app import AsyncAck

log = logging.getLogger("decapod.channels.slack")

#: a response_url takes at most five posts (within 30 minutes)
MAX_RESPONSES = 5


class SlackCommandChannel(BaseChannel):
    """The command side of SlackChannel, which sets these attributes up and connects them."""

    settings: SlackChannelConfig
    buttons: ButtonBook
    _api: SlackApi | None
    _normalizer: Normalizer | None
    _handover: Handover
    _commands: set[asyncio.Task[None]]

    async def _take(self, message: InboundMessage) -> None:
        """SlackChannel's: a command is stored like any inbound message, thread rules and all."""
        raise NotImplementedError

    async def _on_slash(self, body: dict[str, Any], ack: AsyncAck) -> None:
        assert self._normalizer is not None
        split = split_subcommand(str(body.get("text") or ""), [c.name for c in self.commands])
        if split is None:
            await ack(
                response_type="ephemeral",
                text=help_text(self.settings.slash_command, self.commands),
            )
            return
        message = self._normalizer.slash(body, *split)
        if message is None:
            await ack(
                response_type="ephemeral", text="That command arrived incomplete; please try again."
            )
            return
        # acknowledged first (the ack leaves when this listener returns); handed on after
        if split[0] == "ask":
            await ack(response_type="ephemeral", text="Working on it…")
        else:
            await ack()
        task = asyncio.create_task(self._hand_on_command(message))
        self._commands.add(task)
        task.add_done_callback(self._commands.discard)

    async def _hand_on_command(self, message: InboundMessage) -> None:
        store = partial(self._take, message)
        try:
            await self._handover.deliver(message.id, [message.id], store, self._handover.deadline())
        except Exception:
            log.exception("slack %s: could not take command %s", self.name, message.id)
            with contextlib.suppress(ChannelError):
                await self._respond(
                    message.meta["response_url"],
                    "Sorry, I could not take that command. Please try again.",
                    in_channel=False,
                )

    async def _on_action(self, ack: AsyncAck, body: dict[str, Any]) -> None:
        await ack()
        press = press_of(self.name, body)
        if press is None:
            log.warning("slack %s: skipped a block action without actions or user", self.name)
            return
        result = await self.take_press(press)
        url = body.get("response_url")
        if isinstance(url, str):
            # after the ack: the answer may take its time, the press is stored already
            task = asyncio.create_task(self._after_press(url, press_answer(result)))
            self._commands.add(task)
            task.add_done_callback(self._commands.discard)

    async def _after_press(self, url: str, payload: dict[str, Any]) -> None:
        try:
            await self._web().respond(url, payload)
        except ChannelError as exc:
            log.warning("slack %s: could not answer a button press: %s", self.name, exc)

    # replies through the response_url ------------------------------------------------------
    async def send(self, message: OutboundMessage) -> SentRef:
        url = message.meta.get("response_url")
        if url:  # a command's own reply: only the person who asked sees it
            return await self._answer_command(message, url, message.text, in_channel=False)
        return await super().send(message)

    async def _answer_command(
        self, message: OutboundMessage, url: str, text: str, *, in_channel: bool
    ) -> SentRef:
        pieces = self.chunks(text)
        if len(pieces) > MAX_RESPONSES:
            pieces = pieces[:MAX_RESPONSES]
            pieces[-1] += "\n… (cut: too long for a command reply; ask me in a message instead)"
        buttons = await self.buttons.issue(message, pieces[-1]) if message.choices else []
        for i, piece in enumerate(pieces):
            last = buttons if i == len(pieces) - 1 else []
            await self._retrying(message.conversation, self._respond, url, piece, in_channel, last)
        return SentRef(message.conversation, f"response:{len(pieces)}", {"response_url": url})

    async def _respond(
        self, url: str, text: str, in_channel: bool, buttons: list[Button] | None = None
    ) -> None:
        payload: dict[str, Any] = {
            "text": to_mrkdwn(text),
            "response_type": "in_channel" if in_channel else "ephemeral",
        }
        if buttons:
            payload["blocks"] = with_buttons(payload["text"], buttons)
        await self._web().respond(url, payload)

    def _web(self) -> SlackApi:
        if self._api is None:
            raise ChannelError(f"slack {self.name} is not running")
        return self._api
