"""The receiver's side: starts the turn processes, hands each stored delivery to the one
that owns its session, serves their channel calls, and restarts one that dies.

Who writes what: the receiver inserts each inbound delivery (dedupe and store-then-ack stay
where the channels are); a turn process writes everything of the sessions it owns (turns,
delivery progress and status). SQLite in WAL mode serializes the writers of both processes
(each store's writer waits on the other's lock; the event loop never does).

A restarted turn process resumes its sessions' unfinished deliveries itself, as a start
does; deliveries handed to it meanwhile are held and sent after, minus those it resumed."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import socket
import sys
import time
import zlib
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping, Sequence
from typing import TYPE_CHECKING, Any, Protocol

from bot.errors import DecapodError
from bot.messages import FileChannel, InboundMessage, SentRef
from bot.scaleout.wire import ChannelShape, Hello, Wire, portable
from bot.tasks import cancel_and_wait

if TYPE_CHECKING:
    from bot.config import Config

log = logging.getLogger("decapod.scaleout")

#: what a turn process may ask of a channel (reply has its own stream)
CALLS = frozenset({"send", "send_file", "fetch", "on_denied"})
#: a turn process that dies within this many seconds of its start died "at once"; from the
#: second such death in a row, each start waits (twice as long each time, up to the most),
#: so that one that cannot stay up does not take a core starting again and again
QUICK_DEATH_S = 30.0
RESTART_FIRST_WAIT_S = 1.0
RESTART_MOST_WAIT_S = 60.0


class TurnProcessFailed(DecapodError):
    """A turn process exited before it was ever ready: started again, it would fail the
    same way, and the gateway would never be ready."""


def owner_of(session_key: str, count: int) -> int:
    """The turn process a session belongs to: the same in every process and every run
    (`hash()` of a str is salted per process)."""
    return zlib.crc32(session_key.encode()) % count


class Channel(FileChannel, Protocol):
    """What the receiver uses of a channels.Channel here (the rest is called by name)."""

    max_message_len: int
    operator_console: str | None

    async def reply(
        self, template: Any, deltas: AsyncIterator[str], progress: Any = None
    ) -> list[SentRef]: ...


class _Forward:
    """A reply's progress, told to the turn process that records it."""

    def __init__(self, wire: Wire, call: int) -> None:
        self._wire, self._call = wire, call

    async def shown(self, refs: Sequence[SentRef], upto: int) -> None:
        self._wire.send("shown", self._call, (list(refs), upto))


class _Child:
    def __init__(self, index: int) -> None:
        self.index = index
        self.proc: asyncio.subprocess.Process | None = None
        self.wire: Wire | None = None
        self.ready = False
        self.held: list[InboundMessage] = []
        self.streams: dict[int, asyncio.Queue[str | None]] = {}
        self.calls: set[asyncio.Task[None]] = set()
        self.serving: asyncio.Task[None] | None = None
        self.started = asyncio.Event()
        #: why it could not start (it exited before its first "ready")
        self.failed: TurnProcessFailed | None = None
        self.ever_ready = False
        self.spawned_at = 0.0
        #: deaths in a row, each within QUICK_DEATH_S of its start
        self.quick_deaths = 0


class TurnProcesses:
    def __init__(self, config: Config, channels: Mapping[str, Channel]) -> None:
        self._config = config
        self._channels = channels
        self._count = config.gateway.turn_processes
        self._children = [_Child(i) for i in range(self._count)]
        self._stopping = False
        #: turn processes started again after dying (for health and tests)
        self.restarts = 0
        #: how a restart waits (tests replace it to see the waits without waiting them)
        self.restart_sleep: Callable[[float], Awaitable[None]] = asyncio.sleep
        #: the receiver's own part when a turn process changed a /model choice
        self.choices_changed: Callable[[], None] = lambda: None

    async def start(self) -> None:
        for child in self._children:
            await self._spawn(child)
        # ready = each has resumed its share; what arrives meanwhile is held
        await asyncio.gather(*(c.started.wait() for c in self._children))
        for child in self._children:
            if child.failed is not None:
                raise child.failed

    async def accept(self, message: InboundMessage) -> None:
        """Hand a stored delivery to its session's turn process."""
        child = self._children[owner_of(message.session_key, self._count)]
        if child.ready and child.wire is not None:
            child.wire.send("accept", 0, message)
        else:
            child.held.append(message)

    def pids(self) -> list[int]:
        return [c.proc.pid for c in self._children if c.proc is not None]

    async def stop(self) -> None:
        """Each turn process drains (its turns finish and reply through the channels, which
        are still up) and exits; one that does not is killed."""
        self._stopping = True
        for child in self._children:
            if child.wire is not None:
                child.wire.send("stop", 0)
        grace = self._config.gateway.shutdown_grace_s + 10
        for child in self._children:
            if child.proc is None:
                continue
            try:
                async with asyncio.timeout(grace):
                    await child.proc.wait()
            except TimeoutError:
                log.warning("turn process %d did not stop; killed", child.index)
                with contextlib.suppress(ProcessLookupError):
                    child.proc.kill()
                await child.proc.wait()
        await cancel_and_wait(*(child.serving for child in self._children))

    # one turn process ----------------------------------------------------------------------
    async def _spawn(self, child: _Child) -> None:
        child.spawned_at = time.monotonic()
        ours, theirs = socket.socketpair()
        with theirs:
            child.proc = await asyncio.create_subprocess_exec(
                sys.executable,
                "-m",
                "bot.scaleout.child",
                str(theirs.fileno()),
                pass_fds=(theirs.fileno(),),
            )
        reader, writer = await asyncio.open_unix_connection(sock=ours)
        child.wire = Wire(reader, writer)
        shapes = tuple(
            ChannelShape(
                n, c.max_message_len, c.max_upload_bytes, c.sends_voice_notes, c.operator_console
            )
            for n, c in self._channels.items()
        )
        child.wire.send("hello", 0, Hello(self._config, child.index, self._count, shapes))
        child.serving = asyncio.create_task(self._serve(child), name=f"turns:{child.index}")

    async def _serve(self, child: _Child) -> None:
        wire = child.wire
        assert wire is not None
        while (frame := await wire.recv()) is not None:
            kind, call, payload = frame
            if kind == "ready":
                self._ready(child, set(payload))
            elif kind == "call":
                if payload[1] == "reply":
                    # its deltas follow at once, before the call's task first runs
                    child.streams[call] = asyncio.Queue()
                # with this run's link and streams: a call still running when the process
                # died must not touch those of the next run, whose call ids start again at 1
                run = (wire, child.streams)
                task = asyncio.create_task(self._call(*run, call, *payload))
                child.calls.add(task)
                task.add_done_callback(child.calls.discard)
            elif kind == "choices":
                self._tell_choices_changed(child)
            elif kind in ("delta", "end"):
                stream = child.streams.get(call)
                if stream is not None:  # else the reply ended on the channel's side
                    stream.put_nowait(payload if kind == "delta" else None)
        await self._lost(child)

    def _tell_choices_changed(self, changed_by: _Child) -> None:
        """Every other process drops the /model choices it read (a turn process that is not
        ready reads them afresh when it starts)."""
        self.choices_changed()
        for child in self._children:
            if child is not changed_by and child.wire is not None:
                child.wire.send("choices", 0)

    def _ready(self, child: _Child, resumed: set[tuple[str, str]]) -> None:
        assert child.wire is not None
        held, child.held = child.held, []
        for message in held:
            if (message.conversation.channel, message.id) not in resumed:
                child.wire.send("accept", 0, message)
        child.ready = child.ever_ready = True
        child.started.set()

    async def _call(
        self,
        wire: Wire,
        streams: dict[int, asyncio.Queue[str | None]],
        call: int,
        channel_name: str,
        method: str,
        *rest: Any,
    ) -> None:
        channel = self._channels[channel_name]
        try:
            if method == "reply":
                template, want_progress = rest
                queue = streams[call]
                progress = _Forward(wire, call) if want_progress else None
                result: Any = await channel.reply(template, _drain(queue), progress)
            elif method in CALLS:
                args, kwargs = rest
                result = await getattr(channel, method)(*args, **kwargs)
            else:
                raise ValueError(f"a turn process may not call {method!r}")
        except Exception as exc:  # the caller gets it as its own channel's error
            wire.send("result", call, (False, portable(exc)))
        else:
            wire.send("result", call, (True, result))
        finally:
            streams.pop(call, None)

    async def _lost(self, child: _Child) -> None:
        """The turn process's end of the link closed: it stopped or died."""
        child.ready = False
        child.started.clear()
        streams, child.streams = child.streams, {}
        for queue in streams.values():
            queue.put_nowait(None)  # its replies in flight end with what they had
        if child.proc is not None:
            code = await child.proc.wait()
        else:
            code = None
        if child.wire is not None:
            child.wire.close()
        if self._stopping:
            return
        if not child.ever_ready:
            child.failed = TurnProcessFailed(
                f"turn process {child.index} exited (code {code}) before it was ready; "
                "its error is in the log above"
            )
            child.started.set()  # the start waits for it: it fails now
            return
        quick = time.monotonic() - child.spawned_at < QUICK_DEATH_S
        child.quick_deaths = child.quick_deaths + 1 if quick else 0
        if child.quick_deaths > 1:
            wait = min(RESTART_FIRST_WAIT_S * 2 ** (child.quick_deaths - 2), RESTART_MOST_WAIT_S)
            log.error(
                "turn process %d exited (code %s), %d times in a row within %.0f s of its "
                "start; starting it again in %.0f s",
                child.index,
                code,
                child.quick_deaths,
                QUICK_DEATH_S,
                wait,
            )
            await self.restart_sleep(wait)
            if self._stopping:
                return
        else:
            log.error("turn process %d exited (code %s); starting it again", child.index, code)
        self.restarts += 1
        await self._spawn(child)


async def _drain(queue: asyncio.Queue[str | None]) -> AsyncIterator[str]:
    while (part := await queue.get()) is not None:
        yield part
