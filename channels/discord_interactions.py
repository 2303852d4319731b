"""Interactions mode: Discord POSTs slash commands and button presses to Decapod's HTTP server
(the application's Interactions Endpoint URL) instead of sending them over the gateway.

Every POST is checked first: an Ed25519 signature (`X-Signature-Ed25519`) over the
timestamp (`X-Signature-Timestamp`) and the raw body, made with the application's key and
checked with its public key from the config. A missing or wrong signature, or a timestamp
further than `MAX_SKEW_S` from our clock (a replayed request), gets 401 and is not read any
further; Discord probes the endpoint with bad signatures and drops a URL that accepts one.

A checked interaction becomes a `discord.Interaction` and takes the gateway mode's own path
(channels/discord.py): a slash command is acknowledged through the callback endpoint with the
placeholder, then stored under the interaction id (a second delivery of the same interaction
cannot be acknowledged again and is dropped by the store); a button press is stored, then
answered by updating its message. Discord's docs ask for 202 without a body on the POST when
the answer went through the callback endpoint. The callback is used rather than the POST's
own response because it returns the placeholder's message id, which the send path edits, and
because the answer may then never reach Discord before the acknowledgement does.

Nothing here holds a connection: every replica behind a load balancer serves the endpoint.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Awaitable, Callable, Collection
from typing import Any

import discord
from aiohttp import web

from bot.channel_configs.discord import DiscordChannelConfig
from bot.errors import ConfigError
from channels import discord_private
from channels.buttons import EXPIRED
from channels.discord_buttons import CUSTOM_ID

log = logging.getLogger("decapod.channels.discord")

SIGNATURE_HEADER = "X-Signature-Ed25519"
TIMESTAMP_HEADER = "X-Signature-Timestamp"
#: how far a request's timestamp may be from our clock: Discord sends at once and wants an
#: answer within 3 s, so this only has to cover clock skew (Slack's check uses the same 5 min)
MAX_SKEW_S = 300.0
EPHEMERAL = 1 << 6

PING = 1
APPLICATION_COMMAND = 2
MESSAGE_COMPONENT = 3
PONG = 1
CHANNEL_MESSAGE_WITH_SOURCE = 4

OnCommand = Callable[[discord.Interaction, str, str], Awaitable[None]]
OnPress = Callable[[discord.Interaction, str], Awaitable[None]]


class SignatureCheck:
    """Discord's request signature, checked with the application's public key.

    cryptography is imported here, in interactions mode only: a gateway-mode channel does
    not hold it (~4 MB and ~15 ms at start)."""

    def __init__(self, public_key_hex: str) -> None:
        from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

        self._key = Ed25519PublicKey.from_public_bytes(bytes.fromhex(public_key_hex))

    def valid(self, signature: str, timestamp: str, body: bytes, now: float | None = None) -> bool:
        try:
            signed_at = int(timestamp)
            raw_signature = bytes.fromhex(signature)
        except ValueError:
            return False
        if abs((time.time() if now is None else now) - signed_at) > MAX_SKEW_S:
            return False
        from cryptography.exceptions import InvalidSignature

        try:
            self._key.verify(raw_signature, timestamp.encode() + body)
        except InvalidSignature:
            return False
        return True


def check_public_key(configured: str, application: Any, key: str) -> None:
    """The configured key must be the application's own (GET /oauth2/applications/@me at
    login): with another one every interaction would be refused with 401."""
    actual = str(getattr(application, "verify_key", "") or "")
    if actual and actual.lower() != configured.lower():
        raise ConfigError(
            f"this is not the public key of the bot's application (Discord says {actual}); "
            "copy it from Developer Portal > General Information > Public Key",
            key,
        )


def check_settings(name: str, config: DiscordChannelConfig, http_enabled: bool) -> None:
    """What interactions mode needs before it starts, each a ConfigError naming its key."""
    if not config.public_key:
        raise ConfigError(
            "interactions mode checks Discord's signatures with the application's public "
            "key: set public_key (Developer Portal > General Information > Public Key)",
            f"channels.{name}.public_key",
        )
    if not http_enabled:
        raise ConfigError(
            "interactions mode is served by Decapod's HTTP server; set [http] enabled = true",
            f"channels.{name}.mode",
        )


def command_of(data: dict[str, Any]) -> tuple[str, str]:
    """(name, text argument) of a slash command: the shared table's commands take at most
    one text option."""
    name = str(data["name"])
    for option in data.get("options") or []:
        if "value" in option:
            return name, str(option["value"])
    return name, ""


def _inline(content: str) -> web.Response:
    """An answer in the POST's own response that only the person who acted sees."""
    data = {"content": content, "flags": EPHEMERAL, "allowed_mentions": {"parse": []}}
    return web.json_response({"type": CHANNEL_MESSAGE_WITH_SOURCE, "data": data})


class InteractionsEndpoint:
    """The POST handler of one Discord channel in interactions mode."""

    def __init__(
        self,
        name: str,
        public_key_hex: str,
        client: Callable[[], discord.Client | None],
        commands: Callable[[], Collection[str]],
        on_command: OnCommand,
        on_press: OnPress,
    ) -> None:
        self.name = name
        self.signatures = SignatureCheck(public_key_hex)
        self._client = client
        self._commands = commands
        self._on_command = on_command
        self._on_press = on_press
        #: requests refused for their signature or timestamp (shown in /health)
        self.refused = 0

    async def handle(self, request: web.Request) -> web.Response:
        raw = await request.read()
        headers = request.headers
        if not self.signatures.valid(
            headers.get(SIGNATURE_HEADER, ""), headers.get(TIMESTAMP_HEADER, ""), raw
        ):
            self.refused += 1
            return web.Response(status=401, text="invalid request signature")
        try:
            data = json.loads(raw)
            kind = data["type"]
        except (ValueError, TypeError, KeyError):
            log.warning("Discord %s: a signed interaction that is not readable; skipped", self.name)
            return web.Response(status=400)
        if kind == PING:
            return web.json_response({"type": PONG})
        client = self._client()
        if client is None:
            return web.Response(status=503, headers={"Retry-After": "1"})
        try:
            interaction = discord_private.interaction_from(client, data)
            if kind == APPLICATION_COMMAND:
                name, args = command_of(data["data"])
            elif kind == MESSAGE_COMPONENT:
                custom_id = str(data["data"]["custom_id"])
            else:
                log.info("Discord %s: ignored an interaction of type %s", self.name, kind)
                return web.Response(status=400)
        except (KeyError, TypeError, ValueError, AttributeError) as exc:
            # the payload itself is not logged: it carries what a person wrote
            log.warning("Discord %s: skipped a malformed interaction (%r)", self.name, exc)
            return web.Response(status=400)
        if kind == APPLICATION_COMMAND:
            if name not in self._commands():
                return _inline(f"I don't know /{name} (any more).")
            await self._on_command(interaction, name, args)
        else:
            match = CUSTOM_ID.fullmatch(custom_id)
            if match is None:
                return _inline(EXPIRED)
            await self._on_press(interaction, match["token"])
        # answered through the callback endpoint (or too late to answer at all)
        return web.Response(status=202)
