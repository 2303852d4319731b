"""Channel adapters: the Channel protocol and a registry that imports adapters lazily by type.

Adapters import only bot's public model (bot.messages, bot.errors, bot.config*,
bot.channel_configs, bot.channel_state, bot.commands, bot.redaction, bot.tasks) and
channels.base; nothing in bot/ imports a concrete adapter: the gateway, the doctor and the
command line reach them through this registry (the rules are import-linter contracts in
pyproject.toml, checked by `make lint`).
"""

from __future__ import annotations

import importlib
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable

from bot.channel_state import ChannelState
from bot.commands import CommandSpec
from bot.errors import ConfigError
from bot.messages import (
    Attachment,
    FileChannel,
    InboundMessage,
    OutboundMessage,
    SentRef,
)

if TYPE_CHECKING:
    import argparse

    from aiohttp import web

    from bot.config import Config

#: (method, path, handler) of a platform callback served on the gateway's HTTP server
HttpRoute = tuple[str, str, Callable[["web.Request"], Awaitable[Any]]]
#: one line of `decapod doctor`: (what, ok, detail)
Check = tuple[str, bool, str]


class InboundSink(Protocol):
    """What an adapter hands each normalized message to. Returns once it is stored."""

    async def __call__(self, message: InboundMessage) -> None: ...


class ReplyProgress(Protocol):
    """Told after every send or edit of a streamed answer: the messages sent so far, and how
    many characters of the streamed text the person can now see. What it records lets a
    retry or a restart send only the rest."""

    async def shown(self, refs: Sequence[SentRef], upto: int) -> None: ...


@runtime_checkable
class Channel(FileChannel, Protocol):
    """What the gateway uses of an adapter; sending files is FileChannel's part.
    channels.base.BaseChannel implements the optional parts as no-ops (no webhooks, no
    downloads, nothing to do on a denial), so an adapter overrides only what its platform
    has."""

    name: str
    max_message_len: int
    #: the shared command table, set by the gateway before start (menus, slash commands)
    commands: list[CommandSpec]
    publish_on_start: bool
    #: the identity channel whose people are the operator at this machine while this
    #: channel runs (the console's own name; `decapod ask`'s says "console"); None on a
    #: platform's channel. The only thing that makes anyone the console's owner
    operator_console: str | None

    def use_state(self, state: ChannelState) -> None:
        """What must outlive a message (buttons, threads) goes to `state`, the store's,
        shared by every replica; set before start."""
        ...

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

    def after_ready(self) -> None:
        """The start is over (the gateway is ready): begin in the background what the
        start left out (Slack's Bolt); nothing waits for it."""
        ...

    def http_routes(self) -> list[HttpRoute]:
        """Platform callbacks (webhook mode), mounted on the gateway's server as public
        routes: each handler verifies its caller itself."""
        ...

    async def fetch(self, attachment: Attachment, max_bytes: int) -> bytes:
        """An attachment's bytes, downloaded on demand, never more than `max_bytes`."""
        ...

    async def on_denied(self, message: InboundMessage) -> None:
        """Access was denied without a reply: close what the platform keeps open (a deferred
        interaction would otherwise show "thinking" for minutes)."""
        ...

    async def publish_commands(self, commands: list[CommandSpec]) -> None:
        """The whole command table, once the gateway's warm-up has registered every command
        (the scheduler's, memory's and the skills' register after ready): offer it where the
        platform lists commands."""
        ...


#: config `type` -> "module:factory"; the factory takes (name, channel_config, config)
ADAPTERS: dict[str, str] = {
    "console": "channels.console:create",
    "telegram": "channels.telegram:create",
    "slack": "channels.slack:create",
    "discord": "channels.discord:create",
    "web": "channels.web:create",  # the web UI's chat, built by the gateway (bot/webui)
}
#: config `type` -> "module:function" of the adapter's own doctor checks,
#: `async (name, channel_config) -> list[Check]`
DOCTORS: dict[str, str] = {
    "telegram": "channels.telegram_doctor:doctor",
    "slack": "channels.slack_api:doctor",
    "discord": "channels.discord_cli:doctor",
}
#: config `type` -> what to do on the platform once the token works (`decapod init` says it)
SETUP_STEPS: dict[str, str] = {
    "telegram": (
        "In Telegram, open your bot (the t.me link @BotFather gave) and write to it. People "
        "you have not approved get a pairing code: approve it with `decapod pairing approve "
        "CODE` (docs/channels/telegram.md)."
    ),
    "slack": (
        "Create the Slack app from the manifest docs/channels/slack-manifest.json "
        "(api.slack.com/apps > Create New App > From a manifest), install it to your "
        "workspace, then write to it in a DM (docs/channels/slack.md)."
    ),
    "discord": (
        "Invite the bot to a server: open the link `decapod discord invite-url` prints, then "
        "mention the bot or write to it in a DM (docs/channels/discord.md)."
    ),
}
#: `decapod <command> ...` -> the module of a channel's command line tools, which offers
#: `add_subparsers(sub)` and `run(args, config) -> int` and imports no platform SDK
COMMANDS: dict[str, str] = {
    "discord": "channels.discord_cli",
}


def create_channel(name: str, channel_config: Any, config: Config) -> Channel:
    factory = _load(ADAPTERS, channel_config.type, name)
    if factory is None:
        raise ConfigError(f"unknown channel type {channel_config.type!r}", f"channels.{name}.type")
    channel: Channel = factory(name, channel_config, config)
    return channel


async def adapter_checks(name: str, channel_config: Any) -> list[Check]:
    """The adapter's own checks of a configured channel (its token, its intents)."""
    try:
        _load(ADAPTERS, channel_config.type, name)  # the adapter loads: its SDK is installed
        doctor = _load(DOCTORS, channel_config.type, name)
    except ConfigError as exc:
        return [(f"channel {name}", False, str(exc))]
    if doctor is None:
        return []
    checks: list[Check] = await doctor(name, channel_config)
    return checks


def add_channel_commands(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add each channel's `decapod <command> ...` to the command line."""
    for module_name in COMMANDS.values():
        importlib.import_module(module_name).add_subparsers(sub)


def run_channel_command(args: argparse.Namespace, config: Config) -> int:
    code: int = importlib.import_module(COMMANDS[args.command]).run(args, config)
    return code


def _load(table: dict[str, str], kind: str, name: str) -> Any:
    """The object `table[kind]` names, or None when the type has no entry. An adapter whose
    optional dependency is missing is a ConfigError that says what to install."""
    target = table.get(kind)
    if target is None:
        return None
    module_name, _, attribute = target.partition(":")
    try:
        module = importlib.import_module(module_name)
    except ImportError as exc:
        raise ConfigError(
            f"the {kind} channel needs an optional dependency "
            f"(pip install 'decapod[{kind}]'): {exc}",
            f"channels.{name}",
        ) from exc
    return getattr(module, attribute)
