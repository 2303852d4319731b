"""Files out: the `send_file` tool sends a file of the session's workspace to the current
chat, through the conversation's own channel (`Channel.send_file`).

The path is confined exactly as the file tools confine it (bot/sandbox/safe_fs.py: no
"..", nothing outside /work, no symlink followed). Pictures (PNG, JPEG, GIF, WebP, known by
their first bytes, not their name) show as pictures; anything else goes as a document.
Text passes through the redactor first, like every tool result: a script that printed a
secret into a file does not send it out. A file is text when it has no NUL byte: a log with
one byte that is not UTF-8 is still redacted (its other bytes are sent as they were).
"""

from __future__ import annotations

import asyncio
import mimetypes
from collections.abc import Mapping

from bot.errors import ChannelError, DeliveryRefused, ToolError
from bot.media.documents import wide_encoding
from bot.messages import Conversation, FileChannel
from bot.sandbox.policy import FS_TAG
from bot.sandbox.safe_fs import split_workspace_path
from bot.sandbox.tools import workspace_fs
from bot.tools import Tool, ToolContext, tool

#: first bytes -> the picture's type
_PICTURES: tuple[tuple[bytes, str], ...] = (
    (b"\x89PNG\r\n\x1a\n", "image/png"),
    (b"\xff\xd8\xff", "image/jpeg"),
    (b"GIF87a", "image/gif"),
    (b"GIF89a", "image/gif"),
)


class ChannelFiles:
    """The gateway's channels, by conversation, for the tool (the live dict: channels added
    at start are seen)."""

    def __init__(self, channels: Mapping[str, FileChannel]) -> None:
        self.channels = channels

    def channel(self, conversation: Conversation) -> FileChannel:
        channel = self.channels.get(conversation.channel)
        if channel is None:
            raise ToolError(f"the channel {conversation.channel!r} of this chat is not running")
        return channel


def picture_type(data: bytes) -> str | None:
    """The picture's MIME type when `data` is a PNG, JPEG, GIF or WebP image."""
    for magic, mime in _PICTURES:
        if data.startswith(magic):
            return mime
    if data[:4] == b"RIFF" and data[8:12] == b"WEBP":
        return "image/webp"
    return None


def outbound_tools() -> list[Tool]:
    """send_file: offered wherever the file tools are."""
    return [tool(send_file, tags=[FS_TAG])]


async def send_file(ctx: ToolContext, path: str) -> str:
    """Send a file under /work to this chat (images as pictures)."""
    # no caption parameter: the answer's text says what the file is, and every parameter
    # rides on every turn's request
    redact = ctx.deps.redact
    try:
        return redact(await _send(ctx, path))
    except ToolError as exc:
        raise ToolError(redact(str(exc))) from None


async def _send(ctx: ToolContext, path: str) -> str:
    files = ctx.deps.files
    if files is None:
        raise ToolError("files cannot be sent from here")
    channel = files.channel(ctx.conversation)
    parts = split_workspace_path(path)
    if not parts:
        raise ToolError(f"{path} is the workspace itself, not a file")
    name = parts[-1]
    limit = channel.max_upload_bytes
    data, size = await asyncio.to_thread(workspace_fs(ctx).read, path, 0, limit + 1)
    if size > limit:
        raise ToolError(
            f"refused: {path} is {describe_size(size)}; this chat takes files of at most "
            f"{describe_size(limit)}. Make it smaller (compress it, or split it) and try again."
        )
    if not data:
        raise ToolError(f"{path} is empty; there is nothing to send")
    mime = picture_type(data)
    kind = "photo" if mime else "document"
    if mime is None:
        mime = mimetypes.guess_type(name)[0] or "application/octet-stream"
        data = await asyncio.to_thread(_redacted_text, data, ctx)
    try:
        await channel.send_file(ctx.conversation, data, name, mime, kind=kind)
    except DeliveryRefused as exc:
        raise ToolError(
            f"{name} was not delivered: the chat refused it ({exc}). Sending it again will "
            "not help; tell the person."
        ) from None
    except ChannelError as exc:
        raise ToolError(f"{name} was not delivered ({exc}); try again later") from None
    shown = "a picture" if kind == "photo" else "a document"
    return f"sent {name} ({describe_size(size)}) to this chat as {shown}"


def _redacted_text(data: bytes, ctx: ToolContext) -> bytes:
    """A text file as the redactor leaves it (UTF-8, or UTF-16/32 with a byte order mark,
    whose NUL bytes do not make it binary); other bytes as they are. Bytes that are not
    UTF-8 do not make a file binary (one Latin-1 byte in a log would let the key in it out):
    they pass through the redaction unchanged, as surrogates."""
    codec, errors = wide_encoding(data), "surrogatepass"
    if codec is None:
        if b"\x00" in data:
            return data
        codec, errors = "utf-8", "surrogateescape"
    try:
        text = data.decode(codec, errors=errors)
    except UnicodeDecodeError:
        return data  # not whole UTF-16/32 after its mark: bytes, as any other binary file
    return ctx.deps.redact(text).encode(codec, errors=errors)


def describe_size(size: int) -> str:
    if size >= 1024 * 1024:
        return f"{size / 1024 / 1024:.1f} MB"
    if size >= 1024:
        return f"{size / 1024:.0f} KB"
    return f"{size} bytes"
