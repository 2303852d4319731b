"""File operations on a workspace from the host side that cannot leave it.

Every path is walked one component at a time with openat(O_NOFOLLOW) from the workspace's
directory fd. Neither "..", an absolute path outside /work, nor a symlink planted by a
sandboxed command (even one swapped in between a check and a use) leads outside. Only
regular files are read or written: opening a FIFO planted in /work would hang the gateway.
All calls block; run them in a thread.
"""

from __future__ import annotations

import contextlib
import errno
import os
import secrets
import stat
from pathlib import Path
from typing import TYPE_CHECKING

from bot.errors import SandboxError, ToolError
from bot.sandbox.base import WORK_DIR
from bot.sandbox.noreplace import remove_placeholder, rename_noreplace
from bot.sandbox.shown_names import ARROW, json_quoted, shown_name

if TYPE_CHECKING:
    from bot.sandbox.quota import WorkspaceQuota

_DIR_FLAGS = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC
_FILE_FLAGS = os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC
#: why os.link can fail where a create works: the file's owner, or no hard links there
_NO_LINK = frozenset({errno.EPERM, errno.EACCES, errno.ENOTSUP, errno.EOPNOTSUPP, errno.EMLINK})


def split_workspace_path(path: str) -> list[str]:
    """`notes/a.txt`, `./notes/a.txt` and `/work/notes/a.txt` all name the same file."""
    if "\0" in path:
        raise ToolError("refused: the path contains a NUL byte")
    p = path  # not stripped: `"a.txt "` as listed names that file, not `a.txt`
    if p == WORK_DIR or p.startswith(WORK_DIR + "/"):
        p = p[len(WORK_DIR) :]
    elif p.startswith("/"):
        raise ToolError(f"refused: {path} is outside the workspace; only /work is reachable")
    parts = [part for part in p.split("/") if part not in ("", ".")]
    if ".." in parts:
        raise ToolError(f"refused: {path} contains '..'")
    return parts


class WorkspaceFS:
    def __init__(
        self,
        root: Path,
        owner: tuple[int, int] | None,
        max_file_bytes: int,
        quota: WorkspaceQuota | None = None,
    ) -> None:
        self.root = root
        self.owner = owner
        self.max_file_bytes = max_file_bytes
        self.quota = quota

    def read(self, path: str, offset: int, limit: int) -> tuple[bytes, int]:
        """Up to `limit` bytes from `offset`, and the file's size."""
        parent, name = self._parent(path, create=False)
        try:
            fd = self._open_file(parent, name, os.O_RDONLY, path)
            try:
                size = os.fstat(fd).st_size
                os.lseek(fd, max(0, offset), os.SEEK_SET)
                chunks, left = [], limit
                while left > 0 and (chunk := os.read(fd, min(left, 1 << 16))):
                    chunks.append(chunk)
                    left -= len(chunk)
                return b"".join(chunks), size
            finally:
                os.close(fd)
        finally:
            os.close(parent)

    def entry(self, path: str) -> os.stat_result | None:
        """What is at `path`, not following a symlink; None when nothing is (nor its folder).
        ToolError when the way there is refused (a folder on it is a symlink or a file)."""
        parts = split_workspace_path(path)
        if not parts:
            raise ToolError(f"{path} is the workspace itself, not a file")
        try:
            parent = self._walk(parts[:-1], create=False, shown=path)
        except _NoSuchDirectory:
            return None
        try:
            return os.stat(parts[-1], dir_fd=parent, follow_symlinks=False)
        except FileNotFoundError:
            return None
        except OSError as exc:
            raise _refused(path, exc, symlink=False) from None
        finally:
            os.close(parent)

    def write(self, path: str, data: bytes, *, append: bool = False) -> int:
        self._put(path, data, append=append, new=False)
        return len(data)

    def create(self, path: str, data: bytes) -> bool:
        """Write `data` at `path` only if nothing is there, checked and written in one step
        (two writers never both take the name); False, with nothing written, when something
        is there."""
        return self._put(path, data, append=False, new=True)

    def _put(self, path: str, data: bytes, *, append: bool, new: bool) -> bool:
        if len(data) > self.max_file_bytes:
            raise ToolError(f"refused: {len(data)} bytes is over the {self.max_file_bytes} limit")
        parent, name = self._parent(path, create=True)
        try:
            if self.quota is not None:
                self._check_quota(self.quota, parent, name, len(data), append=append, shown=path)
            if append:
                fd = self._open_file(parent, name, os.O_WRONLY | os.O_APPEND | os.O_CREAT, path)
                try:
                    if os.fstat(fd).st_size + len(data) > self.max_file_bytes:
                        raise ToolError(f"refused: {path} would grow over the size limit")
                    self._chown(fd)
                    os.write(fd, data)
                finally:
                    os.close(fd)
                return True
            return self._replace(parent, name, data, path, new=new)
        finally:
            os.close(parent)

    def edit(self, path: str, old: str, new: str, *, replace_all: bool) -> int:
        """Replace exact occurrences of `old`; returns how many were replaced."""
        if not old:
            raise ToolError("old_text must not be empty")
        data, size = self.read(path, 0, self.max_file_bytes + 1)
        if size > self.max_file_bytes:
            raise ToolError(f"refused: {path} is larger than the size limit")
        try:
            text = data.decode()
        except UnicodeDecodeError:
            raise ToolError(f"{path} is not UTF-8 text") from None
        count = text.count(old)
        if count == 0:
            raise ToolError(f"old_text was not found in {path}; nothing changed")
        if count > 1 and not replace_all:
            raise ToolError(
                f"old_text occurs {count} times in {path}; add context to make it unique, "
                "or set replace_all"
            )
        self.write(path, text.replace(old, new).encode())
        return count

    def listing(self, path: str, *, recursive: bool, max_entries: int) -> tuple[list[str], int]:
        """Lines like `dir/`, `file (12 bytes)`, `link -> target`; and how many were left off."""
        parts = split_workspace_path(path)
        top = self._walk(parts, create=False, shown=path)
        lines: list[str] = []
        total = 0
        try:
            for dirpath, dirnames, filenames, dfd in os.fwalk(".", dir_fd=top):
                folder = "" if dirpath == "." else dirpath[2:] + "/"
                for name in sorted(dirnames + filenames):
                    total += 1
                    if len(lines) < max_entries:
                        lines.append(_describe(name, dfd, folder))
                if not recursive:
                    break
        finally:
            os.close(top)
        return lines, total - len(lines)

    def remove_entry(self, parts: list[str], inode: int) -> bool:
        """Remove the entry at `parts` (a directory only if empty) if it is still `inode`."""
        parent = self._walk(parts[:-1], create=False, shown="/".join(parts))
        try:
            st = os.stat(parts[-1], dir_fd=parent, follow_symlinks=False)
            if st.st_ino != inode:
                return False
            if stat.S_ISDIR(st.st_mode):
                os.rmdir(parts[-1], dir_fd=parent)
            else:
                os.unlink(parts[-1], dir_fd=parent)
            return True
        except OSError as exc:
            if exc.errno in (errno.ENOENT, errno.ENOTEMPTY):
                return False
            raise
        finally:
            os.close(parent)

    def cut_back(self, parts: list[str], inode: int, size: int) -> bool:
        """Truncate the regular file at `parts` to `size` if it is still inode `inode`."""
        parent = self._walk(parts[:-1], create=False, shown="/".join(parts))
        try:
            fd = os.open(parts[-1], os.O_WRONLY | _FILE_FLAGS, dir_fd=parent)
        except FileNotFoundError:
            return False
        finally:
            os.close(parent)
        try:
            st = os.fstat(fd)
            if st.st_ino != inode or not stat.S_ISREG(st.st_mode) or st.st_size <= size:
                return False
            os.ftruncate(fd, size)
            return True
        finally:
            os.close(fd)

    def _check_quota(
        self, quota: WorkspaceQuota, parent: int, name: str, n: int, *, append: bool, shown: str
    ) -> None:
        try:
            existing = os.stat(name, dir_fd=parent, follow_symlinks=False)
        except FileNotFoundError:
            old_size, new_entries = 0, 1
        else:
            old_size = existing.st_size if stat.S_ISREG(existing.st_mode) else 0
            new_entries = 0
        grows_by = n if append else n - old_size
        try:
            usage = quota.usage_sync(self.root)
        except SandboxError as exc:
            raise ToolError(f"refused: {exc}") from None
        if usage.error:
            raise ToolError(f"refused: {usage.error}")
        over_bytes = grows_by > 0 and usage.bytes + grows_by > quota.max_bytes
        over_entries = new_entries > 0 and usage.entries + new_entries > quota.max_entries
        if over_bytes or over_entries:
            raise ToolError(
                f"refused: writing {n} bytes to {shown} would take the workspace past its "
                f"quota ({quota.describe()}); it holds {usage.bytes} bytes in "
                f"{usage.entries} entries. Remove files first."
            )

    def _parent(self, path: str, *, create: bool) -> tuple[int, str]:
        parts = split_workspace_path(path)
        if not parts:
            raise ToolError(f"{path} is the workspace itself, not a file")
        return self._walk(parts[:-1], create=create, shown=path), parts[-1]

    def _walk(self, parts: list[str], *, create: bool, shown: str) -> int:
        fd = os.open(self.root, _DIR_FLAGS)
        try:
            for name in parts:
                try:
                    next_fd = os.open(name, _DIR_FLAGS, dir_fd=fd)
                except FileNotFoundError:
                    if not create:
                        raise _NoSuchDirectory(f"{shown}: no such directory") from None
                    os.mkdir(name, 0o755, dir_fd=fd)
                    if self.owner is not None:
                        os.chown(name, *self.owner, dir_fd=fd, follow_symlinks=False)
                    next_fd = os.open(name, _DIR_FLAGS, dir_fd=fd)
                except OSError as exc:
                    raise _refused(shown, exc, symlink=_is_symlink(name, fd)) from None
                os.close(fd)
                fd = next_fd
            return fd
        except BaseException:
            os.close(fd)
            raise

    def _open_file(self, parent: int, name: str, flags: int, shown: str) -> int:
        try:
            fd = os.open(name, flags | _FILE_FLAGS, 0o644, dir_fd=parent)
        except FileNotFoundError:
            raise ToolError(f"{shown}: no such file") from None
        except OSError as exc:
            raise _refused(shown, exc, symlink=_is_symlink(name, parent)) from None
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            os.close(fd)
            raise ToolError(f"refused: {shown} is not a regular file")
        return fd

    def _replace(self, parent: int, name: str, data: bytes, shown: str, *, new: bool) -> bool:
        """Write a sibling temp file and rename it over `name`: readers never see half a
        file, and a symlink at `name` is replaced rather than followed. `new`: linked to
        `name` instead, which fails when anything is there (False)."""
        try:
            existing = os.stat(name, dir_fd=parent, follow_symlinks=False)
        except FileNotFoundError:
            mode = 0o644
        else:
            if new:
                return False
            if stat.S_ISDIR(existing.st_mode):
                raise ToolError(f"refused: {shown} is a directory")
            if stat.S_ISLNK(existing.st_mode):
                raise ToolError(f"refused: {shown} is a symlink; symlinks are not followed")
            mode = stat.S_IMODE(existing.st_mode) if stat.S_ISREG(existing.st_mode) else 0o644
        tmp = f".{name[:200]}.{secrets.token_hex(4)}.tmp"
        try:
            self._write_new(parent, tmp, data, mode)
            if not new:
                os.replace(tmp, name, src_dir_fd=parent, dst_dir_fd=parent)
                return True
            try:
                os.link(tmp, name, src_dir_fd=parent, dst_dir_fd=parent, follow_symlinks=False)
            except FileExistsError:
                return False
            except OSError as exc:
                # a link to a file of another owner (fs.protected_hardlinks without
                # CAP_FOWNER), or a filesystem without hard links: the written file is
                # moved into place, by a rename that fails when anything is there
                if exc.errno not in _NO_LINK:
                    raise
                return self._move_in_new(parent, tmp, name)
            finally:
                with contextlib.suppress(FileNotFoundError):  # moved in: gone from there
                    os.unlink(tmp, dir_fd=parent)
            return True
        except BaseException:
            try:
                os.unlink(tmp, dir_fd=parent)
            except OSError:
                pass
            raise

    def _write_new(self, parent: int, name: str, data: bytes, mode: int) -> None:
        """Create `name` (FileExistsError when anything is there, symlinks not followed),
        owned by the sandbox and holding `data`; not left half written when that fails."""
        fd = os.open(name, os.O_WRONLY | os.O_CREAT | os.O_EXCL | _FILE_FLAGS, mode, dir_fd=parent)
        try:
            try:
                os.fchmod(fd, mode)
                self._chown(fd)
                view = memoryview(data)
                while view:
                    view = view[os.write(fd, view) :]
            finally:
                os.close(fd)
        except BaseException:
            try:
                os.unlink(name, dir_fd=parent)
            except OSError:
                pass
            raise

    def _move_in_new(self, parent: int, tmp: str, name: str) -> bool:
        """Move the whole file `tmp` to `name` unless anything is there (False). Without a
        rename that can refuse, `name` is first taken by an empty file, made only where
        nothing is, which the whole file then replaces: a reader sees it empty for a
        moment, never half written."""
        moved = rename_noreplace(parent, tmp, name)
        if moved is not None:
            return moved
        try:
            placeholder = os.open(
                name, os.O_WRONLY | os.O_CREAT | os.O_EXCL | _FILE_FLAGS, 0o600, dir_fd=parent
            )
        except FileExistsError:
            return False
        # held open until the move is done: its inode cannot be reused by another file
        try:
            os.replace(tmp, name, src_dir_fd=parent, dst_dir_fd=parent)
        except BaseException:
            remove_placeholder(parent, name, placeholder)
            raise
        finally:
            os.close(placeholder)
        return True

    def _chown(self, fd: int) -> None:
        if self.owner is not None:
            os.fchown(fd, *self.owner)


class _NoSuchDirectory(ToolError):
    pass


def _is_symlink(name: str, dir_fd: int) -> bool:
    try:
        return stat.S_ISLNK(os.stat(name, dir_fd=dir_fd, follow_symlinks=False).st_mode)
    except OSError:
        return False


def _refused(shown: str, exc: OSError, *, symlink: bool) -> ToolError:
    # O_NOFOLLOW reports a symlink as ELOOP, or as ENOTDIR together with O_DIRECTORY
    if symlink or exc.errno == errno.ELOOP:
        return ToolError(f"refused: {shown} goes through a symlink; symlinks are not followed")
    if exc.errno == errno.ENOTDIR:
        return ToolError(f"refused: a component of {shown} is not a directory")
    return ToolError(f"{shown}: {exc.strerror}")


def _describe(name: str, dir_fd: int, folder: str) -> str:
    shown = shown_name(folder + name)
    try:
        st = os.stat(name, dir_fd=dir_fd, follow_symlinks=False)
    except OSError:
        return f"{shown} (gone)"  # removed since the folder was read
    if stat.S_ISDIR(st.st_mode):
        return shown + "/"
    if stat.S_ISLNK(st.st_mode):
        # the target always quoted: no name nor target reads like a file's size after it
        try:
            target = os.fsencode(os.readlink(name, dir_fd=dir_fd))
        except OSError:
            return f"{shown}{ARROW}? (could not be read)"
        return f"{shown}{ARROW}{json_quoted(target.decode('utf-8', 'surrogateescape'))}"
    if stat.S_ISREG(st.st_mode):
        return f"{shown} ({st.st_size} bytes)"
    return f"{shown} (special file)"
