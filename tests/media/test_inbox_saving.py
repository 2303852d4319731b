"""Saving a received document in the workspace inbox, on the workspace's own file operations:
a name that holds anything else moves the file to "name (2).ext", the same bytes are not
written again, and a save that lands late never replaces a file another save has put there."""

from __future__ import annotations

import errno
import os
from pathlib import Path
from typing import Any

import pytest

from bot.errors import ToolError
from bot.media.intake import save_in_inbox
from bot.sandbox.noreplace import rename_noreplace
from bot.sandbox.safe_fs import WorkspaceFS

LIMIT = 1 << 20
MARCH, APRIL = b"March revenue 10 EUR\n", b"April revenue 20 EUR, paid\n"


class ReadsSeen(WorkspaceFS):
    """The workspace's file operations, with the reads made through them written down."""

    def __init__(self, root: Path) -> None:
        super().__init__(root, None, LIMIT)
        self.reads: list[str] = []

    def read(self, path: str, offset: int, limit: int) -> tuple[bytes, int]:
        self.reads.append(path)
        return super().read(path, offset, limit)


class SavedMeanwhile(WorkspaceFS):
    """Another save of the chat puts `other` at `path` right after this one looked there
    (an intake that gave up, whose write went on in its thread)."""

    def __init__(self, root: Path, path: str, other: bytes) -> None:
        super().__init__(root, None, LIMIT)
        self.path, self.other = path, other

    def entry(self, path: str) -> os.stat_result | None:
        held = super().entry(path)
        if path == self.path:
            self.path = ""
            WorkspaceFS(self.root, None, LIMIT).write(path, self.other)
        return held


def _inbox(root: Path) -> Path:
    inbox = root / "inbox"
    inbox.mkdir(exist_ok=True)
    return inbox


@pytest.mark.parametrize("what", ["symlink", "folder", "fifo"])
def test_a_name_holding_what_cannot_be_read_is_kept_and_the_file_takes_the_next(
    tmp_path: Path, what: str
) -> None:
    """Only "no such file" makes a name free: a symlink, a folder or a pipe at it is left as
    it is, and the document is still saved, as "report (2).pdf"."""
    inbox = _inbox(tmp_path)
    held = inbox / "report.pdf"
    if what == "symlink":
        held.symlink_to("/etc/hostname")
    elif what == "folder":
        held.mkdir()
    else:
        os.mkfifo(held)
    fs = WorkspaceFS(tmp_path, None, LIMIT)
    assert save_in_inbox(fs, "report.pdf", MARCH) == "inbox/report (2).pdf"
    assert (inbox / "report (2).pdf").read_bytes() == MARCH
    assert {"symlink": held.is_symlink, "folder": held.is_dir, "fifo": held.is_fifo}[what]()
    # the next one of that name is not stopped by it either
    assert save_in_inbox(fs, "report.pdf", APRIL) == "inbox/report (3).pdf"


def test_only_a_file_of_the_same_size_is_read_and_the_same_bytes_are_not_written_again(
    tmp_path: Path,
) -> None:
    inbox = _inbox(tmp_path)
    (inbox / "report.pdf").write_bytes(APRIL)
    (inbox / "report (2).pdf").write_bytes(MARCH)
    kept = (inbox / "report (2).pdf").stat()
    fs = ReadsSeen(tmp_path)
    assert save_in_inbox(fs, "report.pdf", MARCH) == "inbox/report (2).pdf"
    # report.pdf is longer than MARCH: its bytes cannot be the same and are not read
    assert fs.reads == ["inbox/report (2).pdf"]
    now = (inbox / "report (2).pdf").stat()
    # written over, the file would be a new one (the write renames a fresh file into place)
    assert (now.st_ino, now.st_mtime_ns) == (kept.st_ino, kept.st_mtime_ns)


def test_a_save_landing_on_the_picked_name_meanwhile_is_not_written_over(
    tmp_path: Path,
) -> None:
    fs = SavedMeanwhile(tmp_path, "inbox/report.pdf", APRIL)
    assert save_in_inbox(fs, "report.pdf", MARCH) == "inbox/report (2).pdf"
    inbox = tmp_path / "inbox"
    assert (inbox / "report.pdf").read_bytes() == APRIL
    assert (inbox / "report (2).pdf").read_bytes() == MARCH
    assert sorted(p.name for p in inbox.iterdir()) == ["report (2).pdf", "report.pdf"]


def test_the_same_attachment_saved_on_the_picked_name_meanwhile_is_that_file(
    tmp_path: Path,
) -> None:
    fs = SavedMeanwhile(tmp_path, "inbox/report.pdf", MARCH)
    assert save_in_inbox(fs, "report.pdf", MARCH) == "inbox/report.pdf"
    assert [p.name for p in (tmp_path / "inbox").iterdir()] == ["report.pdf"]


@pytest.mark.parametrize("refused", [errno.EPERM, errno.ENOTSUP, errno.EMLINK])
def test_create_without_a_hard_link_makes_the_file_in_place(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, refused: int
) -> None:
    """fs.protected_hardlinks refuses a link to a file of the sandbox's owner; some
    filesystems have no hard links: the file is still made, and still not over another."""

    def no_link(*args: object, **kwargs: object) -> None:
        raise OSError(refused, os.strerror(refused))

    monkeypatch.setattr(os, "link", no_link)
    fs = WorkspaceFS(tmp_path, None, LIMIT)
    assert save_in_inbox(fs, "a.txt", MARCH) == "inbox/a.txt"
    assert not fs.create("inbox/a.txt", APRIL)
    (tmp_path / "inbox" / "b.txt").symlink_to("a.txt")
    assert not fs.create("inbox/b.txt", APRIL)
    assert (tmp_path / "inbox" / "a.txt").read_bytes() == MARCH
    assert sorted(p.name for p in (tmp_path / "inbox").iterdir()) == ["a.txt", "b.txt"]


@pytest.mark.parametrize("noreplace", [True, False], ids=["renameat2", "no-renameat2"])
def test_create_without_a_hard_link_never_shows_a_half_written_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, noreplace: bool
) -> None:
    """Without hard links the file is still written whole under another name and moved into
    place: while its bytes are written, a reader finds nothing at its name (with no rename
    that refuses to replace, an empty file takes the name after that), never part of it."""

    def no_link(*args: object, **kwargs: object) -> None:
        raise OSError(errno.EPERM, os.strerror(errno.EPERM))

    final = tmp_path / "inbox" / "a.txt"
    seen: list[bytes | None] = []
    write = os.write

    def watched_write(fd: int, data: Any) -> int:
        seen.append(final.read_bytes() if final.exists() else None)
        return write(fd, data)

    monkeypatch.setattr(os, "link", no_link)
    monkeypatch.setattr(os, "write", watched_write)
    renamed: list[bool | None] = []

    def recorded(*args: Any) -> bool | None:
        renamed.append(rename_noreplace(*args) if noreplace else None)
        return renamed[-1]

    monkeypatch.setattr("bot.sandbox.safe_fs.rename_noreplace", recorded)
    fs = WorkspaceFS(tmp_path, None, LIMIT)
    (tmp_path / "inbox").mkdir()
    assert fs.create("inbox/a.txt", MARCH)
    if noreplace and renamed != [True]:
        pytest.skip("this kernel or filesystem has no renameat2 with RENAME_NOREPLACE")
    assert renamed == [True] if noreplace else renamed == [None]
    assert seen and all(s is None for s in seen)  # nothing there while the bytes went out
    assert final.read_bytes() == MARCH
    assert not fs.create("inbox/a.txt", APRIL) and final.read_bytes() == MARCH
    assert [p.name for p in (tmp_path / "inbox").iterdir()] == ["a.txt"]


def test_create_writes_only_where_nothing_is(tmp_path: Path) -> None:
    fs = WorkspaceFS(tmp_path, None, LIMIT)
    assert fs.create("inbox/a.txt", MARCH)
    assert not fs.create("inbox/a.txt", APRIL)
    (tmp_path / "inbox" / "b.txt").symlink_to("a.txt")
    assert not fs.create("inbox/b.txt", APRIL)
    assert (tmp_path / "inbox" / "a.txt").read_bytes() == MARCH
    # nothing left behind by the refused writes
    assert sorted(p.name for p in (tmp_path / "inbox").iterdir()) == ["a.txt", "b.txt"]
    assert fs.entry("inbox/none.txt") is None and fs.entry("nowhere/none.txt") is None


def test_a_refused_way_to_the_inbox_is_said_not_taken_as_a_free_name(tmp_path: Path) -> None:
    (tmp_path / "inbox").symlink_to("/etc")
    with pytest.raises(ToolError, match="symlink"):
        save_in_inbox(WorkspaceFS(tmp_path, None, LIMIT), "hostname", MARCH)
    assert not (tmp_path / "etc").exists()


def test_a_failed_move_removes_its_empty_placeholder_but_not_another_writers_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Without hard links or renameat2, an empty file takes the name before the written one
    replaces it. The replace fails after another writer put its own file there: that file
    stays, and the error is the replace's own."""
    final = tmp_path / "inbox" / "a.txt"

    def no_link(*args: object, **kwargs: object) -> None:
        raise OSError(errno.EPERM, os.strerror(errno.EPERM))

    def replace_loses_the_race(*args: object, **kwargs: object) -> None:
        final.unlink()
        final.write_bytes(APRIL)  # the other writer's, under the same name
        raise OSError(errno.EIO, "the disk said no")

    monkeypatch.setattr(os, "link", no_link)
    monkeypatch.setattr("bot.sandbox.safe_fs.rename_noreplace", lambda *args: None)
    monkeypatch.setattr(os, "replace", replace_loses_the_race)
    fs = WorkspaceFS(tmp_path, None, LIMIT)
    (tmp_path / "inbox").mkdir()
    with pytest.raises(OSError, match="the disk said no"):
        fs.create("inbox/a.txt", MARCH)
    assert final.read_bytes() == APRIL
    assert [p.name for p in (tmp_path / "inbox").iterdir()] == ["a.txt"]
