"""A Docker Engine API stand-in on a unix socket: the calls a gateway makes at start."""

from __future__ import annotations

import json
from pathlib import Path

from aiohttp import web

PRESENT_IMAGE = "decapod/sandbox:test"


class FakeDockerDaemon:
    def __init__(self, socket_path: Path) -> None:
        self.socket_path = socket_path
        #: id -> labels of the containers it knows
        self.containers: dict[str, dict[str, str]] = {}
        self.requests: list[str] = []
        self._runner: web.AppRunner | None = None

    async def start(self) -> FakeDockerDaemon:
        app = web.Application()
        app.router.add_get("/version", self._version)
        app.router.add_get("/info", self._info)
        app.router.add_get("/images/{name}/json", self._image)
        app.router.add_get("/containers/json", self._list)
        app.router.add_delete("/containers/{id}", self._remove)
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        await web.UnixSite(self._runner, str(self.socket_path)).start()
        return self

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()

    async def _version(self, request: web.Request) -> web.Response:
        self.requests.append(request.path_qs)
        return web.json_response({"Version": "99.0-fake", "ApiVersion": "1.47"})

    async def _info(self, request: web.Request) -> web.Response:
        self.requests.append(request.path_qs)
        return web.json_response({"MemoryLimit": True, "PidsLimit": True, "CpuCfsQuota": True})

    async def _image(self, request: web.Request) -> web.Response:
        self.requests.append(request.path_qs)
        if request.match_info["name"] != PRESENT_IMAGE:
            return web.json_response({"message": "No such image"}, status=404)
        return web.json_response({"Id": "sha256:fake"})

    async def _list(self, request: web.Request) -> web.Response:
        self.requests.append(request.path_qs)
        wanted = json.loads(request.query.get("filters", "{}")).get("label", [])
        pairs = [label.split("=", 1) for label in wanted]
        found = [
            {"Id": cid}
            for cid, labels in self.containers.items()
            if all(labels.get(key) == value for key, value in pairs)
        ]
        return web.json_response(found)

    async def _remove(self, request: web.Request) -> web.Response:
        self.requests.append(request.path_qs)
        if self.containers.pop(request.match_info["id"], None) is None:
            return web.json_response({"message": "No such container"}, status=404)
        return web.Response(status=204)
