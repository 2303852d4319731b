"""python-telegram-bot, loaded lean: without cryptography, and one TLS context for its clients.

PTB imports cryptography (~6.6 MB, ~30 ms) only to decrypt Telegram Passport data, which
Decapod never asks for; when the import fails, PTB turns Passport off and nothing else. So
the first import of `telegram` runs with cryptography hidden, and the entry is removed right
after, so that anything else that needs cryptography imports it as usual. Each httpx client
(PTB makes two, the adapter a third for downloads) would otherwise build its own TLS context
and load the CA bundle again (~50 ms each).
"""

from __future__ import annotations

import functools
import ssl
import sys


def _import_without_passport() -> None:
    if "telegram" in sys.modules or "cryptography" in sys.modules:
        return
    sys.modules["cryptography"] = None  # type: ignore[assignment]  # import raises ImportError
    try:
        import telegram  # noqa: F401
    finally:
        del sys.modules["cryptography"]


_import_without_passport()


@functools.cache
def tls_context() -> ssl.SSLContext:
    """The one verifying TLS context of the Telegram adapter's HTTP clients."""
    import certifi

    return ssl.create_default_context(cafile=certifi.where())
