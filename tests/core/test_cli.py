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
