"""slack-bolt is not imported by the Slack adapter's start (it is most of what the adapter
costs a start): the start checks the token and opens Socket Mode with slack_sdk alone, and
Bolt loads with the first request it routes. Run in a fresh interpreter, since this test
process has imported everything."""

from __future__ import annotations

import asyncio
import json
import sys
from pathlib import Path

from tests.fakes.slack import FakeSlack

CHILD = """
import asyncio, json, sys
from pathlib import Path

from bot.channel_configs.slack import SlackChannelConfig
from channels.slack import SlackChannel


def loaded(package):
    return sorted(m for m in sys.modules if m.split(".")[0] == package)


async def main():
    handed_on = asyncio.Event()

    async def sink(message):
        print(json.dumps({"text": message.text, "bolt": loaded("slack_bolt")}), flush=True)
        handed_on.set()

    settings = SlackChannelConfig(type="slack", api_url=sys.argv[1])
    channel = SlackChannel("s", settings, Path(sys.argv[2]))
    await channel.start(sink)
    health = channel.health()
    started = {"running": health["running"], "receiving": health["receiving"]}
    print(json.dumps({**started, "bolt": loaded("slack_bolt")}), flush=True)
    channel.after_ready()  # as the gateway does once ready: Bolt imports in the background
    await asyncio.wait_for(handed_on.wait(), 60)
    await channel.stop()


asyncio.run(main())
"""


async def _line(proc: asyncio.subprocess.Process) -> dict[str, object]:
    assert proc.stdout is not None
    line = await asyncio.wait_for(proc.stdout.readline(), 60)
    assert line, "the adapter's process ended early"
    decoded: dict[str, object] = json.loads(line)
    return decoded


async def test_the_start_imports_no_bolt_and_the_first_event_loads_it(
    fake: FakeSlack, tmp_path: Path
) -> None:
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-c",
        CHILD,
        fake.api_url,
        str(tmp_path),
        stdout=asyncio.subprocess.PIPE,
    )
    try:
        started = await _line(proc)
        assert started["running"] is True and started["receiving"] is True
        await fake.wait_connected()
        assert started["bolt"] == []  # Socket Mode is open without it
        ack = await fake.socket_send("events_api", fake.event("dm_message", text="hello"))
        assert ack is not None and ack.payload is None
        handed_on = await _line(proc)
        assert handed_on["text"] == "hello"
        assert "slack_bolt.app.async_app" in handed_on["bolt"]  # type: ignore[operator]
        assert await asyncio.wait_for(proc.wait(), 60) == 0
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()
