"""An upload that fails part way leaves nothing behind: no file, and nothing counted against
the person's quota. Driven through a real aiohttp server on 127.0.0.1."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path

import aiohttp
import pytest
from aiohttp import BodyPartReader, web

from bot.webui.uploads import UploadStore
from tests.webui.conftest import serving

BOUNDARY = "decapodboundary"


@dataclass
class Server:
    store: UploadStore
    base: str
    failures: asyncio.Queue[BaseException] = field(default_factory=asyncio.Queue)


@pytest.fixture
async def server(tmp_path: Path) -> AsyncIterator[Server]:
    store = UploadStore(tmp_path / "uploads", max_bytes=1000, quota_bytes=100)
    store.start()
    srv = Server(store, "")

    async def upload(request: web.Request) -> web.Response:
        reader = await request.multipart()
        part = await reader.next()
        assert isinstance(part, BodyPartReader)
        try:
            saved = await store.save("ann", part)
        except BaseException as exc:
            srv.failures.put_nowait(exc)
            raise
        return web.Response(text=saved.id)

    app = web.Application()
    app.router.add_post("/upload", upload)
    async with serving(app) as port:
        srv.base = f"http://127.0.0.1:{port}"
        yield srv


async def _post(srv: Server, body: bytes) -> aiohttp.ClientResponse:
    form = aiohttp.FormData()
    form.add_field("file", body, filename="a.bin", content_type="application/octet-stream")
    async with aiohttp.ClientSession() as http, http.post(f"{srv.base}/upload", data=form) as r:
        await r.read()
        return r


async def test_a_first_upload_dropped_before_any_byte_keeps_its_own_error(
    server: Server,
) -> None:
    host, port = server.base.removeprefix("http://").split(":")
    _, writer = await asyncio.open_connection(host, int(port))
    head = (
        f"--{BOUNDARY}\r\n"
        'Content-Disposition: form-data; name="file"; filename="a.bin"\r\n'
        "Content-Type: application/octet-stream\r\n\r\n"
    ).encode()
    writer.write(
        b"POST /upload HTTP/1.1\r\nHost: x\r\n"
        + f"Content-Type: multipart/form-data; boundary={BOUNDARY}\r\n".encode()
        + b"Content-Length: 100000\r\n\r\n"
        + head
    )
    await writer.drain()
    await asyncio.sleep(0.2)  # the part's headers are read; its body never comes
    writer.close()
    failure = await asyncio.wait_for(server.failures.get(), 30)
    assert not isinstance(failure, KeyError), repr(failure)
    assert [p.name for p in server.store.root.iterdir()] == []
    # nothing was counted: the whole quota is still free
    assert (await _post(server, b"x" * 100)).status == 200


async def test_a_record_that_cannot_be_written_removes_the_file_and_its_count(
    server: Server, monkeypatch: pytest.MonkeyPatch
) -> None:
    def disk_full(*_: object, **__: object) -> None:
        raise OSError(28, "No space left on device")

    with monkeypatch.context() as patch:
        patch.setattr(json, "dump", disk_full)
        assert (await _post(server, b"x" * 80)).status == 500
    assert isinstance(await asyncio.wait_for(server.failures.get(), 30), OSError)
    assert [p.name for p in server.store.root.iterdir()] == []
    assert (await _post(server, b"y" * 80)).status == 200
