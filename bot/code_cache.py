"""Code compiled from generated source, kept between starts of `decapod run`.

Python 3.11 makes each dataclass's methods (`__init__`, `__repr__`, `__eq__`, and for a
frozen one `__setattr__`, `__delattr__`, `__hash__`) by writing their source and passing it
to `exec`, one method at a time; compiling that source is two thirds of a dataclass's cost
(~0.6 of ~1 ms on this machine). A start builds ~150 dataclasses (~100 of them Decapod's,
the rest pydantic's and annotated_types'), and `typing` compiles every string annotation it
meets (~1,300 `ForwardRef`s). The source is the same at every start, so its code is too.

So, for the start only: the name `exec` in `dataclasses` and `compile` in `typing` resolve to
functions of this module that look the source up in a table loaded from one file and compile
only what is not there, exactly as the builtins would (the same source, the file name
"<string>", the caller's `__future__` flags). Anything else (code objects, other file names,
other flags) goes to the builtins unchanged. Once the start is over, `finish` restores the
builtins and, when something had to be compiled, writes what this start used back to the
file (beside the package's bytecode, in `__pycache__`, and like that bytecode not when
`sys.dont_write_bytecode` is set, nor when the folder is read-only). `python -m
bot.code_cache` fills the file ahead of time, as `compileall` does for the modules.

A table from another Python cannot be used: it starts with the interpreter's bytecode magic
number; a file that does not read as one table is ignored (and replaced, when writable).
Whoever can write this file could as well write the modules' bytecode beside it.
"""

from __future__ import annotations
import __future__

import builtins
import hashlib
import importlib.util
import logging
import marshal
import os
import sys
from collections.abc import Iterable
from pathlib import Path
from types import CodeType, FrameType, ModuleType
from typing import Any

log = logging.getLogger("decapod.start")

#: what follows the magic number; a new layout of the table gets a new one
_FORMAT = b"decapod code cache 1\n"
_HEADER = importlib.util.MAGIC_NUMBER + _FORMAT
_FILENAME = "<string>"
#: the compiler flags a caller's `__future__` imports set, which `exec` and `compile`
#: inherit from the code that calls them
_FUTURE_FLAGS = 0
for _feature in __future__.all_feature_names:
    _FUTURE_FLAGS |= getattr(__future__, _feature).compiler_flag


def default_path() -> Path:
    return Path(__file__).resolve().parent / "__pycache__" / f"generated.{_tag()}.bin"


def _tag() -> str:
    return sys.implementation.cache_tag or "python"


class CodeCache:
    """The table, read once: the digest of each source and where its code lies in the file;
    a code object is read from the file when its source is first looked up. The file's
    bytes are one buffer, let go by `finish`, so what a start does not use costs an idle
    gateway only the index (~0.1 KB a source), not a code object each."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._data, self._base, self._index = _load(path)
        self._used: dict[bytes, CodeType] = {}
        #: sources compiled here: not in the file
        self.compiled = 0

    def code(self, source: str, mode: str, flags: int, filename: str = _FILENAME) -> CodeType:
        key = _digest(mode, flags, filename, source)
        code = self._used.get(key) or self._read(key)
        if code is None:
            code = builtins.compile(source, filename, mode, flags, True)
            self.compiled += 1
        self._used[key] = code
        return code

    def _read(self, key: bytes) -> CodeType | None:
        where = self._index.get(key)
        if where is None:
            return None
        start, length = self._base + (where >> 32), where & 0xFFFFFFFF
        try:
            code = marshal.loads(memoryview(self._data)[start : start + length])
        except (EOFError, ValueError, TypeError):
            return None
        return code if type(code) is CodeType else None

    def release(self) -> None:
        """Let go of the file's bytes and its index (what was read stays in use)."""
        self._data, self._base, self._index = b"", 0, {}

    @property
    def size(self) -> int:
        """How many sources this process looked up."""
        return len(self._used)

    def save(self) -> bool:
        """Write what this process used, when it compiled anything; False when not written
        (nothing new, bytecode not written here, or the folder not writable)."""
        if not self.compiled or sys.dont_write_bytecode:
            return False
        index: dict[bytes, int] = {}
        blob = bytearray()
        for key, code in list(self._used.items()):
            data = marshal.dumps(code)
            index[key] = len(blob) << 32 | len(data)
            blob += data
        head = marshal.dumps(index)
        data = _HEADER + len(head).to_bytes(4, "little") + head + blob
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            # written whole under a name of its own, then renamed: a start that reads the
            # file meanwhile sees the old table or the new one
            tmp = self.path.with_name(f"{self.path.name}.{os.getpid()}.tmp")
            with open(tmp, "xb") as file:
                try:
                    file.write(data)
                except BaseException:
                    os.unlink(tmp)
                    raise
            os.replace(tmp, self.path)
        except OSError as exc:
            log.debug("code cache not written to %s: %s", self.path, exc)
            return False
        return True


def _digest(mode: str, flags: int, filename: str, source: str) -> bytes:
    """What identifies a compilation: the same digest, the same code."""
    text = f"{mode}\0{flags}\0{filename}\0{source}".encode("utf-8", "surrogatepass")
    return hashlib.blake2b(text, digest_size=32).digest()


def _load(path: Path) -> tuple[bytes, int, dict[bytes, int]]:
    """The file's bytes, where its codes begin (after the index) and the index; none when
    the file is missing or is not a table of this interpreter's."""
    try:
        data = path.read_bytes()
    except OSError:
        return b"", 0, {}
    if not data.startswith(_HEADER):
        return b"", 0, {}
    at = len(_HEADER) + 4
    length = int.from_bytes(data[at - 4 : at], "little")
    try:
        index = marshal.loads(memoryview(data)[at : at + length])
    except (EOFError, ValueError, TypeError):
        return b"", 0, {}
    if not isinstance(index, dict):
        return b"", 0, {}
    return data, at + length, index


def _caller_flags(frame: FrameType | None) -> int:
    return frame.f_code.co_flags & _FUTURE_FLAGS if frame is not None else 0


def _cached_exec(cache: CodeCache) -> Any:
    def exec_(source: Any, globals: Any = None, locals: Any = None, /, **options: Any) -> None:
        frame = sys._getframe(1)
        if globals is None:  # the caller's namespaces, as the builtin takes them
            globals = frame.f_globals
            if locals is None:
                locals = frame.f_locals
        if type(source) is str and not options:
            source = cache.code(source, "exec", _caller_flags(frame))
        elif isinstance(source, (str, bytes)):
            flags = _caller_flags(frame)
            source = builtins.compile(source, _FILENAME, "exec", flags, True)
        builtins.exec(source, globals, locals, **options)

    return exec_


def _cached_compile(cache: CodeCache) -> Any:
    def compile_(
        source: Any,
        filename: Any,
        mode: str,
        flags: int = 0,
        dont_inherit: bool = False,
        optimize: int = -1,
        **options: Any,
    ) -> Any:
        inherited = 0 if dont_inherit else _caller_flags(sys._getframe(1))
        plain = not flags and optimize == -1 and not options
        if plain and type(source) is str and type(filename) is str:
            return cache.code(source, mode, inherited, filename)
        flags |= inherited
        return builtins.compile(source, filename, mode, flags, True, optimize, **options)

    return compile_


class _Installed:
    def __init__(self, cache: CodeCache, names: list[tuple[ModuleType, str]]) -> None:
        self.cache = cache
        self.names = names


_installed: _Installed | None = None


def install(path: Path | None = None) -> CodeCache | None:
    """Call first in `decapod run`, before the modules it imports; once (None after)."""
    global _installed
    if _installed is not None:
        return None
    import dataclasses
    import typing

    cache = CodeCache(path or default_path())
    targets: list[tuple[ModuleType, str, Any]] = [
        (dataclasses, "exec", _cached_exec(cache)),
        (typing, "compile", _cached_compile(cache)),
    ]
    # not attrs (aiohttp's classes): the source of its __hash__ holds a number that changes
    # with every process (a salted hash), so a table would never hold it
    if any(name in vars(module) for module, name, _ in targets):
        return None  # a module's own name: left alone
    for module, name, replacement in targets:
        setattr(module, name, replacement)
    _installed = _Installed(cache, [(module, name) for module, name, _ in targets])
    return cache


#: the table of the start that finished, until `save_last` writes it
_finished: CodeCache | None = None


def finish(*, write: bool = True) -> bool:
    """The builtins again in `dataclasses` and `typing`, the table's bytes let go; then,
    with `write`, the table written when this start compiled anything (else `save_last`
    does it later). True when written."""
    global _installed, _finished
    installed, _installed = _installed, None
    if installed is None:
        return False
    for module, name in installed.names:
        vars(module).pop(name, None)
    installed.cache.release()
    _finished = installed.cache
    return save_last() if write else False


def unsaved() -> bool:
    """Whether the start that finished compiled what its table lacks, and may write it."""
    cache = _finished
    return cache is not None and cache.compiled > 0 and not sys.dont_write_bytecode


def save_last() -> bool:
    """Write the table of the start that finished (once), when it compiled anything."""
    global _finished
    cache, _finished = _finished, None
    return cache.save() if cache is not None else False


#: the packages whose modules `python -m bot.code_cache` imports: every part a start may load
PACKAGES = ("bot", "channels")


def fill(packages: Iterable[str] = PACKAGES, path: Path | None = None) -> int:
    """Import every module of `packages` (but the command line's entry point, which runs it)
    with the table in place and write it, even where bytecode is not written otherwise (it
    is asked for by name); the number of sources in it."""
    import pkgutil

    cache = install(path)
    if cache is None:
        raise RuntimeError("the code cache is in place already")
    try:
        for package in packages:
            root = importlib.import_module(package)
            # walk_packages imports each package it walks (after the table is in place)
            for info in pkgutil.walk_packages(root.__path__, f"{package}.", onerror=_skip):
                if info.name.endswith(".__main__"):
                    continue
                try:
                    importlib.import_module(info.name)
                except ImportError as exc:  # an optional part not installed
                    log.info("code cache: %s not imported: %s", info.name, exc)
    finally:
        dont_write, sys.dont_write_bytecode = sys.dont_write_bytecode, False
        try:
            finish()
        finally:
            sys.dont_write_bytecode = dont_write
    return cache.size


def _skip(name: str) -> None:
    log.info("code cache: package %s not imported", name)


def main() -> int:
    count = fill()
    print(f"{default_path()}: {count} compiled sources")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
