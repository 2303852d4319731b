"""What a newcomer meets first: make run, the /help text, quiet logs, clear config errors,
and the operator lists."""

from __future__ import annotations

import asyncio
import json
import logging
import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest

from bot.cli import main
from bot.gateway import Gateway
from bot.logging import setup_logging
from bot.providers.testing import ScriptedProvider
from channels.slack_mrkdwn import to_mrkdwn
from channels.telegram_html import markdown_to_html
from tests.cli.harness import decapod, fake_llm_config, write_config
from tests.fakes.channel import RecordingChannel
from tests.fakes.llm import FakeLLM

ROOT = Path(__file__).resolve().parents[2]


def test_make_run_says_it_is_installing_before_it_does(tmp_path: Path) -> None:
    make = shutil.which("make")
    if make is None:
        pytest.skip("make is not installed")
    for name in ("Makefile", "pyproject.toml"):
        shutil.copy(ROOT / name, tmp_path / name)

    plan = subprocess.run(
        [make, "-n", "run"], cwd=tmp_path, capture_output=True, text=True, check=True
    ).stdout.splitlines()

    said = next(n for n, line in enumerate(plan) if "installing dependencies" in line)
    venv = next(n for n, line in enumerate(plan) if "-m venv" in line)
    assert said < venv
    assert "about a minute" in plan[said]


async def test_help_has_no_raw_backticks_on_any_platform(make_config: Any) -> None:
    channel = RecordingChannel(console=True)
    async with Gateway(make_config(), provider=ScriptedProvider([]), channels={"test": channel}):
        await channel.push("/help")
        [text] = await channel.wait_for_messages(1)

    lines = text.splitlines()
    assert lines[0] == "Commands:"
    for line in lines[1:]:
        assert re.fullmatch(r"/[a-z]+( [^—]+)? — [^`]+", line), line
    assert "/remind <when> <what> — " in text and "/remind /remind" not in text
    for rendered in (text, markdown_to_html(text), to_mrkdwn(text)):
        assert "`" not in rendered
        assert "<code>" not in rendered


def test_noisy_http_client_loggers_stay_at_warning(tmp_path: Path) -> None:
    setup_logging("DEBUG", "json", tmp_path / "decapod.log", stream_level="CRITICAL")
    for name in ("httpx2", "httpx", "httpcore", "openai", "anthropic"):
        assert logging.getLogger(name).getEffectiveLevel() >= logging.WARNING, name


async def test_a_chat_turn_logs_no_http_request_lines(home: Path) -> None:
    async with FakeLLM() as fake:
        write_config(home, fake_llm_config(fake.base_url))
        done = await decapod(home, "ask", "hello")

    assert done.returncode == 0, done
    records = [
        json.loads(line)
        for line in (home / "logs" / "decapod.log").read_text().splitlines()
        if line.strip()
    ]
    assert any(r["logger"] == "decapod.turn" for r in records)  # the turn itself is logged
    assert not [r for r in records if "HTTP Request" in r["msg"]]


def test_an_owner_without_a_channel_is_a_config_error(
    home: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = write_config(home, '[gateway]\nowners = ["sam"]\n')

    assert main(["config", "check", str(path)]) == 2

    err = capsys.readouterr().err
    assert "gateway.owners" in err and "'sam'" in err
    assert "channel:user_id" in err


def test_pairing_list_says_when_nothing_is_pending(
    home: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    write_config(home, "")

    assert main(["pairing", "list"]) == 0

    assert capsys.readouterr().out == "no pending requests\n"


async def test_the_reminders_list_has_a_header(
    home: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from bot.scheduler.cli import HEADER

    channel = RecordingChannel(console=True)
    config = fake_config_with_scheduler(home)
    async with Gateway(config, provider=ScriptedProvider([]), channels={"test": channel}):
        await channel.push("/remind in 20m stretch your legs")
        await channel.push("/remind every weekday 9:00 standup", user="u2")
        await channel.wait_for_messages(2)

    assert await asyncio.to_thread(main, ["reminders", "list"]) == 0

    header, *rows = capsys.readouterr().out.splitlines()
    assert header.split() == list(HEADER)
    assert len(rows) == 2
    # every row's cells start where the header's do
    starts = [m.start() for m in re.finditer(r"\S+", header)]
    for row in rows:
        assert all(row[s - 1] == " " and row[s] != " " for s in starts[1:]), (header, row)


def fake_config_with_scheduler(home: Path) -> Any:
    from bot.config import parse_config

    data = {"http": {"enabled": False}, "logging": {"file": ""}, "sandbox": {"backend": "none"}}
    return parse_config(data, home)
