"""What one owner's `/forget` takes: the items named by id, those matching words, or all.

MemoryService.forget decides whose items (the person's in one place, or in every place);
this picks them among one owner's and deletes them (rows, index entries, vectors).
"""

from __future__ import annotations

from bot.memory.text import fts_match, query_terms
from bot.store.memory import ItemRow, MemoryRepo


async def forget_owned(
    repo: MemoryRepo,
    owner: str,
    item_ids: list[int] | None,
    matching: str | None,
    everything: bool,
) -> list[ItemRow]:
    """Delete `owner`'s items: all of them, those of `item_ids`, or those whose text has
    every word of `matching`; returns what went."""
    if everything:
        return await repo.delete(owner)
    if item_ids:
        return await repo.delete(owner, item_ids)
    match = fts_match(query_terms(matching or ""), [owner], require_all=True)
    if match is None:
        return []
    found = await repo.matching(owner, match)
    return await repo.delete(owner, [r.id for r in found]) if found else []
