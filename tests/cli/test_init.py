"""`decapod init` as a wizard, driven with answers on stdin; each channel's token is verified
live against the fake platform (Telegram getMe, Slack auth.test, Discord users/@me)."""

from __future__ import annotations

import asyncio
import os
import pty
import stat
import sys
import tomllib
from pathlib import Path
from typing import Any

import pytest

from bot.config import load_config
from tests.cli.harness import Finished, decapod, env_for
from tests.fakes.discord import TOKEN as DISCORD_TOKEN
from tests.fakes.discord import FakeDiscord
from tests.fakes.slack import FakeSlack
from tests.fakes.telegram import TOKEN as TELEGRAM_TOKEN
from tests.fakes.telegram import USERNAME, FakeTelegram


def _config(home: Path) -> dict[str, Any]:
    path = home / "config.toml"
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    load_config(None, home)  # what was written loads
    return tomllib.loads(path.read_text())


def _answers(*lines: str) -> str:
    return "".join(line + "\n" for line in lines)


async def test_telegram_wizard_checks_the_token_and_writes_the_config(home: Path) -> None:
    async with FakeTelegram() as fake:
        done = await decapod(
            home,
            "init",
            "--channel-api-url",
            fake.base_url,
            stdin=_answers(
                "ollama",  # provider
                "http://127.0.0.1:11500/v1",  # the local server's base URL
                "",  # model: the default
                "telegram",
                "MY_TG_TOKEN",  # the variable that holds the token
                "424242",  # owner id on telegram
            ),
            MY_TG_TOKEN=TELEGRAM_TOKEN,
        )
        asked_getme = bool(fake.calls_of("getMe"))

    assert done.returncode == 0, done
    assert asked_getme
    assert f"ok   channel telegram: telegram bot @{USERNAME}" in done.stdout
    assert "pairing approve" in done.stdout  # the platform's next step
    assert done.stdout.rstrip().splitlines()[-1] == "next: decapod run"
    config = _config(home)
    assert config["providers"]["ollama"]["base_url"] == "http://127.0.0.1:11500/v1"
    assert config["models"]["chat"] == ["ollama:llama3.2"]
    assert config["channels"]["telegram"]["token_env"] == "MY_TG_TOKEN"
    assert config["channels"]["telegram"]["api_base_url"] == fake.base_url
    assert config["gateway"]["owners"] == ["telegram:424242"]
    assert TELEGRAM_TOKEN not in (home / "config.toml").read_text()


async def test_a_rejected_token_writes_nothing_unless_told_to(home: Path) -> None:
    async with FakeTelegram() as fake:
        args = ("init", "--provider", "ollama", "--channel", "telegram")
        args += ("--channel-api-url", fake.base_url)
        refused = await decapod(
            home, *args, stdin=_answers("", "", "MY_TG_TOKEN", "", "n"), MY_TG_TOKEN="1:wrong"
        )
        assert not (home / "config.toml").exists()
        unset = await decapod(home, *args, "--yes")
        assert not (home / "config.toml").exists()
        anyway = await decapod(
            home, *args, stdin=_answers("", "", "MY_TG_TOKEN", "", "y"), MY_TG_TOKEN="1:wrong"
        )

    assert refused.returncode == 1
    assert "FAIL channel telegram: Telegram rejected the token in MY_TG_TOKEN" in refused.stdout
    assert "nothing written" in refused.stdout
    assert unset.returncode == 1 and "TELEGRAM_BOT_TOKEN is not set" in unset.stdout
    assert anyway.returncode == 0, anyway
    assert _config(home)["channels"]["telegram"]["token_env"] == "MY_TG_TOKEN"


async def test_slack_wizard_checks_both_tokens(home: Path) -> None:
    async with FakeSlack() as fake:
        done = await decapod(
            home,
            "init",
            "--channel-api-url",
            fake.api_url,
            stdin=_answers("openai", "MY_OPENAI", "gpt-4o-mini", "slack", "BOT", "APP", ""),
            BOT=fake.bot_token,
            APP=fake.app_token,
        )
        checked = [c.method for c in fake.calls]

    assert done.returncode == 0, done
    assert "auth.test" in checked and "apps.connections.open" in checked
    assert "slack-manifest.json" in done.stdout
    assert "export MY_OPENAI=..." in done.stdout
    config = _config(home)
    slack = config["channels"]["slack"]
    assert (slack["bot_token_env"], slack["app_token_env"]) == ("BOT", "APP")
    assert config["providers"]["openai"]["api_key_env"] == "MY_OPENAI"
    assert "gateway" not in config  # no owner given


async def test_discord_wizard_checks_the_token(home: Path) -> None:
    async with FakeDiscord() as fake:
        done = await decapod(
            home,
            "init",
            "--provider",
            "anthropic",
            "--model",
            "claude-sonnet-4-5",
            "--channel",
            "discord",
            "--channel-api-url",
            fake.api_base,
            stdin=_answers("", "DC_TOKEN", "123456789012345678"),
            DC_TOKEN=DISCORD_TOKEN,
        )
        asked_me = bool(fake.calls_to("GET", "/users/@me"))

    assert done.returncode == 0, done
    assert asked_me
    assert "decapod discord invite-url" in done.stdout
    config = _config(home)
    assert config["channels"]["discord"]["token_env"] == "DC_TOKEN"
    assert config["gateway"]["owners"] == ["discord:123456789012345678"]


async def test_without_a_terminal_or_answers_the_defaults_are_written(home: Path) -> None:
    done = await decapod(home, "init")  # stdin is /dev/null: every question takes its default

    assert done.returncode == 0, done
    assert done.stdout.rstrip().endswith(
        "next: decapod chat   (or `decapod run` for the HTTP server and reminders)"
    )
    config = _config(home)
    assert config["models"]["chat"] == ["ollama:llama3.2"]
    assert "channels" not in config


async def test_flags_and_yes_ask_nothing(home: Path) -> None:
    done = await decapod(
        home,
        *("init", "--yes", "--provider", "openai", "--model", "gpt-4o"),
        *("--api-key-env", "WORK_OPENAI_KEY", "--channel", "none", "--owner", "console:me"),
    )

    assert done.returncode == 0, done
    assert "[" not in done.stdout.split("wrote")[0]  # no question was printed
    config = _config(home)
    assert config["models"]["chat"] == ["openai:gpt-4o"]
    assert config["providers"]["openai"]["api_key_env"] == "WORK_OPENAI_KEY"
    assert config["gateway"]["owners"] == ["console:me"]
    again = await decapod(home, "init", "--yes")
    assert again.returncode == 1 and "--force" in again.stderr and not again.stdout


@pytest.mark.parametrize(
    "answers",
    [
        # the key itself where its variable's name belongs
        ("openai", "sk-live-PASTEDKEY0123456789", "WORK_OPENAI_KEY", "", "none"),
        ("openai", "'WORK_OPENAI_KEY'", "", "telegram", " 123456:PASTEDTOKENabcdefghij ", "TG"),
    ],
    ids=["api-key", "channel-token"],
)
async def test_a_secret_answered_for_its_variable_ends_a_piped_run_and_is_never_shown(
    home: Path, answers: tuple[str, ...]
) -> None:
    """Piped answers are read in order: the line after a refused one answers the next
    question, so taking it as this one's would shift every answer after it."""
    done = await decapod(home, "init", stdin=_answers(*answers))

    assert done.returncode == 2, done
    assert done.stdout.count("that is not a variable's name") == 1
    assert "PASTED" not in done.stdout + done.stderr
    assert not (home / "config.toml").exists()


async def test_a_local_server_keeps_the_key_variable_it_was_given(home: Path) -> None:
    # vLLM and llama.cpp servers started with --api-key want one
    done = await decapod(home, "init", "--yes", "--provider", "vllm", "--api-key-env", "VLLM_KEY")

    assert done.returncode == 0, done
    assert _config(home)["providers"]["vllm"]["api_key_env"] == "VLLM_KEY"
    assert "export VLLM_KEY=" in done.stdout


async def _on_a_terminal(home: Path, *args: str, typed: str) -> Finished:
    """Run `decapod ARGS` with a terminal as stdin, the lines of `typed` typed into it."""
    primary, secondary = pty.openpty()
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "bot",
        *args,
        env=env_for(home),
        stdin=secondary,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    os.close(secondary)
    try:
        os.write(primary, typed.encode() + b"\x04")  # then ^D: the end of input
        out, err = await asyncio.wait_for(proc.communicate(), 60)
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()
        os.close(primary)
    assert proc.returncode is not None
    return Finished(proc.returncode, out.decode(), err.decode())


@pytest.mark.parametrize("address", ["localhost:8000", "http://[::1:8000/v1"])
async def test_on_a_terminal_a_wrong_address_is_asked_again_keeping_the_other_answers(
    home: Path, address: str
) -> None:
    typed = _answers("vllm", address, "http://localhost:8000/v1", "my-model", "none")
    done = await _on_a_terminal(home, "init", typed=typed)

    assert done.returncode == 0, done
    assert "starts with http:// or https://" in done.stdout
    config = _config(home)
    assert config["providers"]["vllm"]["base_url"] == "http://localhost:8000/v1"
    assert config["models"]["chat"] == ["vllm:my-model"]


@pytest.mark.parametrize("address", ["localhost:8000", "http://[::1:8000/v1"])
async def test_a_wrong_address_ends_a_piped_run_writing_nothing(home: Path, address: str) -> None:
    done = await decapod(
        home,
        "init",
        stdin=_answers("vllm", address, "http://localhost:8000/v1", "my-model", "none"),
    )

    assert done.returncode == 2, done
    assert "starts with http:// or https://" in done.stdout
    assert "Traceback" not in done.stderr
    assert not (home / "config.toml").exists()


@pytest.mark.parametrize("typed", [False, True], ids=["piped", "on-a-terminal"])
async def test_an_address_with_a_password_is_refused_without_echoing_it(
    home: Path, typed: bool
) -> None:
    answers = _answers(
        "vllm", "http://me:hunter2@localhost:8000/v1", "http://localhost:8000/v1", "m", "none"
    )
    if typed:  # asked again, the other answers kept
        done = await _on_a_terminal(home, "init", typed=answers)
        assert done.returncode == 0, done
        assert _config(home)["providers"]["vllm"]["base_url"] == "http://localhost:8000/v1"
    else:
        done = await decapod(home, "init", stdin=answers)
        assert done.returncode == 2, done
        assert not (home / "config.toml").exists()
        # only a piped answer is printed beside its question, so only here can the password
        # reach stdout; a terminal shows what is typed itself (on the terminal, not stdout)
        assert "hunter2" not in done.stdout + done.stderr
    assert "no user name or password in the address" in done.stdout
