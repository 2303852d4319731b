"""The web chat's answers across replicas: a page may be open on one replica while the turn
that answers it runs on another (the balancer sends each request anywhere).

A finished answer is announced on the bus (bot/cluster/bus.py) as JSON, cut into pieces that
fit PostgreSQL's notification payload (under 8000 bytes), all sent by one write, so they
arrive together and in order. Every other replica puts the whole answer together and hands
it to its web channel, which shows it to the pages of that person open there and keeps it for
their replay. Answers go across once finished, not while they stream. A notification lost
while a replica's LISTEN connection was down is not sent again: its pages show that answer
from the history on their next load.
"""

from __future__ import annotations

import json
import logging
from typing import TYPE_CHECKING, Any, Protocol

from bot.cluster.bus import notify

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

Answer = dict[str, Any]


class WebAnswers(Protocol):
    relay: Callable[[Answer], Coroutine[Any, Any, None]] | None

    def relayed(self, answer: Answer) -> None: ...


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
        self.replica_id = replica_id
        #: answer id -> its pieces so far
        self._open: dict[str, list[str]] = {}
        channel.relay = self.announce
        bus.subscribe(TOPIC, self._heard)

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
