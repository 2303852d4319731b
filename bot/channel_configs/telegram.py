"""`[channels.<name>]` with `type = "telegram"`."""

from __future__ import annotations

from typing import Literal
from urllib.parse import urlsplit

from pydantic import BaseModel, ConfigDict, Field, model_validator

from bot.config_base import ChannelAccessConfig, EnvName, GivenEnvName


class TelegramChannelConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")

    type: Literal["telegram"]
    #: environment variable holding the BotFather token
    token_env: GivenEnvName = "TELEGRAM_BOT_TOKEN"
    #: polling: the bot asks Telegram for updates (works behind NAT, no public URL needed);
    #: webhook: Telegram posts updates to `webhook_url`, served by the gateway's HTTP server
    mode: Literal["polling", "webhook"] = "polling"
    #: the public https URL Telegram posts to (a reverse proxy forwards it to the gateway)
    webhook_url: str = ""
    #: the path on the gateway's HTTP server; empty: the path of webhook_url
    webhook_path: str = ""
    #: environment variable with the webhook secret token (A-Z, a-z, 0-9, _ and -);
    #: empty: a random secret is set with every start
    webhook_secret_env: EnvName = ""
    #: the Bot API server ("{token}" is replaced by the token, else the token is appended)
    api_base_url: str = "https://api.telegram.org/bot"
    file_base_url: str = "https://api.telegram.org/file/bot"
    #: seconds one long poll waits for updates
    poll_timeout_s: int = Field(default=30, ge=1, le=50)
    #: the largest attachment fetched (the public Bot API serves at most 20 MB)
    max_download_mb: float = Field(default=20.0, gt=0)
    #: stream replies by editing one message (about once a second) instead of sending at the end
    stream: bool = True
    #: seconds between two messages to one chat
    chat_interval_s: float = Field(default=1.0, ge=0)
    #: messages per minute to one group
    group_messages_per_minute: int = Field(default=20, ge=1)
    #: messages per second for the whole bot
    messages_per_second: int = Field(default=30, ge=1)
    access: ChannelAccessConfig = Field(default_factory=ChannelAccessConfig)

    def secret_envs(self) -> list[tuple[str, str]]:
        """(key, variable) for each secret the channel reads from the environment at start."""
        envs = [("token_env", self.token_env)]
        if self.webhook_secret_env:
            envs.append(("webhook_secret_env", self.webhook_secret_env))
        return envs

    @model_validator(mode="after")
    def _webhook(self) -> TelegramChannelConfig:
        if self.mode != "webhook":
            return self
        url = urlsplit(self.webhook_url)
        if url.scheme != "https" or not url.netloc:
            raise ValueError(
                "webhook mode needs webhook_url, the public https URL Telegram posts to"
            )
        if not self.route_path.startswith("/"):
            raise ValueError("webhook_path must start with '/'")
        return self

    @property
    def route_path(self) -> str:
        """Where the gateway's HTTP server receives the webhook."""
        return self.webhook_path or urlsplit(self.webhook_url).path or "/"
