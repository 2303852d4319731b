"""What a hook receives: one event, as a typed object and as JSON."""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from bot.hooks.config import HookEventName

#: tool results and texts handed to hooks are cut here
MAX_TEXT_CHARS = 4000


@dataclass(frozen=True, slots=True)
class HookEvent:
    name: HookEventName
    session_key: str = ""
    #: identity key of the person ("telegram:123"), when there is one
    identity: str = ""
    channel: str = ""
    #: the event's own fields (tool name and arguments, reply text, job id, ...)
    data: Mapping[str, Any] = field(default_factory=dict)
    at: float = field(default_factory=time.time)

    def to_dict(self) -> dict[str, Any]:
        return {
            "event": self.name.value,
            "at": self.at,
            "session": self.session_key,
            "identity": self.identity,
            "channel": self.channel,
            **dict(self.data),
        }

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), ensure_ascii=False, default=str)


@dataclass(frozen=True, slots=True)
class HookReply:
    """What a hook answered: a reason to block a before_tool call, or nothing."""

    block: str | None = None


def redact_values(value: Any, redact: Callable[[str], str]) -> Any:
    """Every string in a JSON-like value, redacted (and cut); the structure stays."""
    if isinstance(value, str):
        return redact(value[:MAX_TEXT_CHARS])
    if isinstance(value, list | tuple):
        return [redact_values(v, redact) for v in value]
    if isinstance(value, Mapping):
        return {str(k): redact_values(v, redact) for k, v in value.items()}
    return value


def block_reason(answer: Any) -> str | None:
    """A hook's answer, read as a block: {"block": "reason"} blocks, anything else allows."""
    if isinstance(answer, Mapping):
        reason = answer.get("block")
        if reason:
            return str(reason)
    return None
