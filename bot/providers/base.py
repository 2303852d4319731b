"""The Provider seam: one async stream of chat events per request.

A provider never imports the agent. `FailoverProvider` (a chain) satisfies the same protocol.
"""

from __future__ import annotations

import copy
import json
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field, replace
from typing import Any, Literal, Protocol, runtime_checkable

Role = Literal["system", "user", "assistant", "tool"]


def json_text(
    value: Any,
    separators: tuple[str, str] | None = None,
    default: Callable[[Any], Any] | None = None,
) -> str:
    """`value` as JSON text that can be encoded as UTF-8: other scripts as they are, unless a
    string holds a lone surrogate (a file name with bytes that are not UTF-8, as `list_files`
    shows it), which has no UTF-8 form and is then written as its `\\udcXX` escape, like
    every other character that is not ASCII in that text. `default` as for `json.dumps`."""
    text = json.dumps(value, ensure_ascii=False, separators=separators, default=default)
    try:
        text.encode()
    except UnicodeEncodeError:
        return json.dumps(value, separators=separators, default=default)
    return text


@dataclass(frozen=True, slots=True)
class ToolCall:
    id: str
    name: str
    arguments: str  # raw JSON text as the model produced it
    #: what the provider that made the call wants back with it in the history (Gemini's
    #: thought signature): JSON text, opaque to all but that provider (`extra_from`)
    extra: str = ""
    extra_from: str = ""

    def parsed_arguments(self) -> dict[str, Any]:
        if not self.arguments.strip():
            return {}
        value = json.loads(self.arguments)
        if not isinstance(value, dict):
            raise ValueError("tool arguments must be a JSON object")
        return value

    def arguments_object(self) -> dict[str, Any]:
        """The arguments as an object for a past call sent back in the history: malformed
        ones are kept visible to the model under `_raw_arguments`, as servers refuse a whole
        request whose history holds arguments that are no JSON object."""
        try:
            return self.parsed_arguments()
        except ValueError:
            return {"_raw_arguments": self.arguments}


@dataclass(frozen=True, slots=True)
class ImagePart:
    """An image the model sees, already downscaled and encoded (bot/media/images.py)."""

    mime: str  # image/jpeg | image/png
    data: bytes = field(repr=False)  # never printed: a log line must not carry pixels

    def base64(self) -> str:
        import base64

        return base64.b64encode(self.data).decode("ascii")


@dataclass(frozen=True, slots=True)
class ChatMessage:
    role: Role
    content: str = ""
    tool_calls: tuple[ToolCall, ...] = ()
    tool_call_id: str | None = None
    name: str | None = None  # the tool name, for role="tool"
    #: pixels for a user message, carried only by the turn they came with: the stored
    #: history keeps the text (which names the image), never the bytes
    images: tuple[ImagePart, ...] = field(default=(), repr=False)

    def without_images(self) -> ChatMessage:
        return replace(self, images=()) if self.images else self


@dataclass(frozen=True, slots=True)
class ToolSpec:
    """What the model is told of one tool. Made once per tool and never changed: the
    providers serialise a tool set once and reuse its JSON while a turn offers the same specs
    (the same objects), so a changed tool is a new spec."""

    name: str
    description: str
    parameters: dict[str, Any]

    def __post_init__(self) -> None:
        # a copy of its own: the schema it came from (an MCP listing, pydantic's output) may
        # be changed in place later, which must not change a spec whose JSON was reused
        object.__setattr__(self, "parameters", copy.deepcopy(self.parameters))


@dataclass(frozen=True, slots=True)
class ChatRequest:
    model: str
    messages: tuple[ChatMessage, ...]
    system: str = ""
    tools: tuple[ToolSpec, ...] = ()
    max_tokens: int | None = None
    temperature: float | None = None
    #: what the call is for; routing may pick a different chain per purpose
    purpose: str = "chat"


@dataclass(frozen=True, slots=True)
class Usage:
    input_tokens: int = 0
    output_tokens: int = 0
    cache_read_tokens: int = 0
    cache_write_tokens: int = 0

    def __add__(self, other: Usage) -> Usage:
        return Usage(
            self.input_tokens + other.input_tokens,
            self.output_tokens + other.output_tokens,
            self.cache_read_tokens + other.cache_read_tokens,
            self.cache_write_tokens + other.cache_write_tokens,
        )


@dataclass(frozen=True, slots=True)
class TextDelta:
    text: str


@dataclass(frozen=True, slots=True)
class ToolCallEvent:
    """Emitted only once a tool call is complete; a partial call is never surfaced."""

    call: ToolCall


@dataclass(frozen=True, slots=True)
class UsageEvent:
    usage: Usage


@dataclass(frozen=True, slots=True)
class Finish:
    reason: str = "stop"  # stop | tool_calls | length | interrupted
    provider: str = ""
    model: str = ""
    meta: dict[str, Any] = field(default_factory=dict)


ChatEvent = TextDelta | ToolCallEvent | UsageEvent | Finish


@runtime_checkable
class Provider(Protocol):
    name: str

    def stream(self, request: ChatRequest) -> AsyncIterator[ChatEvent]:
        """Yield events for one model call. Raises ProviderError subclasses on failure."""
        ...


@dataclass(slots=True)
class Completion:
    """A whole streamed answer, collected (for compaction and other non-streaming callers)."""

    text: str = ""
    tool_calls: list[ToolCall] = field(default_factory=list)
    usage: Usage = field(default_factory=Usage)
    finish: Finish = field(default_factory=Finish)


async def complete(provider: Provider, request: ChatRequest) -> Completion:
    out = Completion()
    parts: list[str] = []
    async for event in provider.stream(request):
        if isinstance(event, TextDelta):
            parts.append(event.text)
        elif isinstance(event, ToolCallEvent):
            out.tool_calls.append(event.call)
        elif isinstance(event, UsageEvent):
            out.usage = out.usage + event.usage
        else:
            out.finish = event
    out.text = "".join(parts)
    return out
