"""`decapod hooks list`, and the hook lines of `decapod doctor`.

The breaker state comes from the file a running gateway keeps (`<home>/hooks-state.json`),
so a hook the gateway switched off shows as off here too.
"""

from __future__ import annotations

import argparse
import os
import shutil
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bot.hooks.bus import STATE_FILE, read_saved_state
from bot.hooks.config import HookEventName, HooksConfig
from bot.hooks.runners import CommandHook, build_hooks


@dataclass(frozen=True, slots=True)
class HookLine:
    name: str
    ok: bool
    detail: str


def add_subparsers(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    hooks = sub.add_parser("hooks", help="the configured and installed hooks")
    actions = hooks.add_subparsers(dest="hooks_command", metavar="ACTION", required=True)
    actions.add_parser("list", help="each hook, its events and its state")


def run(args: argparse.Namespace, config: Any) -> int:
    lines = hook_lines(config.hooks, config.home)
    if not lines:
        print("no hooks (add [[hooks.commands]], or hooks.entry_points = true for packages)")
    for line in lines:
        print(f"{'ok  ' if line.ok else 'FAIL'} {line.name:<20} {line.detail}")
    return 0


def hook_lines(config: HooksConfig, home: Path) -> list[HookLine]:
    hooks, unloaded = build_hooks(config)
    saved = read_saved_state(home / STATE_FILE)
    out = []
    for hook in hooks:
        events = ",".join(sorted(e.value for e in hook.events))
        detail = f"{hook.kind} {hook.describe()} [{events}]"
        if hook.fail_open and HookEventName.BEFORE_TOOL in hook.events:
            detail += " fail_open"  # its failures let tool calls run
        ok = True
        if isinstance(hook, CommandHook) and not _runnable(hook.argv[0]):
            ok, detail = False, f"{detail}: {hook.argv[0]} is not an executable program"
        state = saved.get(hook.name, {})
        off_until = float(state.get("off_until") or 0)
        if state.get("state") == "open" and off_until > time.time():
            ok = False
            until = time.strftime("%H:%M:%S", time.localtime(off_until))
            detail += f": off until {until} after failures ({state.get('last_error')})"
        out.append(HookLine(hook.name, ok, detail))
    for bad in unloaded:
        out.append(HookLine(bad.name, False, f"{bad.kind} {bad.target}: not loaded: {bad.reason}"))
    for name in config.disabled:
        out.append(HookLine(name, True, "disabled in config"))
    return out


def _runnable(program: str) -> bool:
    if "/" in program:
        return os.path.isfile(program) and os.access(program, os.X_OK)
    return shutil.which(program, path="/usr/local/bin:/usr/bin:/bin") is not None
