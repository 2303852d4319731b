"""The web chat channel: the browser page of the web UI, in the same session model as every
other channel (the gateway stores, dedupes and access-checks its deliveries like any other).

The web UI's WebSocket handler authenticates the person and calls `submit`; answers stream to
every open page of that person as `delta` events with their character offset (one at 0
replaces what the page holds for that answer), and are kept
(bounded) so a page that lost its socket gets exactly what it missed when it comes back:
`attach(after, have)` replays from the offsets it already has. A message the page sends again
after a reconnect carries the same client id, which is the delivery id: the gateway drops it.
"""

from __future__ import annotations

import asyncio
import itertools
import uuid
from collections import OrderedDict
from collections.abc import AsyncIterator, Callable, Coroutine
from dataclasses import dataclass
from typing import Any, Protocol

from bot.errors import ChannelError
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
from channels import ReplyProgress
from channels.base import BaseChannel

#: answers kept for replay; older finished ones are in the session history
KEEP_ANSWERS = 500

Event = dict[str, Any]


class WebOutbox(Protocol):
    """Where a message sent outside a turn (a reminder, a notice) is kept, so a page opened
    later shows it in the history: turns are in the session, these are not."""

    async def remember(self, chat_id: str, text: str, answer_id: str) -> None: ...


class WebUploads(Protocol):
    """Where the files uploaded from the chat page are kept (bot/webui/uploads.py)."""

    async def read(self, attachment: Attachment, max_bytes: int) -> bytes: ...


@dataclass(slots=True)
class _Answer:
    id: str
    chat_id: str
    reply_to: str
    seq: int
    text: str = ""
    done: bool = False


class WebChannel(BaseChannel):
    type = "web"
    max_message_len = 1_000_000

    def __init__(self, name: str = "web") -> None:
        super().__init__(name)
        self._answers: OrderedDict[str, _Answer] = OrderedDict()
        self._listeners: dict[str, set[asyncio.Queue[Event]]] = {}
        # answers are numbered per process, and a page says which process its number is
        # from: one from another (a page open across a restart) has seen none of this
        # process's answers, whatever the clocks of the two say
        self.process_id = uuid.uuid4().hex
        self.last_seq = 0
        self._seq = itertools.count(1)
        #: set by the web UI at start
        self.outbox: WebOutbox | None = None
        self.uploads: WebUploads | None = None
        #: replicas on one database: a finished answer is handed here, to reach the pages
        #: open on the other replicas (bot/cluster/web_answers.py)
        self.relay: Callable[[Event], Coroutine[Any, Any, None]] | None = None
        #: announcements under way: a turn does not wait for them (up to the store's
        #: reconnect wait when PostgreSQL is out of reach); kept until done, ended at stop
        self._relays: set[asyncio.Task[None]] = set()

    # the web UI's side ----------------------------------------------------------------------
    async def submit(
        self,
        user_id: str,
        display_name: str,
        client_id: str,
        text: str,
        parts: tuple[Attachment, ...] = (),
    ) -> None:
        """Hand a message to the gateway; returns once it is stored (or was seen before)."""
        if self.sink is None:
            raise ChannelError("the web chat is not running")
        conversation = Conversation(self.name, user_id, ConversationKind.DM)
        await self.sink(
            InboundMessage(
                id=f"{user_id}:{client_id}",
                identity=Identity(self.name, user_id, display_name),
                conversation=conversation,
                text=text,
                parts=parts,
                command=Command.parse(text),
                platform_message_id=client_id,
            )
        )

    def resume_after(self, after: int | None, process: str | None) -> int | None:
        """The number a page's `after` stands for here: of another process, of none (a page
        loaded before numbers were per process sends a time and no process) or past this
        process's last number, it is before all of this process's answers."""
        if after is None:
            return None
        if process != self.process_id or not 0 <= after <= self.last_seq:
            return 0
        return after

    def attach(
        self, user_id: str, after: int | None, have: dict[str, int], process: str | None = None
    ) -> tuple[asyncio.Queue[Event], list[Event]]:
        """Subscribe a page to its person's answers. Returns its queue and what it missed:
        the rest of the answers it has (from the offsets in `have`), the whole of those it
        never saw that came after `after` (its first connection), and, for a fresh page
        (`after` None), the answers still being written. An `after` of another `process`
        (a page open across a restart) is before all of this one's answers. Atomic: nothing
        can slip between the replay and the subscription."""
        after = self.resume_after(after, process)
        queue: asyncio.Queue[Event] = asyncio.Queue()
        replay: list[Event] = []
        for answer in self._answers.values():
            if answer.chat_id != user_id:
                continue
            if answer.id in have:
                start = have[answer.id]
            elif (after is None and not answer.done) or (after is not None and answer.seq > after):
                start = 0
            else:
                continue
            if start < len(answer.text):
                replay.append(_delta(answer, start, answer.text[start:]))
            if answer.done:
                replay.append(_done(answer))
        self._listeners.setdefault(user_id, set()).add(queue)
        return queue, replay

    def detach(self, user_id: str, queue: asyncio.Queue[Event]) -> None:
        listeners = self._listeners.get(user_id)
        if listeners is not None:
            listeners.discard(queue)
            if not listeners:
                del self._listeners[user_id]

    def listening(self) -> list[str]:
        """The people with a page open on this process."""
        return list(self._listeners)

    def holds(self, answer_id: str) -> bool:
        """Whether this process has a copy of the answer (whole, cut off or streaming)."""
        return answer_id in self._answers

    def publish(self, user_id: str, event: Event) -> None:
        for queue in self._listeners.get(user_id, ()):
            queue.put_nowait(event)

    def relayed(self, answer: Event) -> None:
        """An answer finished on another replica (`relay`'s argument there): to this
        process's pages of its person as one delta and its end, and kept for their replay.
        One already here whole (a repeat) is left as it is; the start of it (a copy cut
        off) gets its rest, and any other copy is replaced by this whole one."""
        answer_id, chat_id, text = str(answer["id"]), str(answer["chat"]), str(answer["text"])
        held = self._answers.get(answer_id)
        if held is not None and held.done and held.text == text:
            return
        if held is None or not text.startswith(held.text):
            self._answers.pop(answer_id, None)
            held = self._keep(_Answer(answer_id, chat_id, str(answer["re"]), 0))
        if len(text) > len(held.text):
            self._append(held, text[len(held.text) :])
        self._finish(held)

    # the gateway's side ---------------------------------------------------------------------
    async def fetch(self, attachment: Attachment, max_bytes: int) -> bytes:
        if self.uploads is None:
            raise ChannelError("the web chat keeps no uploads")
        return await self.uploads.read(attachment, max_bytes)

    async def _send_text(self, message: OutboundMessage, text: str) -> SentRef:
        answer_id = self._answer_id(message)
        if not message.reply_to and self.outbox is not None:
            # kept with its id: a page that shows it from the history does not take it again
            await self.outbox.remember(message.conversation.chat_id, text, answer_id)
        answer = self._new_answer(message, answer_id)
        self._append(answer, text)
        self._finish(answer)
        self._relay(answer)
        return SentRef(message.conversation, answer.id)

    async def reply(
        self,
        template: OutboundMessage,
        deltas: AsyncIterator[str],
        progress: ReplyProgress | None = None,
    ) -> list[SentRef]:
        answer = self._new_answer(template, self._answer_id(template))
        refs = [SentRef(template.conversation, answer.id)]
        try:
            async for delta in deltas:
                if delta:
                    self._append(answer, delta)
                    if progress is not None:
                        await progress.shown(refs, len(answer.text))
        finally:
            self._finish(answer)
        self._relay(answer)
        return refs

    def _relay(self, answer: _Answer) -> None:
        if self.relay is not None and answer.text:
            said = {"id": answer.id, "chat": answer.chat_id, "re": answer.reply_to}
            task = asyncio.create_task(self.relay({**said, "text": answer.text}))
            self._relays.add(task)
            task.add_done_callback(self._relays.discard)

    async def stop(self) -> None:
        await cancel_and_wait(*self._relays)  # what is not announced shows from the history
        await super().stop()

    def _answer_id(self, message: OutboundMessage) -> str:
        """An answer is known by the id of the message it answers (the history says it
        too), unless that message has one already."""
        reply_to = message.reply_to or ""
        return reply_to if reply_to and reply_to not in self._answers else uuid.uuid4().hex

    def _new_answer(self, message: OutboundMessage, answer_id: str) -> _Answer:
        reply_to = message.reply_to or ""
        return self._keep(_Answer(answer_id, message.conversation.chat_id, reply_to, 0))

    def _keep(self, answer: _Answer) -> _Answer:
        answer.seq = next(self._seq)
        self.last_seq = answer.seq
        self._answers[answer.id] = answer
        while len(self._answers) > KEEP_ANSWERS:
            self._answers.popitem(last=False)
        return answer

    def _append(self, answer: _Answer, text: str) -> None:
        event = _delta(answer, len(answer.text), text)
        answer.text += text
        self.publish(answer.chat_id, event)

    def _finish(self, answer: _Answer) -> None:
        answer.done = True
        self.publish(answer.chat_id, _done(answer))


def _delta(answer: _Answer, at: int, text: str) -> Event:
    """A piece of an answer from `at`. One from the start says `replace`: the page drops any
    copy it holds under that id (another one announced, or one from before a restart)."""
    event: Event = {"type": "delta", "id": answer.id, "re": answer.reply_to, "at": at, "text": text}
    if at == 0:
        event["replace"] = True
    return event


def _done(answer: _Answer) -> Event:
    return {"type": "done", "id": answer.id, "re": answer.reply_to, "at": len(answer.text)}


def create(name: str, channel_config: Any, config: Any) -> WebChannel:
    return WebChannel(name)
