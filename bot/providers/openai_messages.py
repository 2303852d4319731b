"""Decapod's history and tools in the chat-completions form every OpenAI-compatible server
reads, and back again what a server wants kept with a tool call: Gemini's OpenAI-compatible
API sends a thought signature with each call (`extra_content.google.thought_signature`) and
may refuse a later request whose past calls lack it. That `extra_content` is kept with the
call (in the store too), and sent back only to the provider that made it: another server
may refuse a field it does not know."""

from __future__ import annotations

import json
import logging
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from bot.providers.base import ChatMessage, ChatRequest, ToolCall, ToolSpec, json_text

if TYPE_CHECKING:
    from openai.types.chat import (
        ChatCompletionContentPartParam,
        ChatCompletionMessageParam,
        ChatCompletionToolParam,
    )

log = logging.getLogger(__name__)

#: the most a call's `extra_content` may take as JSON text; a larger one is not kept (a
#: server's bug or a hostile one must not grow every later request and the store)
MAX_CALL_EXTRA = 16 * 1024


def call_extra(extra: Any, provider: str, name: str) -> tuple[str, str]:
    """(JSON text, provider) to keep with a call whose `extra_content` is `extra`; ("", "")
    for none, or for one that is no object or larger than `MAX_CALL_EXTRA`."""
    if not isinstance(extra, dict) or not extra:
        return "", ""
    text = json_text(extra, separators=(",", ":"))
    size = len(text.encode())
    if size > MAX_CALL_EXTRA:
        log.warning(
            "provider %s: the extra_content of tool call %r is %d bytes; not kept",
            provider,
            name,
            size,
        )
        return "", ""
    return text, provider


def to_openai_messages(
    request: ChatRequest, provider: str = ""
) -> list[ChatCompletionMessageParam]:
    """Our history in chat-completions form, the system prompt first; the past calls that
    `provider` made carry back their `extra_content`."""
    out: list[ChatCompletionMessageParam] = []
    if request.system:
        out.append({"role": "system", "content": request.system})
    for message in request.messages:
        if message.role == "system":
            out.append({"role": "system", "content": message.content})
        elif message.role == "user" and message.images:
            out.append({"role": "user", "content": _openai_user_parts(message)})
        elif message.role == "user":
            out.append({"role": "user", "content": message.content})
        elif message.role == "tool":
            out.append(
                {
                    "role": "tool",
                    "tool_call_id": message.tool_call_id or "",
                    "content": message.content,
                }
            )
        elif message.tool_calls:
            out.append(
                {
                    "role": "assistant",
                    "content": message.content or None,
                    "tool_calls": [_past_call(call, provider) for call in message.tool_calls],
                }
            )
        else:
            out.append({"role": "assistant", "content": message.content})
    return out


def _past_call(call: ToolCall, provider: str) -> Any:
    item: dict[str, Any] = {
        "id": call.id,
        "type": "function",
        "function": {"name": call.name, "arguments": _arguments_json(call)},
    }
    if call.extra and call.extra_from == provider:
        item["extra_content"] = json.loads(call.extra)
    return item


def _arguments_json(call: ToolCall) -> str:
    """A past call's arguments as the JSON object text servers expect. Ollama, vLLM and
    llama.cpp parse them to render the history and refuse the whole request when they are
    not JSON: a model's one malformed call would fail every later turn of the conversation."""
    return json_text(call.arguments_object())


def _openai_user_parts(message: ChatMessage) -> list[ChatCompletionContentPartParam]:
    """Text, then each image as a data URL (the chat-completions way to send pixels)."""
    parts: list[ChatCompletionContentPartParam] = []
    if message.content:
        parts.append({"type": "text", "text": message.content})
    for image in message.images:
        url = f"data:{image.mime};base64,{image.base64()}"
        parts.append({"type": "image_url", "image_url": {"url": url}})
    return parts


def to_openai_tools(tools: Sequence[ToolSpec]) -> list[ChatCompletionToolParam]:
    return [
        {
            "type": "function",
            "function": {
                "name": tool.name,
                "description": tool.description,
                "parameters": tool.parameters,
            },
        }
        for tool in tools
    ]
