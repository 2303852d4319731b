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


@pytest.fixture(autouse=True)
def _root_logger_restored() -> Any:
    """A test that runs a command in-process (`main(["doctor"])`) configures logging as the
    command does: the root at ERROR, its own handlers. Left so, every later test's caplog
    sees nothing below ERROR. The root's level comes back, and the handlers the command added
    (plain stream and log file handlers, never pytest's own subclasses) are closed."""
    import logging

    from bot.logging import PrivateRotatingFileHandler

    root = logging.getLogger()
    level = root.level
    yield
    for handler in list(root.handlers):
        if type(handler) is logging.StreamHandler or isinstance(
            handler, PrivateRotatingFileHandler
        ):
            root.removeHandler(handler)
            handler.close()
    root.setLevel(level)
