"""Channel adapters: the Channel protocol and a registry that imports adapters lazily by type.

Adapters import only bot.messages, bot.errors, bot.config and channels.base; nothing in bot/
imports a concrete adapter (only bot/gateway.py touches this registry).
"""

from __future__ import annotations

import importlib
from collections.abc import AsyncIterator, Sequence
from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable

from bot.errors import ConfigError
from bot.messages import InboundMessage, OutboundMessage, SentRef

if TYPE_CHECKING:
    from bot.config import Config


class InboundSink(Protocol):
    """What an adapter hands each normalized message to. Returns once it is stored."""

    async def __call__(self, message: InboundMessage) -> None: ...


class ReplyProgress(Protocol):
    """Told after every send or edit of a streamed answer: the messages sent so far, and how
    many characters of the streamed text the person can now see. What it records lets a
    retry or a restart send only the rest."""

    async def shown(self, refs: Sequence[SentRef], upto: int) -> None: ...


@runtime_checkable
class Channel(Protocol):
    name: str
    max_message_len: int

    async def start(self, sink: InboundSink) -> None: ...

    async def stop(self) -> None: ...

    async def send(self, message: OutboundMessage) -> SentRef: ...

    async def reply(
        self,
        template: OutboundMessage,
        deltas: AsyncIterator[str],
        progress: ReplyProgress | None = None,
    ) -> list[SentRef]: ...

    def health(self) -> dict[str, Any]: ...


#: config `type` -> "module:factory"; the factory takes (name, channel_config, config)
ADAPTERS: dict[str, str] = {
    "console": "channels.console:create",
    "telegram": "channels.telegram:create",
    "slack": "channels.slack:create",
    "discord": "channels.discord:create",
}


def create_channel(name: str, channel_config: Any, config: Config) -> Channel:
    target = ADAPTERS.get(channel_config.type)
    if target is None:
        raise ConfigError(f"unknown channel type {channel_config.type!r}", f"channels.{name}.type")
    module_name, _, factory = target.partition(":")
    try:
        module = importlib.import_module(module_name)
    except ImportError as exc:
        raise ConfigError(
            f"the {channel_config.type} channel needs an optional dependency "
            f"(pip install 'decapod[{channel_config.type}]'): {exc}",
            f"channels.{name}",
        ) from exc
    channel: Channel = getattr(module, factory)(name, channel_config, config)
    return channel
