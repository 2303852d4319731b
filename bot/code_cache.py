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
other flags) goes to the builtins unchanged. The regular expressions a start compiles are
read from the same table (bot/regex_cache.py; only `python -m bot.code_cache` puts them
there). Once the start is over, `finish` restores the builtins (and `re`'s compiler) and
hands the table back; when something had to be compiled, its caller writes the
table (what this start used and what the file held besides) back to the file (beside the
package's bytecode, in `__pycache__`, and like that bytecode not when
`sys.dont_write_bytecode` is set, nor when the folder is read-only). `python -m
bot.code_cache` fills the file ahead of time, as `compileall` does for the modules.

A table from another Python cannot be used: it starts with the interpreter's bytecode magic
number. A digest of the rest follows, so a file damaged on disk (or cut short) is ignored as
a whole, and so is one whose index does not hold places within it; a start then compiles
past it (and replaces it, when it may write). Whoever can write this file could as well
write the modules' bytecode beside it.
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
import tempfile
from collections.abc import Iterable
from pathlib import Path
from types import CodeType, FrameType, ModuleType
from typing import Any

log = logging.getLogger("decapod.start")

#: what follows the magic number; a new layout of the table gets a new one
_FORMAT = b"decapod code cache 2\n"
_HEADER = importlib.util.MAGIC_NUMBER + _FORMAT
_FILENAME = "<string>"
_KEY_SIZE = 32
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
    bytes are one buffer, let go by `finish` (or, when this start compiled anything, by
    `save`, which keeps what the file held that this start did not use), so what a start
    does not use costs an idle gateway nothing."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._data, self._base, self._index = _load(path)
        #: code objects, and the parts of regular expressions (bot/regex_cache.py)
        self._used: dict[bytes, object] = {}
        #: entries made here: not in the file
        self.compiled = 0

    def code(self, source: str, mode: str, flags: int, filename: str = _FILENAME) -> CodeType:
        key = _digest(mode, flags, filename, source)
        code = self.stored(key)
        if type(code) is not CodeType:
            code = builtins.compile(source, filename, mode, flags, True)
            self.keep(key, code, new=True)
        else:
            self.keep(key, code, new=False)
        return code

    def stored(self, key: bytes) -> object | None:
        """What this process or the file holds under `key` (None: nothing readable)."""
        value = self._used.get(key)
        return value if value is not None else self._read(key)

    def keep(self, key: bytes, value: object, *, new: bool) -> None:
        """Hold `value` for `save`: `new` when it was made here rather than read."""
        self._used[key] = value
        self.compiled += new

    def _read(self, key: bytes) -> object | None:
        where = self._index.get(key)
        if where is None:
            return None
        try:
            value: object = marshal.loads(self._entry(where))
        except (EOFError, ValueError, TypeError):
            return None
        return value

    def _entry(self, where: int) -> memoryview:
        start = self._base + (where >> 32)
        return memoryview(self._data)[start : start + (where & 0xFFFFFFFF)]

    def release(self) -> None:
        """Let go of the file's bytes and its index (what was read stays in use), unless
        this start compiled anything: then `save` needs them, to keep what it did not use."""
        if not self.compiled:
            self._data, self._base, self._index = b"", 0, {}

    @property
    def size(self) -> int:
        """How many sources this process looked up."""
        return len(self._used)

    def save(self) -> bool:
        """Write what this process used, with what the file held that it did not use, when
        it compiled anything; False when not written (nothing new, bytecode not written
        here, or the folder not writable). The table's contents are let go either way."""
        try:
            if not self.compiled or sys.dont_write_bytecode:
                return False
            entries: list[tuple[bytes, bytes | memoryview]] = [
                # code objects and regular expressions' parts (ints, lists, dicts, tuples)
                (key, marshal.dumps(value))  # type: ignore[arg-type]
                for key, value in list(self._used.items())
            ]
            entries += [(k, self._entry(w)) for k, w in self._index.items() if k not in self._used]
            return _write(self.path, _encode(entries))
        finally:
            self._used, self._data, self._base, self._index = {}, b"", 0, {}


def _encode(entries: Iterable[tuple[bytes, bytes | memoryview]]) -> bytes:
    """A table's file: each key with its marshalled code."""
    index: dict[bytes, int] = {}
    blob = bytearray()
    for key, data in entries:
        index[key] = len(blob) << 32 | len(data)
        blob += data
    head = marshal.dumps(index)
    payload = len(head).to_bytes(4, "little") + head + blob
    return _HEADER + hashlib.blake2b(payload, digest_size=_KEY_SIZE).digest() + payload


def _write(path: Path, data: bytes) -> bool:
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        # written whole under a name of its own, then renamed: a start that reads the file
        # meanwhile sees the old table or the new one
        fd, tmp = tempfile.mkstemp(prefix=f"{path.name}.", suffix=".tmp", dir=path.parent)
    except OSError as exc:
        log.debug("code cache not written to %s: %s", path, exc)
        return False
    try:
        with open(fd, "wb") as file:
            # readable by all, as bytecode is: a service's own user reads what root wrote
            os.fchmod(file.fileno(), 0o644)
            file.write(data)
        os.replace(tmp, path)
        tmp = ""
    except OSError as exc:
        log.debug("code cache not written to %s: %s", path, exc)
        return False
    finally:
        if tmp:
            os.unlink(tmp)
    return True


def _digest(mode: str, flags: int, filename: str, source: str) -> bytes:
    """What identifies a compilation: the same digest, the same code (`-O` changes it)."""
    fields = (mode, flags, sys.flags.optimize, filename, source)
    text = "\0".join(map(str, fields)).encode("utf-8", "surrogatepass")
    return hashlib.blake2b(text, digest_size=_KEY_SIZE).digest()


def _load(path: Path) -> tuple[bytes, int, dict[bytes, int]]:
    """The file's bytes, where its codes begin (after the index) and the index; none when
    the file is missing, is not a table of this interpreter's or is damaged."""
    try:
        data = path.read_bytes()
    except OSError:
        return b"", 0, {}
    at = len(_HEADER) + _KEY_SIZE
    payload = memoryview(data)[at:]
    if not data.startswith(_HEADER) or len(payload) < 4:
        return b"", 0, {}
    if hashlib.blake2b(payload, digest_size=_KEY_SIZE).digest() != data[len(_HEADER) : at]:
        return b"", 0, {}
    length = int.from_bytes(payload[:4], "little")
    try:
        index = marshal.loads(payload[4 : 4 + length])
    except (EOFError, ValueError, TypeError):
        return b"", 0, {}
    base = at + 4 + length
    if not _valid(index, len(data) - base):
        return b"", 0, {}
    return data, base, index


def _valid(index: object, size: int) -> bool:
    """Whether `index` holds, for keys of the digest's size, places within `size` bytes."""
    if type(index) is not dict:
        return False
    for key, where in index.items():
        if type(key) is not bytes or len(key) != _KEY_SIZE or type(where) is not int:
            return False
        if where < 0 or (where >> 32) + (where & 0xFFFFFFFF) > size:
            return False
    return True


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
    def __init__(self, cache: CodeCache, names: list[tuple[ModuleType, str, Any]]) -> None:
        self.cache = cache
        #: each name replaced, with what the module held under it (None: the builtin's)
        self.names = names


_installed: _Installed | None = None


def install(path: Path | None = None, *, record_patterns: bool = False) -> CodeCache | None:
    """Call first in `decapod run`, before the modules it imports; once (None after).
    `record_patterns`: regular expressions compiled meanwhile go into the table (only
    `fill`, which reads no config and holds no secret: see bot/regex_cache.py)."""
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
    names: list[tuple[ModuleType, str, Any]] = [(module, name, None) for module, name, _ in targets]
    try:  # re's private parts (bot/regex_cache.py): a Python whose `re` differs skips them
        from re import _compiler  # type: ignore[attr-defined]

        from bot import regex_cache
    except (ImportError, AttributeError):
        log.debug("code cache: regular expressions compiled as usual", exc_info=True)
    else:
        own = vars(_compiler).get("compile")
        if getattr(own, "__module__", None) == _compiler.__name__ and regex_cache.works():
            replacement = regex_cache.cached_compile(cache, record=record_patterns)
            targets.append((_compiler, "compile", replacement))
            names.append((_compiler, "compile", own))
    for module, name, replacement in targets:
        setattr(module, name, replacement)
    _installed = _Installed(cache, names)
    return cache


def finish() -> CodeCache | None:
    """The builtins again in `dataclasses` and `typing`, `re`'s own compiler, the table's
    bytes let go unless it is to be written; the table, for its `save` when it `compiled`
    anything (this module keeps nothing of it), or None when none was installed."""
    global _installed
    installed, _installed = _installed, None
    if installed is None:
        return None
    for module, name, original in installed.names:
        if original is None:
            vars(module).pop(name, None)
        else:
            setattr(module, name, original)
    installed.cache.release()
    return installed.cache


#: the packages whose modules `python -m bot.code_cache` imports: every part a start may load
PACKAGES = ("bot", "channels")


def fill(packages: Iterable[str] = PACKAGES, path: Path | None = None) -> int:
    """Import every module of `packages` (but the command line's entry point, which runs it)
    with the table in place and write it, even where bytecode is not written otherwise (it
    is asked for by name); the number of sources in it."""
    import pkgutil

    cache = install(path, record_patterns=True)
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
                except Exception as exc:  # an optional part not installed, or not set up
                    log.info("code cache: %s not imported: %s", info.name, exc)
    finally:
        finish()
        size = cache.size
        dont_write, sys.dont_write_bytecode = sys.dont_write_bytecode, False
        try:
            cache.save()
        finally:
            sys.dont_write_bytecode = dont_write
    return size


def _skip(name: str) -> None:
    log.info("code cache: package %s not imported", name, exc_info=True)


def main() -> int:
    count = fill()
    print(f"{default_path()}: {count} compiled sources")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
