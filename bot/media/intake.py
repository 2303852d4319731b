"""What came with a message, made into what the model gets: images as pixels (or a vision
model's description of them), documents as text (also saved in the session's workspace under
`inbox/`), voice notes as their transcript. Each attachment that cannot be used becomes one
line for the person; the rest of the message is still answered.

Bytes are fetched through the channel's authenticated download with a size cap and are
never logged. Only the current turn carries an image's pixels: the history keeps the line
that names it (and a description, when one was made), so a later turn costs no upload.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import re
import stat
import time
from dataclasses import dataclass, field
from pathlib import PurePosixPath
from typing import TYPE_CHECKING, Protocol

from bot.errors import ChannelError, DecapodError, ToolError
from bot.media import documents
from bot.media.errors import IntakeStopped, MediaProblem
from bot.media.images import prepare_image
from bot.media.outside import OUTSIDE_CONTENT
from bot.media.transcribe import HOW_TO_ENABLE, Transcriber
from bot.media.vision import describe, takes_images
from bot.messages import Attachment, InboundMessage, size_text
from bot.providers.base import ChatMessage, ImagePart
from bot.tasks import cancel_and_wait

if TYPE_CHECKING:
    import os
    from collections.abc import Callable

    from bot.config import Config
    from bot.deps import SandboxDeps
    from bot.providers.base import Provider
    from bot.providers.build import ProviderSet
    from bot.sandbox.safe_fs import WorkspaceFS

log = logging.getLogger("decapod.media")

INBOX = "inbox"
_UNSAFE = re.compile(r"[^A-Za-z0-9._ -]+")
#: the longest file name the inbox keeps
_NAME_CHARS = 120
#: how many files of one name the inbox keeps ("name (2).ext" up to this)
_MAX_COPIES = 100


class Fetcher(Protocol):
    """The part of a channel the intake uses: its authenticated, size-capped download."""

    async def fetch(self, attachment: Attachment, max_bytes: int) -> bytes: ...


@dataclass(slots=True)
class Intake:
    """One message's attachments, ready for the turn."""

    #: lines that name each attachment, and a document's text, appended to the user message
    text: str = ""
    #: what a voice note said: the person's words, in the order they were sent
    spoken: list[str] = field(default_factory=list)
    images: list[ImagePart] = field(default_factory=list)
    #: one line each, said to the person before the answer
    problems: list[str] = field(default_factory=list)
    #: text from a file (or from an image, through a vision model) is outside content
    untrusted: bool = False
    #: the model that answers first takes pixels; otherwise the vision chain describes them
    sees_images: bool = False

    def notes(self) -> list[str]:
        """What the person is told before the answer: the problems, one line each, then one
        quoted line of what their voice notes were heard to say."""
        notes = ["\n".join(self.problems)] if self.problems else []
        if self.spoken:
            heard = " ".join(self.spoken)
            short = heard if len(heard) <= 200 else heard[:199].rstrip() + "…"
            notes.append(f'🎤 "{short}"')
        return notes

    def user_message(self, text: str) -> ChatMessage | None:
        """The person's text, then the words of their voice notes, then what names (and
        holds) each attachment; None when there is nothing to answer."""
        said = "\n".join(t for t in (text, *self.spoken) if t.strip())
        if not said.strip() and not self.text and not self.images:
            return None
        return ChatMessage("user", said + self.text, images=tuple(self.images))


@dataclass(frozen=True, slots=True)
class _Reading:
    """What reading one message's attachments goes by, built once per message."""

    message: InboundMessage
    channel: Fetcher
    sandbox: SandboxDeps | None
    redact: Callable[[str], str]
    #: the per-channel size cap of one attachment
    cap: int
    intake: Intake
    #: the step each attachment reached, in order
    steps: list[str]


class MediaIntake:
    def __init__(
        self,
        config: Config,
        transcriber: Transcriber,
        vision: Provider | None,
    ) -> None:
        self.config = config
        self.media = config.media
        self.transcriber = transcriber
        self.vision = vision
        self._told_blind: set[str] = set()
        self._stopping = asyncio.Event()

    async def take(
        self,
        message: InboundMessage,
        channel: Fetcher,
        sandbox: SandboxDeps | None,
        redact: Callable[[str], str],
        model: str,
    ) -> Intake:
        """`model` is the one that answers first (the person's /model pick, or the chain's
        first): it decides whether pixels are sent. A fallback that cannot see, handed pixels
        during an outage, refuses the request and the chain moves on.

        All of it takes at most `[media] intake_timeout_s`: what was not read by then gets
        one line each (the download or the transcription that did not finish in time), and
        the rest of the message is answered. IntakeStopped when the gateway stops meanwhile."""
        intake = Intake(sees_images=takes_images(model, self.media.vision_models))
        if self._stopping.is_set():
            raise IntakeStopped("the gateway is stopping")
        cap = self.media.max_bytes_for(message.conversation.channel)
        reading = _Reading(message, channel, sandbox, redact, cap, intake, steps=[])
        work = asyncio.ensure_future(self._parts(reading))
        stopping = asyncio.ensure_future(self._stopping.wait())
        try:
            await asyncio.wait(
                (work, stopping),
                timeout=self.media.intake_timeout_s,
                return_when=asyncio.FIRST_COMPLETED,
            )
        finally:
            stopping.cancel()
            if not work.done():
                await cancel_and_wait(work)
        if not work.cancelled():
            work.result()
            return intake
        if self._stopping.is_set():
            raise IntakeStopped("the gateway stopped while attachments were read")
        limit = _duration(self.media.intake_timeout_s)
        steps = reading.steps
        for i, part in enumerate(message.parts):
            step = steps[i] if i < len(steps) else "wait"
            if step != "done":
                log.warning("attachment %s not read in %s (at: %s)", part.kind, limit, step)
                intake.problems.append(_too_late(_display_name(part), step, limit))
        return intake

    def stop_taking(self) -> None:
        """The gateway stops: what is being read is abandoned (its turns stay pending for
        the next start) instead of holding the stop up for as long as a download takes."""
        self._stopping.set()

    async def _parts(self, reading: _Reading) -> None:
        intake, steps = reading.intake, reading.steps
        for part in reading.message.parts:
            started = time.perf_counter()
            name = _display_name(part)
            steps.append("download")
            try:
                await self._one(reading, part, name)
            except MediaProblem as exc:
                intake.problems.append(exc.user_message)
            except ChannelError as exc:
                intake.problems.append(f"I could not download {name}: {_one_line(str(exc))}")
            except Exception:
                # a bug here must cost one attachment, not the turn (the text is still answered)
                log.exception("attachment %s could not be handled", part.kind)
                intake.problems.append(f"I could not use {name}: something went wrong on my side")
            steps[-1] = "done"
            log.info(
                "attachment %s (%s, %s bytes) handled in %.0f ms",
                part.kind,
                part.mime or "?",
                part.size if part.size is not None else "?",
                (time.perf_counter() - started) * 1000,
            )

    async def _one(self, reading: _Reading, part: Attachment, name: str) -> None:
        cap, intake, redact = reading.cap, reading.intake, reading.redact
        kind = kind_of(part)
        if kind is None:
            what = part.mime or PurePosixPath(name).suffix or "this kind of"
            raise MediaProblem(
                f"I can't open {name}: I don't read {what} files "
                "(I take images, PDFs, text files and voice notes)"
            )
        if kind == "audio" and not self.transcriber.configured:
            raise MediaProblem(HOW_TO_ENABLE)  # before the download: nothing could use it
        if part.size is not None and part.size > cap:
            raise MediaProblem(
                f"{name} is {size_text(part.size)}; I take files up to {size_text(cap)}"
            )
        data = await reading.channel.fetch(part, cap)
        reading.steps[-1] = "transcribe" if kind == "audio" else "read"
        if kind == "image":
            await self._image(reading, data, name)
        elif kind == "audio":
            heard = await self.transcriber.transcribe(data, name, part.mime)
            if not heard:
                raise MediaProblem(f"I heard no words in {name}")
            intake.spoken.append(redact(heard))
        else:
            text = await asyncio.to_thread(
                documents.extract_text, data, name, part.mime, self.media.document_max_chars
            )
            where = await _save(reading.sandbox, reading.message, name, data)
            intake.untrusted = True
            intake.text += (
                f"\n[document {name}{where}; its text follows, {OUTSIDE_CONTENT}]"
                f"\n<<<\n{redact(text)}\n>>>"
            )

    async def _image(self, reading: _Reading, data: bytes, name: str) -> None:
        message, redact, intake = reading.message, reading.redact, reading.intake
        max_side = self.media.image_max_side
        image, (width, height) = await asyncio.to_thread(prepare_image, data, name, max_side)
        if intake.sees_images:
            intake.images.append(image)
            intake.text += f"\n[image {name}, {width}×{height}: shown with this message]"
            return
        if self.vision is None:
            intake.text += f"\n[image {name}: not shown; no model here can see images]"
            if message.session_key not in self._told_blind:
                self._told_blind.add(message.session_key)
                raise MediaProblem(
                    "I can't see images: my model does not take them and no vision model is "
                    "set up ([models] vision in config.toml)."
                )
            return
        try:
            seen = await describe(self.vision, image, message.text)
        except DecapodError as exc:
            log.warning("the vision chain could not describe %s: %s", name, exc)
            raise MediaProblem(f"I could not look at {name}: the vision model failed") from None
        intake.untrusted = True
        intake.text += (
            f"\n[image {name}, as a vision model describes it ({OUTSIDE_CONTENT}): {redact(seen)}]"
        )

    async def aclose(self) -> None:
        await self.transcriber.aclose()


def kind_of(part: Attachment) -> str | None:
    """image | audio | document, or None for what is not read (video, archives, binaries)."""
    mime = part.mime.lower()
    name = part.name or ""
    if mime == "image/svg+xml":
        return "document"
    if part.kind == "image" or mime.startswith("image/"):
        return "image"
    if part.kind in ("voice", "audio") or mime.startswith("audio/"):
        return "audio"
    if part.kind == "video" or mime.startswith("video/"):
        return None
    return "document" if documents.is_document(name, mime) else None


def inbox_name(name: str, copy: int = 1) -> str:
    """A file name safe in the workspace: no folders, no leading dot, plain characters;
    the `copy`th file of that name (2 and on) gets " (2)" before its extension."""
    base = _UNSAFE.sub("_", PurePosixPath(name.replace("\\", "/")).name).strip(" .")
    base = base[:_NAME_CHARS] or "file"
    if copy == 1:
        return base
    stem, dot, ext = base.rpartition(".")
    # no extension, or a long one that is more likely a part of the name
    stem, ext = (stem, dot + ext) if stem and len(ext) < 16 else (base, "")
    mark = f" ({copy})"
    # the name is cut, never the mark: a cut mark would make the copy's name the first's
    return stem[: _NAME_CHARS - len(mark) - len(ext)] + mark + ext


def save_in_inbox(fs: WorkspaceFS, name: str, data: bytes) -> str:
    """Save `data` in the inbox; the path it has there. Under its name, or "name (2).ext" and
    on when the name holds something else: a file of other bytes (two PDFs both named
    "report.pdf"), a folder, a symlink, a file that cannot be read. A file with the same bytes
    is the same attachment read again (the turn run once more): kept as it is, not written.
    The name is taken as it is written (`create`): a save left running by an intake that
    gave up cannot land on the name a later one picked."""
    for copy in range(1, _MAX_COPIES + 1):
        path = f"{INBOX}/{inbox_name(name, copy)}"
        held = fs.entry(path)
        if held is None:
            if fs.create(path, data):
                return path
            # taken since it was looked at: by the same attachment, it is this file
            held = fs.entry(path)
        if held is not None and _holds(fs, path, held, data):
            return path
    raise ToolError(f"{_MAX_COPIES} files named {inbox_name(name)} are in the inbox already")


def _holds(fs: WorkspaceFS, path: str, held: os.stat_result, data: bytes) -> bool:
    """Whether the file at `path` holds `data`; sizes first: the bytes are read only when
    they could be the same."""
    if not stat.S_ISREG(held.st_mode) or held.st_size != len(data):
        return False
    try:
        return fs.read(path, 0, len(data) + 1) == (data, len(data))
    except ToolError:  # not readable (or replaced meanwhile): not this file
        return False


async def _save(
    sandbox: SandboxDeps | None, message: InboundMessage, name: str, data: bytes
) -> str:
    """Where the file is now in the workspace, as the model should read it ("" if nowhere)."""
    if sandbox is None:
        return ""
    from bot.sandbox.tools import session_workspace_fs

    try:
        fs = session_workspace_fs(sandbox.workspaces, sandbox.config, message.session_key)
        path = await asyncio.to_thread(save_in_inbox, fs, name, data)
    except OSError as exc:
        # a full disk costs the copy, not the text that was read; str() of the error can
        # carry the host path of the workspace, its reason cannot
        return _not_saved(name, exc.strerror or "could not write the file")
    except DecapodError as exc:  # a broken workspace, a file over the size limit
        return _not_saved(name, str(exc))
    return f", saved as /work/{path}"


def _not_saved(name: str, why: str) -> str:
    log.warning("could not save %s in the workspace: %s", name, why)
    return " (not saved in the workspace: " + _one_line(why) + ")"


def _display_name(part: Attachment) -> str:
    if part.name:
        return part.name
    return {"voice": "the voice note", "image": "the image"}.get(part.kind, "the file")


#: what the intake was doing with an attachment when its deadline passed, as the person is told
_LATE = {
    "download": "I could not download {name} in time",
    "transcribe": "I could not transcribe {name} in time",
    "read": "I could not read {name} in time",
    "wait": "I did not get to {name} in time",
}


def _too_late(name: str, step: str, limit: str) -> str:
    """The line for an attachment the intake's deadline cut short, by the step it was at."""
    again = "please send it again or type it" if step == "transcribe" else "please send it again"
    return _LATE[step].format(name=name) + f" (I gave up after {limit}); {again}"


def _duration(seconds: float) -> str:
    if seconds >= 60 and seconds % 60 == 0:
        minutes = int(seconds // 60)
        return f"{minutes} minute" + ("s" if minutes > 1 else "")
    return f"{seconds:g} second" + ("" if seconds == 1 else "s")


def _one_line(text: str) -> str:
    return " ".join(text.split())[:300]


async def start_media(
    config: Config, providers: ProviderSet | None, stack: contextlib.AsyncExitStack
) -> MediaIntake:
    """The gateway's intake: the transcription chain (keys checked now: a missing one is a
    start-up error) and the vision chain, when configured."""
    transcriber = Transcriber(config.transcription, config.providers)
    vision = None
    if config.models.vision and providers is not None:
        vision = providers.for_purpose("vision")
    intake = MediaIntake(config, transcriber, vision)
    stack.push_async_callback(intake.aclose)
    return intake
