"""Config keys from the environment: `DECAPOD_<TABLE>__<KEY>=<value>` sets `[table] key` as if
it were written in config.toml, and wins over the file.

The container image sets `DECAPOD_HTTP__HOST=0.0.0.0` this way: in its own network namespace
the gateway has to listen on the container's interface for a published port to reach it,
while the default everywhere else stays 127.0.0.1. Deeper keys take more `__`
(`DECAPOD_PROVIDERS__LOCAL__BASE_URL`); names are matched in lower case.

A value is read as TOML when it is a TOML value (`8787`, `true`, `["a", "b"]`, `"quoted"`),
else as a plain string (`0.0.0.0`, `http://ollama:11434/v1`).
"""

from __future__ import annotations

import copy
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from bot.errors import ConfigError

PREFIX = "DECAPOD_"
SEPARATOR = "__"


@dataclass(frozen=True)
class EnvOverride:
    variable: str
    path: tuple[str, ...]
    value: Any

    @property
    def key(self) -> str:
        return ".".join(self.path)


def env_overrides(environ: Mapping[str, str]) -> list[EnvOverride]:
    """Every `DECAPOD_A__B...` variable, as the key path it sets and its value."""
    found = []
    for name in sorted(environ):
        if not name.startswith(PREFIX) or SEPARATOR not in name:
            continue  # DECAPOD_HOME and the like are not config keys
        path = tuple(name[len(PREFIX) :].lower().split(SEPARATOR))
        if not all(path):
            raise ConfigError(
                f"environment variable {name}: an empty key name (expected e.g. "
                "DECAPOD_HTTP__PORT for [http] port)"
            )
        found.append(EnvOverride(name, path, _value(environ[name])))
    return found


def _value(raw: str) -> Any:
    try:
        return tomllib.loads(f"v = {raw}")["v"]
    except tomllib.TOMLDecodeError:
        return raw


def apply_overrides(data: dict[str, Any], overrides: list[EnvOverride]) -> dict[str, Any]:
    """A copy of `data` with each override set; the file's own dict is left as it was."""
    merged = copy.deepcopy(data)
    for override in overrides:
        table = merged
        for depth, part in enumerate(override.path[:-1]):
            table = table.setdefault(part, {})
            if not isinstance(table, dict):
                where = ".".join(override.path[: depth + 1])
                raise ConfigError(
                    f"environment variable {override.variable}: {where} is a value, not a table"
                )
        table[override.path[-1]] = override.value
    return merged


def describe(overrides: list[EnvOverride]) -> str:
    return ", ".join(f"{o.key} ({o.variable})" for o in overrides)
