"""The memory tools the model can call. The owner is always the person asking
(`ctx.person_id`): the model cannot name another person, so it cannot touch their memory."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Annotated, Literal

from pydantic import Field

from bot.errors import ToolError
from bot.memory.search import render_hits
from bot.memory.service import MemoryRequestError, MemoryService
from bot.tools import Tool, ToolContext, tool


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
        item_id = await service.save(ctx.person_id, text, kind=kind, source="tool")
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
            ctx.person_id, [query, *(rephrased or [])], limit=limit
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
        count = len(await service.forget(ctx.person_id, item_ids=item_ids, matching=matching))
    return f"forgot {count} item{'s' if count != 1 else ''}"


def memory_tools() -> list[Tool]:
    return [memory_save, memory_search, memory_forget]
