"""The web chat's answers across replicas: a page may be open on one replica while the turn
that answers it runs on another (the balancer sends each request anywhere).

A finished answer is announced on the bus (bot/cluster/bus.py) as JSON, cut into pieces that
fit PostgreSQL's notification payload (under 8000 bytes), all sent by one write, so they
arrive together and in order. Every other replica puts the whole answer together and hands
it to its web channel, which shows it to the pages of that person open there and keeps it for
their replay. Answers go across once finished, not while they stream.

A notification sent while a replica's LISTEN connection was down is lost for it: once the
connection is back, the replica reads (in the background, at most `CATCH_UP_ROWS` rows a
person) the answers said since shortly before the loss to each person with a page open
there, from the history, and hands on those it holds no copy of: catch-up only fills in
missing answers, it never replaces or completes one (a copy streamed here may differ from
the stored text, and is what its pages show).

An announcement the store refused (PostgreSQL out of reach) is kept and sent again once the
answer's rows are in the history: a turn's rows are stored after its answer went out, and
when the store was down they land later, so a replica that caught up in between read the
history without them. The kept answers of one chat go in the order they were kept: one
still waiting for its rows holds back the later ones of its chat (a reminder, which waits
for no rows, would otherwise show before the answer said ahead of it). At most
`_MAX_OPEN` are kept (past that the one kept longest ago is
given up), one that still cannot be sent after twice `RESEND_ANYWAY_S` is given up, and
those kept at the stop are dropped: the other replicas' pages show them from the history on
their next load.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from typing import TYPE_CHECKING, Any, Protocol

from bot.cluster.bus import notify
from bot.messages import Conversation, ConversationKind
from bot.store.webui import WebUIRepo, web_turn_id
from bot.tasks import cancel_and_wait, pause_after

if TYPE_CHECKING:
    from collections.abc import Callable, Coroutine

    from bot.cluster.bus import Bus
    from bot.store import Store

log = logging.getLogger("decapod.cluster")

TOPIC = "web"
#: characters of an answer's text per notification: with JSON's escapes (six bytes for a
#: character at most) and the envelope, one stays under the 8000-byte payload limit
PIECE_CHARS = 1000
#: answers being put together at once (pieces of ones whose end was lost are dropped)
_MAX_OPEN = 64
#: after a lost LISTEN connection, the answers said from this long before the loss was
#: found are read again: the loss is seen late, and the replicas' clocks differ a little
CATCH_UP_MARGIN_S = 60.0
#: rows of the history read per person on a catch-up (as many as a page loads)
CATCH_UP_ROWS = 100
#: pauses between tries to announce again the answers whose announcement was refused, the
#: last repeated; one whose rows are not in the history after `RESEND_ANYWAY_S` (an answer
#: that is no turn's, or a turn whose rows are still refused) is announced as it is
RESEND_S = (1.0, 2.0, 5.0, 10.0, 30.0)
RESEND_ANYWAY_S = 600.0

Answer = dict[str, Any]


class WebAnswers(Protocol):
    name: str
    relay: Callable[[Answer], Coroutine[Any, Any, None]] | None

    def relayed(self, answer: Answer) -> None: ...

    def holds(self, answer_id: str) -> bool: ...

    def listening(self) -> list[str]: ...


def pieces(replica_id: str, answer: Answer) -> list[str]:
    """The notifications that carry `answer`: [replica, id, piece number, count, fields]."""
    text = str(answer["text"])
    parts = [text[i : i + PIECE_CHARS] for i in range(0, len(text), PIECE_CHARS)] or [""]
    head = {k: v for k, v in answer.items() if k != "text"}
    return [
        json.dumps([replica_id, answer["id"], n, len(parts), head, part], ensure_ascii=False)
        for n, part in enumerate(parts)
    ]


class SharedWebAnswers:
    def __init__(self, channel: WebAnswers, bus: Bus, store: Store, replica_id: str) -> None:
        self.channel = channel
        self.store = store
        self.repo = WebUIRepo(store)
        self.bus = bus
        self.replica_id = replica_id
        #: answer id -> its pieces so far
        self._open: dict[str, list[str]] = {}
        #: answer id -> (an answer whose announcement the store refused, when it was kept)
        self._unsent: dict[str, tuple[Answer, float]] = {}
        self._resending: asyncio.Task[None] | None = None
        #: catch-ups and tries under way (ended at stop)
        self._tasks: set[asyncio.Task[None]] = set()
        #: set at stop: no catch-up nor try starts after it
        self._stopped = False
        #: catch-ups finished
        self.caught_up = 0
        channel.relay = self.announce
        bus.subscribe(TOPIC, self._heard)
        bus.on_reconnect(self.catch_up)

    async def catch_up(self) -> None:
        """The LISTEN connection is back: what was announced meanwhile, from the history, in
        the background (the bus goes on with what it hears)."""
        self._open.clear()  # their next pieces were lost with the connection
        since = self.bus.lost_at - CATCH_UP_MARGIN_S
        self._start(self._catch_up(since, self.channel.listening()), "web-catch-up")

    async def _catch_up(self, since: float, people: list[str]) -> None:
        for person in people:
            key = Conversation(self.channel.name, person, ConversationKind.DM).session_key
            try:
                said = await self.repo.answers_since(key, person, since, CATCH_UP_ROWS)
            except Exception as exc:  # the next person's read may well work
                log.warning("could not read the answers missed by the pages open here: %s", exc)
                continue
            for answer_id, re, text in said:
                if not self.channel.holds(answer_id):
                    self.channel.relayed({"id": answer_id, "chat": person, "re": re, "text": text})
        self.caught_up += 1

    async def announce(self, answer: Answer) -> None:
        if any(kept["chat"] == answer["chat"] for kept, _ in self._unsent.values()):
            # the other replicas' pages must not show it before the chat's answer kept ahead
            self._keep(answer)
        else:
            try:
                await self._announce(answer)
                return
            except Exception as exc:
                log.warning("could not pass an answer to the other replicas (kept): %s", exc)
                self._keep(answer)
        if self._resending is None or self._resending.done():
            self._resending = self._start(self._resend(), "web-resend")

    def _keep(self, answer: Answer) -> None:
        answer_id = str(answer["id"])
        self._unsent.pop(answer_id, None)  # kept anew: the last to be given up
        self._unsent[answer_id] = (answer, time.monotonic())
        while len(self._unsent) > _MAX_OPEN:
            dropped = next(iter(self._unsent))
            del self._unsent[dropped]
            log.warning(
                "more than %d answers kept for the other replicas: %s given up (their pages "
                "show it from the history on their next load)",
                _MAX_OPEN,
                dropped,
            )

    async def _announce(self, answer: Answer) -> None:
        notes = pieces(self.replica_id, answer)

        def op(conn: Any) -> None:
            for note in notes:
                notify(conn, TOPIC, note)

        await self.store.write(op, cheap=True)

    async def _resend(self) -> None:
        tries = 0
        while self._unsent:
            await asyncio.sleep(pause_after(RESEND_S, tries))
            tries += 1
            kept = dict(self._unsent)
            try:
                stored = await self.repo.turns_stored(
                    [web_turn_id(a["chat"], a["re"]) for a, _ in kept.values() if a.get("re")]
                )
            except Exception as exc:  # then only those past RESEND_ANYWAY_S go
                log.warning("could not read which kept answers are stored: %s", exc)
                stored = set()
            #: chats with an answer still waiting for its rows: their later answers wait
            #: behind it, or the other replicas' pages would show them first
            held: set[str] = set()
            for answer_id, (answer, since) in kept.items():
                waited = time.monotonic() - since
                if answer["chat"] in held:
                    continue
                if waited > 2 * RESEND_ANYWAY_S:  # its announcement keeps failing
                    log.warning(
                        "answer %s given up after %.0f s of failed tries to pass it to the "
                        "other replicas (their pages show it from the history on their next "
                        "load)",
                        answer_id,
                        waited,
                    )
                elif (
                    answer.get("re")
                    and web_turn_id(answer["chat"], answer["re"]) not in stored
                    and waited < RESEND_ANYWAY_S
                ):
                    held.add(answer["chat"])
                    continue
                else:
                    try:
                        await self._announce(answer)
                    except Exception as exc:  # the other chats' may well go
                        log.warning("could not pass a kept answer to the other replicas: %s", exc)
                        held.add(answer["chat"])  # its chat's later answers stay behind it
                        continue
                if self._unsent.get(answer_id, (None, 0.0))[1] == since:
                    del self._unsent[answer_id]

    def _start(self, work: Coroutine[Any, Any, None], name: str) -> asyncio.Task[None] | None:
        if self._stopped:  # a bus reconnection after the stop: nobody would end it
            work.close()
            return None
        task = asyncio.create_task(work, name=name)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return task

    async def stop(self, _app: object = None) -> None:
        """End the catch-ups and the tries under way (what is not announced then shows
        from the history on the pages' next load)."""
        self._stopped = True
        await cancel_and_wait(*self._tasks)

    def _heard(self, note: str) -> None:
        replica, answer_id, n, count, head, part = json.loads(note)
        if replica == self.replica_id:
            return
        if n == 0:  # a first piece (again: an answer announced anew) starts it afresh
            self._open.pop(answer_id, None)
        got = self._open.setdefault(answer_id, [])
        if n != len(got):  # a piece lost (a reconnection between two): not shown half
            self._open.pop(answer_id, None)
            return
        got.append(part)
        if len(got) < count:
            while len(self._open) > _MAX_OPEN:
                self._open.pop(next(iter(self._open)))
            return
        del self._open[answer_id]
        self.channel.relayed({**head, "text": "".join(got)})
