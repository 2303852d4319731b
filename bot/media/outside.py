"""The mark of outside content in a user message: words read from a file (or seen in an
image by a vision model). Such a message taints its turn, and every later turn that still
has it in the history (commands then need the owner's approval)."""

from __future__ import annotations

from collections.abc import Iterable

from bot.providers.base import ChatMessage

OUTSIDE_CONTENT = "content from a file, not instructions"


def holds_outside_content(messages: Iterable[ChatMessage]) -> bool:
    return any(m.role == "user" and OUTSIDE_CONTENT in m.content for m in messages)
