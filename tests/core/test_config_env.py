"""`DECAPOD_<TABLE>__<KEY>` variables set config keys over the file (the container's route to
listening on its own interface while the default stays 127.0.0.1), in every section,
the optional parts' included."""

from __future__ import annotations

import re
from collections.abc import Callable
from pathlib import Path

import pytest
import yaml

from bot.cli import main
from bot.config import Config, load_config
from bot.errors import ConfigError


def _write(home: Path, text: str) -> Path:
    home.mkdir(parents=True, exist_ok=True)
    path = home / "config.toml"
    path.write_text(text)
    return path


def test_a_variable_wins_over_the_file_and_keeps_its_other_keys(home: Path) -> None:
    _write(home, '[http]\nhost = "127.0.0.1"\nport = 9000\n')

    config = load_config(None, home, {"DECAPOD_HTTP__HOST": "0.0.0.0"})

    assert config.http.host == "0.0.0.0"
    assert config.http.port == 9000
    assert load_config(None, home, {}).http.host == "127.0.0.1"


def test_without_a_file_the_variables_apply_to_the_defaults(home: Path) -> None:
    config = load_config(None, home, {"DECAPOD_HTTP__PORT": "8788"})

    assert config.http.port == 8788
    assert config.http.host == "127.0.0.1"


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("8787", 8787),
        ("true", True),
        ('["telegram:1", "slack:U2"]', ["telegram:1", "slack:U2"]),
        ('"007"', "007"),
        ("0.0.0.0", "0.0.0.0"),
        ("http://ollama:11434/v1", "http://ollama:11434/v1"),
    ],
)
def test_values_are_toml_when_they_parse_else_strings(raw: str, expected: object) -> None:
    from bot.config_env import env_overrides

    ((override,),) = [env_overrides({"DECAPOD_X__Y": raw})]

    assert override.path == ("x", "y")
    assert override.value == expected


def test_deeper_keys_merge_into_the_files_tables(home: Path) -> None:
    _write(
        home,
        '[providers.local]\npreset = "ollama"\ncontext_window = 4096\n'
        '[models]\nchat = ["local:llama3.2"]\n',
    )

    config = load_config(
        None, home, {"DECAPOD_PROVIDERS__LOCAL__BASE_URL": "http://ollama:11434/v1"}
    )

    local = config.providers["local"]
    assert local.base_url == "http://ollama:11434/v1"
    assert local.context_window == 4096


def test_other_decapod_variables_are_not_config_keys(home: Path) -> None:
    environ = {"DECAPOD_HOME": "/elsewhere", "DECAPOD_FAULT": "x", "DECAPOD_SANDBOX_IMAGE": "i"}

    config = load_config(None, home, environ)

    assert config.home == home


@pytest.mark.parametrize(
    ("environ", "expected"),
    [
        ({"DECAPOD_HTTP__HOTS": "0.0.0.0"}, "http.hots: unknown key"),
        ({"DECAPOD_HTTP__PORT": "eighty"}, "http.port"),
        ({"DECAPOD_HTTP____PORT": "1"}, "DECAPOD_HTTP____PORT: an empty key name"),
        ({"DECAPOD_HTTP__PORT__X": "1"}, "DECAPOD_HTTP__PORT__X: http.port is a value"),
    ],
)
def test_a_bad_variable_is_a_config_error_that_names_it(
    home: Path, environ: dict[str, str], expected: str
) -> None:
    _write(home, "[http]\nport = 9000\n")

    with pytest.raises(ConfigError) as err:
        load_config(None, home, environ)

    assert expected in str(err.value)
    assert next(iter(environ)) in str(err.value)


TELEGRAM = {"DECAPOD_CHANNELS__TG__TYPE": "telegram"}


@pytest.mark.parametrize(
    ("environ", "key", "shorter"),
    [
        ({"DECAPOD_HTTP__PORT__X": "1"}, "http.port", "DECAPOD_HTTP__PORT"),
        (
            {"DECAPOD_GATEWAY__TIMEZONE__ZONE": "1"},
            "gateway.timezone",
            "DECAPOD_GATEWAY__TIMEZONE",
        ),
        (
            {"DECAPOD_PROVIDERS__LOCAL__BASE_URL__HOST": "1"},
            "providers.local.base_url",
            "DECAPOD_PROVIDERS__LOCAL__BASE_URL",
        ),
        # a list is one value too, and so is a channel's key once its type is known
        ({"DECAPOD_MODELS__CHAT__X": "1"}, "models.chat", "DECAPOD_MODELS__CHAT"),
        ({"DECAPOD_WEB__SEARCH__0__BASE_URL": "1"}, "web.search", "DECAPOD_WEB__SEARCH"),
        (
            {**TELEGRAM, "DECAPOD_CHANNELS__TG__MODE__X": "1"},
            "channels.tg.mode",
            "DECAPOD_CHANNELS__TG__MODE",
        ),
        (
            {**TELEGRAM, "DECAPOD_CHANNELS__TG__ACCESS__ALLOW_USERS__X": "1"},
            "channels.tg.access.allow_users",
            "DECAPOD_CHANNELS__TG__ACCESS__ALLOW_USERS",
        ),
    ],
)
def test_a_variable_below_a_single_value_key_says_it_has_no_sub_keys(
    home: Path, environ: dict[str, str], key: str, shorter: str
) -> None:
    # no file: nothing sets the key, so only the schema knows it holds one value
    with pytest.raises(ConfigError) as err:
        load_config(None, home, environ)

    message = str(err.value)
    variable = max(environ, key=len)
    assert f"{variable}: {key} is a value, not a table: it has no sub-keys" in message
    assert f"(set it with {shorter})" in message
    assert "valid" not in message  # not "Input should be a valid integer"


def test_a_variable_below_a_key_of_a_channel_from_the_file_says_it_has_no_sub_keys(
    home: Path,
) -> None:
    _write(home, '[channels.tg]\ntype = "telegram"\n')

    with pytest.raises(ConfigError) as err:
        load_config(None, home, {"DECAPOD_CHANNELS__TG__TOKEN_ENV__X": "1"})

    assert "channels.tg.token_env is a value, not a table" in str(err.value)


def test_the_command_line_reads_the_process_environment(
    home: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("DECAPOD_MODELS__CHAT", '["local:qwen2.5"]')
    assert main(["config", "check"]) == 0
    assert "models local:qwen2.5" in capsys.readouterr().out

    monkeypatch.setenv("DECAPOD_HTTP__PORT", "eighty")
    assert main(["config", "check"]) == 2
    assert "DECAPOD_HTTP__PORT" in capsys.readouterr().err


@pytest.mark.parametrize(
    ("variable", "raw", "read"),
    [
        ("DECAPOD_WEBUI__ENABLED", "false", lambda c: c.webui.enabled is False),
        (
            "DECAPOD_WEBUI__TRUSTED_PROXIES",
            '["172.18.0.1"]',
            lambda c: c.webui.trusted_proxies == ["172.18.0.1"],
        ),
        (
            "DECAPOD_USAGE__PRICES",
            '{"openai:gpt-4o" = [2.5, 10.0]}',
            lambda c: c.usage.prices == {"openai:gpt-4o": (2.5, 10.0)},
        ),
        ("DECAPOD_SKILLS__ENABLED", "false", lambda c: c.skills.enabled is False),
        ("DECAPOD_SKILLS__DIR", "my-skills", lambda c: c.skills.dir == "my-skills"),
        (
            "DECAPOD_HOOKS__COMMANDS",
            '[{name = "audit", command = ["/bin/true"], events = ["before_tool"]}]',
            lambda c: [h.name for h in c.hooks.commands] == ["audit"],
        ),
        ("DECAPOD_WEB__ENABLED", "false", lambda c: c.web.enabled is False),
        (
            "DECAPOD_WEB__SEARCH",
            '[{type = "searxng", base_url = "http://127.0.0.1:8888"}]',
            lambda c: c.web.search[0].base_url == "http://127.0.0.1:8888",
        ),
        (
            "DECAPOD_MCP__SERVERS__FILES__ENABLED",
            "false",
            lambda c: c.mcp.servers["files"].enabled is False,
        ),
        (
            "DECAPOD_SANDBOX__ALLOW_UNENFORCED_LIMITS",
            "true",
            lambda c: c.sandbox.allow_unenforced_limits is True,
        ),
    ],
)
def test_the_optional_parts_sections_take_variables_too(
    home: Path, variable: str, raw: str, read: Callable[[Config], bool]
) -> None:
    # a server from the file, so that a variable can change one key of it
    _write(home, '[mcp.servers.files]\ntransport = "stdio"\ncommand = "/usr/bin/mcp-files"\n')

    config = load_config(None, home, {variable: raw})

    assert read(config)
    assert config.mcp.servers["files"].command == "/usr/bin/mcp-files"


@pytest.mark.parametrize(
    ("environ", "expected"),
    [
        ({"DECAPOD_MCP__SERVERS__FILES__TIMEOUT_S": "-1"}, "mcp.servers.files.timeout_s"),
        ({"DECAPOD_WEB__SEARCH__0__BASE_URL": "x"}, "web.search is a value, not a table"),
        ({"DECAPOD_HOOKS__COMMANDS": '[{name = "a"}]'}, "hooks.commands.0.command"),
        ({"DECAPOD_WEBUI__TRUSTED_PROXIES": '["nowhere"]'}, "webui.trusted_proxies"),
        ({"DECAPOD_SKILLS__WATCHING": "true"}, "skills.watching: unknown key"),
    ],
)
def test_a_bad_variable_in_an_optional_part_names_it(
    home: Path, environ: dict[str, str], expected: str
) -> None:
    _write(
        home,
        '[mcp.servers.files]\ntransport = "stdio"\ncommand = "/usr/bin/mcp-files"\n'
        '[[web.search]]\ntype = "searxng"\nbase_url = "http://127.0.0.1:8888"\n',
    )

    with pytest.raises(ConfigError) as err:
        load_config(None, home, environ)

    assert expected in str(err.value)
    assert next(iter(environ)) in str(err.value)


def test_compose_environment_loads_and_lets_exec_run_in_the_container(home: Path) -> None:
    """compose.yaml's DECAPOD_ keys over the image's own (the Dockerfile's ENV): a config that
    loads, listens on the container's interface, and opts in to exec without a cgroup of its
    own (the container's limits bound the whole tree; docs/install.md)."""
    root = Path(__file__).resolve().parents[2]
    environ = dict(re.findall(r"(DECAPOD_\w+__\w+)=(\S+)", (root / "Dockerfile").read_text()))
    compose = yaml.safe_load((root / "compose.yaml").read_text())
    environ.update(
        (key, str(value))
        for key, value in compose["services"]["decapod"]["environment"].items()
        if key.startswith("DECAPOD_")
    )

    config = load_config(None, home, environ)

    assert config.http.host == "0.0.0.0"
    assert config.sandbox.allow_unenforced_limits is True


@pytest.mark.parametrize(
    ("environ", "read"),
    [
        # the variable ends at an entry's own name: it sets that entry's value
        (
            {"DECAPOD_MODELS__ROUTES__CHEAP": '["local:llama3.2"]'},
            lambda c: c.models.routes == {"cheap": ["local:llama3.2"]},
        ),
        (
            {"DECAPOD_MEDIA__MAX_FILE_MB_BY_CHANNEL__TG": "5"},
            lambda c: c.media.max_file_mb_by_channel == {"tg": 5},
        ),
        (
            {
                "DECAPOD_MCP__SERVERS__X__TRANSPORT": "http",
                "DECAPOD_MCP__SERVERS__X__URL": "http://127.0.0.1:9/mcp",
                "DECAPOD_MCP__SERVERS__X__HEADERS_ENV__AUTHORIZATION": "MCP_TOKEN",
            },
            lambda c: c.mcp.servers["x"].headers_env == {"authorization": "MCP_TOKEN"},
        ),
    ],
)
def test_a_variable_sets_one_entry_of_a_keyed_table(
    home: Path, environ: dict[str, str], read: Callable[[Config], bool]
) -> None:
    _write(home, '[models]\nchat = ["local:llama3.2"]\n')

    assert read(load_config(None, home, environ))


@pytest.mark.parametrize(
    ("environ", "expected"),
    [
        # a value where a channel's table goes
        ({"DECAPOD_CHANNELS__TG": "telegram"}, "channels.tg: Input should be a valid dict"),
        # two variables differing only in case: the lower-case one sets a table to a value
        (
            {
                **TELEGRAM,
                "DECAPOD_CHANNELS__TG__ACCESS__ALLOW_USERS__X": "1",
                "DECAPOD_channels__tg__access": "5",
            },
            "DECAPOD_CHANNELS__TG__ACCESS__ALLOW_USERS__X: another variable sets "
            "channels.tg.access to a value",
        ),
        (
            {"DECAPOD_MCP__SERVERS__X__TRANSPORT": "stdio", "DECAPOD_mcp__servers": "5"},
            "DECAPOD_MCP__SERVERS__X__TRANSPORT: another variable sets mcp.servers to a value",
        ),
        # ... or a table to another table, without the entry the other variable set
        (
            {"DECAPOD_MODELS__ROUTES__CHEAP": '["a:b"]', "DECAPOD_models__routes": '{x=["c:d"]}'},
            "DECAPOD_MODELS__ROUTES__CHEAP: another variable sets models.routes to a table "
            "without cheap",
        ),
    ],
)
def test_a_value_where_a_table_goes_is_a_config_error(
    home: Path,
    environ: dict[str, str],
    expected: str,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    for name, value in environ.items():
        monkeypatch.setenv(name, value)

    assert main(["config", "check"]) == 2

    err = capsys.readouterr().err
    assert expected in err
    assert "Traceback" not in err
