"""Before old messages are compacted away, ask the model which durable facts they hold.

A silent step: the person never sees it, and whatever the model answers that is not the
strict JSON below is ignored. Only what the person and the assistant said is shown to the
model; tool results are left out (they may carry injected instructions or secrets).
"""

from __future__ import annotations

import json
import logging
import re
from typing import TYPE_CHECKING, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from bot.errors import DecapodError
from bot.providers.base import ChatMessage, ChatRequest, Provider, complete

if TYPE_CHECKING:
    from bot.memory.service import MemoryService

log = logging.getLogger("decapod.memory")

MAX_FACTS = 20
MAX_TRANSCRIPT_CHARS = 24_000

EXTRACT_PROMPT = """You maintain long-term memory about one person.
From the conversation below, list durable facts about this person worth remembering in
later conversations: stable facts (name, family, work, places, plans with dates) and
preferences. Skip small talk, one-off requests, anything the assistant said about itself,
and secrets (passwords, keys, codes). Each fact is one short self-contained sentence.
Answer with JSON only, exactly this shape, and nothing else:
{"facts": [{"text": "...", "kind": "fact" | "preference"}]}
Answer {"facts": []} when there is nothing durable."""


class _Fact(BaseModel):
    model_config = ConfigDict(extra="ignore")
    text: str = Field(min_length=3, max_length=500)
    kind: Literal["fact", "preference"] = "fact"


class _Facts(BaseModel):
    model_config = ConfigDict(extra="ignore")
    facts: list[_Fact] = Field(max_length=MAX_FACTS * 5)


_FENCE = re.compile(r"^```(?:json)?\s*|\s*```$", re.IGNORECASE)


def parse_facts(answer: str) -> list[tuple[str, str]]:
    """(text, kind) pairs from the model's answer; [] for anything malformed."""
    body = _FENCE.sub("", answer.strip())
    start, end = body.find("{"), body.rfind("}")
    if start < 0 or end <= start:
        return []
    try:
        parsed = _Facts.model_validate(json.loads(body[start : end + 1]))
    except (ValueError, ValidationError):
        return []
    seen: dict[str, tuple[str, str]] = {}
    for fact in parsed.facts:
        text = " ".join(fact.text.split())
        seen.setdefault(text.lower(), (text, fact.kind))
    return list(seen.values())[:MAX_FACTS]


def transcript(messages: list[ChatMessage]) -> str:
    lines = [
        f"{m.role}: {m.content.strip()}"
        for m in messages
        if m.role in ("user", "assistant") and m.content.strip()
    ]
    text = "\n".join(lines)
    return text[-MAX_TRANSCRIPT_CHARS:]  # the newest part, when the window is huge


async def extract_before_compaction(
    service: MemoryService,
    person_id: str,
    messages: list[ChatMessage],
    provider: Provider,
    *,
    model: str = "",
) -> int:
    """Save the durable facts in `messages` for `person_id`; returns how many were new or
    refreshed. Never raises for a model or parsing failure: compaction must go on."""
    text = transcript(messages)
    if not text or not person_id:
        return 0
    request = ChatRequest(
        model=model,
        system=EXTRACT_PROMPT,
        messages=(ChatMessage("user", f"Conversation:\n{text}"),),
        temperature=0.0,
        purpose="memory_extract",
    )
    try:
        answer = await complete(provider, request)
    except Exception as exc:  # a failed side step must not fail the compaction it precedes
        log.warning("memory extraction skipped: %s", exc)
        return 0
    saved = 0
    for fact, kind in parse_facts(answer.text):
        try:
            await service.save(person_id, fact, kind=kind, source="extracted")
        except DecapodError as exc:
            log.warning("memory extraction could not save a fact: %s", exc)
            continue
        saved += 1
    return saved
