"""The send side of the Slack adapter: Markdown as mrkdwn, a Block Kit message for buttons,
a channel's thread made the bot's once it posts there, at most one message a second per Slack
channel counted from when a call landed (the SDK may retry it after a 429), and the
"working" signal shown alongside the model call. A slash command's answer goes to its
response_url instead (channels/slack_commands.py).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from typing import Any

from bot.messages import Conversation, ConversationKind, OutboundMessage, SentRef
from channels import ReplyProgress
from channels.base import FileUpload
from channels.buttons import Button
from channels.slack_api import WorkingSignal
from channels.slack_buttons import with_buttons
from channels.slack_commands import SlackCommandChannel
from channels.slack_inbound import ThreadMemory
from channels.slack_mrkdwn import to_mrkdwn


class SlackOutbound(SlackCommandChannel):
    """The send side of SlackChannel, which sets these attributes up."""

    threads: ThreadMemory
    _working: WorkingSignal

    async def _send_buttons(
        self, message: OutboundMessage, text: str, buttons: list[Button]
    ) -> SentRef:
        return await self._post(message, text, with_buttons(to_mrkdwn(text), buttons))

    async def reply(
        self,
        template: OutboundMessage,
        deltas: AsyncIterator[str],
        progress: ReplyProgress | None = None,
    ) -> list[SentRef]:
        url = template.meta.get("response_url")
        if url:  # `/decapod ask`: the answer is posted once, for the whole channel
            text = "".join([delta async for delta in deltas])
            refs = [await self._answer_command(template, url, text, in_channel=True)]
            if progress is not None:
                await progress.shown(refs, len(text))
            return refs
        # shown alongside the model call, not before it: one Slack round trip less to wait
        showing = asyncio.create_task(self._working.show(template.conversation, template.reply_to))
        try:
            return await super().reply(template, deltas, progress)
        finally:
            await self._working.hide(await showing)

    async def _send_text(self, message: OutboundMessage, text: str) -> SentRef:
        return await self._post(message, text, None)

    async def _post(
        self, message: OutboundMessage, text: str, blocks: list[dict[str, Any]] | None
    ) -> SentRef:
        conversation = message.conversation
        thread_ts = message.meta.get("thread_ts") or conversation.thread_id
        resp = await self._web().call(
            "chat.postMessage",
            channel=conversation.chat_id,
            text=to_mrkdwn(text),  # the fallback: notifications, and clients without blocks
            blocks=blocks,
            thread_ts=thread_ts,
            unfurl_links=message.link_preview,
            unfurl_media=message.link_preview,
        )
        self._landed(conversation)
        channel_id, ts = str(resp.get("channel") or conversation.chat_id), str(resp["ts"])
        if conversation.kind is not ConversationKind.DM:
            # replies in this thread now reach the bot without a new mention
            await self.threads.add(channel_id, thread_ts or ts)
        return SentRef(conversation, ts, {"channel": channel_id})

    async def _send_file(self, upload: FileUpload) -> SentRef:
        conversation = upload.conversation
        file_id = await self._web().upload(
            conversation.chat_id, conversation.thread_id, upload.data, upload.name, upload.caption
        )
        self._landed(conversation)
        return SentRef(conversation, file_id, {"file": file_id})

    async def _edit_text(self, ref: SentRef, text: str) -> None:
        channel = ref.meta.get("channel", ref.conversation.chat_id)
        await self._web().call(
            "chat.update", channel=channel, ts=ref.message_id, text=to_mrkdwn(text)
        )
        self._landed(ref.conversation)

    def _landed(self, conversation: Conversation) -> None:
        """The next send to this chat waits a full interval from now: a call the SDK retried
        after a 429 landed late, and the pace set before it must not let the next one follow
        at once."""
        self._chat_next[conversation.chat_id] = time.monotonic() + self.chat_interval

    def _pause(self, seconds: float) -> None:
        self._paused_until = max(self._paused_until, time.monotonic() + seconds)
