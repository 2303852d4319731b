"""A turn process: a gateway without channels of its own. It runs the turns of the sessions
it owns (`owner_of`), and its channels are stand-ins that send through the receiver's. A
/model change it stores is told to the receiver, which tells the others ("choices").

    python -m bot.scaleout.child FD      (started by bot.scaleout.pool, never by hand)
"""

from __future__ import annotations

import asyncio
import itertools
import logging
import socket
import sys
from collections.abc import AsyncIterator, Sequence
from typing import Any

from bot.commands import CommandSpec
from bot.messages import Attachment, Conversation, InboundMessage, OutboundMessage, SentRef
from bot.scaleout.wire import ChannelShape, Hello, Wire
from bot.tasks import cancel_and_wait

log = logging.getLogger("decapod.scaleout")


class _Call:
    def __init__(self, progress: Any = None) -> None:
        self.result: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        self.progress = progress
        self.shown: list[asyncio.Task[None]] = []
        self.lock = asyncio.Lock()  # progress is recorded in the order it was told


class Link:
    """The calls this process has made to the receiver's channels, by id."""

    def __init__(self, wire: Wire) -> None:
        self.wire = wire
        self._ids = itertools.count(1)
        self.calls: dict[int, _Call] = {}

    def open(self, progress: Any = None) -> tuple[int, _Call]:
        call_id = next(self._ids)
        call = self.calls[call_id] = _Call(progress)
        return call_id, call

    async def result(self, call_id: int, call: _Call) -> Any:
        try:
            ok, value = await call.result
            if call.shown:
                await asyncio.gather(*call.shown)
        finally:
            self.calls.pop(call_id, None)
        if not ok:
            raise value
        return value

    def settle(self, call_id: int, payload: tuple[bool, Any]) -> None:
        call = self.calls.get(call_id)
        if call is not None and not call.result.done():
            call.result.set_result(payload)

    def tell_shown(self, call_id: int, refs: Sequence[SentRef], upto: int) -> None:
        call = self.calls.get(call_id)
        if call is None or call.progress is None:
            return

        async def record(progress: Any = call.progress, lock: asyncio.Lock = call.lock) -> None:
            async with lock:
                await progress.shown(refs, upto)

        call.shown.append(asyncio.create_task(record()))

    def lost(self) -> None:
        from bot.errors import ChannelError

        for call in self.calls.values():
            if not call.result.done():
                call.result.set_result((False, ChannelError("the receiver is gone")))


def _refused(call: _Call) -> bool:
    """The receiver's channel refused the reply (the chat is gone). A receiver that is gone
    is no refusal: the turn finishes, and its stored answer is sent by the next start."""
    from bot.errors import DeliveryRefused

    if not call.result.done():
        return False
    ok, value = call.result.result()
    return not ok and isinstance(value, DeliveryRefused)


class RemoteChannel:
    """A channels.Channel that is the receiver's channel of the same name."""

    def __init__(self, shape: ChannelShape, link: Link) -> None:
        self.name = shape.name
        self.max_message_len = shape.max_message_len
        self.max_upload_bytes = shape.max_upload_bytes
        self.sends_voice_notes = shape.sends_voice_notes
        self.operator_console = shape.operator_console
        self.commands: list[CommandSpec] = []
        self.publish_on_start = False  # the receiver's channel offers them
        self._link = link

    async def _ask(self, method: str, *args: Any, **kwargs: Any) -> Any:
        call_id, call = self._link.open()
        self._link.wire.send("call", call_id, (self.name, method, args, kwargs))
        return await self._link.result(call_id, call)

    def use_state(self, state: Any) -> None:
        return None  # the receiver's channel keeps its buttons and threads

    async def publish_commands(self, commands: list[CommandSpec]) -> None:
        self.commands = commands  # the receiver's channel offers them on the platform

    async def start(self, sink: Any) -> None:
        return None  # the receiver takes the platform's messages

    async def stop(self) -> None:
        return None

    async def send(self, message: OutboundMessage) -> SentRef:
        ref: SentRef = await self._ask("send", message)
        return ref

    async def reply(
        self, template: OutboundMessage, deltas: AsyncIterator[str], progress: Any = None
    ) -> list[SentRef]:
        call_id, call = self._link.open(progress)
        wire = self._link.wire
        wire.send("call", call_id, (self.name, "reply", template, progress is not None))
        try:
            async for part in deltas:
                if _refused(call):
                    # as in one process, the model is asked for no more of it, nor its tools
                    break
                wire.send("delta", call_id, part)
        finally:
            wire.send("end", call_id)
        refs: list[SentRef] = await self._link.result(call_id, call)
        return refs

    def health(self) -> dict[str, Any]:
        return {"running": True}

    async def send_file(
        self,
        conversation: Conversation,
        data: bytes,
        name: str,
        mime: str,
        *,
        kind: str = "document",
        caption: str = "",
    ) -> SentRef:
        ref: SentRef = await self._ask(
            "send_file", conversation, data, name, mime, kind=kind, caption=caption
        )
        return ref

    def http_routes(self) -> list[Any]:
        return []

    async def fetch(self, attachment: Attachment, max_bytes: int) -> bytes:
        data: bytes = await self._ask("fetch", attachment, max_bytes)
        return data

    async def on_denied(self, message: InboundMessage) -> None:
        await self._ask("on_denied", message)


async def serve(fd: int) -> None:
    from bot.gateway import Gateway
    from bot.heap import settle_after_start

    reader, writer = await asyncio.open_unix_connection(sock=socket.socket(fileno=fd))
    wire = Wire(reader, writer)
    first = await wire.recv()
    if first is None or first[0] != "hello":
        raise SystemExit("no hello from the receiver")
    hello: Hello = first[2]
    from bot.logging import setup_logging

    # to stderr, shared with the receiver: one process rotates the log file
    setup_logging(hello.config.logging.level, hello.config.logging.format, None)
    link = Link(wire)
    channels: dict[str, Any] = {s.name: RemoteChannel(s, link) for s in hello.channels}
    # the receiver serves HTTP (health, webhooks, the web UI) and delivers scheduled jobs
    config = hello.config.model_copy(
        update={"http": hello.config.http.model_copy(update={"enabled": False})}
    )
    gateway = Gateway(
        config, channels=channels, deliver_scheduled=False, share=(hello.index, hello.count)
    )

    async def choices_changed() -> None:
        wire.send("choices", 0)  # the receiver tells the other turn processes

    gateway.model_choices.on_change.append(choices_changed)
    stopping = asyncio.Event()
    reading = asyncio.create_task(_read(wire, link, gateway, stopping))
    try:
        await gateway.start()
        settle_after_start()
        wire.send("ready", 0, sorted(gateway.resumed_at_start))
        await stopping.wait()
    finally:
        await gateway.stop()
        await cancel_and_wait(reading)
        wire.close()


async def _read(wire: Wire, link: Link, gateway: Any, stopping: asyncio.Event) -> None:
    try:
        while (frame := await wire.recv()) is not None:
            kind, call_id, payload = frame
            if kind == "accept":
                await _accept(gateway, payload)
            elif kind == "result":
                link.settle(call_id, payload)
            elif kind == "shown":
                link.tell_shown(call_id, *payload)
            elif kind == "choices":
                gateway.model_choices.forget()  # another turn process changed a /model choice
            elif kind == "stop":
                stopping.set()
    except Exception:
        # a frame that cannot be read or handled must not leave a call waiting forever
        log.exception("turn process: reading from the receiver failed; stopping")
    link.lost()  # the receiver is gone: nothing can be sent; stop
    stopping.set()


async def _accept(gateway: Any, payload: Any) -> None:
    """Admit one stored message; its failure (a store refusal for a moment) is that message's
    alone: it stays stored for the next start, and the turns in flight here go on."""
    try:
        await gateway.accept_stored(payload)
    except Exception:
        log.exception("turn process: a stored message could not be taken in; it waits for a start")


def main() -> None:
    asyncio.run(serve(int(sys.argv[1])))


if __name__ == "__main__":
    main()
