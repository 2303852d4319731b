"""The `[webui]` section: the chat page and the control panel served on the HTTP server."""

from __future__ import annotations

import ipaddress
from typing import Any

from pydantic import Field, field_validator, model_validator

from bot.config_base import Section


class WebUIConfig(Section):
    #: serve the web UI on the gateway's HTTP server (which binds 127.0.0.1 by default)
    enabled: bool = True
    #: addresses (or networks) of reverse proxies whose X-Forwarded-For / X-Forwarded-Proto /
    #: X-Forwarded-Host are believed; from anyone else those headers are ignored
    trusted_proxies: list[str] = Field(default_factory=list)
    #: a login lasts this long
    session_ttl_s: float = Field(default=7 * 86400.0, ge=60)

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
