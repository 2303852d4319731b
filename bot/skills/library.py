"""The skill folders on disk: the owner's enabled skills, the drafts the model wrote, and
the skills shipped with Decapod; and every change to them (write, enable, delete).

A change is made in a hidden temporary folder beside its target and renamed into place, so
the watcher (and a reader) never sees half a skill. What is replaced or deleted goes to a
trash folder under the drafts (`.trash/<name>-<time>`): nothing is lost to a mistake.
Drafts live outside the skills folder, so they are never mounted into the sandbox and
their scripts can never run before the owner enables them.
"""

from __future__ import annotations

import os
import secrets
import shutil
import time
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Any

import yaml

from bot.security.files import private_dirs
from bot.skills.catalog import Broken, SkillLoader
from bot.skills.config import SkillsConfig
from bot.skills.skill import (
    NAME_RE,
    SKILL_FILE,
    Origin,
    Skill,
    SkillFormatError,
    check_size,
    load_skill,
    parse_skill,
    skill_file,
    split_front_matter,
)

BUNDLED_DIR = Path(__file__).parent / "bundled"


class SkillError(Exception):
    """A change to the skills that cannot be made; the message says why."""


@dataclass(frozen=True, slots=True)
class Draft:
    name: str
    folder: Path
    #: None when the draft does not parse (the reason is in `problem`)
    skill: Skill | None
    problem: str = ""
    #: an enabled skill of the same name exists: enabling the draft replaces it
    replaces: bool = False


class SkillLibrary:
    def __init__(self, config: SkillsConfig, home: Path) -> None:
        self.config = config
        self.root = home / config.dir
        self.drafts_root = home / config.drafts_dir
        self.trash = self.drafts_root / ".trash"
        self.bundled_root = BUNDLED_DIR if config.bundled else None

    def ensure_dirs(self) -> None:
        private_dirs(self.root)
        private_dirs(self.drafts_root)

    def loader(self) -> SkillLoader:
        roots = [(self.root, Origin.OWNER)]
        if self.bundled_root is not None:
            roots.insert(0, (self.bundled_root, Origin.BUNDLED))
        return SkillLoader(roots, self.config.max_skill_bytes)

    # reading ---------------------------------------------------------------------------------
    def find(self, name: str) -> Skill | None:
        """The enabled skill called `name` (the owner's first, then a bundled one)."""
        check_name(name)
        for root, origin in ((self.root, Origin.OWNER), (self.bundled_root, Origin.BUNDLED)):
            if root is None or not (root / name).is_dir():
                continue
            try:
                return load_skill(root / name, origin, self.config.max_skill_bytes)
            except (SkillFormatError, OSError):
                return None
        return None

    def drafts(self) -> list[Draft]:
        out = []
        try:
            entries = sorted(self.drafts_root.iterdir())
        except FileNotFoundError:
            return []
        for folder in entries:
            if folder.name.startswith(".") or not folder.is_dir():
                continue
            replaces = (self.root / folder.name).is_dir()
            try:
                skill = load_skill(folder, Origin.DRAFT, self.config.max_skill_bytes)
            except (SkillFormatError, OSError) as exc:
                out.append(Draft(folder.name, folder, None, str(exc), replaces))
            else:
                out.append(Draft(folder.name, folder, skill, "", replaces))
        return out

    def draft(self, name: str) -> Draft | None:
        check_name(name)
        return next((d for d in self.drafts() if d.name == name), None)

    # the model's changes -----------------------------------------------------------------------
    def write(
        self,
        name: str,
        *,
        description: str | None,
        instructions: str | None,
        create: bool,
    ) -> tuple[Skill, bool]:
        """Create or update a skill for the model: as a draft, or enabled at once when the
        owner opted in to auto_enable. Returns the skill and whether it is enabled."""
        check_name(name)
        base = self._base(name)
        if create and base is not None:
            raise SkillError(f"a skill named {name} exists already; update it instead")
        if not create and base is None:
            raise SkillError(f"there is no skill named {name} to update")
        meta: dict[str, Any] = {"name": name}
        body = ""
        if base is not None:
            meta, body = split_front_matter(_read_skill_text(base))
            meta["name"] = name
        if description is not None:
            meta["description"] = description
        if instructions is not None:
            body = instructions
        text = render_skill(meta, body)
        # refused before anything is written: what the loader would skip as broken
        parse_skill(text, self.root / name, Origin.DRAFT)
        check_size(SKILL_FILE, len(text.encode()), self.config.max_skill_bytes)
        enable = self.config.auto_enable
        target_root = self.root if enable else self.drafts_root
        folder = self._build(target_root, name, base, text)
        origin = Origin.OWNER if enable else Origin.DRAFT
        skill = load_skill(folder, origin, self.config.max_skill_bytes)
        return skill, enable

    def enable(self, name: str) -> Skill:
        """Move a draft into the skills folder (replacing an enabled skill of that name)."""
        draft = self.draft(name)
        if draft is None:
            raise SkillError(f"there is no draft named {name}")
        if draft.skill is None:
            raise SkillError(f"the draft {name} cannot be loaded: {draft.problem}")
        self._swap_in(self.root, name, draft.folder)
        return load_skill(self.root / name, Origin.OWNER, 1 << 30)

    def discard(self, name: str) -> bool:
        """Move a draft to the trash."""
        check_name(name)
        folder = self.drafts_root / name
        if not folder.is_dir():
            return False
        self._to_trash(folder)
        return True

    def delete(self, name: str) -> str:
        """The model's delete: a draft, or else the enabled skill, goes to the trash."""
        if self.discard(name):
            return f"deleted the draft of {name}"
        folder = self.root / name
        if folder.is_dir():
            kept = self._to_trash(folder)
            return f"deleted skill {name} (kept in {kept} for the owner)"
        if self.bundled_root is not None and (self.bundled_root / name).is_dir():
            raise SkillError(f"{name} ships with Decapod and cannot be deleted")
        raise SkillError(f"there is no skill named {name}")

    def remove(self, name: str) -> bool:
        """The owner's remove (CLI): the enabled skill, or else the draft, goes for good."""
        check_name(name)
        for folder in (self.root / name, self.drafts_root / name):
            if folder.is_dir() and not folder.is_symlink():
                shutil.rmtree(folder)
                return True
            if folder.is_symlink():
                folder.unlink()
                return True
        return False

    # plumbing ------------------------------------------------------------------------------
    def _base(self, name: str) -> Path | None:
        """The folder an update starts from: the pending draft, else the enabled skill."""
        roots = [self.drafts_root, self.root]
        if self.bundled_root is not None:
            roots.append(self.bundled_root)
        for root in roots:
            folder = root / name
            if folder.is_dir() and skill_file(folder) is not None:
                return folder
        return None

    def _build(
        self,
        target_root: Path,
        name: str,
        base: Path | None,
        text: str,
    ) -> Path:
        private_dirs(target_root)
        tmp = target_root / f".tmp-{name}-{secrets.token_hex(4)}"
        try:
            if base is not None:
                # symlinks are left behind: what the model writes next must not follow one
                shutil.copytree(base, tmp, ignore=_symlinks)
                _make_private(tmp)  # a shipped skill's files come with the package's modes
            else:
                tmp.mkdir(mode=0o700)
            _write_new(tmp, PurePosixPath(SKILL_FILE), text.encode())
            for other in ("skill.md",):
                (tmp / other).unlink(missing_ok=True)
            self._swap_in(target_root, name, tmp)
        finally:
            if tmp.exists():
                shutil.rmtree(tmp, ignore_errors=True)
        return target_root / name

    def _swap_in(self, target_root: Path, name: str, source: Path) -> None:
        private_dirs(target_root)
        target = target_root / name
        if target.exists() or target.is_symlink():
            self._to_trash(target)
        os.replace(source, target)

    def _to_trash(self, folder: Path) -> Path:
        private_dirs(self.trash)
        kept = self.trash / f"{folder.name}-{time.strftime('%Y%m%d-%H%M%S')}-{secrets.token_hex(2)}"
        os.replace(folder, kept)
        return kept


def check_name(name: str) -> None:
    if not NAME_RE.match(name):
        raise SkillError(
            f"{name!r} is not a skill name (1-64 lowercase letters, digits, '-' or '_')"
        )


def render_skill(meta: Mapping[str, Any], body: str) -> str:
    front = yaml.safe_dump(dict(meta), sort_keys=False, allow_unicode=True, width=1000)
    return f"---\n{front}---\n\n{body.strip()}\n"


def _read_skill_text(folder: Path) -> str:
    path = skill_file(folder)
    if path is None:
        raise SkillError(f"{folder} has no {SKILL_FILE}")
    return path.read_text(encoding="utf-8")


def safe_relative(raw: str) -> PurePosixPath:
    """A relative path inside a skill folder, or SkillError (absolute, '..', NUL, hidden)."""
    if not raw or "\0" in raw or "\\" in raw:
        raise SkillError(f"refused path {raw!r}")
    path = PurePosixPath(raw)
    if path.is_absolute() or any(p in ("..", "") for p in path.parts) or not path.parts:
        raise SkillError(f"refused path {raw!r}: it must stay inside the skill's folder")
    if any(p.startswith(".") for p in path.parts):
        raise SkillError(f"refused path {raw!r}: hidden files are not allowed")
    return path


def _write_new(root: Path, rel: PurePosixPath, data: bytes) -> None:
    folder = root
    for part in rel.parts[:-1]:
        folder = folder / part
        if folder.is_symlink() or (folder.exists() and not folder.is_dir()):
            raise SkillError(f"refused path {rel}: {part} is not a folder")
        folder.mkdir(mode=0o700, exist_ok=True)
    target = folder / rel.name
    if target.is_symlink() or target.is_dir():
        raise SkillError(f"refused path {rel}: it is a folder or a link")
    fd = os.open(target, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_NOFOLLOW, 0o600)
    with os.fdopen(fd, "wb") as f:
        f.write(data)


def _symlinks(folder: str, names: list[str]) -> list[str]:
    return [n for n in names if os.path.islink(os.path.join(folder, n))]


def broken_line(b: Broken) -> str:
    return f"{b.folder.name} ({b.origin.value}): {b.reason}"


def _make_private(root: Path) -> None:
    """Folders 0700 and files 0600 (0700 for scripts), like everything under the home."""
    for folder, _dirs, files in os.walk(root):
        os.chmod(folder, 0o700)
        for name in files:
            path = os.path.join(folder, name)
            runnable = os.stat(path).st_mode & 0o100
            os.chmod(path, 0o700 if runnable else 0o600)
