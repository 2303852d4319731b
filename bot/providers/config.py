"""Config models of the `[providers.<name>]` and `[models]` tables.

Secrets never live in the file: a provider names the environment variables that hold its keys.
"""

from __future__ import annotations

import ipaddress
from typing import Literal
from urllib.parse import urlsplit

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from bot.config_base import GivenEnvName, empty_list, no_url_credentials

ProviderType = Literal["openai", "anthropic"]
Preset = Literal["openai", "ollama", "vllm", "llamacpp", "lmstudio", "openrouter"]
#: purposes that may have a chain of their own; any other purpose uses `models.chat`
Purpose = Literal["compaction", "scheduled", "cheap"]

PRESET_BASE_URLS: dict[str, str] = {
    "openai": "https://api.openai.com/v1",
    "ollama": "http://127.0.0.1:11434/v1",
    "vllm": "http://127.0.0.1:8000/v1",
    "llamacpp": "http://127.0.0.1:8080/v1",
    "lmstudio": "http://127.0.0.1:1234/v1",
    "openrouter": "https://openrouter.ai/api/v1",
}
#: the conventional variable a paid API's key lives in, used when no `api_key_env` is given
KNOWN_API_KEY_ENVS: dict[str, str] = {
    "api.openai.com": "OPENAI_API_KEY",
    "openrouter.ai": "OPENROUTER_API_KEY",
    "api.anthropic.com": "ANTHROPIC_API_KEY",
}
LOCAL_PRESETS = frozenset({"ollama", "vllm", "llamacpp", "lmstudio"})
DEFAULT_BASE_URLS: dict[str, str] = {
    "openai": PRESET_BASE_URLS["openai"],
    "anthropic": "https://api.anthropic.com",
}


class ProviderConfig(BaseModel):
    """One LLM endpoint. Keys come only from the environment variables named here."""

    model_config = ConfigDict(extra="forbid")

    type: ProviderType = "openai"
    preset: Preset | None = None
    base_url: str | None = None
    api_key_env: GivenEnvName | None = None
    #: several keys, rotated on 401/403/429; tried after `api_key_env` when both are set
    api_keys_env: list[GivenEnvName] = Field(default_factory=empty_list)
    connect_timeout_s: float = Field(default=10.0, gt=0)
    #: from sending the request to the first streamed chunk
    first_token_timeout_s: float = Field(default=60.0, gt=0)
    #: the longest gap between two streamed chunks
    idle_timeout_s: float = Field(default=30.0, gt=0)
    context_window: int = Field(default=128_000, gt=0)
    #: the output cap sent when a request sets none (Anthropic requires one)
    max_output_tokens: int = Field(default=4096, gt=0)
    #: None: on for servers on this machine, off for paid APIs
    health_probe: bool | None = None
    probe_interval_s: float = Field(default=30.0, gt=0)

    @field_validator("base_url")
    @classmethod
    def _base_url_is_http(cls, value: str | None) -> str | None:
        if value is None:
            return None
        parts = urlsplit(value)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ValueError("must be an http:// or https:// URL")
        no_url_credentials(value)
        return value.rstrip("/")

    @model_validator(mode="after")
    def _preset_fits_type(self) -> ProviderConfig:
        if self.preset is not None and self.type != "openai":
            raise ValueError(f"preset {self.preset!r} is OpenAI-compatible; set type = 'openai'")
        return self

    def resolved_base_url(self) -> str:
        if self.base_url:
            return self.base_url
        if self.preset is not None:
            return PRESET_BASE_URLS[self.preset]
        return DEFAULT_BASE_URLS[self.type]

    def is_local(self) -> bool:
        """A server on this machine: needs no key, and is health-probed by default."""
        if self.base_url is None and self.preset in LOCAL_PRESETS:
            return True
        host = urlsplit(self.resolved_base_url()).hostname or ""
        if host == "localhost":
            return True
        try:
            address = ipaddress.ip_address(host)
        except ValueError:
            return False
        # a server told to listen on every address is also on this machine
        return address.is_loopback or address.is_unspecified

    def key_env_names(self) -> list[tuple[str, str]]:
        """(key path, variable name) for every configured key variable, in rotation order."""
        names: list[tuple[str, str]] = []
        if self.api_key_env:
            names.append(("api_key_env", self.api_key_env))
        names.extend((f"api_keys_env[{i}]", name) for i, name in enumerate(self.api_keys_env))
        if names:
            return names
        # A known paid API with no variable named: its conventional one, so a missing key is
        # reported at start-up instead of as a 401 on the first turn.
        default = KNOWN_API_KEY_ENVS.get(urlsplit(self.resolved_base_url()).hostname or "")
        return [("api_key_env", default)] if default else []

    def probes_health(self) -> bool:
        return self.is_local() if self.health_probe is None else self.health_probe


def split_model_ref(ref: str) -> tuple[str, str]:
    """'provider:model' -> (provider, model). The model part may contain ':' (llama3.1:8b)."""
    provider, sep, model = ref.partition(":")
    if not sep or not provider.strip() or not model.strip():
        raise ValueError(f"{ref!r} must be 'provider:model', like 'openai:gpt-4o-mini'")
    return provider.strip(), model.strip()


class ModelsConfig(BaseModel):
    """Which models answer, in order, and how the chain fails over."""

    model_config = ConfigDict(extra="forbid")

    #: the primary, then ordered fallbacks, each "provider:model"
    chat: list[str] = Field(min_length=1)
    #: purpose -> its own chain; a purpose without a route uses `chat`
    routes: dict[Purpose, list[str]] = Field(default_factory=dict)
    #: models that describe an image for a chat model that cannot see it, in order
    vision: list[str] = Field(default_factory=empty_list)
    #: wait (within the deadline) for a cooling primary instead of failing over
    wait_for_primary: bool = False
    #: consecutive failures that open an entry's breaker
    failure_threshold: int = Field(default=5, ge=1)
    #: a failure share over the window that also opens it, once min calls are seen
    failure_rate_threshold: float = Field(default=0.5, gt=0, le=1)
    failure_rate_window_s: float = Field(default=60.0, gt=0)
    failure_rate_min_calls: int = Field(default=10, ge=1)
    base_cooldown_s: float = Field(default=30.0, gt=0)
    max_cooldown_s: float = Field(default=600.0, gt=0)
    #: the shortest cooldown after a 429, whatever Retry-After says
    rate_limit_min_cooldown_s: float = Field(default=5.0, ge=0)
    auth_cooldown_s: float = Field(default=600.0, gt=0)
    billing_cooldown_s: float = Field(default=3600.0, gt=0)
    #: provider calls one turn may make, across the whole chain
    attempt_budget: int = Field(default=4, ge=1)
    #: seconds one turn may spend before a first visible token
    deadline_s: float = Field(default=90.0, gt=0)

    @field_validator("chat", "vision")
    @classmethod
    def _chat_refs(cls, refs: list[str]) -> list[str]:
        for ref in refs:
            split_model_ref(ref)
        return refs

    @field_validator("routes")
    @classmethod
    def _route_refs(cls, routes: dict[str, list[str]]) -> dict[str, list[str]]:
        for purpose, refs in routes.items():
            if not refs:
                raise ValueError(f"route {purpose!r} needs at least one 'provider:model'")
            for ref in refs:
                split_model_ref(ref)
        return routes

    @model_validator(mode="after")
    def _cooldown_cap(self) -> ModelsConfig:
        if self.max_cooldown_s < self.base_cooldown_s:
            raise ValueError("max_cooldown_s must be at least base_cooldown_s")
        return self

    def purposes(self) -> list[str]:
        """Each purpose with a chain of its own, "chat" first."""
        return ["chat", *self.routes, *(["vision"] if self.vision else [])]

    def provider_names(self) -> list[str]:
        """The providers some chain names: the ones a start builds, with their keys."""
        return sorted({split_model_ref(r)[0] for p in self.purposes() for r in self.chain_for(p)})

    def chain_for(self, purpose: str) -> list[str]:
        if purpose == "vision" and self.vision:
            return self.vision
        for routed, refs in self.routes.items():
            if routed == purpose:
                return refs
        return self.chat


def check_model_refs(providers: dict[str, ProviderConfig], models: ModelsConfig) -> None:
    """Every chain names configured providers. Raises ValueError naming the model string."""
    chains: list[tuple[str, list[str]]] = [("models.chat", models.chat)]
    chains += [(f"models.routes.{purpose}", refs) for purpose, refs in models.routes.items()]
    chains.append(("models.vision", models.vision))
    for where, refs in chains:
        for ref in refs:
            provider, _ = split_model_ref(ref)
            if provider not in providers:
                known = ", ".join(sorted(providers)) or "none"
                raise ValueError(
                    f"{where}: {ref!r} names provider {provider!r}, which is not configured "
                    f"under [providers] (configured: {known})"
                )
