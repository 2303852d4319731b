"""The `[webui]` section: the chat page and the control panel served on the HTTP server."""

from __future__ import annotations

import ipaddress
from typing import Any

from pydantic import Field, field_validator, model_validator

from bot.config_base import Section, empty_list


class WebUIConfig(Section):
    #: serve the web UI on the gateway's HTTP server (which binds 127.0.0.1 by default)
    enabled: bool = True
    #: addresses (or networks) of reverse proxies whose X-Forwarded-For / X-Forwarded-Proto /
    #: X-Forwarded-Host are believed; from anyone else those headers are ignored
    trusted_proxies: list[str] = Field(default_factory=empty_list)
    #: a login lasts this long
    session_ttl_s: float = Field(default=7 * 86400.0, ge=60)
    #: let people the owner invites with a one-time pairing link chat here, each in a chat
    #: of their own as a user (never with the owner's rights; the panel stays the owner's)
    guest_chat: bool = False
    #: a pairing link is valid this long
    invite_ttl_s: float = Field(default=86400.0, ge=60)
    #: the largest file or image the chat page may upload (kept for a day, for the media path)
    upload_max_mb: float = Field(default=20.0, gt=0, le=1024)
    #: what one person's uploads kept here may add up to; past it an upload is refused until
    #: the day's uploads are cleared
    upload_quota_mb: float = Field(default=200.0, gt=0)

    @model_validator(mode="before")
    @classmethod
    def _prices_moved(cls, data: Any) -> Any:
        if isinstance(data, dict) and "prices" in data:
            raise ValueError(
                '`webui.prices` moved to `[usage.prices]` (same form: "provider:model" = '
                "[input, output] per million tokens); it is used by /usage too"
            )
        return data

    @field_validator("trusted_proxies")
    @classmethod
    def _networks(cls, values: list[str]) -> list[str]:
        for value in values:
            try:
                ipaddress.ip_network(value, strict=False)
            except ValueError:
                raise ValueError(f"{value!r} is not an IP address or network") from None
        return values


class WebChannelConfig(Section):
    """The web chat's channel entry (built by the gateway, never written in config.toml)."""

    type: str = "web"
