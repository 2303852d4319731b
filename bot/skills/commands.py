"""/skills for the owner, and skill drafts as things `/approve NAME` can enable."""

from __future__ import annotations

import asyncio

from bot.approvals import Waiting
from bot.commands import CommandContext, CommandTable
from bot.skills.catalog import SkillSet
from bot.skills.library import Draft, SkillError, SkillLibrary, broken_line
from bot.skills.runtime import SkillRuntime
from bot.skills.skill import skill_file

_SHOW_CHARS = 3500
_USAGE = "Usage: /skills [show NAME | enable NAME | discard NAME]"


def report(current: SkillSet, drafts: list[Draft]) -> list[str]:
    """The state of every skill, for /skills and `decapod skills list`."""
    lines = [
        f"enabled  {s.name} ({s.origin.value}): {s.description}" for s in current.available.values()
    ]
    for d in drafts:
        if d.skill is None:
            lines.append(f"draft    {d.name}: cannot be loaded: {d.problem}")
        else:
            change = " (replaces the enabled one)" if d.replaces else ""
            lines.append(f"draft    {d.name}{change}: {d.skill.description}")
    for u in current.unavailable:
        lines.append(f"unavailable {u.skill.name} ({u.skill.origin.value}): {u.reason}")
    for b in current.broken:
        lines.append(f"broken   {broken_line(b)}")
    return lines or ["no skills"]


class SkillDraftApprovals:
    """`/approve NAME` enables the draft NAME; `/deny NAME` discards it."""

    def __init__(self, runtime: SkillRuntime) -> None:
        self.runtime = runtime

    async def waiting(self) -> list[Waiting]:
        return [
            Waiting(d.name, f"skill draft: {d.skill.description if d.skill else d.problem}")
            for d in self.runtime.library.drafts()
        ]

    async def decide(self, key: str, approve: bool) -> str | None:
        library = self.runtime.library
        try:
            draft = await asyncio.to_thread(library.draft, key)
        except SkillError:
            return None  # not a skill name: another source's id
        if draft is None:
            return None
        if not approve:
            await asyncio.to_thread(library.discard, key)
            return f"Discarded the draft of skill {key}."
        return await enable(self.runtime, key)


async def enable(runtime: SkillRuntime, name: str) -> str:
    try:
        skill = await asyncio.to_thread(runtime.library.enable, name)
    except SkillError as exc:
        return str(exc)
    # at once rather than through the watcher, so the very next message has it
    current = await runtime.reload()
    if skill.name in current.available:
        return f"Enabled skill {skill.name}; it is offered from the next message."
    why = current.unavailable_reason(skill.name) or "see /skills"
    return f"Enabled skill {skill.name}, but it cannot be offered here: {why}."


def register_skill_commands(table: CommandTable, runtime: SkillRuntime) -> None:
    @table.add(
        "skills",
        "List skills and drafts; show, enable or discard one",
        usage="[show|enable|discard NAME]",
        arg_name="action",
        owner_only=True,
    )
    async def skills(ctx: CommandContext) -> str:
        action, _, name = ctx.args.strip().partition(" ")
        name = name.strip()
        library = runtime.library
        if not action or action == "list":
            drafts = await asyncio.to_thread(library.drafts)
            return "\n".join(report(runtime.current, drafts))
        if not name:
            return _USAGE
        try:
            if action == "show":
                return await asyncio.to_thread(show_text, library, name)
            if action == "enable":
                return await enable(runtime, name)
            if action == "discard":
                found = await asyncio.to_thread(library.discard, name)
                return f"Discarded the draft of {name}." if found else f"No draft named {name}."
        except SkillError as exc:
            return str(exc)
        return _USAGE


def show_text(library: SkillLibrary, name: str, limit: int | None = _SHOW_CHARS) -> str:
    """A draft's SKILL.md (what the owner approves), else the enabled skill's."""
    draft = library.draft(name)
    folder = draft.folder if draft is not None else None
    if folder is None:
        skill = library.find(name)
        if skill is None:
            return f"No skill or draft named {name}."
        folder = skill.folder
    path = skill_file(folder)
    if path is None:
        return f"{name} has no SKILL.md."
    text = path.read_text(encoding="utf-8", errors="replace")
    others = sorted(
        str(p.relative_to(folder)) for p in folder.rglob("*") if p.is_file() and p != path
    )
    head = f"{'draft' if draft else 'skill'} {name}"
    if others:
        head += f"; files: {', '.join(others)}"
    if limit is not None and len(text) > limit:
        text = text[:limit] + f"\n[... {len(text) - limit} more characters ...]"
    return f"{head}\n{text}"
