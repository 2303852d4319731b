"""`[mcp]` in config.toml: errors name the key, and the documented examples load."""

from __future__ import annotations

import re
import tomllib
from pathlib import Path
from typing import Any

import pytest

from bot.config import load_config, parse_config
from bot.errors import ConfigError
from bot.mcp.config import HttpServerConfig, StdioServerConfig

ROOT = Path(__file__).resolve().parents[2]


def _server(**entry: Any) -> dict[str, Any]:
    return {"mcp": {"servers": {"files": entry}}}


@pytest.mark.parametrize(
    ("data", "expected"),
    [
        (_server(command="x"), "mcp.servers.files: required key 'transport' is missing"),
        (_server(transport="stdio"), "mcp.servers.files.command: required key is missing"),
        (
            _server(transport="stdio", command="x", url="http://a"),
            "mcp.servers.files.url: unknown key",
        ),
        (_server(transport="http"), "mcp.servers.files.url: required key is missing"),
        (_server(transport="http", url="ftp://a"), "mcp.servers.files.url: 'ftp://a' is not"),
        (
            _server(transport="sse", url="http://a", command="x"),
            "mcp.servers.files.command: unknown",
        ),
        (_server(transport="stdio", command="x", env=["A-B"]), "mcp.servers.files.env: 'A-B'"),
        (_server(transport="stdio", command="x", roles=["admin"]), "mcp.servers.files.roles.0"),
        (_server(transport="stdio", command="x", roles=[]), "mcp.servers.files.roles"),
        (_server(transport="stdio", command="x", timeout_s=0), "mcp.servers.files.timeout_s"),
        (
            _server(transport="stdio", command="x", cwd="/srv"),
            "mcp.servers.files: cwd is for host processes",
        ),
        (
            _server(transport="stdio", command="x", run_in_sandbox=False, network=True),
            "mcp.servers.files: network apply only with run_in_sandbox = true",
        ),
        (
            _server(transport="stdio", command="x", ro_binds=["relative/path"]),
            "mcp.servers.files.ro_binds: 'relative/path'",
        ),
        (
            _server(transport="stdio", command="x", rw_binds=["/srv/data:/work/data"]),
            "/work is the server's own folder",
        ),
        (
            _server(transport="http", url="http://a", headers_env={"Bad Header": "X"}),
            "mcp.servers.files.headers_env: 'Bad Header' is not an HTTP header name",
        ),
        ({"mcp": {"servers": {"Files!": {"transport": "stdio", "command": "x"}}}}, "server name"),
        ({"mcp": {"max_result_chars": 10}}, "mcp.max_result_chars"),
    ],
)
def test_mcp_config_errors_name_the_key(data: dict[str, Any], expected: str) -> None:
    with pytest.raises(ConfigError) as err:
        parse_config(data)
    assert expected in str(err.value)


def test_defaults_are_safe() -> None:
    stdio = parse_config(_server(transport="stdio", command="x")).mcp.servers["files"]
    assert isinstance(stdio, StdioServerConfig)
    assert stdio.run_in_sandbox and not stdio.network and stdio.roles == ["owner"]
    assert not stdio.in_groups and stdio.env == []
    http = parse_config(_server(transport="sse", url="https://a/sse")).mcp.servers["files"]
    assert isinstance(http, HttpServerConfig) and http.roles == ["owner"]


def test_the_example_config_documents_mcp(home: Path) -> None:
    config = load_config(ROOT / "config.example.toml", home)
    text = (ROOT / "config.example.toml").read_text()
    assert "[mcp]" in text and "[mcp.servers." in text
    assert config.mcp.max_result_chars > 0


def test_the_readme_examples_load() -> None:
    readme = (ROOT / "README.md").read_text()
    section = readme.split("## MCP servers", 1)[1].split("\n## ", 1)[0]
    blocks = re.findall(r"```toml\n(.*?)```", section, re.S)
    assert len(blocks) >= 2
    servers: dict[str, Any] = {}
    for block in blocks:
        servers.update(tomllib.loads(block)["mcp"]["servers"])
    config = parse_config({"mcp": {"servers": servers}})
    assert len(config.mcp.servers) >= 2
