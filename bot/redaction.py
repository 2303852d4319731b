"""What a channel adapter may use of the redactor (bot/security/redact.py): register a secret
it holds, and scrub a text before it logs it or puts it in an error.

Adapters import this and not bot.security: the redactor's registry and patterns stay the
core's business (an import-linter contract in pyproject.toml keeps it so).
"""

from __future__ import annotations

from bot.security.redact import default_registry, scrub

__all__ = ["register_secret", "scrub"]


def register_secret(value: str, label: str = "secret") -> None:
    """From now on `value` (and its encoded variants) never shows in a log line, an error, a
    prompt or a reply."""
    default_registry.add(value, label)
