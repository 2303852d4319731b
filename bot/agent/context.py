"""Token estimates that work offline, and compaction of a session's older messages.

Estimates are characters / 4 plus a per-message overhead: no tokenizer download, ever.
"""

from __future__ import annotations

from collections.abc import Sequence

from bot.providers.base import ChatMessage, ChatRequest, Provider, complete

_MESSAGE_OVERHEAD = 4

SUMMARY_PROMPT = (
    "Summarize the conversation below for your own later reference. Keep names, facts, "
    "decisions, open questions and what the person asked you to do; drop small talk. "
    "Write at most 200 words, plain text."
)


def estimate_tokens(text: str) -> int:
    return (len(text) + 3) // 4


def estimate_messages(messages: Sequence[ChatMessage]) -> int:
    total = 0
    for m in messages:
        total += _MESSAGE_OVERHEAD + estimate_tokens(m.content)
        for call in m.tool_calls:
            # `extra` (up to 16 KiB) goes back only to the provider that made the call;
            # counted for any, it makes an early compaction, never an overflow
            total += sum(map(estimate_tokens, (call.name, call.arguments, call.extra)))
    return total


def needs_compaction(
    system_tokens: int, messages: Sequence[ChatMessage], window: int, threshold: float
) -> bool:
    return system_tokens + estimate_messages(messages) >= window * threshold


def split_for_compaction(
    messages: Sequence[ChatMessage], keep_recent: int
) -> tuple[list[ChatMessage], list[ChatMessage]]:
    """(older, recent): recent keeps the newest `keep_recent` messages verbatim, starting at a
    user message so a tool result is never separated from the call that asked for it."""
    cut = max(0, len(messages) - keep_recent)
    while cut < len(messages) and messages[cut].role != "user":
        cut += 1
    return list(messages[:cut]), list(messages[cut:])


def _transcript(messages: Sequence[ChatMessage]) -> str:
    lines = []
    for m in messages:
        if m.role == "tool":
            lines.append(f"[tool {m.name}] {m.content[:500]}")
        elif m.content:
            lines.append(f"{m.role}: {m.content}")
        for call in m.tool_calls:
            lines.append(f"[called {call.name}({call.arguments[:200]})]")
    return "\n".join(lines)


async def summarize(provider: Provider, previous: str, older: Sequence[ChatMessage]) -> str:
    body = _transcript(older)
    if previous:
        body = f"Earlier summary:\n{previous}\n\nLater conversation:\n{body}"
    request = ChatRequest(
        model="",
        system=SUMMARY_PROMPT,
        messages=(ChatMessage("user", body),),
        max_tokens=400,
        purpose="compaction",
    )
    return (await complete(provider, request)).text.strip()
