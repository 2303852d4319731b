"""One skill on disk: a folder with a SKILL.md in the AgentSkills format.

    ---
    name: daily-briefing
    description: One line saying what the skill does and when to use it.
    metadata: {"openclaw": {"requires": {"bins": ["curl"], "env": ["API_KEY"]}}}
    ---
    # Markdown instructions the model follows

Front-matter keys Decapod does not use are kept (`Skill.meta`) and ignored, so skills
written for OpenClaw, nanobot or PicoClaw load unchanged. Requirements are read from a
top-level `requires` and from `metadata.<runtime>.requires` of the runtimes that share the
format; Decapod also understands `tools` (tools that must be registered).
"""

from __future__ import annotations

import re
import shutil
import sys
from collections.abc import Callable, Collection, Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from pathlib import Path
from typing import Any

import yaml

SKILL_FILE = "SKILL.md"
_ALT_SKILL_FILES = ("skill.md",)
NAME_RE = re.compile(r"^[a-z0-9](?:[a-z0-9_-]{0,62}[a-z0-9])?$")
MAX_DESCRIPTION = 1024
#: runtimes whose `metadata.<key>.requires` means what it means to us
_RUNTIME_KEYS = ("decapod", "openclaw", "clawdbot", "clawdis", "nanobot", "picoclaw")
_OS_NAMES = {"linux": "linux", "darwin": "darwin", "win32": "win32"}
_FRONT = re.compile(r"\A---[ \t]*\r?\n(.*?)^---[ \t]*\r?$\n?", re.DOTALL | re.MULTILINE)


class SkillFormatError(ValueError):
    """Why a SKILL.md cannot be loaded; one line, shown to the owner."""


class Origin(StrEnum):
    BUNDLED = "bundled"
    OWNER = "owner"
    DRAFT = "draft"


@dataclass(frozen=True, slots=True)
class Requirements:
    bins: tuple[str, ...] = ()
    any_bins: tuple[str, ...] = ()
    env: tuple[str, ...] = ()
    config: tuple[str, ...] = ()
    os: tuple[str, ...] = ()
    tools: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class Surroundings:
    """What requirements are checked against; built once per reload."""

    #: registered tool names; None where they are not known (the CLI): not checked
    tools: Collection[str] | None
    config: Any
    environ: Mapping[str, str]
    which: Callable[[str], str | None]
    platform: str = sys.platform

    def unmet(self, req: Requirements) -> str | None:
        """Why a skill with these requirements cannot be offered here, or None."""
        missing = [b for b in req.bins if self.which(b) is None]
        if missing:
            return "missing program " + ", ".join(missing)
        if req.any_bins and all(self.which(b) is None for b in req.any_bins):
            return "needs one of the programs " + ", ".join(req.any_bins)
        unset = [e for e in req.env if not self.environ.get(e)]
        if unset:
            return "environment variable not set: " + ", ".join(unset)
        off = [key for key in req.config if not _config_value(self.config, key)]
        if off:
            return "config not set: " + ", ".join(off)
        if req.os and not any(_OS_NAMES.get(o, o) == self.platform for o in req.os):
            return f"made for {', '.join(req.os)}, not {self.platform}"
        absent = [t for t in req.tools if self.tools is not None and t not in self.tools]
        if absent:
            return "tool not available: " + ", ".join(absent)
        return None


@dataclass(frozen=True, slots=True)
class Skill:
    name: str
    description: str
    body: str
    folder: Path
    origin: Origin
    requires: Requirements = field(default_factory=Requirements)
    #: the front matter as written, unknown keys included
    meta: Mapping[str, Any] = field(default_factory=dict)


def skill_file(folder: Path) -> Path | None:
    for name in (SKILL_FILE, *_ALT_SKILL_FILES):
        path = folder / name
        if path.is_file():
            return path
    return None


def load_skill(folder: Path, origin: Origin, max_bytes: int) -> Skill:
    """Read and check `folder`'s SKILL.md; raises SkillFormatError with the reason."""
    path = skill_file(folder)
    if path is None:
        raise SkillFormatError(f"no {SKILL_FILE} in the folder")
    check_size(path.name, path.stat().st_size, max_bytes)
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError:
        raise SkillFormatError(f"{path.name} is not UTF-8 text") from None
    return parse_skill(text, folder, origin)


def check_size(file_name: str, size: int, max_bytes: int) -> None:
    """The size limit of a skill file: checked when one is read, and before one is written."""
    if size > max_bytes:
        raise SkillFormatError(f"{file_name} is {size:,} bytes; the limit is {max_bytes:,}")


def parse_skill(text: str, folder: Path, origin: Origin) -> Skill:
    meta, body = split_front_matter(text)
    name = meta.get("name")
    if not isinstance(name, str) or not name.strip():
        raise SkillFormatError("the front matter has no name")
    name = name.strip()
    if not NAME_RE.match(name):
        raise SkillFormatError(f"name {name!r} must be 1-64 lowercase letters, digits, '-' or '_'")
    description = meta.get("description")
    if not isinstance(description, str) or not description.strip():
        raise SkillFormatError("the front matter has no description")
    description = " ".join(description.split())
    if len(description) > MAX_DESCRIPTION:
        raise SkillFormatError(f"the description is over {MAX_DESCRIPTION} characters")
    if not body.strip():
        raise SkillFormatError("the skill has no instructions after the front matter")
    return Skill(name, description, body.strip() + "\n", folder, origin, requirements(meta), meta)


def split_front_matter(text: str) -> tuple[dict[str, Any], str]:
    text = text.removeprefix("\ufeff")
    match = _FRONT.match(text)
    if match is None:
        raise SkillFormatError("no YAML front matter (a '---' block with name and description)")
    try:
        meta = yaml.safe_load(match.group(1))
    except yaml.YAMLError as exc:
        where = getattr(exc, "problem_mark", None)
        line = f" at line {where.line + 2}" if where is not None else ""
        raise SkillFormatError(f"the front matter is not valid YAML{line}") from None
    except (ValueError, RecursionError) as exc:
        # well-formed YAML that cannot be built: a date that does not exist (2024-02-30),
        # `!!int abc`, or nesting deeper than the parser's recursion
        why = str(exc) if isinstance(exc, ValueError) else "nested too deeply"
        raise SkillFormatError(f"the front matter is not valid YAML: {why}") from None
    if not isinstance(meta, dict):
        raise SkillFormatError("the front matter must be a mapping of keys to values")
    return meta, text[match.end() :]


def requirements(meta: Mapping[str, Any]) -> Requirements:
    """Everything the front matter requires, wherever the runtimes that share the format
    put it; requirements found in several places add up."""
    sources: list[Any] = [meta.get("requires")]
    metadata = meta.get("metadata")
    if isinstance(metadata, dict):
        for key in _RUNTIME_KEYS:
            runtime = metadata.get(key)
            if isinstance(runtime, dict):
                sources.append(runtime.get("requires"))
                sources.append({"os": runtime.get("os")})
    sources.append({"os": meta.get("os")})
    found: dict[str, list[str]] = {k: [] for k in ("bins", "anyBins", "env", "config", "os")}
    found["tools"] = []
    for source in sources:
        if not isinstance(source, dict):
            continue
        for key, values in found.items():
            for value in _strings(source.get(key)):
                if value not in values:
                    values.append(value)
    return Requirements(
        bins=tuple(found["bins"]),
        any_bins=tuple(found["anyBins"]),
        env=tuple(found["env"]),
        config=tuple(found["config"]),
        os=tuple(found["os"]),
        tools=tuple(found["tools"]),
    )


def _strings(value: Any) -> list[str]:
    if isinstance(value, str):
        return [value]
    if isinstance(value, list):
        return [v for v in value if isinstance(v, str)]
    return []


def _config_value(config: Any, dotted: str) -> Any:
    """The value at a dotted path of Decapod's config (`memory.enabled`), or None."""
    value = config
    for part in dotted.split("."):
        value = value.get(part) if isinstance(value, Mapping) else getattr(value, part, None)
        if value is None:
            return None
    return value


def host_which(path: str | None = None) -> Callable[[str], str | None]:
    return lambda program: shutil.which(program, path=path)
