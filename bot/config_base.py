"""Config building blocks shared by the root config and the channel configs."""

from __future__ import annotations

import re
from typing import Annotated, Any, Literal
from urllib.parse import urlsplit

from pydantic import AfterValidator, BaseModel, ConfigDict, Field


def empty_list() -> list[Any]:
    """A config list's default (`Field(default_factory=empty_list)`). pydantic inspects each
    default factory's signature when it builds a model (does it take the validated data?):
    a builtin's, `list`'s, is parsed from its text signature with the tokenizer (~0.2 ms each,
    and the tokenizer's patterns compiled the first time), a function's is read at once."""
    return []


#: what a `*_env` key holds: an environment variable's name
ENV_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")


_NOT_A_NAME = (
    "must be the name of the environment variable that holds the secret "
    "(like TELEGRAM_BOT_TOKEN: letters, digits and _), not the secret itself"
)


def _env_name(value: str) -> str:
    # The message never repeats the value: a token pasted where its variable's name belongs
    # must not end up on a screen or in a log line ("" is left to keys where it means none).
    if value and not ENV_NAME.fullmatch(value):
        raise ValueError(_NOT_A_NAME)
    return value


def _given_env_name(value: str) -> str:
    if not value:
        raise ValueError(f"empty: {_NOT_A_NAME}")
    return _env_name(value)


#: a `*_env` key's value: the name of an environment variable, never a secret
EnvName = Annotated[str, AfterValidator(_env_name)]
#: the same for a key where "" cannot mean none (a key list's entry, a provider's key)
GivenEnvName = Annotated[str, AfterValidator(_given_env_name)]


def no_url_credentials(value: str, instead: str = "") -> str:
    """A server's base_url without a user name or password. The clients send the key in a
    header (api_key_env), which aiohttp refuses next to credentials in the URL (every
    request would fail), and without a key they would go as basic auth in no way the config
    says, while an error naming the URL would show them. The message leaves the URL out and
    says what to write instead (`instead`: where a server has more than a key)."""
    parts = urlsplit(value)
    if parts.username is not None or parts.password is not None:
        raise ValueError(
            "must not hold a user name or password: put the server's key in an "
            "environment variable and name that variable in api_key_env" + instead
        )
    return value


class Section(BaseModel):
    model_config = ConfigDict(extra="forbid")


class GroupConfig(Section):
    #: answer only when mentioned or replied to
    require_mention: bool = True
    #: who may talk to the bot in this group; empty means everyone in it
    allow_users: list[str] = Field(default_factory=empty_list)


class ChannelAccessConfig(Section):
    """Who may talk to the bot on one channel. Everything unknown is denied."""

    #: pairing: unknown people get a code the owner approves; allowlist: only allow_users;
    #: open: anyone (not recommended); disabled: no direct messages
    dm_policy: Literal["pairing", "allowlist", "open", "disabled"] = "pairing"
    #: platform user ids allowed to write directly
    allow_users: list[str] = Field(default_factory=empty_list)
    #: platform user ids with the operator role (more tools, but not the owner's)
    operators: list[str] = Field(default_factory=empty_list)
    #: allowed groups by platform chat id ("*" for any group) and their settings
    groups: dict[str, GroupConfig] = Field(default_factory=dict)
    #: answer other bots (off: two bots answering each other never stop)
    allow_bots: bool = False
