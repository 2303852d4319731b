"""`decapod sandbox ls | rm | prune`: look after the per-session workspaces."""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

from bot.sandbox.config import SandboxConfig
from bot.sandbox.workspace import WorkspaceManager

_DAY_S = 86400.0


def add_subparsers(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = sub.add_parser("sandbox", help="list and remove per-session sandbox workspaces")
    commands = parser.add_subparsers(dest="sandbox_command", required=True)
    ls = commands.add_parser("ls", help="list workspaces")
    ls.add_argument("--json", action="store_true", help="one JSON object per line")
    rm = commands.add_parser("rm", help="remove one workspace")
    rm.add_argument("key", help="a session key, a workspace hash, or a unique hash prefix")
    prune = commands.add_parser("prune", help="remove workspaces not used for a while")
    prune.add_argument(
        "--max-age-days",
        type=float,
        default=SandboxConfig().workspace_max_age_days,
        help="remove workspaces unused for longer than this (default: %(default)s)",
    )


def run(args: argparse.Namespace, home: Path) -> int:
    # Listing and removing need no uid: ownership only matters when creating.
    manager = WorkspaceManager(home / "sandboxes")
    if args.sandbox_command == "ls":
        return _ls(manager, as_json=args.json)
    if args.sandbox_command == "rm":
        if manager.rm(args.key):
            print(f"removed workspace for {args.key}")
            return 0
        print(f"no workspace matches {args.key!r} (see `decapod sandbox ls`)")
        return 1
    removed = manager.prune(args.max_age_days * _DAY_S)
    for w in removed:
        print(f"removed {w.hash}  {w.session_key or '(no metadata)'}")
    print(f"{len(removed)} workspace(s) removed")
    return 0


def _ls(manager: WorkspaceManager, *, as_json: bool) -> int:
    workspaces = manager.ls()
    if as_json:
        for w in workspaces:
            record = {
                "hash": w.hash,
                "session_key": w.session_key,
                "created": w.created,
                "last_used": w.last_used,
                "size_bytes": w.size_bytes,
                "path": str(w.path),
            }
            print(json.dumps(record))
        return 0
    if not workspaces:
        print("no sandbox workspaces")
        return 0
    now = time.time()
    print(f"{'HASH':<32}  {'SIZE':>9}  {'IDLE':>6}  SESSION")
    for w in workspaces:
        idle = _age(now - w.last_used)
        size = _size(w.size_bytes)
        print(f"{w.hash:<32}  {size:>9}  {idle:>6}  {w.session_key or '(no metadata)'}")
    return 0


def _age(seconds: float) -> str:
    for unit, span in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds >= span:
            return f"{seconds / span:.0f}{unit}"
    return f"{max(seconds, 0):.0f}s"


def _size(n: int) -> str:
    value = float(n)
    for unit in ("B", "KiB", "MiB"):
        if value < 1024:
            return f"{value:.0f} {unit}"
        value /= 1024
    return f"{value:.1f} GiB"
