"""The Telegram bot token kept out of logs and errors: registered with the redactor (whole,
and the secret part after the colon alone), and the HTTP loggers, which print request URLs
that contain the token, held at WARNING.
"""

from __future__ import annotations

import logging

from bot.redaction import register_secret


def quiet_http_loggers() -> None:
    """HTTP clients log request URLs, and a Telegram URL contains the token."""
    for name in ("httpx", "httpcore", "telegram"):
        logger = logging.getLogger(name)
        if logger.getEffectiveLevel() < logging.WARNING:
            logger.setLevel(logging.WARNING)


def register_token(token: str) -> None:
    register_secret(token, "telegram token")
    # the part after the colon is the secret; it must not leak on its own either
    register_secret(token.partition(":")[2], "telegram token")
