"""The web chat's answers across replicas: a page may be open on one replica while the turn
that answers it runs on another (the balancer sends each request anywhere).

A finished answer is announced on the bus (bot/cluster/bus.py) as JSON, cut into pieces that
fit PostgreSQL's notification payload (under 8000 bytes), all sent by one write, so they
arrive together and in order. Every other replica puts the whole answer together and hands
it to its web channel, which shows it to the pages of that person open there and keeps it for
their replay. Answers go across once finished, not while they stream.

A notification sent while a replica's LISTEN connection was down is lost for it: once the
connection is back, the replica reads the answers said since shortly before the loss to each
person with a page open there, from the history, and hands on those it does not hold whole
(the channel drops the repeats, so nothing is shown twice).
"""

from __future__ import annotations

import json
import logging
from typing import TYPE_CHECKING, Any, Protocol

from bot.cluster.bus import notify
from bot.messages import Conversation, ConversationKind

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

Answer = dict[str, Any]


class WebAnswers(Protocol):
    name: str
    relay: Callable[[Answer], Coroutine[Any, Any, None]] | None

    def relayed(self, answer: Answer) -> None: ...

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
        from bot.store.webui import WebUIRepo

        self.channel = channel
        self.store = store
        self.repo = WebUIRepo(store)
        self.bus = bus
        self.replica_id = replica_id
        #: answer id -> its pieces so far
        self._open: dict[str, list[str]] = {}
        channel.relay = self.announce
        bus.subscribe(TOPIC, self._heard)
        bus.on_reconnect(self.catch_up)

    async def catch_up(self) -> None:
        """The LISTEN connection is back: what was announced meanwhile, from the history."""
        self._open.clear()  # their next pieces were lost with the connection
        since = self.bus.lost_at - CATCH_UP_MARGIN_S
        for person in self.channel.listening():
            key = Conversation(self.channel.name, person, ConversationKind.DM).session_key
            for answer_id, re, text in await self.repo.answers_since(key, person, since):
                self.channel.relayed({"id": answer_id, "chat": person, "re": re, "text": text})

    async def announce(self, answer: Answer) -> None:
        notes = pieces(self.replica_id, answer)

        def op(conn: Any) -> None:
            for note in notes:
                notify(conn, TOPIC, note)

        try:
            await self.store.write(op, cheap=True)
        except Exception as exc:
            # the answer was shown here and is in the history: the other replicas' pages
            # show it on their next load
            log.warning("could not pass an answer to the other replicas: %s", exc)

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
