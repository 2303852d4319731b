"""Runs inside nanobot's own environment: send N messages to a running `nanobot gateway`
through its WebSocket channel (token auth off in the throwaway config), time each reply, and
print one JSON line with the gateway's RSS.

    python nb_ws.py PORT GATEWAY_PID N

Adapted from the harness that produced nanobot's published figures.
"""

import asyncio
import json
import statistics
import sys
import time

import websockets

PORT = int(sys.argv[1])
PID = int(sys.argv[2])
N = int(sys.argv[3]) if len(sys.argv) > 3 else 20


def rss_mb(pid):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return -1.0


async def main():
    lat = []
    async with websockets.connect(f"ws://127.0.0.1:{PORT}/?client_id=bench") as ws:
        await asyncio.wait_for(ws.recv(), timeout=30)  # the ready event
        for i in range(N):
            s = time.perf_counter()
            await ws.send(json.dumps({"content": f"message {i}: say pong"}))
            while True:
                ev = json.loads(await asyncio.wait_for(ws.recv(), timeout=60))
                if ev.get("event") == "message" and ev.get("text"):
                    break
                if ev.get("event") == "stream_end":  # a streaming channel's last event
                    break
            lat.append((time.perf_counter() - s) * 1000)
    rest = lat[1:] or lat
    summary = {
        "n": N,
        "first_ms": round(lat[0], 2),
        "median_ms": round(statistics.median(rest), 2),
        "gateway_rss_mb": round(rss_mb(PID), 1),
    }
    print("SUMMARY " + json.dumps(summary), flush=True)


asyncio.run(main())
