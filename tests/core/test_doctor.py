"""`decapod doctor` against the fake LLM: a key variable that is unset or refused, and a model
name the server does not have, each fail the doctor and name what to fix."""

from __future__ import annotations

import logging
import os
import secrets
import sqlite3
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
import pytest_asyncio

from bot.doctor import check_providers, check_sandbox, check_storage, run_doctor
from bot.store import Store
from tests.fakes.forward_proxy import environment_proxy
from tests.fakes.llm import FakeLLM

KEY_ENV = "DOCTOR_TEST_KEY"


@pytest_asyncio.fixture
async def fake() -> AsyncIterator[FakeLLM]:
    async with FakeLLM() as server:
        server.model_ids = ["small-model", "llama3.2:latest"]
        server.api_keys = {"sk-right-key"}
        yield server


def _config(make_config: Any, fake: FakeLLM, *chat: str, kind: str = "openai") -> Any:
    base_url = fake.base_url + ("/v1" if kind == "openai" else "")
    return make_config(
        providers={"fake": {"type": kind, "base_url": base_url, "api_key_env": KEY_ENV}},
        models={"chat": [f"fake:{model}" for model in chat]},
        sandbox={"backend": "none"},
        memory={"enabled": False},
    )


async def test_unset_key_variable_fails_and_names_it(
    fake: FakeLLM, make_config: Any, monkeypatch: pytest.MonkeyPatch, capsys: Any
) -> None:
    monkeypatch.delenv(KEY_ENV, raising=False)
    config = _config(make_config, fake, "small-model")

    assert await run_doctor(config) == 1
    out = capsys.readouterr().out
    assert "FAIL provider fake" in out and f"${KEY_ENV} is not set" in out
    assert "providers.fake.api_key_env" in out
    assert "all good" not in out


async def test_refused_key_fails_and_names_the_variable(
    fake: FakeLLM, make_config: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(KEY_ENV, "sk-wrong-key")
    for kind in ("openai", "anthropic"):
        ((what, ok, detail),) = await check_providers(
            _config(make_config, fake, "small-model", kind=kind)
        )
        assert (what, ok) == ("provider fake", False)
        assert f"refused the key in ${KEY_ENV} (401)" in detail
        assert "sk-wrong-key" not in detail


async def test_model_the_server_lacks_fails_and_names_it(
    fake: FakeLLM, make_config: Any, monkeypatch: pytest.MonkeyPatch, capsys: Any
) -> None:
    monkeypatch.setenv(KEY_ENV, "sk-right-key")
    config = _config(make_config, fake, "small-model", "big-model")

    assert await run_doctor(config) == 1
    out = capsys.readouterr().out
    assert "ok   provider fake" in out
    assert "FAIL model fake:big-model" in out and "no model 'big-model'" in out
    assert "model fake:small-model" not in out
    assert "all good" not in out


async def test_key_accepted_and_models_served_is_all_good(
    fake: FakeLLM, make_config: Any, monkeypatch: pytest.MonkeyPatch, capsys: Any
) -> None:
    monkeypatch.setenv(KEY_ENV, "sk-right-key")
    for kind in ("openai", "anthropic"):
        # "llama3.2" is how Ollama's "llama3.2:latest" is asked for
        config = _config(make_config, fake, "small-model", "llama3.2", kind=kind)
        assert await run_doctor(config) == 0
        out = capsys.readouterr().out
        assert "ok   provider fake" in out and "(key accepted)" in out
        assert out.rstrip().endswith("all good")
    sent = [r.headers for r in fake.calls(path="/v1/models")]
    assert sent[0]["Authorization"] == "Bearer sk-right-key"
    assert sent[-1]["x-api-key"] == "sk-right-key"


async def test_providers_are_checked_through_the_proxy_and_a_bad_proxy_variable_fails(
    fake: FakeLLM, make_config: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The doctor reaches the providers as the gateway does: through the proxy of the
    environment, and not at all with a proxy variable the gateway would refuse."""
    monkeypatch.setenv(KEY_ENV, "sk-right-key")
    config = _config(make_config, fake, "small-model")
    async with environment_proxy(monkeypatch) as proxy:
        ((what, ok, _),) = await check_providers(config)
        assert (what, ok) == ("provider fake", True)
        assert proxy.targets == [f"{fake.base_url}/v1/models"]

        monkeypatch.setenv("HTTPS_PROXY", "proxy.example:3128")
        ((what, ok, detail),) = await check_providers(config)
    assert (what, ok) == ("providers", False)
    assert "HTTPS_PROXY has no scheme" in detail and "proxy.example" not in detail


async def test_a_provider_that_redirects_is_not_followed_through_the_proxy(
    fake: FakeLLM, make_config: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The providers' own requests follow no redirect (the proxy found for the first address
    would be kept for the next): the doctor says where it leads, and the base_url that
    reaches it, rather than passing. The Location may be relative."""
    monkeypatch.setenv(KEY_ENV, "sk-right-key")
    fake.models_moved_to = "/api/v1/models/?here=1"
    async with environment_proxy(monkeypatch) as proxy:
        ((what, ok, detail),) = await check_providers(_config(make_config, fake, "small-model"))
    assert (what, ok) == ("provider fake", False)
    assert detail.endswith(
        f"answered 307 (it leads to {fake.base_url}/api/v1/models/?here=1: "
        f"base_url should probably be {fake.base_url}/api/v1)"
    )
    assert proxy.targets == [f"{fake.base_url}/v1/models"]


async def test_a_provider_redirecting_elsewhere_than_a_model_list_gets_no_base_url_advice(
    fake: FakeLLM, make_config: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A sign-in page in front of the server is no new place for the model list: the doctor
    says where the redirect leads, and suggests no base_url built from it."""
    monkeypatch.setenv(KEY_ENV, "sk-right-key")
    fake.models_moved_to = "/sign-in?here=1"
    ((what, ok, detail),) = await check_providers(_config(make_config, fake, "small-model"))
    assert (what, ok) == ("provider fake", False)
    assert detail.endswith(f"answered 307 (it leads to {fake.base_url}/sign-in?here=1)")


def _orphan_pages(db: Path) -> None:
    """Pages no table owns: the file still opens and answers queries, but it is damaged."""
    conn = sqlite3.connect(db)
    conn.execute("CREATE TABLE lost (a)")
    conn.executemany("INSERT INTO lost VALUES (?)", [("x" * 500,)] * 50)
    conn.commit()
    conn.execute("PRAGMA writable_schema = ON")
    conn.execute("DELETE FROM sqlite_master WHERE name = 'lost'")
    conn.commit()
    conn.close()


async def test_a_damaged_database_that_still_opens_fails_the_storage_check(
    make_config: Any,
) -> None:
    config = make_config(memory={"enabled": False})
    async with Store(config.db_path):
        pass
    database = [c for c in await check_storage(config) if c[0] == "database"]
    assert database == [("database", True, str(config.db_path))]

    _orphan_pages(config.db_path)
    ((_what, ok, detail),) = [c for c in await check_storage(config) if c[0] == "database"]
    assert not ok, "quick_check found unused pages: the file is damaged"
    assert "is damaged" in detail and "never used" in detail and "backup" in detail


async def test_a_password_in_a_url_a_provider_answers_with_is_not_printed(
    fake: FakeLLM, make_config: Any, monkeypatch: pytest.MonkeyPatch, capsys: Any
) -> None:
    """The config refuses a base_url with a password, but a server may still send one back:
    a model list redirected to https://user:password@host/... is named without its password."""
    monkeypatch.setenv(KEY_ENV, "sk-right-key")
    moved_to = fake.base_url.replace("://", "://llm:hunter2-pass-Xy9@") + "/v1/models?here=1"
    fake.models_moved_to = moved_to
    assert await run_doctor(_config(make_config, fake, "small-model")) == 1
    out = capsys.readouterr().out
    assert "FAIL provider fake" in out and "answered 307 (it leads to http://llm:" in out
    assert "hunter2-pass-Xy9" not in out


async def test_a_sandbox_backend_named_in_the_config_that_cannot_start_fails(
    make_config: Any,
) -> None:
    """`backend = "docker"` asks for exec: an image that is not there (or no daemon at all)
    turns exec off, and doctor fails, saying what to change. Without a backend named, no
    sandbox is a choice, not a failure."""
    config = make_config(
        sandbox={"backend": "docker", "docker_image": "decapod/no-such-image:none"},
        memory={"enabled": False},
    )
    ((what, ok, detail),) = await check_sandbox(config)
    assert (what, ok) == ("sandbox", False)
    assert "exec tool off" in detail and 'sandbox.backend = "docker"' in detail

    none = make_config(sandbox={"backend": "none"}, memory={"enabled": False})
    ((what, ok, detail),) = await check_sandbox(none)
    assert (what, ok) == ("sandbox", True) and "exec tool off" in detail


def test_doctor_before_init_says_the_config_is_missing_and_creates_nothing(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    from bot.cli import main

    home = tmp_path / "home"
    home.mkdir()
    _without_decapod_variables(monkeypatch)

    code = main(["--home", str(home), "doctor"], configure_logging=False)

    out = capsys.readouterr().out
    assert code == 1
    assert "FAIL config" in out and "decapod init" in out and "--config PATH" in out
    assert "DECAPOD_<TABLE>__<KEY> environment variables" in out  # they count as a config
    assert str(home / "config.toml") in out
    assert "ok   config" not in out and "all good" not in out
    assert list(home.iterdir()) == [], "no database (nor anything else) made in the home"


def _without_decapod_variables(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in [n for n in os.environ if n.startswith("DECAPOD_")]:
        monkeypatch.delenv(name)


def test_doctor_checks_a_home_set_up_by_environment_variables_alone(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """`decapod run` starts from the defaults and DECAPOD_* keys, with no config.toml: doctor
    checks such a home, and one a run left a database in, rather than asking for init."""
    from bot.cli import main

    home = tmp_path / "home"
    home.mkdir()
    _without_decapod_variables(monkeypatch)
    monkeypatch.setenv("DECAPOD_MEMORY__ENABLED", "false")

    main(["--home", str(home), "doctor"], configure_logging=False)

    out = capsys.readouterr().out
    assert "ok   config" in out and "decapod init" not in out
    assert (home / "decapod.db").exists()

    monkeypatch.delenv("DECAPOD_MEMORY__ENABLED")  # the database the first check made stays
    main(["--home", str(home), "doctor"], configure_logging=False)
    out = capsys.readouterr().out
    assert "ok   config" in out and "decapod init" not in out


def test_doctor_run_in_process_leaves_the_root_logger_alone(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """Doctor run in-process keeps the root logger's level and handlers (doctor run alone
    sets it to ERROR), so a test's log capture after it still sees warnings."""
    from bot.cli import main

    _without_decapod_variables(monkeypatch)
    monkeypatch.setenv("DECAPOD_MEMORY__ENABLED", "false")
    root = logging.getLogger()
    level, handlers = root.level, list(root.handlers)

    main(["--home", str(tmp_path), "doctor"], configure_logging=False)

    assert "ok   config" in capsys.readouterr().out  # the checks ran
    assert root.level == level and root.handlers == handlers


def test_a_command_run_in_process_still_redacts_the_hosts_log_output(
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    caplog: pytest.LogCaptureFixture,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """configure_logging=False leaves the handlers alone but not unfiltered: a registered
    secret logged after (or during) the command shows redacted in the host's capture."""
    from bot.cli import main
    from bot.redaction import register_secret

    _without_decapod_variables(monkeypatch)
    monkeypatch.setenv("DECAPOD_MEMORY__ENABLED", "false")
    secret = "in-process-" + secrets.token_hex(16)
    register_secret(secret, "test_secret")

    main(["--home", str(tmp_path), "doctor"], configure_logging=False)

    assert "ok   config" in capsys.readouterr().out
    logging.getLogger("decapod.doctor.host").warning("upstream said %s", secret)
    assert secret not in caplog.text
    assert "upstream said [REDACTED:known_secret]" in caplog.text
