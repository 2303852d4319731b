"""Markdown exports: what is remembered about each person, and finished sessions.

Session exports leave out tool calls and their results and pass every line through the
caller's `redact`, so a secret that reached a conversation does not reach a file. The
export folder is pruned by age and count on every export.
"""

from __future__ import annotations

import os
import re
import time
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

from bot.store.memory import ItemRow, MemoryRepo, split_owner

if TYPE_CHECKING:
    from bot.progress import ProgressSink

_UNSAFE = re.compile(r"[^A-Za-z0-9._-]+")
_KIND_TITLES = {
    "fact": "Facts",
    "preference": "Preferences",
    "note": "Notes",
    "session_summary": "Session summaries",
    "knowledge": "Knowledge",
}


def safe_name(key: str) -> str:
    """A file name for a person id or session key ("telegram:123" -> "telegram_123")."""
    return _UNSAFE.sub("_", key).strip("._") or "unnamed"


def _day(ts: float) -> str:
    return time.strftime("%Y-%m-%d", time.gmtime(ts))


def _write(path: Path, text: str) -> None:
    """Write through a temporary file, so a crash never leaves half an export."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(text, encoding="utf-8")
    os.replace(tmp, path)


def person_markdown(person_id: str, items: list[ItemRow]) -> str:
    lines = [f"# Memory of {person_id}", "", f"Exported {_day(time.time())}, {len(items)} items."]
    order = {kind: n for n, kind in enumerate(_KIND_TITLES)}
    for kind in sorted({i.kind for i in items}, key=lambda k: (order.get(k, len(order)), k)):
        lines += ["", f"## {_KIND_TITLES.get(kind, kind)}", ""]
        for item in (i for i in items if i.kind == kind):
            text = item.text if kind == "knowledge" else " ".join(item.text.split())
            place = split_owner(item.owner)[1]
            where = "".join(f"{part}, " for part in (item.source, place and f"in {place}") if part)
            lines.append(f"- {text} _({where}{_day(item.updated_at)}, #{item.id})_")
    return "\n".join(lines) + "\n"


async def export_people(
    repo: MemoryRepo,
    dest: Path,
    person_id: str | None = None,
    progress: ProgressSink | None = None,
) -> list[Path]:
    """One Markdown file per person (or only `person_id`), with what they said in groups;
    returns the files written. Each file is whole or absent, so an export stopped midway
    leaves complete files only."""
    if person_id:
        owners_by_person = {person_id: await repo.owners_of(person_id)}
    else:  # one scan of owners for everyone, not one per person
        owners_by_person = {}
        for owner in await repo.owners():
            owners_by_person.setdefault(split_owner(owner)[0], []).append(owner)
    if progress is not None:
        progress.begin(len(owners_by_person))
    written: list[Path] = []
    for person in sorted(owners_by_person):
        path = dest / f"{safe_name(person)}.md"
        _write(path, person_markdown(person, await _items_of(repo, owners_by_person[person])))
        written.append(path)
        if progress is not None:
            progress.advance()
    return written


async def person_items(repo: MemoryRepo, person_id: str) -> list[ItemRow]:
    """A person's items from every place they were said in, oldest first."""
    return await _items_of(repo, await repo.owners_of(person_id))


async def _items_of(repo: MemoryRepo, owners: list[str]) -> list[ItemRow]:
    items = [i for owner in owners for i in await repo.items(owner)]
    return sorted(items, key=lambda i: i.id)


async def export_session(
    repo: MemoryRepo,
    session_id: int,
    dest: Path,
    *,
    redact: Callable[[str], str],
    keep: int = 200,
    max_age_days: float = 90.0,
) -> Path | None:
    """Write one session as Markdown under `dest`, then prune the folder. None if the
    session does not exist or holds no messages."""
    found = await repo.session_transcript(session_id)
    if found is None or not found[2]:
        return None
    key, started, messages = found
    lines = [f"# Session {redact(key)}", "", f"Started {_day(started)}."]
    for role, speaker, content, at in messages:
        if not content.strip():
            continue  # an assistant message that only called tools
        who = "Assistant" if role == "assistant" else (speaker or "User")
        stamp = time.strftime("%Y-%m-%d %H:%M", time.gmtime(at))
        lines += ["", f"**{redact(who)}** ({stamp}):", "", redact(content.strip())]
    path = dest / f"{safe_name(key)}--{session_id}.md"
    _write(path, "\n".join(lines) + "\n")
    prune_exports(dest, keep=keep, max_age_days=max_age_days)
    return path


def prune_exports(dest: Path, *, keep: int, max_age_days: float) -> int:
    """Delete exports older than `max_age_days`, then the oldest beyond `keep`."""
    if not dest.is_dir():
        return 0
    files = sorted(
        (p for p in dest.glob("*.md") if p.is_file()),
        key=lambda p: p.stat().st_mtime,
        reverse=True,
    )
    cutoff = time.time() - max_age_days * 86400
    doomed = [p for i, p in enumerate(files) if i >= keep or p.stat().st_mtime < cutoff]
    for path in doomed:
        path.unlink(missing_ok=True)
    return len(doomed)
