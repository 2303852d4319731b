"""The `[web]` section: web_fetch (on by default, behind the address guard) and the
web_search provider chain (on when at least one provider is listed)."""

from __future__ import annotations

import ipaddress
import re
from typing import Annotated, ClassVar, Literal

from pydantic import Field, field_validator, model_validator

from bot.config_base import GivenEnvName, Section, empty_list, no_url_credentials

Role = Literal["owner", "operator", "user"]
ALL_ROLES: tuple[Role, ...] = ("owner", "operator", "user")

_HOST_NAME = re.compile(
    r"(\*\.)?[a-z0-9_]([a-z0-9_-]*[a-z0-9_])?(\.[a-z0-9_]([a-z0-9_-]*[a-z0-9_])?)*"
)


def _http_url(value: str, instead: str = "") -> str:
    if not value.startswith(("http://", "https://")):
        raise ValueError("must be an http:// or https:// URL")
    return no_url_credentials(value, instead).rstrip("/")


class _Provider(Section):
    #: seconds one search request may take before the next provider is tried
    timeout_s: float = Field(default=10.0, gt=0)
    #: what a base_url with credentials is refused with, besides api_key_env
    _credentials_instead: ClassVar[str] = ""

    @field_validator("base_url", check_fields=False)
    @classmethod
    def _url(cls, value: str) -> str:
        return _http_url(value, cls._credentials_instead)

    def secret_env(self) -> tuple[str, str] | None:
        """(the key that names it, the environment variable) of the provider's secret."""
        api_key_env: str | None = getattr(self, "api_key_env", None)
        return None if api_key_env is None else ("api_key_env", api_key_env)


class SearxngSearchConfig(_Provider):
    """A SearXNG instance with the JSON format enabled (`search.formats: [html, json]`)."""

    type: Literal["searxng"]
    base_url: str
    #: for an instance behind a proxy that wants a token: sent as a Bearer token
    api_key_env: GivenEnvName | None = None
    #: for an instance behind HTTP basic auth: the user name, and the environment variable
    #: that holds the password
    username: str | None = None
    password_env: GivenEnvName | None = None
    _credentials_instead: ClassVar[str] = (
        "; for HTTP basic auth, give the user name in username and name the variable "
        "that holds the password in password_env"
    )

    @model_validator(mode="after")
    def _one_way_in(self) -> SearxngSearchConfig:
        if (self.username is None) != (self.password_env is None):
            raise ValueError("username and password_env go together (HTTP basic auth)")
        if self.username is not None and self.api_key_env is not None:
            raise ValueError(
                "api_key_env (a Bearer token) and username/password_env (basic auth) both "
                "go in the Authorization header: give one of them"
            )
        if self.username is not None and ":" in self.username:
            raise ValueError("username: basic auth cannot carry a ':' in a user name")
        return self

    def secret_env(self) -> tuple[str, str] | None:
        if self.password_env is not None:
            return ("password_env", self.password_env)
        return super().secret_env()


class BraveSearchConfig(_Provider):
    """The Brave Search API (api.search.brave.com), key in X-Subscription-Token."""

    type: Literal["brave"]
    base_url: str = "https://api.search.brave.com/res/v1"
    api_key_env: GivenEnvName = "BRAVE_API_KEY"


class TavilySearchConfig(_Provider):
    """The Tavily search API (api.tavily.com), key sent as a Bearer token."""

    type: Literal["tavily"]
    base_url: str = "https://api.tavily.com"
    api_key_env: GivenEnvName = "TAVILY_API_KEY"


SearchProviderConfig = Annotated[
    SearxngSearchConfig | BraveSearchConfig | TavilySearchConfig, Field(discriminator="type")
]


class WebConfig(Section):
    #: the web tools at all; web_search also needs a provider in `search`
    enabled: bool = True
    #: who gets the web tools
    roles: list[Role] = Field(default_factory=lambda: list(ALL_ROLES))
    #: offer them in group chats too
    in_groups: bool = True
    #: fetch addresses that are not public (loopback, private, link-local, CGNAT); cloud
    #: metadata addresses stay refused unless listed in allow_hosts by address
    allow_private: bool = False
    #: exceptions to the address guard: host names ("wiki.lan", "*.corp.example"), addresses
    #: or networks ("192.168.1.10", "10.1.0.0/16")
    allow_hosts: list[str] = Field(default_factory=empty_list)
    #: seconds one fetch may take, redirects included
    timeout_s: float = Field(default=20.0, gt=0)
    #: bytes read from one response; a longer page is cut, a longer file is not saved
    max_bytes: int = Field(default=5 << 20, ge=1024)
    max_redirects: int = Field(default=5, ge=0, le=20)
    #: characters of page text handed to the model when the call does not say
    max_chars: int = Field(default=20_000, ge=500)
    user_agent: str = "Mozilla/5.0 (compatible; Decapod)"
    #: a page fetched again within this many seconds comes from memory
    cache_ttl_s: float = Field(default=300.0, ge=0)
    cache_entries: int = Field(default=64, ge=0)
    #: per person, in a sliding minute
    fetches_per_minute: int = Field(default=20, ge=1)
    searches_per_minute: int = Field(default=10, ge=1)
    #: results a search returns when the call does not say
    search_results: int = Field(default=5, ge=1, le=20)
    #: a provider that failed is skipped this long (a 429's Retry-After when longer, up to an hour)
    search_cooldown_s: float = Field(default=60.0, ge=0)
    #: search providers, tried in order
    search: list[SearchProviderConfig] = Field(default_factory=empty_list)

    @field_validator("allow_hosts")
    @classmethod
    def _hosts(cls, values: list[str]) -> list[str]:
        out = []
        for value in values:
            entry = value.strip().lower().rstrip(".")
            try:
                ipaddress.ip_network(entry.strip("[]"), strict=False)
            except ValueError:
                if not _HOST_NAME.fullmatch(entry):
                    raise ValueError(
                        f"{value!r} is neither a host name, an address nor a network"
                    ) from None
            out.append(entry)
        return out
