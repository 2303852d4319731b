"""The Discord channel, on discord.py's Client and an app_commands CommandTree.

- Slash commands come from the shared command table (channels/discord_commands.py) and are
  synced at start, globally or to the servers in `sync_commands_to`. Each is acknowledged at
  once with a placeholder ("thinking…") that its answer replaces (channels/discord_outbound.py).
- DMs, guild channels and threads are normalized in channels/discord_inbound.py. Guild
  messages reach the access layer with `mentioned` set when the bot was mentioned (user or
  its managed role) or replied to; servers outside `guilds` are ignored here.
- Inbound events pass through one queue, so the gateway sees them in the order Discord sent
  them. The delivery id is the message or interaction snowflake, so an event that a RESUME
  replays is dropped by the gateway's store.
- Buttons are a `discord.ui.View` of dynamic items (channels/discord_buttons.py); a press is
  stored as the presser's command, then answered by updating the message (the decision,
  no buttons), or, when refused, with an ephemeral reply.
- discord.py reconnects and resumes; channels/discord_connection.py has the client whose
  events reach the channel, and adds the heartbeat-ACK watchdog. What the channel needs from
  discord.py's internals (the API and gateway URLs, the dispatch parsers, the heartbeat's
  state) is in channels/discord_private.py.
- In interactions mode (`mode = "interactions"`) no gateway connection is opened: slash
  commands and button presses arrive as signed POSTs (channels/discord_interactions.py) and
  take the same path from the acknowledgement on. REST sends work as in gateway mode.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
from collections.abc import Awaitable, Callable
from functools import partial
from pathlib import Path
from typing import Any

import aiohttp
import discord
from discord import app_commands

from bot.channel_configs.discord import DiscordChannelConfig
from bot.commands import CommandSpec
from bot.config import channel_secrets
from bot.errors import ChannelError, ConfigError
from bot.messages import (
    Attachment,
    Conversation,
    ConversationKind,
    InboundMessage,
    OutboundMessage,
    SentRef,
)
from bot.proxy_env import check_proxy_env
from bot.tasks import cancel_and_wait
from channels import HttpRoute, InboundSink, discord_private
from channels.base import BaseChannel, FileUpload
from channels.buttons import Button, ButtonBook, Press, Refused
from channels.discord_buttons import PressButton, view_of
from channels.discord_cli import doctor
from channels.discord_commands import CheckedCommandTree, add_commands, sync_commands
from channels.discord_connection import ChannelClient, HeartbeatWatchdog, make_client, run_gateway
from channels.discord_inbound import Downloads, Normalizer
from channels.discord_interactions import InteractionsEndpoint, check_public_key, check_settings
from channels.discord_outbound import CONTINUED, DiscordSender, allowed_mentions
from channels.http_errors import describe_http_error

__all__ = ["DiscordChannel", "create", "doctor"]

log = logging.getLogger("decapod.channels.discord")

#: how long start() waits for the first READY before it lets the gateway go on
READY_TIMEOUT_S = 30.0
#: at stop, how long events already received may take to reach the store
DRAIN_TIMEOUT_S = 5.0

InboundJob = Callable[[], Awaitable[InboundMessage | None]]


class DiscordChannel(BaseChannel):
    type = "discord"
    # Discord's limit, less the note that starts an interaction's answer moved to the channel
    max_message_len = 2000 - len(CONTINUED)
    #: what Discord takes from a bot in a server without boosts
    max_upload_bytes = 10 * 1024 * 1024
    supports_edit = True
    edit_interval = 1.0
    typing_interval = 8.0  # Discord shows "typing" for about 10 s per request
    supports_buttons = True

    def __init__(self, name: str, config: DiscordChannelConfig, home: Path | None = None) -> None:
        super().__init__(name)
        self.config = config
        # read (and so registered with the redactor) when the channel is made, like the other
        # channels' secrets: a secret registered later would rebuild the redactor's index
        self._token = channel_secrets(name, config)["token_env"]
        self.buttons = ButtonBook(home / f"discord-{name}-buttons.json" if home else None)
        self.supports_edit = config.stream
        self.client: ChannelClient | None = None
        self.tree: app_commands.CommandTree[Any] | None = None
        self.connections = 0  # READY or RESUMED: the first connection and every reconnect
        self.malformed_events = 0
        self._connected = asyncio.Event()
        self._inbound: asyncio.Queue[InboundJob] = asyncio.Queue()
        self._tasks: list[asyncio.Task[None]] = []
        #: the gateway connection and its watchdog: on the leader only, among replicas
        self._gateway_tasks: list[asyncio.Task[None]] = []
        self._watchdog: HeartbeatWatchdog | None = None
        self._downloads = Downloads()
        self._sender: DiscordSender | None = None
        self._normalizer: Normalizer | None = None
        self.endpoint: InteractionsEndpoint | None = None
        #: interactions mode: from the end of start() to the start of stop()
        self._serving = False
        if config.mode == "interactions" and config.public_key:
            self.endpoint = InteractionsEndpoint(
                name,
                config.public_key,
                lambda: self.client if self._serving else None,
                lambda: {spec.name for spec in self.commands},
                self._on_command,
                self.on_press,
            )

    # lifecycle ------------------------------------------------------------------------------
    async def start(self, sink: InboundSink) -> None:
        await super().start(sink)
        cfg = self.config
        key = f"channels.{self.name}.token_env"
        discord_private.point_at(self.name, cfg.api_base_url, cfg.gateway_url)
        client = self.client = make_client(self, cfg)
        self._sender = DiscordSender(client, allowed_mentions(cfg.allowed_mentions))
        self._normalizer = Normalizer(self.name, client)
        client.add_dynamic_items(PressButton)
        self.tree = CheckedCommandTree(client, self._count_malformed)
        add_commands(self.tree, self.commands, self._on_command)
        discord_private.guard_parsers(client, self._count_malformed)
        try:
            await client.login(self._token)
        except discord.LoginFailure:
            await self.stop()
            raise ConfigError(f"Discord rejected the token in ${cfg.token_env}", key) from None
        except (discord.HTTPException, aiohttp.ClientError, OSError) as exc:
            await self.stop()
            raise ChannelError(
                f"cannot reach Discord at {cfg.api_base_url}: {describe_http_error(exc)}"
            ) from None
        try:
            if cfg.public_key and cfg.mode == "interactions":
                check_public_key(
                    cfg.public_key, client.application, f"channels.{self.name}.public_key"
                )
            if self.publish_on_start:
                await sync_commands(self.tree, self.config.sync_commands_to)
            self._watchdog = HeartbeatWatchdog(client, cfg.watchdog_s)
            self._tasks = [
                asyncio.create_task(self._deliver(sink), name=f"discord-{self.name}-inbound")
            ]
            if self.receive_on_start:
                await self.start_receiving()
            self._serving = self.endpoint is not None
        except BaseException:
            await self.stop()
            raise

    async def publish_commands(self, commands: list[CommandSpec]) -> None:
        offered = {spec.name for spec in self.commands}
        await super().publish_commands(commands)
        if self.tree is None:
            return
        add_commands(self.tree, [s for s in commands if s.name not in offered], self._on_command)
        await sync_commands(self.tree, self.config.sync_commands_to)

    def receives_exclusively(self) -> bool:
        # one gateway session per bot (this adapter runs no shards); POSTs reach any replica
        return self.config.mode == "gateway"

    async def start_receiving(self) -> None:
        """Open the gateway connection (REST sends work without it)."""
        client, watchdog = self.client, self._watchdog
        if client is None or watchdog is None or self._gateway_tasks or self.endpoint:
            return
        self._gateway_tasks = [
            asyncio.create_task(
                run_gateway(self.name, client, self._connected), name=f"discord-{self.name}"
            ),
            asyncio.create_task(watchdog.run(), name=f"discord-{self.name}-watchdog"),
        ]
        try:
            await asyncio.wait_for(self._connected.wait(), READY_TIMEOUT_S)
        except TimeoutError:
            log.warning(
                "Discord %s: not connected after %.0fs; still trying", self.name, READY_TIMEOUT_S
            )

    async def stop_receiving(self) -> None:
        tasks, self._gateway_tasks = self._gateway_tasks, []
        await cancel_and_wait(*tasks)
        socket = discord_private.live_socket(self.client) if self.client is not None else None
        if socket is not None:
            with contextlib.suppress(Exception):
                await socket.close(code=1000)  # a clean close: the next leader identifies
        self._connected.clear()

    async def stop(self) -> None:
        self._serving = False
        client, self.client = self.client, None
        if client is not None:
            await client.close()
        # what Discord delivered before the close still reaches the store (and runs next start)
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._inbound.join(), DRAIN_TIMEOUT_S)
        await cancel_and_wait(*self._tasks, *self._gateway_tasks)
        self._tasks, self._gateway_tasks = [], []
        await self._downloads.close()
        discord_private.release(self.name)
        await super().stop()

    def health(self) -> dict[str, Any]:
        if self.endpoint is not None:
            return {
                "type": self.type,
                "mode": self.config.mode,
                "running": self._serving,
                "receiving": self._serving,
                "refused_signatures": self.endpoint.refused,
            }
        latency = self.client.latency if self.client is not None else math.inf
        receiving = bool(self._gateway_tasks)
        # a replica that only sends is running while it is logged in
        sending_only = not receiving and not self.receive_on_start
        return {
            "type": self.type,
            "mode": self.config.mode,
            "running": self.client is not None if sending_only else self._connected.is_set(),
            "receiving": receiving,
            "latency_ms": round(latency * 1000, 1) if math.isfinite(latency) else None,
            "reconnects": max(0, self.connections - 1),
            "watchdog_restarts": self._watchdog.restarts if self._watchdog else 0,
            "malformed_events": self.malformed_events,
        }

    def http_routes(self) -> list[HttpRoute]:
        if self.endpoint is None:
            return []
        return [("POST", self.config.interactions_path, self.endpoint.handle)]

    # gateway events ---------------------------------------------------------------------------
    def on_connected(self) -> None:
        self.connections += 1
        self._connected.set()

    def on_disconnected(self) -> None:
        self._connected.clear()

    def _count_malformed(self, event: str) -> None:
        self.malformed_events += 1

    def _guild_allowed(self, guild_id: int | None) -> bool:
        return guild_id is None or not self.config.guilds or str(guild_id) in self.config.guilds

    def _channel_enabled(self, interaction: discord.Interaction) -> bool:
        """Whether `access.groups` has an entry for a command's channel (a thread's parent).
        The access layer decides the rest; this first check is repeated here because a
        command it denies silently would leave "thinking…" on screen for 15 minutes."""
        if interaction.guild_id is None:
            return True
        groups = self.config.access.groups
        channel = interaction.channel
        chat_id = (
            channel.parent_id if isinstance(channel, discord.Thread) else interaction.channel_id
        )
        return "*" in groups or str(chat_id) in groups

    def on_message(self, message: discord.Message) -> None:
        if self._normalizer is None or not self._guild_allowed(
            message.guild.id if message.guild is not None else None
        ):
            return
        self._inbound.put_nowait(partial(self._normalizer.from_message, message))

    async def _deliver(self, sink: InboundSink) -> None:
        while True:
            job = await self._inbound.get()
            try:
                message = await job()
                if message is not None:
                    self._remember_dm(message)
                    await sink(message)
            except Exception:
                log.exception("Discord %s: could not take an inbound event", self.name)
            finally:
                self._inbound.task_done()

    def _remember_dm(self, message: InboundMessage) -> None:
        if message.conversation.kind is ConversationKind.DM and self._sender is not None:
            self._sender.remember_dm(message.conversation.chat_id, message.meta["channel_id"])

    # slash commands -------------------------------------------------------------------------
    async def _on_command(self, interaction: discord.Interaction, name: str, args: str) -> None:
        if self._normalizer is None:
            return
        if not self._guild_allowed(interaction.guild_id) or not self._channel_enabled(interaction):
            await interaction.response.send_message("I am not enabled here.", ephemeral=True)
            return
        placeholder: str | None = None
        try:
            placeholder = await self._out().acknowledge(interaction)
        except discord.HTTPException as exc:
            # Replayed after a RESUME (acknowledged the first time; the store drops the
            # duplicate) or too late (the interaction is gone): answer in the channel instead.
            log.info("Discord %s: /%s not acknowledged (HTTP %s)", self.name, name, exc.status)
        job = partial(
            self._normalizer.from_command, interaction, name, args, placeholder=placeholder
        )
        self._inbound.put_nowait(job)

    # the send path (channels/base.py does chunking, pacing, streaming) ---------------------------
    def _out(self) -> DiscordSender:
        if self._sender is None:
            raise ChannelError(f"Discord channel {self.name} is not started")
        return self._sender

    async def _send_text(self, message: OutboundMessage, text: str) -> SentRef:
        return await self._out().send(message, text)

    async def _send_buttons(
        self, message: OutboundMessage, text: str, buttons: list[Button]
    ) -> SentRef:
        return await self._out().send(message, text, view_of(buttons))

    async def _edit_text(self, ref: SentRef, text: str) -> None:
        await self._out().edit(ref, text)

    async def on_press(self, interaction: discord.Interaction, token: str) -> None:
        """Stored first, answered within Discord's 3 s after: the message is updated to
        show the decision without buttons, or a refusal is shown to the presser alone."""
        if self._normalizer is None:
            return
        identity = self._normalizer.identity(interaction.user)
        meta = {"channel_id": str(interaction.channel_id)} if interaction.channel_id else {}
        result = await self.take_press(Press(str(interaction.id), token, identity), meta)
        try:
            if isinstance(result, Refused):
                await interaction.response.send_message(result.reason, ephemeral=True)
            else:
                await interaction.response.edit_message(
                    content=result.fitted(self.split), view=None
                )
        except discord.HTTPException as exc:  # too late: the press stands all the same
            log.info(
                "Discord %s: press %s not answered (HTTP %s)", self.name, interaction.id, exc.status
            )

    async def _send_file(self, upload: FileUpload) -> SentRef:
        return await self._out().send_file(
            upload.conversation, upload.data, upload.name, upload.caption
        )

    async def on_denied(self, message: InboundMessage) -> None:
        """A command the access layer refused silently still needs an answer, or its
        placeholder ("thinking…") stays on screen."""
        if message.meta.get("interaction_token"):
            notice = OutboundMessage(
                message.conversation, "I can't answer that here.", meta=message.meta
            )
            await self._out().send(notice, notice.text)

    async def _typing(self, conversation: Conversation) -> None:
        await self._out().typing(conversation)

    async def fetch(self, attachment: Attachment, max_bytes: int) -> bytes:
        return await self._downloads.fetch(attachment, max_bytes)


def create(name: str, channel_config: DiscordChannelConfig, config: Any) -> DiscordChannel:
    check_proxy_env()
    if channel_config.mode == "interactions":
        check_settings(name, channel_config, config.http.enabled)
    return DiscordChannel(name, channel_config, config.home)
