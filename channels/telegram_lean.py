"""python-telegram-bot and httpx, loaded lean.

Two optional imports cost an idle gateway memory for features it never uses, and each
library guards them with `except ImportError`: PTB imports cryptography (~6.6 MB, ~30 ms)
only to decrypt Telegram Passport data, and httpx imports click, rich and pygments (~5.6 MB)
only for its command-line tool. So the first import of each runs with that dependency
hidden, and the entry is removed right after, so that anything else that needs it imports
it as usual. httpx is imported with python-telegram-bot even though the adapter's requests
go over aiohttp (channels/telegram_request.py).
"""

from __future__ import annotations

import importlib
import sys


def _import_hiding(module: str, optional: str) -> None:
    """Import `module` the first time with `optional` (which it guards) unimportable."""
    if module in sys.modules or optional in sys.modules:
        return
    sys.modules[optional] = None  # type: ignore[assignment]  # its import raises ImportError
    try:
        importlib.import_module(module)
    finally:
        del sys.modules[optional]


_import_hiding("httpx", "click")  # httpx's command-line tool only
_import_hiding("telegram", "cryptography")  # Telegram Passport only
