"""Python hooks that the tests declare as `decapod.hooks` entry points."""

from __future__ import annotations

from typing import Any

from bot.hooks.events import HookEvent

SEEN: list[HookEvent] = []


async def record(event: HookEvent) -> Any:
    SEEN.append(event)
    if event.name.value == "before_tool" and event.data.get("tool") == "set_timezone":
        return {"block": "time zones are fixed here"}
    return None


def explode(event: HookEvent) -> None:
    raise RuntimeError("this hook is broken")


explode.events = ["before_model"]  # type: ignore[attr-defined]


def advisory(event: HookEvent) -> None:
    """An advisory before_tool hook that is broken: marked fail_open, so calls run anyway."""
    raise RuntimeError("the advisory hook is broken")


advisory.events = ["before_tool"]  # type: ignore[attr-defined]
advisory.fail_open = True  # type: ignore[attr-defined]
