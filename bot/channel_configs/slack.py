"""`[channels.<name>]` with `type = "slack"` (docs/channels/slack.md)."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

from bot.config_base import ChannelAccessConfig, EnvName, GivenEnvName

SLACK_API_URL = "https://slack.com/api/"


class SlackChannelConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")

    type: Literal["slack"]
    #: socket: Socket Mode (no public URL needed); http: Events API POSTs to /slack/events
    mode: Literal["socket", "http"] = "socket"
    #: environment variable holding the bot token (xoxb-...)
    bot_token_env: GivenEnvName = "SLACK_BOT_TOKEN"
    #: environment variable holding the app-level token (xapp-..., Socket Mode only)
    app_token_env: EnvName = "SLACK_APP_TOKEN"
    #: environment variable holding the signing secret (HTTP mode only)
    signing_secret_env: EnvName = "SLACK_SIGNING_SECRET"
    #: the Web API base URL (Enterprise Grid proxies and tests change it)
    api_url: str = SLACK_API_URL
    #: the one slash command; its subcommands are the command table (/decapod ask ...)
    slash_command: str = Field(default="/decapod", pattern=r"^/[a-z0-9][a-z0-9_\-]{0,31}$")
    #: files larger than this are named to the model but not attached
    max_file_mb: float = Field(default=20.0, gt=0, le=1024)
    #: reaction shown on a message while the model works on it; "" for none
    working_signal: str = Field(default="eyes", pattern=r"^[a-z0-9_+\-']*$")
    #: stream answers by editing one message (at most once a second)
    stream: bool = True
    access: ChannelAccessConfig = Field(default_factory=ChannelAccessConfig)

    def secret_envs(self) -> list[tuple[str, str]]:
        """(key, variable) for each secret the channel reads from the environment at start."""
        if self.mode == "socket":
            return [("bot_token_env", self.bot_token_env), ("app_token_env", self.app_token_env)]
        return [
            ("bot_token_env", self.bot_token_env),
            ("signing_secret_env", self.signing_secret_env),
        ]

    @field_validator("working_signal", mode="before")
    @classmethod
    def _strip_colons(cls, value: object) -> object:
        # people copy reaction names as they type them in Slack (":eyes:")
        return value.strip(":") if isinstance(value, str) else value

    @field_validator("api_url")
    @classmethod
    def _http_url(cls, value: str) -> str:
        if not value.startswith(("https://", "http://")):
            raise ValueError(f"expected an http(s) URL like {SLACK_API_URL!r}")
        return value if value.endswith("/") else value + "/"
