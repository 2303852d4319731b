"""`decapod skills install / list / enable / remove`: archives and folders are checked before
anything lands in the skills folder."""

from __future__ import annotations

import io
import os
import stat
import tarfile
import zipfile
from pathlib import Path
from typing import Any

import pytest

from bot.cli import main
from bot.config import parse_config
from bot.skills.install import install
from bot.skills.library import SkillError, SkillLibrary
from tests.skills.conftest import simple_skill, write_skill

SKILL = simple_skill("weather", "Say the weather.", "Run scripts/get.sh")


def library(home: Path, **skills: Any) -> SkillLibrary:
    return SkillLibrary(parse_config({"skills": skills}, home).skills, home)


def _zip(path: Path, members: dict[str, bytes], links: dict[str, str] | None = None) -> Path:
    with zipfile.ZipFile(path, "w") as zf:
        for name, data in members.items():
            info = zipfile.ZipInfo(name)
            info.external_attr = (stat.S_IFREG | 0o755) << 16
            zf.writestr(info, data)
        for name, target in (links or {}).items():
            info = zipfile.ZipInfo(name)
            info.external_attr = (stat.S_IFLNK | 0o777) << 16
            zf.writestr(info, target)
    return path


def _tar(path: Path, members: dict[str, bytes], symlink: tuple[str, str] | None = None) -> Path:
    with tarfile.open(path, "w:gz") as tf:
        for name, data in members.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            info.mode = 0o755
            tf.addfile(info, io.BytesIO(data))
        if symlink:
            info = tarfile.TarInfo(symlink[0])
            info.type = tarfile.SYMTYPE
            info.linkname = symlink[1]
            tf.addfile(info)
    return path


def test_installs_a_folder_a_zip_and_a_tarball(home: Path, tmp_path: Path) -> None:
    lib = library(home)
    src = write_skill(tmp_path / "src", "weather", SKILL)
    (src / "scripts").mkdir()
    (src / "scripts" / "get.sh").write_text("echo sunny\n")
    os.chmod(src / "scripts" / "get.sh", 0o755)
    skill = install(lib, src)
    assert skill.folder == home / "skills" / "weather"
    assert (skill.folder / "scripts" / "get.sh").stat().st_mode & stat.S_IXUSR
    with pytest.raises(SkillError, match="--force replaces it"):
        install(lib, src)
    archive = _zip(tmp_path / "w.zip", {"weather/SKILL.md": SKILL.encode(), "weather/a.txt": b"a"})
    assert install(lib, archive, force=True).name == "weather"
    assert (home / "skills" / "weather" / "a.txt").read_text() == "a"
    tarball = _tar(tmp_path / "w.tar.gz", {"SKILL.md": SKILL.encode(), "b.txt": b"b"})
    install(lib, tarball, force=True)
    assert (home / "skills" / "weather" / "b.txt").read_text() == "b"
    assert not (home / "skills" / "weather" / "a.txt").exists()


@pytest.mark.parametrize(
    ("make", "why"),
    [
        (lambda t: _zip(t / "x.zip", {"../evil/SKILL.md": SKILL.encode()}), "outside"),
        (lambda t: _zip(t / "x.zip", {"/abs/SKILL.md": SKILL.encode()}), "outside"),
        (
            lambda t: _zip(t / "x.zip", {"SKILL.md": SKILL.encode()}, {"link": "/etc/passwd"}),
            "link or a special file",
        ),
        (
            lambda t: _tar(t / "x.tgz", {"SKILL.md": SKILL.encode()}, ("l", "/etc/shadow")),
            "link or a special file",
        ),
        (
            lambda t: _tar(t / "x.tgz", {"SKILL.md": SKILL.encode(), "big": b"0" * 5000}),
            "bytes unpacked",
        ),
        (lambda t: _zip(t / "x.zip", {"README.md": b"no skill"}), "no SKILL.md"),
        (lambda t: _zip(t / "x.zip", {"SKILL.md": b"no front matter"}), "no YAML front matter"),
        (lambda t: (t / "x.zip").write_bytes(b"not a zip") and t / "x.zip", "not a valid zip"),
    ],
)
def test_refuses_unsafe_or_broken_archives(home: Path, tmp_path: Path, make: Any, why: str) -> None:
    lib = library(home, max_install_bytes=4096)
    archive = make(tmp_path)
    with pytest.raises(SkillError, match=why):
        install(lib, archive)
    assert [p.name for p in (home / "skills").iterdir()] == [], "nothing is left behind"
    assert not (tmp_path.parent / "evil").exists()


def test_refuses_a_folder_with_a_symlink_or_too_many_files(home: Path, tmp_path: Path) -> None:
    src = write_skill(tmp_path / "src", "weather", SKILL)
    (src / "key").symlink_to("/etc/passwd")
    with pytest.raises(SkillError, match="is a symlink"):
        install(library(home), src)
    (src / "key").unlink()
    for i in range(5):
        (src / f"f{i}.txt").write_text("x")
    with pytest.raises(SkillError, match="more than 3 files"):
        install(library(home, max_install_files=3), src)


def test_cli_lists_enables_and_removes(home: Path, tmp_path: Path, capsys: Any) -> None:
    lib = library(home)
    lib.ensure_dirs()
    write_skill(home / "skill_drafts", "draft-one", simple_skill("draft-one", "A draft."))
    write_skill(home / "skills", "broken-one", "---\nname: broken-one\n---\nx\n")
    assert main(["skills", "list"]) == 0
    out = capsys.readouterr().out
    assert "draft    draft-one: A draft." in out
    assert "broken   broken-one (owner): the front matter has no description" in out
    assert "enabled  daily-briefing (bundled)" in out
    assert main(["skills", "enable", "draft-one"]) == 0
    assert (home / "skills" / "draft-one" / "SKILL.md").is_file()
    assert main(["skills", "enable", "draft-one"]) == 1
    assert "there is no draft named draft-one" in capsys.readouterr().out
    assert main(["skills", "remove", "draft-one"]) == 0
    assert not (home / "skills" / "draft-one").exists()
    src = write_skill(tmp_path / "src", "weather", SKILL)
    assert main(["skills", "install", str(src)]) == 0
    assert "installed weather" in capsys.readouterr().out


def test_model_updates_and_deletes_go_through_drafts_and_the_trash(home: Path) -> None:
    lib = library(home)
    lib.ensure_dirs()
    write_skill(home / "skills", "notes", simple_skill("notes", "Take notes.", "OLD BODY"))
    skill, enabled = lib.write("notes", description=None, instructions="NEW BODY", create=False)
    assert not enabled and skill.description == "Take notes."
    assert "OLD BODY" in (home / "skills" / "notes" / "SKILL.md").read_text(), "still enabled"
    assert "NEW BODY" in (home / "skill_drafts" / "notes" / "SKILL.md").read_text()
    with pytest.raises(SkillError, match="exists already"):
        lib.write("notes", description="d", instructions="i", create=True)
    with pytest.raises(SkillError, match="not a skill name"):
        lib.write("../etc", description="d", instructions="i", create=True)
    lib.enable("notes")
    assert "NEW BODY" in (home / "skills" / "notes" / "SKILL.md").read_text()
    assert "deleted skill notes" in lib.delete("notes")
    assert not (home / "skills" / "notes").exists()
    kept = sorted((home / "skill_drafts" / ".trash").glob("notes-*"))
    bodies = sorted((k / "SKILL.md").read_text().split("\n\n", 1)[1] for k in kept)
    assert bodies == ["NEW BODY\n", "OLD BODY\n"], "the replaced and the deleted are kept"
    with pytest.raises(SkillError, match="ships with Decapod"):
        lib.delete("daily-briefing")


def test_auto_enable_writes_straight_into_the_skills_folder(home: Path) -> None:
    lib = library(home, auto_enable=True)
    skill, enabled = lib.write("quick", description="Q.", instructions="Do Q.", create=True)
    assert enabled and skill.folder == home / "skills" / "quick"


def test_a_draft_from_a_shipped_skill_is_private_like_the_rest_of_the_home(home: Path) -> None:
    lib = library(home)
    lib.write("daily-briefing", description="Mine.", instructions=None, create=False)
    draft = home / "skill_drafts" / "daily-briefing"
    assert stat.S_IMODE(draft.stat().st_mode) == 0o700
    assert stat.S_IMODE((draft / "SKILL.md").stat().st_mode) == 0o600
    assert "A daily briefing (agenda" not in (draft / "SKILL.md").read_text()


def _cut_short(path: Path) -> Path:
    """The archive as a download that stopped two thirds of the way leaves it."""
    data = path.read_bytes()
    path.write_bytes(data[: len(data) * 2 // 3])
    return path


def _spoiled(path: Path) -> Path:
    """The archive with bytes in the middle of its compressed data overwritten."""
    data = bytearray(path.read_bytes())
    middle = len(data) // 2
    data[middle : middle + 64] = b"\xff" * 64
    path.write_bytes(bytes(data))
    return path


def _deflated_zip(path: Path, members: dict[str, bytes]) -> Path:
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as zf:
        for name, data in members.items():
            zf.writestr(name, data)
    return path


_NOISE = bytes(range(256)) * 64 + os.urandom(20_000)


@pytest.mark.parametrize(
    "make",
    [
        lambda t: _cut_short(_tar(t / "x.tar.gz", {"SKILL.md": SKILL.encode(), "d": _NOISE})),
        lambda t: _spoiled(_tar(t / "x.tar.gz", {"SKILL.md": SKILL.encode(), "d": _NOISE})),
        lambda t: _spoiled(_deflated_zip(t / "x.zip", {"SKILL.md": SKILL.encode(), "d": _NOISE})),
    ],
    ids=["tar.gz cut short", "tar.gz damaged", "zip damaged"],
)
def test_a_damaged_or_cut_off_archive_is_refused_as_such(
    home: Path, tmp_path: Path, make: Any, capsys: Any
) -> None:
    """gzip and zlib raise their own errors (EOFError, zlib.error, BadGzipFile), not
    tarfile's or zipfile's: the install still ends with one line, not a traceback."""
    archive = make(tmp_path)
    with pytest.raises(SkillError, match=r"x\.(tar\.gz|zip): (damaged|cut off|not a valid)"):
        install(library(home), archive)
    assert [p.name for p in (home / "skills").iterdir()] == [], "nothing is left behind"
