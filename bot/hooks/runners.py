"""The two kinds of hook: a program from the config, and a Python entry point.

A program runs directly (no shell) with a clean environment (PATH, HOME, LANG and the
event's name: never the gateway's keys or tokens), the event as JSON on stdin, in a
session of its own so that a timeout kills everything it started.
"""

from __future__ import annotations

import asyncio
import contextlib
import inspect
import json
import logging
import os
import signal
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any, Protocol

from bot.hooks.config import CommandHookConfig, HookEventName, HooksConfig
from bot.hooks.events import HookEvent, HookFailure, HookReply, block_reason

log = logging.getLogger("decapod.hooks")

ENTRY_POINT_GROUP = "decapod.hooks"
_CLEAN_PATH = "/usr/local/bin:/usr/bin:/bin"
_OUTPUT_CAP = 64 * 1024
ALL_EVENTS = frozenset(HookEventName)


def hook_env(event: HookEventName) -> dict[str, str]:
    return {
        "PATH": _CLEAN_PATH,
        "HOME": os.environ.get("HOME", "/"),
        "LANG": "C.UTF-8",
        "DECAPOD_HOOK_EVENT": event.value,
    }


class CommandHook:
    kind = "command"

    def __init__(self, config: CommandHookConfig, default_timeout_s: float) -> None:
        self.name = config.name
        self.argv = list(config.command)
        self.events = frozenset(config.events)
        self.timeout_s = config.timeout_s or default_timeout_s
        self.fail_open = config.fail_open

    def describe(self) -> str:
        return " ".join(self.argv)

    async def run(self, event: HookEvent) -> HookReply:
        try:
            proc = await asyncio.create_subprocess_exec(
                *self.argv,
                stdin=asyncio.subprocess.PIPE,
                stdout=asyncio.subprocess.PIPE,
                stderr=asyncio.subprocess.PIPE,
                env=hook_env(event.name),
                start_new_session=True,
            )
        except OSError as exc:
            raise HookFailure(
                f"cannot start {self.argv[0]}: {exc.strerror or exc}", "it cannot be started"
            ) from None
        try:
            assert proc.stdin and proc.stdout and proc.stderr
            out, err, _ = await asyncio.gather(
                _read_capped(proc.stdout), _read_capped(proc.stderr), _feed(proc, event)
            )
            code = await proc.wait()
        finally:
            if proc.returncode is None:
                # cancelled by the timeout: the program and whatever it started go
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(proc.pid, signal.SIGKILL)
                await proc.wait()
        return self._reply(event, code, out, err)

    def _reply(self, event: HookEvent, code: int, out: bytes, err: bytes) -> HookReply:
        answer: Any = None
        text = out.decode(errors="replace").strip()
        if text:
            try:
                answer = json.loads(text)
            except ValueError:
                if event.name is HookEventName.BEFORE_TOOL and code == 0:
                    raise HookFailure(
                        f"printed something that is not JSON: {text[:80]!r}",
                        "its answer is not JSON",
                    ) from None
        if event.name is HookEventName.BEFORE_TOOL:
            if code == 0:
                return HookReply(block_reason(answer))
            # a non-zero exit is a deliberate block: the reason is {"block"} or stderr's last
            # line; an advisory (fail_open) hook blocks only with {"block"}, else it crashed
            reason = None
            with contextlib.suppress(HookFailure):
                reason = block_reason(answer)
            if reason is None and self.fail_open:
                raise self._exit_failure(code, err)
            if reason is None:
                last = err.decode(errors="replace").strip().splitlines()[-1:] or [""]
                reason = last[0][:300] or f"hook {self.name} exited with {code}"
            return HookReply(reason)
        if code != 0:
            raise self._exit_failure(code, err)
        return HookReply()

    @staticmethod
    def _exit_failure(code: int, err: bytes) -> HookFailure:
        tail = err.decode(errors="replace").strip()[-200:]
        message = f"exited with {code}" + (f": {tail}" if tail else "")
        return HookFailure(message, f"exited with {code}")


async def _feed(proc: asyncio.subprocess.Process, event: HookEvent) -> None:
    assert proc.stdin is not None
    # a program that exits without reading its stdin is fine
    with contextlib.suppress(BrokenPipeError, ConnectionResetError):
        proc.stdin.write(event.to_json().encode() + b"\n")
        await proc.stdin.drain()
    with contextlib.suppress(BrokenPipeError, ConnectionResetError):
        proc.stdin.close()


async def _read_capped(stream: asyncio.StreamReader) -> bytes:
    """The first 64 KiB; the rest is read and dropped, so the program never blocks on it."""
    kept = bytearray()
    while chunk := await stream.read(65536):
        room = _OUTPUT_CAP - len(kept)
        if room > 0:
            kept += chunk[:room]
    return bytes(kept)


class PythonHook:
    """An object an installed package declares in the `decapod.hooks` entry point group:
    a function `hook(event: HookEvent)`, sync or async, returning None or {"block": reason};
    an `events` attribute (a list of event names) limits what it receives, and
    `fail_open = True` marks an advisory before_tool hook whose failures let the call run."""

    kind = "python"

    def __init__(self, name: str, target: str, fn: Callable[..., Any], timeout_s: float) -> None:
        self.name = name
        self.target = target
        self.fn = fn
        events = getattr(fn, "events", None)
        self.events = frozenset(HookEventName(e) for e in events) if events else ALL_EVENTS
        self.timeout_s = timeout_s
        # `is True`: only a deliberate opt-out, not any truthy value, lets calls through
        self.fail_open = getattr(fn, "fail_open", False) is True

    def describe(self) -> str:
        return self.target

    async def run(self, event: HookEvent) -> HookReply:
        # an object with an async __call__ counts as async too
        call = getattr(self.fn, "__call__", None)  # noqa: B004
        if inspect.iscoroutinefunction(self.fn) or inspect.iscoroutinefunction(call):
            answer = await self.fn(event)
        else:
            # a slow sync hook must not stall the gateway's loop
            answer = await asyncio.to_thread(self.fn, event)
        return HookReply(block_reason(answer) if event.name is HookEventName.BEFORE_TOOL else None)


@dataclass(frozen=True, slots=True)
class UnloadedHook:
    """A hook that could not be set up (its entry point fails to import, say)."""

    name: str
    kind: str
    target: str
    reason: str


class Hook(Protocol):
    """One hook, whatever runs it."""

    name: str
    kind: str  # command | python
    events: frozenset[HookEventName]
    timeout_s: float
    #: an advisory before_tool hook: when it fails, the call runs (a guard's failure blocks it)
    fail_open: bool

    def describe(self) -> str:
        """What runs: the command line, or the entry point's target."""
        ...

    async def run(self, event: HookEvent) -> HookReply:
        """Raises HookFailure (or anything) on failure; the bus times it out."""
        ...


def build_hooks(config: HooksConfig) -> tuple[list[Hook], list[UnloadedHook]]:
    """The hooks the config asks for and the installed packages declare; the ones in
    `disabled` are left out, the ones that cannot load are reported."""
    off = set(config.disabled)
    hooks: list[Hook] = [
        CommandHook(c, config.timeout_s) for c in config.commands if c.name not in off
    ]
    unloaded: list[UnloadedHook] = []
    if config.entry_points:
        names = {h.name for h in hooks}
        for ep in _entry_points():
            if ep.name in off:
                continue
            if ep.name in names:
                unloaded.append(UnloadedHook(ep.name, "python", ep.value, "name taken"))
                continue
            try:
                fn = ep.load()
                hook = PythonHook(ep.name, ep.value, fn, config.timeout_s)
            except Exception as exc:
                reason = f"{type(exc).__name__}: {exc}"[:300]
                log.warning("hook %s (%s) not loaded: %s", ep.name, ep.value, reason)
                unloaded.append(UnloadedHook(ep.name, "python", ep.value, reason))
                continue
            hooks.append(hook)
            names.add(ep.name)
    return hooks, unloaded


def _entry_points() -> Iterable[Any]:
    from importlib.metadata import entry_points

    return sorted(entry_points(group=ENTRY_POINT_GROUP), key=lambda ep: ep.name)
