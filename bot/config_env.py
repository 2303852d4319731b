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
import types
import typing
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import PurePath
from typing import Any

from pydantic import BaseModel

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


def _too_deep(override: EnvOverride, depth: int) -> ConfigError:
    where = ".".join(override.path[:depth])
    variable = SEPARATOR.join(override.variable.split(SEPARATOR)[:depth])
    return ConfigError(
        f"environment variable {override.variable}: {where} is a value, not a table: "
        f"it has no sub-keys (set it with {variable})"
    )


def _below(override: EnvOverride, depth: int, table: object) -> Any:
    """The table's entry that the variable's part at `depth` names. The table held that
    entry when this variable was set, so only another variable differing in case can have
    replaced it since: by a value (`DECAPOD_channels__tg__access=5` beside
    `..._TG__ACCESS__ALLOW_USERS__X`) or by a table without that entry
    (`DECAPOD_models__routes='{x=["c:d"]}'` beside `DECAPOD_MODELS__ROUTES__CHEAP`)."""
    if not isinstance(table, dict) or override.path[depth] not in table:
        where = ".".join(override.path[:depth])
        what = (
            "a value" if not isinstance(table, dict) else f"a table without {override.path[depth]}"
        )
        raise ConfigError(
            f"environment variable {override.variable}: another variable sets {where} to "
            f"{what}, so nothing below it can be set (names are matched in lower case)"
        )
    return table[override.path[depth]]


def _holds_no_keys(annotation: Any) -> bool:
    """A key that holds one value (a number, a string, a choice) or a list, not a table."""
    origin = typing.get_origin(annotation)
    if origin in (typing.Union, types.UnionType):
        args = typing.get_args(annotation)
        return all(_holds_no_keys(arg) for arg in args if arg is not type(None))
    if origin is typing.Annotated:
        return _holds_no_keys(typing.get_args(annotation)[0])
    if origin in (typing.Literal, list, tuple, set, frozenset):
        return True
    return annotation in (str, int, float, bool) or (
        isinstance(annotation, type) and issubclass(annotation, PurePath)
    )


def _optional(annotation: Any) -> Any:
    """`X | None` as X: the table when it is set."""
    if typing.get_origin(annotation) in (typing.Union, types.UnionType):
        args = [arg for arg in typing.get_args(annotation) if arg is not type(None)]
        if len(args) == 1:
            return args[0]
    return annotation


def _tagged_member(annotation: Any, tag_key: object, table: object) -> Any:
    """Of a tagged union (`[channels.<name>]` by its `type`), the member whose tag the table
    sets; else the annotation as it is."""
    if typing.get_origin(annotation) is typing.Annotated:
        annotation, *extras = typing.get_args(annotation)
        tag_key = next((e.discriminator for e in extras if hasattr(e, "discriminator")), tag_key)
    if not isinstance(tag_key, str) or not isinstance(table, dict):
        return annotation  # not a table (`DECAPOD_CHANNELS__TG=telegram`): validation says so
    for member in typing.get_args(annotation):
        tag = getattr(member, "model_fields", {}).get(tag_key)
        if tag is not None and table.get(tag_key) in typing.get_args(tag.annotation):
            return member
    return annotation


def _check_depth(override: EnvOverride, schema: type[BaseModel], merged: dict[str, Any]) -> None:
    # Without this, DECAPOD_HTTP__PORT__X=1 would build port = {x = 1} and be reported as
    # "http.port: Input should be a valid integer", naming neither the variable nor the cause;
    # the same below a list (`web.search`) or a channel's key the file does not set.
    model, depth, table = schema, 0, merged
    while depth < len(override.path) - 1:
        field = model.model_fields.get(override.path[depth])
        table = _below(override, depth, table)
        depth += 1
        if field is None:
            return  # an unknown key: validation names it
        annotation = _optional(field.annotation)
        if typing.get_origin(annotation) is dict:
            annotation = typing.get_args(annotation)[1]  # [providers.<name>]: skip the name
            table = _below(override, depth, table)
            depth += 1
        annotation = _tagged_member(annotation, field.discriminator, table)
        # the variable may end at the name it skipped (`DECAPOD_MODELS__ROUTES__CHEAP`): then
        # it sets that entry's value, which holding no keys is what it should do
        if depth < len(override.path) and _holds_no_keys(annotation):
            raise _too_deep(override, depth)
        if not (isinstance(annotation, type) and issubclass(annotation, BaseModel)):
            return  # a tagged union without its tag: validation asks for it
        model = annotation


def apply_overrides(
    data: dict[str, Any], overrides: list[EnvOverride], schema: type[BaseModel] | None = None
) -> dict[str, Any]:
    """A copy of `data` with each override set; the file's own dict is left as it was.
    With `schema`, a variable that reaches below one of its single-value or list keys is
    refused."""
    merged = copy.deepcopy(data)
    for override in overrides:
        table = merged
        for depth, part in enumerate(override.path[:-1], start=1):
            table = table.setdefault(part, {})
            if not isinstance(table, dict):
                raise _too_deep(override, depth)
        table[override.path[-1]] = override.value
    # after all of them: a channel's tag may come from a variable sorted after its keys'
    for override in overrides:
        if schema is not None:
            _check_depth(override, schema, merged)
    return merged


def describe(overrides: list[EnvOverride]) -> str:
    return ", ".join(f"{o.key} ({o.variable})" for o in overrides)
