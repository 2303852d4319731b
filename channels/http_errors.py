"""A failed HTTP call of an adapter, in words fit for a person or a log line.

Never `repr()` an aiohttp error: a ClientResponseError (raised for an answer that is not
HTTP, from a broken proxy say) carries the request it answered, and its repr prints that
request's headers, the platform token's Authorization among them.
"""

from __future__ import annotations

import aiohttp

from bot.errors import describe_error


def describe_http_error(exc: BaseException) -> str:
    """The kind of failure and what the server or the connection said; never the request."""
    if isinstance(exc, aiohttp.ClientResponseError):
        return f"{type(exc).__name__}: {exc.status}, {exc.message}"
    return describe_error(exc)
