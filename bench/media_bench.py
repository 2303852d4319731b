"""What an image message costs Decapod before the model is asked: the download over
loopback HTTP with the size cap (as the adapters download), the decode and downscale, the
JPEG encode, and the provider request body with the image as a data URL; and the peak RSS
of a process handling a 20 MB image.

    python -m bench.media_bench [--quick]

The image server runs in this process; the 20 MB image is handled in a child process of its
own, so the peak RSS counts only what handling it takes (plus the imports, reported apart).
The images are random pixels: the worst case for JPEG, so each is as heavy as its size says.
"""

from __future__ import annotations

import argparse
import asyncio
import io
import json
import random
import sys
import time
from typing import Any

from bench.common import median, pct

MB = 1024 * 1024


def photo(width: int, height: int, quality: int) -> bytes:
    from PIL import Image

    pixels = random.Random(width).randbytes(width * height * 3)
    out = io.BytesIO()
    Image.frombytes("RGB", (width, height), pixels).save(out, "JPEG", quality=quality)
    return out.getvalue()


def photo_of_at_least(size: int) -> bytes:
    width = 3600
    while True:
        data = photo(width, width * 3 // 4, 95)
        if len(data) >= size:
            return data
        width = int(width * 1.04)


async def download(session: Any, url: str, cap: int) -> bytes:
    """As channels/discord.py fetches from a CDN: streamed, refused past the cap."""
    data = bytearray()
    async with session.get(url) as response:
        response.raise_for_status()
        async for block in response.content.iter_chunked(64 * 1024):
            data += block
            if len(data) > cap:
                raise RuntimeError("over the cap")
    return bytes(data)


async def handle(session: Any, url: str) -> int:
    """One image message up to the request body: the body's size."""
    from bot.media.images import prepare_image
    from bot.providers.base import ChatMessage, ChatRequest
    from bot.providers.openai import to_openai_messages

    data = await download(session, url, 25 * MB)
    image, _ = await asyncio.to_thread(prepare_image, data, "photo.jpg", 1568)
    user = ChatMessage("user", "what is in this photo?", images=(image,))
    request = ChatRequest(model="m", messages=(user,))
    return len(json.dumps({"model": "m", "messages": to_openai_messages(request)}))


async def _serve(images: dict[str, bytes]) -> tuple[Any, int]:
    from aiohttp import web

    async def get(request: web.Request) -> web.Response:
        return web.Response(body=images[request.match_info["name"]], content_type="image/jpeg")

    app = web.Application()
    app.router.add_get("/{name}", get)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    return runner, runner.addresses[0][1]


async def _measure(samples: int) -> dict[str, Any]:
    import aiohttp

    typical = photo(4000, 3000, 75)
    big = photo_of_at_least(20 * MB)
    runner, port = await _serve({"typical.jpg": typical, "big.jpg": big})
    try:
        times: list[float] = []
        async with aiohttp.ClientSession() as session:
            body = await handle(session, f"http://127.0.0.1:{port}/typical.jpg")  # warm-up
            for _ in range(samples):
                started = time.perf_counter()
                await handle(session, f"http://127.0.0.1:{port}/typical.jpg")
                times.append((time.perf_counter() - started) * 1000)
        child = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "bench.media_bench", "--child",
            f"http://127.0.0.1:{port}/big.jpg",
            stdout=asyncio.subprocess.PIPE,
        )  # fmt: skip
        out, _ = await asyncio.wait_for(child.communicate(), 300)
        peak = json.loads(out.decode().strip().splitlines()[-1])
    finally:
        await runner.cleanup()
    return {
        "samples": samples,
        "image_bytes": len(typical),
        "body_bytes": body,
        "p50_ms": round(median(times), 1),
        "p95_ms": round(pct(times, 95), 1),
        "big_image_bytes": len(big),
        **peak,
    }


async def _child(url: str) -> dict[str, Any]:
    import aiohttp

    from bot.media import images  # noqa: F401  (the imports are not the image's cost)
    from bot.providers import openai  # noqa: F401

    before = _peak_rss_mb()
    started = time.perf_counter()
    async with aiohttp.ClientSession() as session:
        await handle(session, url)
    return {
        "big_ms": round((time.perf_counter() - started) * 1000, 1),
        "imports_peak_rss_mb": round(before, 1),
        "peak_rss_mb": round(_peak_rss_mb(), 1),
    }


def _peak_rss_mb() -> float:
    """VmHWM: the process's own high-water mark (getrusage's survives exec, so it would
    report the parent's)."""
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    return float("nan")


def run(quick: bool = False) -> dict[str, Any]:
    result = asyncio.run(_measure(5 if quick else 20))
    print(
        f"image message ({result['image_bytes'] / MB:.1f} MB 12 MP JPEG) up to the request "
        f"body: p50 {result['p50_ms']} ms (p95 {result['p95_ms']} ms); a "
        f"{result['big_image_bytes'] / MB:.0f} MB image: peak RSS {result['peak_rss_mb']} MB "
        f"({result['imports_peak_rss_mb']} MB after the imports), {result['big_ms']} ms"
    )
    return {"media": result}


def main() -> None:
    parser = argparse.ArgumentParser(description="image message overhead and peak RSS")
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--child", metavar="URL", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        print(json.dumps(asyncio.run(_child(args.child))))
        return
    print(json.dumps(run(args.quick), indent=2))


if __name__ == "__main__":
    main()
