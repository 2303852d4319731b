"""The model's skill tools: `use_skill` reads a skill's instructions; `skill_edit` (create,
update, delete) lets the model extend itself (the owner's DMs only).

`use_skill` reads the set the turn started with (`ctx.deps.skills.current`), so a skill
edited while a turn runs does not change under it. What the model writes is a draft until
the owner enables it, unless the owner opted in to `skills.auto_enable`.
"""

from __future__ import annotations

import asyncio
import os
from typing import Literal

from bot.errors import ToolError
from bot.skills.config import SANDBOX_SKILLS_DIR
from bot.skills.library import SkillError
from bot.skills.runtime import SkillsDeps
from bot.skills.skill import Origin, Skill, SkillFormatError
from bot.tools import Tool, ToolContext, tool

#: the tag of the tools that change skills; the default policy offers tagged tools to the
#: owner in a DM only
SKILL_ADMIN_TAG = "skills"
_MAX_LISTED_FILES = 40


def skill_tools() -> list[Tool]:
    # one tool for the three edits: a schema costs every owner's request its bytes
    return [tool(use_skill), tool(skill_edit, tags=[SKILL_ADMIN_TAG])]


def _skills(ctx: ToolContext) -> SkillsDeps:
    skills = ctx.deps.skills
    if skills is None:
        raise ToolError("skills are turned off here")
    return skills


async def use_skill(ctx: ToolContext, name: str) -> str:
    """Read a skill's steps."""
    current = _skills(ctx).current
    skill = current.get(name)
    if skill is None:
        why = current.unavailable_reason(name)
        if why is not None:
            raise ToolError(f"skill {name} is unavailable here: {why}")
        names = ", ".join(current.available) or "none"
        raise ToolError(f"no skill named {name!r}; the skills are: {names}")
    files = await asyncio.to_thread(_other_files, skill)
    head = f"# skill {skill.name}"
    if files:
        sandbox = ctx.deps.sandbox
        mounted = (
            sandbox is not None
            and sandbox.backend is not None
            and SANDBOX_SKILLS_DIR in sandbox.workspaces.ro_mounts
        )
        where = (
            f"read-only in the sandbox at {SANDBOX_SKILLS_DIR}/{skill.folder.name}/"
            if mounted
            else "not reachable here: commands cannot run"
        )
        head += f"\nIts files ({where}): {', '.join(files)}"
    return ctx.deps.redact(f"{head}\n\n{skill.body}")


async def skill_edit(
    ctx: ToolContext,
    action: Literal["create", "update", "delete"],
    name: str,
    description: str = "",
    instructions: str = "",
) -> str:
    """Create, update (empty fields stay) or delete a skill. description: one line, what
    and when; instructions: Markdown. Edits wait for the owner's approval."""
    if action == "delete":
        library = _skills(ctx).library
        try:
            return await asyncio.to_thread(library.delete, name)
        except SkillError as exc:
            raise ToolError(str(exc)) from None
    if action == "create":
        # the library refuses a skill without a description or instructions
        return await _write(ctx, name, description, instructions, create=True)
    return await _write(ctx, name, description or None, instructions or None, create=False)


async def _write(
    ctx: ToolContext,
    name: str,
    description: str | None,
    instructions: str | None,
    *,
    create: bool,
) -> str:
    library = _skills(ctx).library
    try:
        skill, enabled = await asyncio.to_thread(
            library.write,
            name,
            description=description,
            instructions=instructions,
            create=create,
        )
    except (SkillError, SkillFormatError) as exc:
        raise ToolError(str(exc)) from None
    done = "created" if create else "updated"
    if enabled:
        return f"{done} and enabled skill {skill.name}; it is offered from the next message"
    return (
        f"{done} skill {skill.name} as a draft; it is offered once the owner approves it "
        f"with /approve {skill.name} (or `decapod skills enable {skill.name}`)"
    )


def _other_files(skill: Skill) -> list[str]:
    """The skill's files besides SKILL.md; only the owner's folder is mounted."""
    if skill.origin is not Origin.OWNER:
        return []
    found: list[str] = []
    for folder, dirs, names in os.walk(skill.folder):
        dirs[:] = sorted(d for d in dirs if not d.startswith("."))
        rel = os.path.relpath(folder, skill.folder)
        for n in sorted(names):
            if n.startswith(".") or (rel == "." and n.lower() == "skill.md"):
                continue
            found.append(n if rel == "." else f"{rel}/{n}")
            if len(found) >= _MAX_LISTED_FILES:
                return [*found, "…"]
    return found
