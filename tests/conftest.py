"""Shared fixtures. Every server a test starts listens on 127.0.0.1 only."""

from __future__ import annotations

import logging
import os
from collections.abc import Iterator
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
def restore_logging() -> Iterator[None]:
    """The root logger's handlers, their filters and its level as they were after every test
    (one that calls `setup_logging` or runs a command in-process changes them); the handlers
    it added closed (a log file among them). For every test, so that none can forget it: it
    costs a few microseconds."""
    root = logging.getLogger()
    saved = (root.handlers[:], root.level)
    # pytest's own handlers live for the whole session: a redaction filter a command put on
    # them would redact every later test's captured records
    filters = [(handler, handler.filters[:]) for handler in root.handlers]
    yield
    for handler in root.handlers:
        if handler not in saved[0]:
            handler.close()
    root.handlers[:], root.level = saved
    for handler, kept in filters:
        handler.filters[:] = kept
