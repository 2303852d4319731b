"""The memory tools the model can call. The owner is always the person asking
(`ctx.person_id`): the model cannot name another person, so it cannot touch their memory.

In a group the tools work on what the person saved in that group only (`memory_place`):
everyone there reads the answer, so a DM's items are neither searched nor forgotten there,
and what is saved there is recalled only there. A DM (and the console, the web UI) is a
private place: saved there, recalled only in private places; /forget in a DM takes all."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Annotated, Literal

from pydantic import Field

from bot.errors import ToolError
from bot.memory.search import render_hits
from bot.memory.service import MemoryRequestError, MemoryService
from bot.messages import Conversation
from bot.tools import Tool, ToolContext, tool


def memory_place(ctx: ToolContext) -> str:
    """Where the turn's memory lives: "" in a private place, else the group (its threads
    share it). Private is what commands and `list_jobs` call it: not `ctx.is_group`."""
    return group_place(ctx.conversation) if ctx.is_group else ""


def group_place(conversation: Conversation) -> str:
    return f"{conversation.channel}:{conversation.kind.value}:{conversation.chat_id}"


def _service(ctx: ToolContext) -> MemoryService:
    service = ctx.deps.memory
    if service is None:
        raise ToolError("memory is not enabled")
    if not ctx.person_id:
        raise ToolError("memory needs a known person")
    return service


@contextmanager
def _refusals_as_tool_errors() -> Iterator[None]:
    try:
        yield
    except MemoryRequestError as exc:
        raise ToolError(str(exc)) from None


@tool
async def memory_save(
    ctx: ToolContext,
    text: Annotated[str, Field(min_length=1, max_length=2000)],
    kind: Literal["fact", "preference", "note"] = "fact",
) -> str:
    """Remember a durable fact or preference the person shared (one short, self-contained
    sentence), for later conversations."""
    service = _service(ctx)
    with _refusals_as_tool_errors():
        item_id = await service.save(
            ctx.person_id, text, kind=kind, source="tool", place=memory_place(ctx)
        )
    return f"saved #{item_id}"


@tool
async def memory_search(
    ctx: ToolContext,
    query: Annotated[str, Field(min_length=1, max_length=500)],
    limit: Annotated[int, Field(ge=1, le=20)] = 5,
    rephrased: Annotated[list[Annotated[str, Field(max_length=500)]], Field(max_length=4)]
    | None = None,
) -> str:
    """Search what you remember about this person (and the shared knowledge folder).
    `rephrased`: up to 4 other ways to say the query (synonyms, the words the person may
    have used, a named date), searched too; an item found by several counts more."""
    service = _service(ctx)
    with _refusals_as_tool_errors():
        hits = await service.search_phrasings(
            ctx.person_id, [query, *(rephrased or [])], limit=limit, place=memory_place(ctx)
        )
    return render_hits(hits)


@tool
async def memory_forget(
    ctx: ToolContext,
    item_ids: Annotated[list[int], Field(max_length=50)] | None = None,
    matching: Annotated[str, Field(max_length=500)] | None = None,
) -> str:
    """Delete memories of this person: by the #ids memory_search shows, or every item
    containing all the words of `matching`."""
    if not item_ids and not (matching and matching.strip()):
        raise ToolError("give item_ids or matching")
    service = _service(ctx)
    with _refusals_as_tool_errors():
        gone = await service.forget(
            ctx.person_id, item_ids=item_ids, matching=matching, place=memory_place(ctx)
        )
    count = len(gone)
    return f"forgot {count} item{'s' if count != 1 else ''}"


def memory_tools() -> list[Tool]:
    return [memory_save, memory_search, memory_forget]
