"""Shared fixtures. Every server a test starts listens on 127.0.0.1 only."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import pytest

#: the throwaway PostgreSQL server (`pg_server`, `pg_url`) for the store's second backend
pytest_plugins = ["tests.pgserver"]

os.environ.setdefault("NO_PROXY", "127.0.0.1,localhost")
os.environ.setdefault("no_proxy", "127.0.0.1,localhost")


@pytest.fixture
def home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    home = tmp_path / "home"
    monkeypatch.setenv("DECAPOD_HOME", str(home))
    return home


@pytest.fixture
def make_config(home: Path) -> Any:
    from bot.config import parse_config

    def make(**sections: Any) -> Any:
        data: dict[str, Any] = {"http": {"enabled": False}, "logging": {"file": ""}}
        data.update(sections)
        return parse_config(data, home)

    return make
