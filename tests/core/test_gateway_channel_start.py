"""The gateway starts its channels at once (each start mostly waits on its platform); one
that fails to start is raised as itself, and the channels that did start are stopped."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from bot.errors import ChannelError
from bot.gateway import Gateway
from bot.providers.testing import ScriptedProvider
from channels import InboundSink
from tests.fakes.channel import RecordingChannel


class _Handshaking(RecordingChannel):
    """Its start waits (up to 5 s) for the other channel's start to begin."""

    def __init__(self, name: str, begun: asyncio.Event, other: asyncio.Event) -> None:
        super().__init__(name, console=True)
        self.begun, self.other = begun, other
        self.saw_other = False
        self.stopped = False

    async def start(self, sink: InboundSink) -> None:
        self.begun.set()
        try:
            await asyncio.wait_for(self.other.wait(), 5)
            self.saw_other = True
        except TimeoutError:
            pass
        await super().start(sink)

    async def stop(self) -> None:
        self.stopped = True
        await super().stop()


class _Refusing(RecordingChannel):
    async def start(self, sink: InboundSink) -> None:
        await asyncio.sleep(0.05)
        raise ChannelError("token rejected")


async def test_channels_start_at_once(make_config: Any) -> None:
    a_begun, b_begun = asyncio.Event(), asyncio.Event()
    a = _Handshaking("a", a_begun, b_begun)
    b = _Handshaking("b", b_begun, a_begun)
    async with Gateway(make_config(), provider=ScriptedProvider([]), channels={"a": a, "b": b}):
        assert a.saw_other and b.saw_other
    assert a.stopped and b.stopped


async def test_a_channel_that_fails_to_start_is_raised_and_the_others_stop(
    make_config: Any,
) -> None:
    started = _Handshaking("ok", asyncio.Event(), asyncio.Event())
    started.other.set()  # it starts at once
    gateway = Gateway(
        make_config(),
        provider=ScriptedProvider([]),
        channels={"ok": started, "bad": _Refusing("bad", console=True)},
    )
    with pytest.raises(ChannelError, match="token rejected"):
        await gateway.start()
    assert started.stopped
