"""The web channel's side of answers made on another replica: one announced again (a turn run
anew after a replica was lost) reaches the pages whole, in place of the copy held here."""

from __future__ import annotations

import asyncio
from typing import Any

from channels.web import WebChannel


def _said(queue: asyncio.Queue[dict[str, Any]]) -> list[dict[str, Any]]:
    events = []
    while not queue.empty():
        events.append(queue.get_nowait())
    return events


async def test_an_answer_announced_again_replaces_another_copy_and_completes_a_cut_one() -> None:
    web = WebChannel()
    queue, _ = web.attach("owner", None, {})
    answer = {"id": "msg-1", "chat": "owner", "re": "msg-1"}
    web.relayed(answer | {"text": "A first try"})
    web.relayed(answer | {"text": "The answer, whole"})  # a different copy: replaced
    events = _said(queue)
    assert [e["text"] for e in events if e["type"] == "delta"][-1] == "The answer, whole"
    assert events[-1]["type"] == "done" and events[-1]["at"] == len("The answer, whole")

    web.relayed(answer | {"text": "The answer, whole"})  # a repeat: nothing new
    assert _said(queue) == []
    web.relayed(answer | {"text": "The answer, whole, and more"})  # the rest of it
    events = _said(queue)
    assert events[0] == {
        "type": "delta", "id": "msg-1", "re": "msg-1", "at": 17, "text": ", and more"
    }  # fmt: skip

    _, replay = web.attach("owner", 0, {}, web.process_id)  # from the start: the whole one
    assert "".join(e["text"] for e in replay if e["type"] == "delta") == (
        "The answer, whole, and more"
    )


async def test_a_copy_that_does_not_continue_the_held_one_tells_pages_to_replace_theirs() -> None:
    """A page adds a delta at an offset to the text it holds: one from the start must say
    that it replaces that text, or a longer copy would be garbled and a shorter one ignored."""
    web = WebChannel()
    queue, _ = web.attach("owner", None, {})
    answer = {"id": "msg-1", "chat": "owner", "re": "msg-1"}
    web.relayed(answer | {"text": "A first try, long"})
    web.relayed(answer | {"text": "Short"})  # shorter, not a continuation
    web.relayed(answer | {"text": "Short, then more"})  # a continuation
    deltas = [e for e in _said(queue) if e["type"] == "delta"]
    assert [(d["at"], d["text"], d.get("replace", False)) for d in deltas] == [
        (0, "A first try, long", True),
        (0, "Short", True),
        (5, ", then more", False),
    ]
