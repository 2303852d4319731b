"""config.toml, validated: every table forbids unknown keys, and an error names the key path
and what was expected. Secrets never live in the file: `*_env` keys name environment variables.
"""

from __future__ import annotations

import os
import tomllib
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Annotated, Any, Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import Field, ValidationError, field_validator, model_validator

from bot.channel_configs.discord import DiscordChannelConfig
from bot.channel_configs.slack import SlackChannelConfig
from bot.channel_configs.telegram import TelegramChannelConfig
from bot.config_base import ChannelAccessConfig, GroupConfig, Section, empty_list
from bot.errors import ConfigError
from bot.hooks.config import HooksConfig
from bot.mcp.config import McpConfig
from bot.media.config import MediaConfig, TranscriptionConfig
from bot.media.speech_config import SpeechConfig, check_audio_chain
from bot.memory.config import MemoryConfig
from bot.pricing import UsageConfig
from bot.providers.config import (
    ModelsConfig,
    ProviderConfig,
    check_model_refs,
)
from bot.sandbox.config import SandboxConfig
from bot.scheduler.config import CheckinConfig, SchedulerConfig
from bot.skills.config import SkillsConfig
from bot.store.config import StoreConfig
from bot.web.config import WebConfig
from bot.webui.config import WebUIConfig

DEFAULT_SYSTEM_PROMPT = (
    "You are Decapod, a helpful personal assistant chatting through a messaging app. "
    "Answer concisely and plainly. Use tools when they help; never invent tool results."
)


_Section = Section
__all__ = ["ChannelAccessConfig", "Config", "GroupConfig", "load_config", "parse_config"]


class GatewayConfig(_Section):
    #: turns that may run at once across all sessions
    max_concurrent_turns: int = Field(default=64, ge=1)
    #: messages of recent history sent with each turn
    history_messages: int = Field(default=40, ge=2)
    turn_deadline_s: float = Field(default=120.0, gt=0)
    max_tool_iterations: int = Field(default=8, ge=1)
    #: longer messages get a clear reply instead of a model call
    max_message_chars: int = Field(default=16_000, ge=100)
    #: default time zone of people who have not set their own
    timezone: str = "UTC"
    #: seconds a stop waits for running turns before leaving them for the next start
    shutdown_grace_s: float = Field(default=10.0, ge=0)
    #: identity keys ("telegram:123456") of the owner: all tools, approvals, alerts
    owners: list[str] = Field(default_factory=empty_list)
    #: processes that run turns; 1 runs them in the process that holds the channels. With
    #: more, that process receives and stores, and each session's turns run in one of these
    #: (docs/performance.md, "Turns in several processes")
    turn_processes: int = Field(default=1, ge=1, le=32)
    #: replicas on one PostgreSQL store: seconds a replica's hold on a session lasts
    #: unrenewed, so a dead replica's sessions are taken over this long after it died
    session_lease_s: float = Field(default=30.0, ge=1.0, le=3600.0)

    @field_validator("timezone")
    @classmethod
    def _zone(cls, value: str) -> str:
        try:
            ZoneInfo(value)
        except (ZoneInfoNotFoundError, ValueError):
            raise ValueError(
                f"unknown time zone {value!r} (expected e.g. 'Europe/Berlin')"
            ) from None
        return value

    @field_validator("owners")
    @classmethod
    def _identity_keys(cls, value: list[str]) -> list[str]:
        for key in value:
            channel, _, user_id = key.partition(":")
            if not channel.strip() or not user_id.strip():
                raise ValueError(
                    f"{key!r} is not an identity key: expected the form channel:user_id, "
                    'e.g. "telegram:123456789" (the channel\'s name in [channels], or "console")'
                )
        return value


class AgentConfig(_Section):
    system_prompt: str = DEFAULT_SYSTEM_PROMPT
    max_output_tokens: int = Field(default=1024, ge=16)
    temperature: float | None = Field(default=None, ge=0, le=2)
    #: compact when the context estimate passes this share of the model's window
    compaction_threshold: float = Field(default=0.95, gt=0.1, le=1.0)
    #: messages kept verbatim when older ones are summarized
    keep_recent_messages: int = Field(default=8, ge=2)


class SecurityConfig(_Section):
    #: more environment variables whose values must never leave the process (redacted
    #: everywhere, like provider keys and platform tokens, which are registered by themselves)
    secret_env: list[str] = Field(default_factory=empty_list)


class HttpConfig(_Section):
    enabled: bool = True
    host: str = "127.0.0.1"
    port: int = Field(default=8787, ge=0, le=65535)

    @field_validator("host")
    @classmethod
    def _an_address(cls, value: str) -> str:
        # an empty host listens on every interface: a variable left empty
        # (DECAPOD_HTTP__HOST=${HOST}) must not open the gateway to the network unasked
        if not value.strip():
            raise ValueError(
                "empty: it would listen on every interface; write 127.0.0.1 (the default, "
                'this machine only), or "0.0.0.0" (every IPv4 interface) or "::" (every '
                "IPv6 one) to mean it"
            )
        return value


class LoggingConfig(_Section):
    level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = "INFO"
    format: Literal["auto", "json", "text"] = "auto"
    #: a JSON-lines log file under the home folder (what `decapod logs` reads); empty for none
    file: str = "logs/decapod.log"
    #: the file is rotated at this size; `file_backups` older files are kept beside it
    file_max_mb: float = Field(default=10.0, gt=0)
    file_backups: int = Field(default=5, ge=0)


class ConsoleChannelConfig(_Section):
    type: Literal["console"]

    def secret_envs(self) -> list[tuple[str, str]]:
        return []


ChannelConfig = Annotated[
    ConsoleChannelConfig | TelegramChannelConfig | SlackChannelConfig | DiscordChannelConfig,
    Field(discriminator="type"),
]


def _default_providers() -> dict[str, ProviderConfig]:
    return {"local": ProviderConfig(preset="ollama", context_window=32_768)}


def _default_models() -> ModelsConfig:
    return ModelsConfig(chat=["local:llama3.2"])


class Config(_Section):
    #: the home folder (DECAPOD_HOME or --home); not usually set in the file
    home: Path = Field(default_factory=lambda: default_home())
    gateway: GatewayConfig = Field(default_factory=GatewayConfig)
    agent: AgentConfig = Field(default_factory=AgentConfig)
    providers: dict[str, ProviderConfig] = Field(default_factory=_default_providers)
    models: ModelsConfig = Field(default_factory=_default_models)
    http: HttpConfig = Field(default_factory=HttpConfig)
    security: SecurityConfig = Field(default_factory=SecurityConfig)
    sandbox: SandboxConfig = Field(default_factory=SandboxConfig)
    memory: MemoryConfig = Field(default_factory=MemoryConfig)
    scheduler: SchedulerConfig = Field(default_factory=SchedulerConfig)
    checkins: CheckinConfig = Field(default_factory=CheckinConfig)
    mcp: McpConfig = Field(default_factory=McpConfig)
    skills: SkillsConfig = Field(default_factory=SkillsConfig)
    hooks: HooksConfig = Field(default_factory=HooksConfig)
    web: WebConfig = Field(default_factory=WebConfig)
    webui: WebUIConfig = Field(default_factory=WebUIConfig)
    media: MediaConfig = Field(default_factory=MediaConfig)
    transcription: TranscriptionConfig = Field(default_factory=TranscriptionConfig)
    #: text to speech for voice answers (bot/media/speech_config.py)
    speech: SpeechConfig = Field(default_factory=SpeechConfig)
    usage: UsageConfig = Field(default_factory=UsageConfig)
    logging: LoggingConfig = Field(default_factory=LoggingConfig)
    store: StoreConfig = Field(default_factory=StoreConfig)
    channels: dict[str, ChannelConfig] = Field(default_factory=dict)

    @model_validator(mode="after")
    def _chains(self) -> Config:
        check_model_refs(self.providers, self.models)
        check_audio_chain(
            self.providers,
            self.transcription.chain,
            "transcription.chain",
            "/v1/audio/transcriptions",
        )
        check_audio_chain(self.providers, self.speech.chain, "speech.chain", "/v1/audio/speech")
        if "web" in self.channels and self.http.enabled and self.webui.enabled:
            raise ValueError(
                "channels.web: `web` is the web UI's chat; rename this channel "
                "(or set webui.enabled = false)"
            )
        return self

    @property
    def db_path(self) -> Path:
        """The SQLite database (decapod.db in the home folder unless [store] url names one)."""
        return self.store.sqlite_path(self.home)

    @property
    def log_file(self) -> Path | None:
        return self.home / self.logging.file if self.logging.file else None


def default_home() -> Path:
    return Path(os.environ.get("DECAPOD_HOME") or Path.home() / ".decapod").expanduser()


def missing_secrets(config: Config, environ: Mapping[str, str]) -> list[tuple[str, str]]:
    """(key, variable) for each secret `decapod run` reads from the environment at start and
    would find unset: the keys of the providers the chains name, the channels' tokens."""
    wanted = [
        (f"providers.{name}.{path}", variable)
        for name in config.models.provider_names()
        for path, variable in config.providers[name].key_env_names()
    ]
    wanted += [
        (f"channels.{name}.{key}", variable)
        for name, channel in config.channels.items()
        for key, variable in channel.secret_envs()
    ]
    return [(key, variable) for key, variable in wanted if not secret_is_set(environ, variable)]


def secret_is_set(environ: Mapping[str, str], variable: str) -> bool:
    """Whether a secret's variable holds a value (only whitespace is none, as for a provider's
    key): `decapod config check` and `decapod run` must agree on it."""
    return bool(environ.get(variable, "").strip())


def channel_secrets(name: str, channel: ChannelConfig) -> dict[str, str]:
    """A channel's secrets by key (`token_env`, ...), read with `secret_from_env` from the
    variables its `secret_envs()` names: the ones `missing_secrets` checks."""
    return {
        key: secret_from_env(variable, f"channels.{name}.{key}")
        for key, variable in channel.secret_envs()
    }


def secret_from_env(env_name: str, key_path: str) -> str:
    """The value of the environment variable a `*_env` key names, or a ConfigError. The value
    is registered with the redactor, so it can never show up in a log, a prompt or a reply."""
    if not secret_is_set(os.environ, env_name):
        raise ConfigError(f"environment variable {env_name} is not set", key_path)
    value = os.environ[env_name]
    from bot.security.redact import default_registry

    default_registry.add(value, env_name)
    return value


_CHANNEL_TYPES = frozenset({"console", "telegram", "slack", "discord"})
_MCP_TRANSPORTS = frozenset({"stdio", "http", "sse"})
_SEARCH_TYPES = frozenset({"searxng", "brave", "tavily"})


def _key_path(loc: tuple[int | str, ...]) -> str:
    parts = [str(p) for p in loc if not str(p).startswith("function-")]
    # a tagged table's loc carries the union's tag (channels.tg.telegram.x,
    # web.search.0.brave.x, mcp.servers.files.stdio.command): not a key
    if len(parts) > 2 and parts[0] == "channels" and parts[2] in _CHANNEL_TYPES:
        del parts[2]
    if len(parts) > 3 and parts[:2] == ["mcp", "servers"] and parts[3] in _MCP_TRANSPORTS:
        del parts[3]
    if len(parts) > 3 and parts[:2] == ["web", "search"] and parts[3] in _SEARCH_TYPES:
        del parts[3]
    return ".".join(parts)


def format_validation_error(
    exc: ValidationError, line_of: Callable[[str], int | None] | None = None
) -> str:
    """One line per error: the key path, the file's line that sets it (when `line_of` finds
    it), and what was expected."""
    lines = []
    for err in exc.errors():
        loc = _key_path(err["loc"])
        line = line_of(loc) if line_of is not None and loc else None
        if line is not None:
            loc += f" (line {line})"
        msg = err["msg"].removeprefix("Value error, ")
        if err["type"] == "extra_forbidden":
            msg = "unknown key (not one this version understands; check the spelling)"
        elif err["type"] == "missing":
            msg = "required key is missing"
        elif err["type"] == "union_tag_not_found":
            msg = f"required key {err.get('ctx', {}).get('discriminator', '')} is missing"
        lines.append(f"{loc or '(top level)'}: {msg}")
    return "\n".join(lines)


def parse_config(
    data: dict[str, Any],
    home: Path | None = None,
    line_of: Callable[[str], int | None] | None = None,
) -> Config:
    if home is not None:
        data = {**data, "home": home}
    try:
        return Config.model_validate(data)
    except ValidationError as exc:
        raise ConfigError(format_validation_error(exc, line_of)) from None


def config_location(path: Path | None, home: Path | None) -> tuple[Path, Path]:
    """The home folder (--home, else DECAPOD_HOME, else ~/.decapod) and the config file
    (--config, else the home's config.toml) a command reads."""
    home = (home or default_home()).expanduser()
    return home, path or home / "config.toml"


def _config_text(path: Path) -> str:
    """The file's text; TOML is UTF-8, so another encoding (a Latin-1 editor's é, a UTF-16
    file from Notepad) is a ConfigError naming the line, not a traceback."""
    raw = path.read_bytes()
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = raw[: exc.start].count(b"\n") + 1
        raise ConfigError(
            f"{path}: line {line} is not UTF-8 (byte 0x{raw[exc.start]:02x}); "
            "save the file as UTF-8"
        ) from None


def load_config(
    path: Path | None = None, home: Path | None = None, environ: Mapping[str, str] | None = None
) -> Config:
    """Read and validate config.toml, then the `DECAPOD_<TABLE>__<KEY>` variables of the
    environment over it (bot/config_env.py). A missing file is fine unless its path was given."""
    from bot.config_env import apply_overrides, describe, env_overrides

    overrides = env_overrides(os.environ if environ is None else environ)
    explicit = path is not None
    home, path = config_location(path, home)
    data: dict[str, Any] = {}
    text = ""
    if path.exists():
        try:
            text = _config_text(path)
            data = tomllib.loads(text)
        except tomllib.TOMLDecodeError as exc:
            raise ConfigError(f"{path}: not valid TOML: {exc}") from None
        except OSError as exc:
            raise ConfigError(f"{path}: cannot read: {exc.strerror}") from None
    elif explicit:
        raise ConfigError(f"config file {path} does not exist")

    from bot.config_lines import line_finder

    line_in_file = line_finder(text)

    def file_line(key_path: str) -> int | None:
        if any(f"{key_path}.".startswith(f"{o.key}.") for o in overrides):
            return None  # the environment set it, not the file
        return line_in_file(key_path)

    try:
        return parse_config(apply_overrides(data, overrides, Config), home, file_line)
    except ConfigError as exc:
        where = f"{path}" if path.exists() else "the defaults"
        if overrides:
            where += f" with keys from the environment: {describe(overrides)}"
        raise ConfigError(f"{where}:\n{exc}") from None
