"""`[channels.<name>]` with `type = "discord"`."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

from bot.config_base import ChannelAccessConfig, GivenEnvName, empty_list

DISCORD_API = "https://discord.com/api/v10"
DISCORD_GATEWAY = "wss://gateway.discord.gg/"


class DiscordChannelConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")

    type: Literal["discord"]
    #: gateway: one connection (DMs, messages, slash commands; on one replica at a time);
    #: interactions: slash commands and buttons as signed POSTs to `interactions_path` on
    #: Decapod's HTTP server (the application's Interactions Endpoint URL), on every replica
    mode: Literal["gateway", "interactions"] = "gateway"
    #: the application's public key (Developer Portal > General Information), 64 hex
    #: characters; interactions mode checks each POST's Ed25519 signature with it
    public_key: str | None = Field(default=None, pattern=r"^[0-9a-fA-F]{64}$")
    #: where interactions mode takes Discord's POSTs on Decapod's HTTP server
    interactions_path: str = Field(default="/discord/interactions", pattern=r"^/[A-Za-z0-9/_\-]*$")
    #: environment variable holding the bot token
    token_env: GivenEnvName = "DISCORD_BOT_TOKEN"
    #: REST base URL (tests point it at a local fake)
    api_base_url: str = DISCORD_API
    #: gateway URL for the first connection; resumes go where Discord says
    gateway_url: str = DISCORD_GATEWAY
    #: server (guild) ids the bot works in; empty: any server it is invited to
    guilds: list[str] = Field(default_factory=empty_list)
    #: server ids to register the slash commands in (instant); empty: globally
    sync_commands_to: list[str] = Field(default_factory=empty_list)
    #: reconnect when a heartbeat stays unacknowledged this many seconds
    watchdog_s: float = Field(default=30.0, gt=0, le=600)
    #: stream answers by editing the message about once a second; off: send when complete
    stream: bool = True
    #: what the bot's messages may ping: any of "users", "roles", "everyone"; empty: nothing
    allowed_mentions: list[Literal["users", "roles", "everyone"]] = Field(
        default_factory=empty_list
    )
    #: ask for the privileged Message Content intent (it must be enabled in the Developer
    #: Portal); without it guild messages arrive empty unless they mention the bot
    message_content_intent: bool = True
    access: ChannelAccessConfig = Field(default_factory=ChannelAccessConfig)

    def secret_envs(self) -> list[tuple[str, str]]:
        """(key, variable) for each secret the channel reads from the environment at start."""
        return [("token_env", self.token_env)]

    @field_validator("guilds", "sync_commands_to", mode="before")
    @classmethod
    def _snowflakes(cls, value: object) -> object:
        # ids are accepted as TOML integers or strings; they are compared as strings
        if isinstance(value, list):
            value = [str(v) if isinstance(v, int) and not isinstance(v, bool) else v for v in value]
            for item in value:
                if not (isinstance(item, str) and item.isdigit()):
                    raise ValueError(f"{item!r} is not a Discord id (digits only)")
        return value

    @field_validator("api_base_url")
    @classmethod
    def _http_url(cls, value: str) -> str:
        if not value.startswith(("https://", "http://")):
            raise ValueError("expected an http(s):// URL, e.g. " + DISCORD_API)
        return value.rstrip("/")

    @field_validator("gateway_url")
    @classmethod
    def _ws_url(cls, value: str) -> str:
        if not value.startswith(("wss://", "ws://")):
            raise ValueError("expected a ws(s):// URL, e.g. " + DISCORD_GATEWAY)
        return value
