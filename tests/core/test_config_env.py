"""`DECAPOD_<TABLE>__<KEY>` variables set config keys over the file (the container's route to
listening on its own interface while the default stays 127.0.0.1)."""

from __future__ import annotations

from pathlib import Path

import pytest

from bot.cli import main
from bot.config import load_config
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


def test_the_command_line_reads_the_process_environment(
    home: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("DECAPOD_MODELS__CHAT", '["local:qwen2.5"]')
    assert main(["config", "check"]) == 0
    assert "models local:qwen2.5" in capsys.readouterr().out

    monkeypatch.setenv("DECAPOD_HTTP__PORT", "eighty")
    assert main(["config", "check"]) == 2
    assert "DECAPOD_HTTP__PORT" in capsys.readouterr().err
