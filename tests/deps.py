"""Deps for tests that call tools and commands directly, without a gateway."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

from bot.deps import Deps
from bot.security.redact import default_redactor
from bot.store import Store

#: the real redactor, as the gateway builds it
REDACT = default_redactor().redact


def make_deps(
    *, store: Store | None = None, redact: Callable[[str], str] | None = None, **parts: Any
) -> Deps:
    """The real redactor unless a test brings its own. Without `store`, one that is never
    started: the tools under test do not touch it, and one that did would fail loudly."""
    return Deps(
        store=store if store is not None else Store(Path("/nonexistent/unused.db")),
        redact=redact if redact is not None else REDACT,
        **parts,
    )
