"""What a hook receives: one event, as a typed object and as JSON."""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from bot.hooks.config import HookEventName
from bot.providers.base import json_text

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
        """The event as JSON that encodes as UTF-8 (a path with a lone surrogate escaped)."""
        return json_text(self.to_dict(), default=str)


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


class HookFailure(Exception):
    """A hook that did not do its job (crashed, bad output); counts toward its breaker.

    The message is for the owner (log, `decapod hooks list`); `summary` is what the model may
    read when a tool call is not run for it, so it never carries the hook's own output."""

    def __init__(self, message: str, summary: str) -> None:
        super().__init__(message)
        self.summary = summary


def block_reason(answer: Any) -> str | None:
    """A before_tool hook's answer: {"block": "reason"} blocks; nothing (None) or an object
    without a block allows; anything else is not an answer (a guard that answers nonsense
    does not let the call through)."""
    if answer is None:
        return None
    if not isinstance(answer, Mapping):
        raise HookFailure(
            f"answered {type(answer).__name__}, not an object", "its answer is not an object"
        )
    reason = answer.get("block")
    return str(reason) if reason else None
