"""A tool result from an MCP server, as the text the model reads.

Text blocks pass through; binary blocks (images, audio, blobs) are described by kind, type and
size, never inlined: the gateway has no media path for tool output, and base64 in a prompt
costs tokens and says nothing. Structured content is used when a result has no text.
The whole is redacted with the caller's redactor, then cut at a character cap.
"""

from __future__ import annotations

import json
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from collections.abc import Callable

    from mcp_types import CallToolResult, ContentBlock


#: text past the cap that is redacted with it, so a secret cut where the redacted part ends
#: stays at least half this far out of view (a 4096-bit PEM key is some 3,300 characters)
REDACT_AHEAD = 16_384


def result_text(result: CallToolResult, max_chars: int, *, redact: Callable[[str], str]) -> str:
    parts = [_block_text(block) for block in result.content]
    if not any(parts) and result.structured_content is not None:
        parts = [json.dumps(result.structured_content, ensure_ascii=False)]
    text = "\n".join(p for p in parts if p)
    # redacted, then cut: a cut through a secret would leave its start unrecognised
    head, left_out = _redacted_head(text, max_chars, redact)
    return cap(head or "(no output)", max_chars, left_out)


def _redacted_head(text: str, max_chars: int, redact: Callable[[str], str]) -> tuple[str, int]:
    """The start of `text` redacted, REDACT_AHEAD past the cap where the text is that long
    (a result of megabytes is not redacted whole), and how much of the text it leaves out."""
    window = max_chars + REDACT_AHEAD
    while True:
        head = redact(text[:window])
        if window >= len(text):
            return head, 0
        if len(head) >= max_chars + REDACT_AHEAD // 2:
            return head, len(text) - window
        window *= 2  # redactions shortened the head: its cut end came near the view


def cap(text: str, max_chars: int, left_out: int = 0) -> str:
    if len(text) <= max_chars and not left_out:
        return text
    cut = len(text) - max_chars + left_out
    return text[:max_chars] + f"\n[… {cut:,} more characters cut]"


def _block_text(block: ContentBlock) -> str:
    import mcp_types as t

    if isinstance(block, t.TextContent):
        return block.text
    if isinstance(block, t.ImageContent | t.AudioContent):
        kind = "image" if isinstance(block, t.ImageContent) else "audio"
        return f"[{kind}: {block.mime_type}, {_size(_b64_bytes(block.data))}]"
    if isinstance(block, t.ResourceLink):
        size = f", {_size(block.size)}" if block.size is not None else ""
        return f"[resource: {block.name} <{block.uri}>{size}]"
    if isinstance(block, t.EmbeddedResource):
        res = block.resource
        if isinstance(res, t.TextResourceContents):
            return f"[resource {res.uri}]\n{res.text}"
        mime = f"{res.mime_type}, " if res.mime_type else ""
        return f"[resource: {res.uri}, {mime}{_size(_b64_bytes(res.blob))}]"
    return f"[{getattr(block, 'type', 'unknown')} content]"


def _b64_bytes(data: str) -> int:
    return len(data.rstrip("=")) * 3 // 4


def _size(n: int) -> str:
    if n < 1024:
        return f"{n} bytes"
    if n < 1024 * 1024:
        return f"{n / 1024:.0f} KB"
    return f"{n / (1024 * 1024):.1f} MB"
