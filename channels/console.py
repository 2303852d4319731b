"""The terminal channel (`decapod chat`): the same gateway core, no account anywhere.

The person at the terminal is the owner. Replies stream to the terminal as they arrive;
files the assistant sends are written to a folder (`<home>/outbox`) and their path printed.
`/attach PATH [text]` sends a local file (an image, a document, a voice recording) with the
text, or with the next message when no text follows.
"""

from __future__ import annotations

import asyncio
import contextlib
import getpass
import mimetypes
import shlex
import sys
import threading
import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any, TextIO

from bot.errors import ChannelError, DecapodError, DeliveryRefused
from bot.messages import (
    Attachment,
    Command,
    Conversation,
    ConversationKind,
    Identity,
    InboundMessage,
    OutboundMessage,
    SentRef,
)
from bot.tasks import cancel_and_wait
from channels import InboundSink, ReplyProgress
from channels.base import BaseChannel, FileUpload
from channels.oneshot import refuse_unusable_user


class ConsoleChannel(BaseChannel):
    type = "console"
    max_message_len = 1_000_000

    def __init__(
        self,
        name: str = "console",
        *,
        stdin: TextIO | None = None,
        stdout: TextIO | None = None,
        user: str | None = None,
        prompt: str = "you> ",
        reply_timeout_s: float = 300.0,
        files_dir: Path | None = None,
    ) -> None:
        super().__init__(name)
        #: its identities are `<name>:<user>`: the operator at this terminal
        self.operator_console = name
        self.stdin = stdin or sys.stdin
        self.stdout = stdout or sys.stdout
        self.user = user or getpass.getuser()
        refuse_unusable_user(f"{name}:{self.user}")
        self.prompt = prompt
        self.reply_timeout_s = reply_timeout_s
        #: where sent files are written; None: the home folder's outbox
        self.files_dir = files_dir
        self.conversation = Conversation(name, self.user, ConversationKind.DM)
        self.closed = asyncio.Event()
        self._answered = asyncio.Event()
        self._reader: asyncio.Task[None] | None = None
        #: files named by /attach, sent with the next message
        self._attached: list[Attachment] = []

    async def start(self, sink: InboundSink) -> None:
        await super().start(sink)
        self._reader = asyncio.create_task(self._read_loop(sink))

    async def stop(self) -> None:
        await cancel_and_wait(self._reader)
        await super().stop()

    def _start_reader_thread(self) -> asyncio.Queue[str]:
        """stdin is read on a daemon thread: a thread of the default executor blocked in
        readline() would keep the process from exiting after a signal."""
        lines: asyncio.Queue[str] = asyncio.Queue()
        loop = asyncio.get_running_loop()

        def pump() -> None:
            while True:
                line = self.stdin.readline()
                try:
                    loop.call_soon_threadsafe(lines.put_nowait, line)
                except RuntimeError:  # the loop has closed: nobody is listening any more
                    return
                if not line:
                    return

        threading.Thread(target=pump, name="decapod-console-stdin", daemon=True).start()
        return lines

    async def _read_loop(self, sink: InboundSink) -> None:
        lines = self._start_reader_thread()
        try:
            while True:
                self._write(self.prompt)
                line = await lines.get()
                if not line:
                    return
                text = line.rstrip("\n")
                if not text.strip():
                    continue
                if text.strip() in ("/exit", "/quit"):
                    return
                if text.split(maxsplit=1)[0] == "/attach":
                    text = self._attach(text)
                    if not text:
                        continue
                self._answered.clear()
                try:
                    await sink(self._inbound(text))
                except DecapodError as exc:
                    # not stored (a full or read-only disk): say so, and keep the chat open
                    self._write(f"bot> {exc.user_message}\n")
                    continue
                # asyncio.timeout: on 3.11 wait_for can drop the cancellation of stop()
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(self.reply_timeout_s):
                        await self._answered.wait()
        finally:
            self.closed.set()

    def _inbound(self, text: str) -> InboundMessage:
        parts, self._attached = tuple(self._attached), []
        return InboundMessage(
            id=uuid.uuid4().hex,
            identity=Identity(self.name, self.user, self.user),
            conversation=self.conversation,
            text=text,
            parts=parts,
            # a command with a file as on the platforms: the gateway has /ask read it and
            # any other command say it did not use it
            command=Command.parse(text),
        )

    def _attach(self, line: str) -> str:
        """Queue the file `/attach PATH [text]` names; the text to send now ("" for none)."""
        try:
            words = shlex.split(line)[1:]
        except ValueError as exc:
            self._write(f"bot> /attach: {exc}\n")
            return ""
        if not words:
            self._write('bot> usage: /attach PATH [text]   (quote a path with spaces: "a b.pdf")\n')
            return ""
        path = Path(words[0]).expanduser()
        if not path.is_file():
            self._write(f"bot> /attach: {path} is not a file\n")
            return ""
        mime = mimetypes.guess_type(path.name)[0] or ""
        kind = mime.split("/")[0] if mime.split("/")[0] in ("image", "audio") else "document"
        size = path.stat().st_size
        self._attached.append(Attachment(kind, str(path.resolve()), path.name, mime, size))
        rest = " ".join(words[1:])
        if not rest:
            self._write(f"bot> attached {path.name}; it goes with your next message\n")
        return rest

    async def fetch(self, attachment: Attachment, max_bytes: int) -> bytes:
        def read() -> bytes:
            with Path(attachment.ref).open("rb") as f:
                return f.read(max_bytes + 1)

        try:
            data = await asyncio.to_thread(read)
        except OSError as exc:
            raise ChannelError(f"cannot read {attachment.name}: {exc.strerror}") from None
        if len(data) > max_bytes:
            raise ChannelError(f"{attachment.name} is larger than {max_bytes:,} bytes")
        return data

    def _write(self, text: str) -> None:
        self.stdout.write(text)
        self.stdout.flush()

    async def _send_text(self, message: OutboundMessage, text: str) -> SentRef:
        self._write(f"bot> {text}\n")
        self._answered.set()
        return SentRef(message.conversation, uuid.uuid4().hex)

    async def _send_file(self, upload: FileUpload) -> SentRef:
        if self.files_dir is None:
            from bot.config import default_home

            self.files_dir = default_home() / "outbox"
        try:
            path = await asyncio.to_thread(_write_new, self.files_dir, upload.name, upload.data)
        except OSError as exc:
            raise DeliveryRefused("cannot write", f"cannot save {upload.name}: {exc}") from None
        caption = f" {upload.caption}" if upload.caption else ""
        self._write(f"bot> [{upload.kind}: {path}]{caption}\n")
        return SentRef(upload.conversation, str(path))

    async def reply(
        self,
        template: OutboundMessage,
        deltas: AsyncIterator[str],
        progress: ReplyProgress | None = None,
    ) -> list[SentRef]:
        refs = [SentRef(template.conversation, uuid.uuid4().hex)]
        started, written = False, 0
        async for delta in deltas:
            if not started:
                self._write("bot> ")
                started = True
            self._write(delta)
            written += len(delta)
            if progress is not None and delta:
                await progress.shown(refs, written)
        self._write("\n" if started else "bot> (no answer)\n")
        self._answered.set()
        return refs

    def health(self) -> dict[str, Any]:
        return {"type": self.type, "running": not self.closed.is_set()}


def _write_new(folder: Path, name: str, data: bytes) -> Path:
    """Write `data` under `folder` as `name`, or `name (2)`... when that exists: a file the
    person saved before is never replaced."""
    folder.mkdir(parents=True, exist_ok=True, mode=0o700)
    stem, suffix = Path(name).stem or "file", Path(name).suffix
    for n in range(1, 1000):
        path = folder / (f"{stem}{suffix}" if n == 1 else f"{stem} ({n}){suffix}")
        try:
            with path.open("xb") as out:
                out.write(data)
        except FileExistsError:
            continue
        return path
    raise FileExistsError(f"too many files named {name} in {folder}")


def create(name: str, channel_config: Any, config: Any) -> ConsoleChannel:
    return ConsoleChannel(name, files_dir=config.home / "outbox")
