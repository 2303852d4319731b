"""Helpers for the skills and hooks tests: write skills on disk as an owner would."""

from __future__ import annotations

from pathlib import Path

import pytest


def write_skill(root: Path, folder: str, text: str) -> Path:
    path = root / folder
    path.mkdir(parents=True, exist_ok=True)
    (path / "SKILL.md").write_text(text, encoding="utf-8")
    return path


def simple_skill(name: str, description: str, body: str = "Do the thing.") -> str:
    return f"---\nname: {name}\ndescription: {description}\n---\n\n{body}\n"


@pytest.fixture
def skills_root(home: Path) -> Path:
    root = home / "skills"
    root.mkdir(parents=True)
    return root
