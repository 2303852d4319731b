"""Structured logs: JSON lines when not on a terminal, key=value on one; and always JSON
lines in the home's log file (`logs/decapod.log`, rotated by size, every file 0600), which
`decapod logs` reads.

Call `log.info("turn", extra={"fields": {...}})` or use `log_fields(logger, msg, **fields)`;
fields are rendered in both formats. Redaction filters are attached to every handler
(bot/security/redact.py), so secrets never reach a log file.
"""

from __future__ import annotations

import json
import logging
import logging.handlers
import os
import sys
import time
from pathlib import Path
from typing import Any

_RESERVED = frozenset(logging.LogRecord("", 0, "", 0, "", (), None).__dict__) | {"message"}


def _fields(record: logging.LogRecord) -> dict[str, Any]:
    fields = getattr(record, "fields", None)
    return dict(fields) if isinstance(fields, dict) else {}


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        out: dict[str, Any] = {
            "ts": round(record.created, 3),
            "level": record.levelname.lower(),
            "logger": record.name,
            "msg": record.getMessage(),
        }
        out.update(_fields(record))
        if record.exc_info:
            out["exc"] = self.formatException(record.exc_info)
        return json.dumps(out, default=str, separators=(",", ":"))


class KeyValueFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        stamp = time.strftime("%H:%M:%S", time.localtime(record.created))
        parts = [f"{stamp} {record.levelname[0]} {record.name}: {record.getMessage()}"]
        parts += [f"{k}={_kv(v)}" for k, v in _fields(record).items()]
        line = " ".join(parts)
        if record.exc_info:
            line += "\n" + self.formatException(record.exc_info)
        return line


def _kv(value: Any) -> str:
    text = str(value)
    return json.dumps(text) if (" " in text or not text) else text


def log_fields(logger: logging.Logger, msg: str, level: int = logging.INFO, **fields: Any) -> None:
    if logger.isEnabledFor(level):
        logger.log(level, msg, extra={"fields": fields})


class PrivateRotatingFileHandler(logging.handlers.RotatingFileHandler):
    """A size-rotated log file whose every generation is 0600: the base class would open the
    fresh file after a rotation with the umask's 0644."""

    def _open(self) -> Any:
        from bot.security.files import create_private_file

        create_private_file(Path(self.baseFilename))
        stream = super()._open()
        os.fchmod(stream.fileno(), 0o600)  # an existing file made earlier under another umask
        return stream


#: the defaults of [logging]: 10 MB per file, the current one and 5 older ones
LOG_FILE_MAX_BYTES = 10 * 1024 * 1024
LOG_FILE_BACKUPS = 5


def setup_command_logging(
    args: Any,
    level: str = "INFO",
    fmt: str = "auto",
    file: Path | None = None,
    *,
    stream_level: str | None = None,
    max_bytes: int = LOG_FILE_MAX_BYTES,
    backups: int = LOG_FILE_BACKUPS,
) -> None:
    """`setup_logging` for a command. Run by `bot.cli.main(..., configure_logging=False)`
    inside a program that owns its logging (a test run), the command leaves the root
    logger's level, handlers and log file alone, yet still puts the redaction filters on
    those handlers: a secret the command registers never reaches the host's output. As in
    every run, the HTTP and SDK loggers (httpx, httpcore, openai, anthropic and the others of
    NOISY_LOGGERS) are raised to WARNING: one INFO line per request is noise in a command."""
    if not getattr(args, "configure_logging", True):
        from bot.security.redact import install_log_redaction

        install_log_redaction()
        return
    setup_logging(level, fmt, file, stream_level=stream_level, max_bytes=max_bytes, backups=backups)


def setup_logging(
    level: str = "INFO",
    fmt: str = "auto",
    file: Path | None = None,
    stream: Any = None,
    stream_level: str | None = None,
    *,
    max_bytes: int = LOG_FILE_MAX_BYTES,
    backups: int = LOG_FILE_BACKUPS,
) -> None:
    """Configure the root logger once. fmt: auto | json | text."""
    stream = stream or sys.stderr
    root = logging.getLogger()
    for h in list(root.handlers):
        root.removeHandler(h)
    use_json = fmt == "json" or (fmt == "auto" and not getattr(stream, "isatty", lambda: False)())
    handler: logging.Handler = logging.StreamHandler(stream)
    handler.setFormatter(JsonFormatter() if use_json else KeyValueFormatter())
    if stream_level:
        handler.setLevel(stream_level)
    root.addHandler(handler)
    if file is not None:
        from bot.security.files import private_dirs

        private_dirs(file.parent)
        fh = PrivateRotatingFileHandler(
            file, maxBytes=max_bytes, backupCount=backups, encoding="utf-8"
        )
        fh.setFormatter(JsonFormatter())
        root.addHandler(fh)
    root.setLevel(level.upper())
    from bot.security.redact import install_log_redaction

    install_log_redaction(root)
