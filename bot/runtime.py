"""What a running gateway tells the command line of this machine: where its HTTP server
listens and a token for its admin routes (`decapod status`).

`decapod run` writes HOME/run/gateway.json (0600, in a 0700 folder) once it listens and
removes it at a clean stop; after a crash the file stays behind, and its URL simply answers
no more. The token is made fresh at each start (bot/security/http_auth.py).
"""

from __future__ import annotations

import json
import os
from dataclasses import asdict, dataclass
from pathlib import Path

RUNTIME_FILE = Path("run") / "gateway.json"


@dataclass(frozen=True, slots=True)
class GatewayRuntime:
    url: str
    token: str
    pid: int
    started_at: float


_WILDCARD_TO_LOOPBACK = {"": "127.0.0.1", "0.0.0.0": "127.0.0.1", "::": "::1"}


def local_url(host: str, port: int) -> str:
    """The address this machine reaches a server on: a wildcard bind is reached on loopback
    (of its own address family)."""
    host = _WILDCARD_TO_LOOPBACK.get(host, host)
    if ":" in host:
        host = f"[{host}]"
    return f"http://{host}:{port}"


def write_runtime(home: Path, runtime: GatewayRuntime) -> Path:
    from bot.security.files import PRIVATE_FILE, private_dirs

    path = home / RUNTIME_FILE
    private_dirs(path.parent)
    tmp = path.with_name(f".{path.name}.{os.getpid()}")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_NOFOLLOW, PRIVATE_FILE)
    with os.fdopen(fd, "w", encoding="utf-8") as out:
        os.fchmod(out.fileno(), PRIVATE_FILE)
        json.dump(asdict(runtime), out)
    os.replace(tmp, path)  # a reader never sees half a file
    return path


def read_runtime(home: Path) -> GatewayRuntime | None:
    """The last gateway's runtime file, or None when there is none (or it is unreadable:
    another user's home, such as a systemd service's)."""
    try:
        data = json.loads((home / RUNTIME_FILE).read_text(encoding="utf-8"))
        return GatewayRuntime(
            str(data["url"]), str(data["token"]), int(data["pid"]), float(data["started_at"])
        )
    except (OSError, ValueError, KeyError, TypeError):
        return None


def remove_runtime(home: Path, runtime: GatewayRuntime) -> None:
    """Remove the file if it is still this gateway's (a second gateway may have replaced it)."""
    current = read_runtime(home)
    if current is not None and current.token == runtime.token:
        (home / RUNTIME_FILE).unlink(missing_ok=True)
