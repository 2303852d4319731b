"""A SkillSet: every skill loaded at one moment, and the skill list for the system prompt.

A SkillSet never changes. A reload builds a new one and the gateway swaps it into its
dependencies, so a turn keeps the set (and so every skill's text) it started with, and the
next turn sees the new one. Parsing happens here, once per change: never per turn.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path

from bot.skills.skill import Origin, Skill, SkillFormatError, Surroundings, load_skill

log = logging.getLogger("decapod.skills")

PROMPT_HEADER = "Skills (read one with use_skill when it fits):"
_DESCRIPTION_CHARS = 100


@dataclass(frozen=True, slots=True)
class Unavailable:
    skill: Skill
    reason: str


@dataclass(frozen=True, slots=True)
class Broken:
    folder: Path
    origin: Origin
    reason: str


@dataclass(frozen=True, slots=True)
class SkillSet:
    #: offered to the model, by name
    available: Mapping[str, Skill] = field(default_factory=dict)
    unavailable: tuple[Unavailable, ...] = ()
    broken: tuple[Broken, ...] = ()
    #: the block appended to the system prompt ("" without skills)
    prompt_block: str = ""
    #: counts reloads; a new set has a higher number
    generation: int = 0

    def get(self, name: str) -> Skill | None:
        return self.available.get(name)

    def unavailable_reason(self, name: str) -> str | None:
        for entry in self.unavailable:
            if entry.skill.name == name:
                return entry.reason
        return None


@dataclass(frozen=True, slots=True)
class _Signature:
    """What a folder's SKILL.md looked like when it was parsed (for the parse cache)."""

    mtime_ns: int
    size: int
    inode: int


class SkillLoader:
    """Builds SkillSets from the skill folders, re-parsing only SKILL.md files that changed."""

    def __init__(self, roots: Iterable[tuple[Path, Origin]], max_bytes: int) -> None:
        self.roots = list(roots)
        self.max_bytes = max_bytes
        self._cache: dict[Path, tuple[_Signature, Skill | SkillFormatError]] = {}
        self._generation = 0
        #: broken folders already logged, so a reload does not repeat the same line
        self._reported: dict[Path, str] = {}

    def load(self, around: Surroundings, budget_bytes: int) -> SkillSet:
        self._generation += 1
        chosen: dict[str, Skill] = {}
        broken: list[Broken] = []
        seen: set[Path] = set()
        # later roots win: the owner's skill replaces a bundled one of the same name
        for root, origin in self.roots:
            by_name: dict[str, Skill] = {}
            for folder in _skill_folders(root):
                seen.add(folder)
                loaded = self._parse(folder, origin)
                if isinstance(loaded, SkillFormatError):
                    broken.append(Broken(folder, origin, str(loaded)))
                    continue
                rival = by_name.get(loaded.name)
                if rival is not None:
                    # the folder named like the skill keeps it, as the format asks
                    keep, lose = (loaded, rival) if folder.name == loaded.name else (rival, loaded)
                    by_name[loaded.name] = keep
                    why = f"name clash: {loaded.name!r} is also the name in {keep.folder}"
                    broken.append(Broken(lose.folder, origin, why))
                    continue
                by_name[loaded.name] = loaded
            chosen.update(by_name)
        self._cache = {k: v for k, v in self._cache.items() if k in seen}
        self._report(broken)
        available: dict[str, Skill] = {}
        unavailable: list[Unavailable] = []
        for name in sorted(chosen):
            skill = chosen[name]
            reason = around.unmet(skill.requires)
            if reason is None:
                available[name] = skill
            else:
                unavailable.append(Unavailable(skill, reason))
        return SkillSet(
            available,
            tuple(unavailable),
            tuple(broken),
            prompt_block(available.values(), budget_bytes),
            self._generation,
        )

    def _parse(self, folder: Path, origin: Origin) -> Skill | SkillFormatError:
        signature = _signature(folder)
        cached = self._cache.get(folder)
        if cached is not None and signature is not None and cached[0] == signature:
            return cached[1]
        try:
            loaded: Skill | SkillFormatError = load_skill(folder, origin, self.max_bytes)
        except SkillFormatError as exc:
            loaded = exc
        except OSError as exc:
            loaded = SkillFormatError(f"cannot read: {exc.strerror or exc}")
        if signature is not None:
            self._cache[folder] = (signature, loaded)
        return loaded

    def _report(self, broken: list[Broken]) -> None:
        now = {b.folder: b.reason for b in broken}
        for folder, reason in now.items():
            if self._reported.get(folder) != reason:
                log.warning("skill %s skipped: %s", folder, reason)
        self._reported = now


def _skill_folders(root: Path) -> list[Path]:
    """The visible sub-folders of `root`: each is one skill (hidden ones are tools' state)."""
    try:
        entries = sorted(os.scandir(root), key=lambda e: e.name)
    except (FileNotFoundError, NotADirectoryError):
        return []
    return [Path(e.path) for e in entries if not e.name.startswith(".") and e.is_dir()]


def _signature(folder: Path) -> _Signature | None:
    for name in ("SKILL.md", "skill.md"):
        try:
            st = os.stat(folder / name)
        except OSError:
            continue
        return _Signature(st.st_mtime_ns, st.st_size, st.st_ino)
    return None


def prompt_block(skills: Iterable[Skill], budget_bytes: int) -> str:
    """`name: description` lines while they fit the budget, then bare names, then a count.

    The budget holds whatever is installed: fifty skills cost the prompt no more than
    the budget, and a skill left unlisted is still found by use_skill (which lists them all
    when asked for a name it does not know).
    """
    skills = list(skills)
    if not skills or budget_bytes <= 0:
        return ""
    full = [f"- {s.name}: {_shorten(s.description)}" for s in skills]
    text = "\n".join([PROMPT_HEADER, *full])
    if _size(text) <= budget_bytes:
        return text
    lines = [PROMPT_HEADER]
    used = _size(PROMPT_HEADER)
    room_for_count = _size(f"\n{_count_line(len(skills))}")
    described = 0
    while (
        described < len(full) and used + 1 + _size(full[described]) + room_for_count <= budget_bytes
    ):
        lines.append(full[described])
        used += 1 + _size(full[described])
        described += 1
    names: list[str] = []
    for skill in skills[described:]:
        left = len(skills) - described - len(names) - 1
        if used + 1 + _size(_also_line([*names, skill.name], left)) > budget_bytes:
            break
        names.append(skill.name)
    left = len(skills) - described - len(names)
    if names:
        lines.append(_also_line(names, left))
    elif left:
        lines.append(_count_line(left))
    return "\n".join(lines)


def _also_line(names: list[str], left: int) -> str:
    return "- also: " + ", ".join(names) + (f" (+{left} more)" if left else "")


def _count_line(left: int) -> str:
    return f"- (+{left} more; use_skill lists them)"


def _size(text: str) -> int:
    return len(text.encode())


def _shorten(text: str) -> str:
    if len(text) <= _DESCRIPTION_CHARS:
        return text
    cut = text[: _DESCRIPTION_CHARS - 1].rsplit(" ", 1)[0]
    return cut.rstrip(",;:.") + "…"
