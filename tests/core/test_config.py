from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from bot.config import load_config, parse_config
from bot.errors import ConfigError

ROOT = Path(__file__).resolve().parents[2]
#: the variables the example's channels read their tokens from
EXAMPLE_SECRETS = ("TELEGRAM_BOT_TOKEN", "SLACK_BOT_TOKEN", "SLACK_APP_TOKEN", "DISCORD_BOT_TOKEN")


def test_example_config_loads_and_documents_every_section(home: Path) -> None:
    config = load_config(ROOT / "config.example.toml", home)
    text = (ROOT / "config.example.toml").read_text()
    for section in type(config).model_fields:
        if section != "home":
            assert f"[{section}" in text, f"config.example.toml does not document [{section}]"


def test_defaults_need_no_file_and_bind_loopback(home: Path) -> None:
    config = load_config(None, home)
    assert config.http.host == "127.0.0.1"
    assert config.db_path == home / "decapod.db"
    assert config.models.chat == ["local:llama3.2"]


@pytest.mark.parametrize(
    ("data", "expected"),
    [
        ({"gateway": {"max_concurrent_turns": "many"}}, "gateway.max_concurrent_turns"),
        ({"gateway": {"timezone": "Mars/Olympus"}}, "unknown time zone"),
        ({"http": {"prot": 1}}, "http.prot: unknown key"),
        ({"models": {"chat": ["gpt-4o"]}}, "must be 'provider:model'"),
        ({"models": {"chat": ["nope:x"]}}, "names provider 'nope'"),
        ({"channels": {"c": {"type": "pigeon"}}}, "channels.c"),
        (
            {"channels": {"tg": {"type": "telegram", "tokn_env": "X"}}},
            "channels.tg.tokn_env: unknown key",
        ),
        (
            {"providers": {"p": {"api_key_env": "sk-abc123"}}, "models": {"chat": ["p:m"]}},
            "name of the environment variable",
        ),
    ],
)
def test_errors_name_the_key_and_what_was_expected(home: Path, data: dict, expected: str) -> None:
    with pytest.raises(ConfigError) as err:
        parse_config(data, home)
    assert expected in str(err.value)


def test_secret_value_is_never_echoed_in_errors(home: Path) -> None:
    with pytest.raises(ConfigError) as err:
        parse_config(
            {
                "providers": {"p": {"api_key_env": "sk-live-SECRETVALUE"}},
                "models": {"chat": ["p:m"]},
            },
            home,
        )
    assert "SECRETVALUE" not in str(err.value)


@pytest.mark.parametrize(
    ("kind", "key"),
    [("telegram", "token_env"), ("discord", "token_env"), ("slack", "bot_token_env")],
)
def test_an_empty_token_variable_name_is_refused_at_load(home: Path, kind: str, key: str) -> None:
    # else the start says "environment variable  is not set"
    with pytest.raises(ConfigError, match=f"channels.c.{key}.*empty"):
        parse_config({"channels": {"c": {"type": kind, key: ""}}}, home)


@pytest.mark.parametrize(
    ("data", "key"),
    [
        (
            {"channels": {"tg": {"type": "telegram", "token_env": "123:AAsecretTOKEN"}}},
            "channels.tg.token_env",
        ),
        (
            {"channels": {"s": {"type": "slack", "app_token_env": "xapp-1-secretTOKEN"}}},
            "channels.s.app_token_env",
        ),
        (
            {"channels": {"d": {"type": "discord", "token_env": "MTIz.secretTOKEN"}}},
            "channels.d.token_env",
        ),
        ({"store": {"password_env": "hunter2 secretTOKEN"}}, "store.password_env"),
    ],
)
def test_a_token_pasted_where_its_variable_belongs_is_refused_unechoed(
    home: Path, data: dict[str, Any], key: str
) -> None:
    # else `decapod run` and `config check` print "environment variable <the token> is not set"
    with pytest.raises(ConfigError) as err:
        parse_config(data, home)
    assert key in str(err.value)
    assert "name of the environment variable" in str(err.value)
    assert "secretTOKEN" not in str(err.value)


@pytest.mark.parametrize(
    ("data", "key"),
    [
        ({"providers": {"p": {"api_key_env": "sk-proj-secretTOKEN"}}}, "providers.p.api_key_env"),
        ({"providers": {"p": {"api_keys_env": ["sk-secretTOKEN"]}}}, "providers.p.api_keys_env.0"),
        (
            {"web": {"search": [{"type": "brave", "api_key_env": "BSA-secretTOKEN"}]}},
            "web.search.0.api_key_env",
        ),
        (
            {
                "web": {
                    "search": [
                        {"type": "searxng", "base_url": "http://s", "api_key_env": "x:secretTOKEN"}
                    ]
                }
            },
            "web.search.0.api_key_env",
        ),
    ],
)
def test_provider_and_search_keys_refuse_a_pasted_token_like_every_env_key(
    home: Path, data: dict[str, Any], key: str
) -> None:
    with pytest.raises(ConfigError) as err:
        parse_config({**data, "models": {"chat": ["p:m"]}}, home)
    assert f"{key}: must be the name of the environment variable that holds the secret" in str(
        err.value
    )
    assert "secretTOKEN" not in str(err.value)


@pytest.mark.parametrize(
    "data",
    [
        {"providers": {"p": {"api_key_env": ""}}},
        {"providers": {"p": {"api_keys_env": [""]}}},
        {"web": {"search": [{"type": "tavily", "api_key_env": ""}]}},
    ],
)
def test_an_empty_key_variable_is_refused_where_it_cannot_mean_none(
    home: Path, data: dict[str, Any]
) -> None:
    with pytest.raises(ConfigError, match=r"api_keys?_env(\.0)?: empty: must be the name of the"):
        parse_config({**data, "models": {"chat": ["p:m"]}}, home)


@pytest.mark.parametrize(
    "url",
    ["http://user:hunter2@gpu-box:8000/v1", "https://:hunter2@api.example/v1", "http://user@h"],
)
def test_a_provider_url_with_credentials_is_refused_naming_the_key_not_the_password(
    home: Path, url: str
) -> None:
    # both clients send the key as an Authorization header, which aiohttp refuses next to
    # credentials in the URL: every turn would end in "unexpected error"
    data = {"providers": {"p": {"base_url": url}}, "models": {"chat": ["p:m"]}}
    with pytest.raises(ConfigError) as err:
        parse_config(data, home)
    message = str(err.value)
    assert "providers.p.base_url: must not hold a user name or password" in message
    assert "api_key_env" in message
    assert "hunter2" not in message
    assert "input_value" not in message
    with pytest.raises(ConfigError) as err:
        load_config(None, home, environ={"DECAPOD_PROVIDERS__P__BASE_URL": url})
    assert "providers.p.base_url: must not hold" in str(err.value)
    assert "hunter2" not in str(err.value)


@pytest.mark.parametrize(
    ("section", "key"),
    [
        ({"web": {"search": [{"type": "searxng", "base_url": "{url}"}]}}, "web.search.0.base_url"),
        (
            {"memory": {"embedders": [{"type": "openai", "base_url": "{url}"}]}},
            "memory.embedders.0.openai.base_url",
        ),
    ],
    ids=["searxng", "embedder"],
)
def test_a_search_or_embedder_url_with_credentials_is_refused_as_a_providers_is(
    home: Path, section: dict[str, Any], key: str
) -> None:
    # the same clients' Authorization header (api_key_env) next to them fails every request
    # in aiohttp, and an error naming the URL would show them
    url = "https://searcher:hunter2@search.example/"
    data = json.loads(json.dumps(section).replace("{url}", url))
    with pytest.raises(ConfigError) as err:
        parse_config(data, home)
    message = str(err.value)
    assert f"{key}: must not hold a user name or password" in message
    assert "api_key_env" in message and "hunter2" not in message
    # the key goes in a header of the server's own (Brave's is no Bearer token); SearXNG
    # behind basic auth has a way of its own
    assert "Bearer" not in message
    assert ("password_env" in message) == (key.startswith("web.search"))


def test_searxng_basic_auth_takes_a_user_name_and_a_password_variable_not_a_key_too(
    home: Path,
) -> None:
    entry = {"type": "searxng", "base_url": "https://search.example", "username": "crab"}
    with pytest.raises(ConfigError, match="username and password_env go together"):
        parse_config({"web": {"search": [entry]}}, home)
    entry |= {"password_env": "SEARXNG_PASSWORD", "api_key_env": "SEARXNG_TOKEN"}
    with pytest.raises(ConfigError, match="give one of them"):
        parse_config({"web": {"search": [entry]}}, home)


@pytest.mark.parametrize("host", ["", "  "])
def test_an_empty_http_host_is_refused_not_bound_to_every_interface(home: Path, host: str) -> None:
    # asyncio binds "" to 0.0.0.0 and :: while the banner still shows 127.0.0.1
    with pytest.raises(ConfigError, match=r"http.host: empty: it would listen on every") as err:
        load_config(None, home, environ={"DECAPOD_HTTP__HOST": host})
    assert '"0.0.0.0"' in str(err.value) and '"::"' in str(err.value)  # IPv4 and IPv6


def test_bad_toml_names_the_file(home: Path, tmp_path: Path) -> None:
    path = tmp_path / "bad.toml"
    path.write_text("[gateway\nx=1")
    with pytest.raises(ConfigError, match="not valid TOML"):
        load_config(path, home)


def test_a_file_not_in_utf8_names_its_line_instead_of_a_traceback(
    home: Path, tmp_path: Path
) -> None:
    path = tmp_path / "latin1.toml"
    path.write_bytes("[gateway]\n# café\ntimezone = 'UTC'\n".encode("latin-1"))
    with pytest.raises(ConfigError, match=r"latin1.toml: line 2 is not UTF-8 \(byte 0xe9\)"):
        load_config(path, home)


CONFIG_WITH_MISTAKES = """\
# a comment
[agent]
system_prompt = \"\"\"
[http]
port = "not the key: in a string"\"\"\"

[http]
  port = "eighty"   # a wrong type

[gateway]
max_concurent_turns = 3

[[web.search]]
type = "brave"
[[web.search]]
type = "tavily"
timeout_s = -1

[channels.tg]
type = "telegram"
mode = "carrier-pigeon"
"""


def _load_error(text: str, path: Path, home: Path, environ: dict[str, str]) -> str:
    """The ConfigError loading `text` from `path` raises."""
    path.write_text(text)
    with pytest.raises(ConfigError) as err:
        load_config(path, home, environ=environ)
    return str(err.value)


def test_errors_name_the_line_that_sets_the_key(home: Path, tmp_path: Path) -> None:
    path = tmp_path / "config.toml"
    message = _load_error(CONFIG_WITH_MISTAKES, path, home, {})
    assert "http.port (line 8): Input should be a valid integer" in message
    assert "gateway.max_concurent_turns (line 11): unknown key" in message
    assert "web.search.1.timeout_s (line 17): " in message
    assert "channels.tg.mode (line 21): " in message
    # a key the environment set is not the file's line
    message = _load_error(CONFIG_WITH_MISTAKES, path, home, {"DECAPOD_HTTP__PORT": "eighty"})
    assert "http.port: Input should be a valid integer" in message


CONFIG_WITH_LOOKALIKES = """\
[agent]
system_prompt = 'a literal string holding \"\"\" is one line'
name = \"\"\"opened: an escaped \\\"\"\" does not close it
nor here \\\"\"\"
[http]
host = "not the key: in the string"
\"\"\"

[http]
port = 8787  # a comment naming \"\"\" opens nothing
host = ""

[gateway]
table_of_pairs = [
  ["a", "b"],
  ["c"]
]
max_concurent_turns = 3
"""


def test_quotes_in_a_comment_and_arrays_in_an_array_do_not_move_the_lines(
    home: Path, tmp_path: Path
) -> None:
    """Three quotes not at the start of a value open no multi-line string, escaped ones do
    not close it, and an array's `[...]` line inside a longer array is not a table header,
    even with one element."""
    message = _load_error(CONFIG_WITH_LOOKALIKES, tmp_path / "config.toml", home, {})
    assert "agent.name (line 3): " in message
    assert "http.host (line 11): " in message
    assert "gateway.max_concurent_turns (line 18): unknown key" in message


def test_config_check_cli_exits_2_naming_the_key(tmp_path: Path, home: Path) -> None:
    path = tmp_path / "c.toml"
    path.write_text("[gateway]\nmax_tool_iterations = 0\n")
    proc = subprocess.run(
        [sys.executable, "-m", "bot", "config", "check", str(path)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode == 2
    assert "gateway.max_tool_iterations" in proc.stderr
    example = ROOT / "config.example.toml"
    ok = subprocess.run(
        [sys.executable, "-m", "bot", "config", "check", str(example)],
        capture_output=True,
        text=True,
        timeout=60,
        env={**os.environ, **dict.fromkeys(EXAMPLE_SECRETS, "not-a-real-token")},
    )
    assert ok.returncode == 0, ok.stderr
    assert "config ok" in ok.stdout


@pytest.mark.parametrize("provider", ["ollama", "openai", "anthropic", "openrouter"])
def test_init_writes_a_config_that_loads(home: Path, provider: str, capsys: Any) -> None:
    from bot.cli import main

    assert main(["init", "--yes", "--provider", provider, "--owner", "telegram:42"]) == 0
    config = load_config(None, home)
    assert config.models.chat[0].startswith(f"{provider}:")
    assert config.gateway.owners == ["telegram:42"]
    assert oct((home / "config.toml").stat().st_mode & 0o777) == "0o600"
    assert main(["init", "--yes"]) == 1, "an existing config is not overwritten"


def test_config_check_names_each_unset_secret_like_run_does(
    tmp_path: Path, home: Path, monkeypatch: pytest.MonkeyPatch, capsys: Any
) -> None:
    """A config that `decapod run` would stop on for a missing key is not "ok": every unset
    variable is named with its key (never a value), and the exit code is a config error's."""
    from bot.cli import main

    path = tmp_path / "c.toml"
    path.write_text(
        '[providers.oa]\nbase_url = "https://api.openai.com/v1"\napi_key_env = "T_OA_KEY"\n'
        '[models]\nchat = ["oa:gpt-4o-mini"]\n'
        '[channels.tg]\ntype = "telegram"\ntoken_env = "T_TG_TOKEN"\n'
        '[channels.sl]\ntype = "slack"\nmode = "http"\nbot_token_env = "T_SL_BOT"\n'
        'signing_secret_env = "T_SL_SIGNING"\napp_token_env = "T_SL_APP"\n'
    )
    for name in ("T_OA_KEY", "T_TG_TOKEN", "T_SL_BOT", "T_SL_SIGNING", "T_SL_APP"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("T_SL_BOT", "xoxb-a-value-never-shown")
    assert main(["config", "check", str(path)]) == 2
    out = capsys.readouterr()
    assert out.err.splitlines()[:3] == [
        "config error: providers.oa.api_key_env: environment variable T_OA_KEY is not set",
        "config error: channels.tg.token_env: environment variable T_TG_TOKEN is not set",
        "config error: channels.sl.signing_secret_env: environment variable T_SL_SIGNING "
        "is not set",
    ]
    assert "T_SL_APP" not in out.err, "http mode reads no app token"
    assert "xoxb" not in out.err + out.out and "config ok" not in out.out
    for name in ("T_OA_KEY", "T_TG_TOKEN", "T_SL_SIGNING"):
        monkeypatch.setenv(name, "set")
    assert main(["config", "check", str(path)]) == 0
    assert "config ok" in capsys.readouterr().out


def test_a_secret_of_only_whitespace_is_unset_for_run_as_for_check(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from bot.config import missing_secrets, secret_from_env

    monkeypatch.setenv("T_BLANK_TOKEN", " \n")
    config = parse_config(
        {"channels": {"tg": {"type": "telegram", "token_env": "T_BLANK_TOKEN"}}}, Path(".")
    )
    assert missing_secrets(config, os.environ) == [("channels.tg.token_env", "T_BLANK_TOKEN")]
    with pytest.raises(ConfigError, match="T_BLANK_TOKEN is not set"):
        secret_from_env("T_BLANK_TOKEN", "channels.tg.token_env")
