"""The command line reaches channel tools through the channel registry."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from bot.cli import main
from bot.doctor import check_channels


def test_a_channel_command_runs_through_the_registry(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code = main(["--home", str(tmp_path), "discord", "invite-url", "--client-id", "987654321"])

    assert code == 0
    assert "client_id=987654321" in capsys.readouterr().out


async def test_doctor_runs_the_adapters_own_checks_through_the_registry(
    make_config: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("DISCORD_TEST_TOKEN", raising=False)
    config = make_config(
        channels={"dc": {"type": "discord", "token_env": "DISCORD_TEST_TOKEN"}},
    )

    ((what, ok, detail),) = await check_channels(config)

    assert (what, ok) == ("discord dc", False)
    assert "$DISCORD_TEST_TOKEN is not set" in detail


def test_run_is_parsed_without_the_other_commands_parsers() -> None:
    """`decapod run` starts without importing every other command's module for its parser."""
    import subprocess
    import sys

    code = (
        "import sys; from bot.cli import build_parser, command_word, LEAN_COMMANDS\n"
        "argv = ['--home', '/tmp/h', 'run']\n"
        "args = build_parser(full=command_word(argv) not in LEAN_COMMANDS).parse_args(argv)\n"
        "assert args.command == 'run' and str(args.home) == '/tmp/h'\n"
        "print(sorted(m for m in ('bot.cli_ask', 'bot.hooks.cli', 'bot.memory.cli') "
        "if m in sys.modules))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


def test_the_command_word_is_found_past_the_global_options() -> None:
    from bot.cli import command_word

    assert command_word(["--home", "run", "status"]) == "status"
    assert command_word(["--config=x.toml", "run"]) == "run"
    assert command_word(["--version"]) is None
