"""The `[mcp]` section of config.toml: Model Context Protocol servers whose tools the model
may call. Pure pydantic: importing this does not import the MCP SDK."""

from __future__ import annotations

import re
from pathlib import PurePosixPath
from typing import Annotated, Literal

from pydantic import Field, field_validator, model_validator

from bot.config_base import Section, empty_list

#: a server's name prefixes its tools (`<server>__<tool>`), so it must fit a tool name
_SERVER_NAME = re.compile(r"^[a-z0-9][a-z0-9_-]{0,31}$")
_ENV_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
_HEADER_NAME = re.compile(r"^[A-Za-z0-9!#$%&'*+.^_`|~-]+$")

Role = Literal["owner", "operator", "user"]


def split_bind(bind: str) -> tuple[str, str]:
    """(host path, path inside the sandbox) of a `ro_binds`/`rw_binds` entry."""
    source, _, dest = bind.partition(":")
    dest = dest or source
    for path in (source, dest):
        pure = PurePosixPath(path)
        if not pure.is_absolute() or ".." in pure.parts:
            raise ValueError(f"{bind!r}: {path!r} must be an absolute path without '..'")
    if (
        PurePosixPath(dest) == PurePosixPath("/work")
        or PurePosixPath("/work") in PurePosixPath(dest).parents
    ):
        raise ValueError(f"{bind!r}: /work is the server's own folder; bind elsewhere")
    return source, dest


def _env_names(names: list[str]) -> list[str]:
    for name in names:
        if not _ENV_NAME.match(name):
            raise ValueError(f"{name!r} is not an environment variable name")
    return names


def _owner_only() -> list[Role]:
    return ["owner"]


class _ServerBase(Section):
    enabled: bool = True
    #: the server's own tool names to offer; empty offers every tool it lists
    tools: list[str] = Field(default_factory=empty_list)
    #: tool names never offered, whatever `tools` says
    exclude: list[str] = Field(default_factory=empty_list)
    #: who may use this server's tools
    roles: list[Role] = Field(default_factory=lambda: _owner_only(), min_length=1)
    #: offer the tools in group chats too (to the roles above)
    in_groups: bool = False
    #: seconds one tool call may take
    timeout_s: float = Field(default=60.0, gt=0)
    #: seconds from launch to a listed set of tools; a slower start counts as a failure
    startup_timeout_s: float = Field(default=30.0, gt=0)


class StdioServerConfig(_ServerBase):
    """A server the gateway launches and talks to over stdin/stdout."""

    transport: Literal["stdio"]
    command: str = Field(min_length=1)
    args: list[str] = Field(default_factory=empty_list)
    #: names of environment variables passed to the server, values from the gateway's
    #: environment; the server sees these, PATH and HOME, and nothing else
    env: list[str] = Field(default_factory=empty_list)
    #: working folder of a host process (default: HOME/mcp/<name>)
    cwd: str | None = None
    #: run inside the bubblewrap sandbox (read-only /usr, its own folder at /work, no network
    #: unless `network`); false runs it as a host process with the gateway's rights
    run_in_sandbox: bool = True
    #: the sandboxed server may reach the network (and read the host's DNS settings)
    network: bool = False
    #: host paths bound into the sandbox, read-only / writable: "/host/path" (the same path
    #: inside) or "/host/path:/inside/path"; never at /work, the server's own folder
    ro_binds: list[str] = Field(default_factory=empty_list)
    rw_binds: list[str] = Field(default_factory=empty_list)
    #: address-space limit of the sandboxed server; runtimes such as Node reserve far more
    #: address space than they use
    memory_mb: int = Field(default=4096, ge=64)

    @field_validator("env")
    @classmethod
    def _env(cls, names: list[str]) -> list[str]:
        return _env_names(names)

    @field_validator("ro_binds", "rw_binds")
    @classmethod
    def _binds(cls, binds: list[str]) -> list[str]:
        for bind in binds:
            split_bind(bind)
        return binds

    @model_validator(mode="after")
    def _sandbox_keys(self) -> StdioServerConfig:
        if self.run_in_sandbox and self.cwd is not None:
            raise ValueError("cwd is for host processes; a sandboxed server runs in /work")
        if not self.run_in_sandbox:
            used = [k for k in ("network", "ro_binds", "rw_binds") if getattr(self, k)]
            if used:
                raise ValueError(f"{', '.join(used)} apply only with run_in_sandbox = true")
        return self


class HttpServerConfig(_ServerBase):
    """A server already running somewhere: streamable HTTP, or SSE for servers with only that."""

    transport: Literal["http", "sse"]
    url: str
    #: header name -> environment variable holding its whole value ("Bearer ...")
    headers_env: dict[str, str] = Field(default_factory=dict)

    @field_validator("url")
    @classmethod
    def _http_url(cls, url: str) -> str:
        if not re.match(r"^https?://[^/\s]+", url):
            raise ValueError(f"{url!r} is not an http:// or https:// URL")
        return url

    @field_validator("headers_env")
    @classmethod
    def _headers(cls, headers: dict[str, str]) -> dict[str, str]:
        for header in headers:
            if not _HEADER_NAME.match(header):
                raise ValueError(f"{header!r} is not an HTTP header name")
        _env_names(list(headers.values()))
        return headers


McpServerConfig = Annotated[StdioServerConfig | HttpServerConfig, Field(discriminator="transport")]


class McpConfig(Section):
    #: a tool result is cut to this many characters before the model sees it
    max_result_chars: int = Field(default=16_000, ge=200)
    #: a tool's argument schema larger than this (as JSON) is trimmed, and says so
    max_schema_chars: int = Field(default=4_000, ge=200)
    max_description_chars: int = Field(default=1_000, ge=80)
    #: the most tools one request offers, built-in and MCP together: OpenAI refuses a request
    #: with more than 128, and every tool's schema is sent with every request. MCP tools past
    #: it are left out (the first ones as each server lists them are kept)
    max_tools: int = Field(default=128, ge=1)
    #: how often a quiet server is pinged to find one that stopped answering
    ping_interval_s: float = Field(default=30.0, gt=0)
    #: a server that does not answer a ping this fast is restarted
    ping_timeout_s: float = Field(default=10.0, gt=0)
    #: restarts back off exponentially from 1 s up to this
    restart_backoff_max_s: float = Field(default=300.0, ge=1)
    servers: dict[str, McpServerConfig] = Field(default_factory=dict)

    @field_validator("servers")
    @classmethod
    def _server_names(cls, servers: dict[str, object]) -> dict[str, object]:
        for name in servers:
            if not _SERVER_NAME.match(name):
                raise ValueError(
                    f"server name {name!r}: use 1-32 lowercase letters, digits, '_' or '-' "
                    "(it prefixes the server's tool names)"
                )
        return servers
