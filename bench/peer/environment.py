"""nanobot-ai in a cached virtual environment of its own: created once, reused after."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

WANTED = "0.3.5"
PACKAGE = "nanobot-ai"
CACHE = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "decapod-bench"
INSTALL_TIMEOUT_S = 600


@dataclass(frozen=True, slots=True)
class PeerEnv:
    python: Path
    version: str
    #: packages that matter to the comparison, name -> version
    packages: dict[str, str]

    @property
    def bin(self) -> Path:
        return self.python.parent


class PeerUnavailable(Exception):
    """nanobot could not be installed or run; the message says why."""


def _base_python() -> str:
    """The interpreter this venv was made from (a venv of a venv would inherit nothing)."""
    base = Path(sys.base_prefix) / "bin" / f"python{sys.version_info[0]}.{sys.version_info[1]}"
    return str(base) if base.exists() else sys.executable


def _pip(python: Path, *args: str, timeout: float = INSTALL_TIMEOUT_S) -> str:
    cmd = [str(python), "-m", "pip", "--disable-pip-version-check", "-q", *args]
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout)
    if done.returncode != 0:
        lines = (done.stderr or done.stdout).strip().splitlines() or ["no output"]
        errors = [line for line in lines if line.startswith("ERROR")] or lines
        raise PeerUnavailable(f"pip {' '.join(args[:2])} failed: {errors[-1][:120]}")
    return done.stdout


def _installed(python: Path) -> dict[str, str]:
    out = subprocess.run(
        [str(python), "-m", "pip", "list", "--format=json", "--disable-pip-version-check"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    if out.returncode != 0:
        return {}
    return {p["name"].lower(): p["version"] for p in json.loads(out.stdout)}


def _packages(all_packages: dict[str, str]) -> dict[str, str]:
    keep = ("nanobot-ai", "openai", "httpx", "litellm", "pydantic", "websockets", "tiktoken")
    return {name: all_packages[name] for name in keep if name in all_packages}


def ensure_nanobot(log: bool = True) -> PeerEnv:
    """The cached environment, installing nanobot-ai (WANTED, else the newest) on first use."""
    root = CACHE / "nanobot-venv"
    python = root / "bin" / "python"
    marker = root / ".decapod-bench-ready"
    if marker.exists() and python.exists():
        packages = json.loads(marker.read_text())
        return PeerEnv(python, packages.get("nanobot-ai", "?"), _packages(packages))
    if root.exists():
        shutil.rmtree(root)  # a half-made environment from an interrupted run
    started = time.monotonic()
    if log:
        print(f"installing {PACKAGE} into {root} (once; later runs reuse it)...", flush=True)
    CACHE.mkdir(parents=True, exist_ok=True)
    try:
        subprocess.run(
            [_base_python(), "-m", "venv", str(root)], check=True, capture_output=True, timeout=120
        )
        try:
            _pip(python, "install", f"{PACKAGE}=={WANTED}", "websockets")
        except PeerUnavailable:
            _pip(python, "install", PACKAGE, "websockets")
    except (OSError, subprocess.SubprocessError, PeerUnavailable) as exc:
        shutil.rmtree(root, ignore_errors=True)
        if isinstance(exc, PeerUnavailable):
            raise
        raise PeerUnavailable(f"cannot create the environment: {exc}") from exc
    packages = _installed(python)
    if "nanobot-ai" not in packages:
        shutil.rmtree(root, ignore_errors=True)
        raise PeerUnavailable("nanobot-ai is not importable after the install")
    marker.write_text(json.dumps(packages))
    if log:
        print(
            f"installed {PACKAGE} {packages['nanobot-ai']} in {time.monotonic() - started:.0f} s",
            flush=True,
        )
    return PeerEnv(python, packages["nanobot-ai"], _packages(packages))


if __name__ == "__main__":
    env = ensure_nanobot()
    print(env)
