"""The few Docker Engine API calls the gateway makes at start, over the daemon's unix socket.

Choosing a sandbox at start needs the daemon's version and limits, the image, and the removal
of containers a crashed gateway left behind. The docker SDK (~0.1 s and ~6 MB of imports)
is not needed for that: it is loaded by the first command that runs in a container. Blocking
calls (http.client): they run on the backend's own thread pool.
"""

from __future__ import annotations

import http.client
import json
import os
import socket
from typing import Any
from urllib.parse import quote

DEFAULT_HOST = "unix:///var/run/docker.sock"


class DaemonError(Exception):
    """The daemon answered with an error status, or the connection failed."""

    def __init__(self, message: str, status: int = 0) -> None:
        super().__init__(message)
        self.status = status


def socket_path() -> str | None:
    """The daemon's unix socket from DOCKER_HOST; None for a tcp:// or ssh:// daemon."""
    host = os.environ.get("DOCKER_HOST", DEFAULT_HOST)
    return host.removeprefix("unix://") if host.startswith("unix://") else None


class _UnixConnection(http.client.HTTPConnection):
    def __init__(self, path: str, timeout: float) -> None:
        super().__init__("localhost", timeout=timeout)
        self._path = path

    def connect(self) -> None:
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        sock.settimeout(self.timeout)
        try:
            sock.connect(self._path)
        except OSError:
            sock.close()
            raise
        self.sock = sock


class DaemonApi:
    def __init__(self, path: str, timeout: float) -> None:
        self._path = path
        self._timeout = timeout

    def _call(self, method: str, target: str) -> Any:
        conn = _UnixConnection(self._path, self._timeout)
        try:
            conn.request(method, target)
            response = conn.getresponse()
            body = response.read()
        except OSError as exc:
            raise DaemonError(f"{self._path}: {exc.strerror or exc}") from None
        finally:
            conn.close()
        if response.status >= 400:
            try:
                message = str(json.loads(body).get("message", ""))
            except (ValueError, AttributeError):
                message = body.decode(errors="replace")[:200]
            raise DaemonError(f"{response.status} {message}".strip(), response.status)
        return json.loads(body) if body else None

    def version(self) -> dict[str, Any]:
        return dict(self._call("GET", "/version"))

    def info(self) -> dict[str, Any]:
        return dict(self._call("GET", "/info"))

    def has_image(self, image: str) -> bool:
        try:
            self._call("GET", f"/images/{quote(image, safe='')}/json")
        except DaemonError as exc:
            if exc.status == 404:
                return False
            raise
        return True

    def remove_labelled(self, labels: dict[str, str]) -> int:
        """Force-remove every container (running or not) with all of `labels`."""
        filters = json.dumps({"label": [f"{k}={v}" for k, v in labels.items()]})
        stale = self._call("GET", f"/containers/json?all=1&filters={quote(filters)}") or []
        for container in stale:
            try:
                self._call("DELETE", f"/containers/{container['Id']}?force=1")
            except DaemonError as exc:
                if exc.status != 404:  # gone meanwhile: what was wanted
                    raise
        return len(stale)
