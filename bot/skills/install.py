"""`decapod skills install`: a skill folder, or a .zip / .tar.gz / .tgz / .tar archive of one.

Nothing from the source is trusted: members that are links (symbolic or hard), devices or
pipes, paths that are absolute or climb out with '..', more than `max_install_files`
files or more than `max_install_bytes` unpacked bytes (counted as they are written, not as
an archive declares them) refuse the whole install. The skill is unpacked into a hidden
folder beside its target, checked like any SKILL.md, then renamed into place.
"""

from __future__ import annotations

import gzip
import lzma
import os
import shutil
import stat
import tarfile
import zipfile
import zlib
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path, PurePosixPath
from typing import IO

from bot.errors import describe_error
from bot.skills.library import SkillError, SkillLibrary, safe_relative
from bot.skills.skill import Origin, Skill, SkillFormatError, load_skill, skill_file

_CHUNK = 1 << 16
#: what the decompressors raise for a damaged or truncated archive (a download cut off):
#: their own errors, not tarfile's or zipfile's
_DAMAGED = (EOFError, zlib.error, gzip.BadGzipFile, lzma.LZMAError)


class _Budget:
    def __init__(self, max_files: int, max_bytes: int) -> None:
        self.files_left = max_files
        self.bytes_left = max_bytes
        self.max_files, self.max_bytes = max_files, max_bytes

    def file(self) -> None:
        self.files_left -= 1
        if self.files_left < 0:
            raise SkillError(f"refused: more than {self.max_files} files")

    def take(self, n: int) -> None:
        self.bytes_left -= n
        if self.bytes_left < 0:
            raise SkillError(f"refused: more than {self.max_bytes:,} bytes unpacked")


def install(library: SkillLibrary, source: Path, *, force: bool = False) -> Skill:
    """Install the skill at `source` into the owner's skills folder, enabled."""
    cfg = library.config
    library.ensure_dirs()
    staging = library.root / f".install-{os.getpid()}-{os.urandom(3).hex()}"
    staging.mkdir(mode=0o700)
    try:
        budget = _Budget(cfg.max_install_files, cfg.max_install_bytes)
        if source.is_dir():
            _copy_folder(source, staging, budget)
        elif source.is_file():
            _unpack(source, staging, budget)
        else:
            raise SkillError(f"{source} is neither a folder nor an archive")
        top = _skill_root(staging)
        try:
            skill = load_skill(top, Origin.OWNER, cfg.max_skill_bytes)
        except SkillFormatError as exc:
            raise SkillError(f"refused: {exc}") from None
        target = library.root / skill.name
        if target.exists() or target.is_symlink():
            if not force:
                raise SkillError(f"a skill named {skill.name} is installed; --force replaces it")
            library.remove(skill.name)
        os.replace(top, target)
        return load_skill(target, Origin.OWNER, cfg.max_skill_bytes)
    finally:
        shutil.rmtree(staging, ignore_errors=True)


def _skill_root(staging: Path) -> Path:
    """Where SKILL.md is: at the top, or in the one folder the archive holds."""
    if skill_file(staging) is not None:
        return staging
    entries = [e for e in staging.iterdir() if not e.name.startswith(".")]
    if len(entries) == 1 and entries[0].is_dir() and skill_file(entries[0]) is not None:
        return entries[0]
    raise SkillError("refused: no SKILL.md at the top, nor in a single folder")


def _copy_folder(source: Path, dest: Path, budget: _Budget) -> None:
    for folder, dirs, files in os.walk(source):
        rel_folder = Path(folder).relative_to(source)
        for name in [*dirs, *files]:
            path = Path(folder) / name
            mode = path.lstat().st_mode
            if stat.S_ISLNK(mode):
                raise SkillError(f"refused: {rel_folder / name} is a symlink")
            if not (stat.S_ISDIR(mode) or stat.S_ISREG(mode)):
                raise SkillError(f"refused: {rel_folder / name} is not a regular file")
        dirs[:] = [d for d in dirs if not d.startswith(".")]
        for name in files:
            if name.startswith("."):
                continue
            rel = PurePosixPath((rel_folder / name).as_posix())
            path = Path(folder) / name
            with open(path, "rb") as src:
                _write(dest, rel, src, budget, _executable(path.stat().st_mode))


def _unpack(archive: Path, dest: Path, budget: _Budget) -> None:
    name = archive.name.lower()
    if name.endswith(".zip"):
        _unzip(archive, dest, budget)
    elif name.endswith((".tar.gz", ".tgz", ".tar")):
        _untar(archive, dest, budget)
    else:
        raise SkillError(f"{archive.name}: not a .zip, .tar.gz, .tgz or .tar archive")


def _unzip(archive: Path, dest: Path, budget: _Budget) -> None:
    try:
        with zipfile.ZipFile(archive) as zf:
            for info in zf.infolist():
                kind = stat.S_IFMT(info.external_attr >> 16)
                if kind and kind not in (stat.S_IFREG, stat.S_IFDIR):
                    raise SkillError(f"refused: {info.filename} is a link or a special file")
                rel = _member_path(info.filename)
                if rel is None or info.is_dir():
                    continue
                if info.file_size > budget.bytes_left:
                    budget.take(info.file_size)  # says how large, before reading any of it
                with zf.open(info) as src:
                    _write(dest, rel, src, budget, _executable(info.external_attr >> 16))
    except zipfile.BadZipFile as exc:
        raise SkillError(f"{archive.name}: not a valid zip archive ({exc})") from None
    except _DAMAGED as exc:
        raise SkillError(f"{archive.name}: damaged or cut off ({describe_error(exc)})") from None


def _untar(archive: Path, dest: Path, budget: _Budget) -> None:
    try:
        with tarfile.open(archive) as tf:
            for member in tf:
                if not (member.isfile() or member.isdir()):
                    raise SkillError(f"refused: {member.name} is a link or a special file")
                rel = _member_path(member.name)
                if rel is None or member.isdir():
                    continue
                if member.size > budget.bytes_left:
                    budget.take(member.size)
                src = tf.extractfile(member)
                if src is None:
                    raise SkillError(f"refused: {member.name} cannot be read")
                with src:
                    _write(dest, rel, src, budget, _executable(member.mode))
            # to the end of the compressed stream: only there does gzip check its CRC (a
            # damaged archive can unpack without an error before it)
            if tf.fileobj is not None:
                while tf.fileobj.read(_CHUNK):
                    pass
    except tarfile.TarError as exc:
        raise SkillError(f"{archive.name}: not a valid tar archive ({exc})") from None
    except _DAMAGED as exc:
        raise SkillError(f"{archive.name}: damaged or cut off ({describe_error(exc)})") from None


def _member_path(raw: str) -> PurePosixPath | None:
    """The member's path inside the skill, or None for what is skipped (hidden files such
    as __MACOSX/ or .git/ are skipped; a path that climbs out refuses the archive)."""
    cleaned = raw.rstrip("/")
    if cleaned in ("", "."):
        return None
    cleaned = cleaned.removeprefix("./")
    if cleaned.startswith("/") or "\\" in cleaned or ".." in PurePosixPath(cleaned).parts:
        raise SkillError(f"refused: {raw} points outside the skill's folder")
    parts = PurePosixPath(cleaned).parts
    if any(p.startswith(".") or p == "__MACOSX" for p in parts):
        return None
    return safe_relative(cleaned)


def _executable(mode: int) -> bool:
    return bool(mode & stat.S_IXUSR)


def _write(
    dest: Path, rel: PurePosixPath, src: IO[bytes], budget: _Budget, executable: bool
) -> None:
    budget.file()
    folder = dest
    for part in rel.parts[:-1]:
        folder = folder / part
        folder.mkdir(mode=0o700, exist_ok=True)
    with _new_file(folder / rel.name) as out:
        while chunk := src.read(_CHUNK):
            budget.take(len(chunk))
            out.write(chunk)
        if executable:  # a skill's scripts stay runnable; nothing else gets the bit
            os.fchmod(out.fileno(), 0o700)


@contextmanager
def _new_file(path: Path) -> Iterator[IO[bytes]]:
    # O_EXCL: two members with one name refuse rather than overwrite each other
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600)
    except FileExistsError:
        raise SkillError(f"refused: {path.name} appears twice") from None
    with os.fdopen(fd, "wb") as f:
        yield f
