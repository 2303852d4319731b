"""Regular expressions compiled once, kept in the start's code table (bot/code_cache.py).

A start of `decapod run` compiles ~200 regular expressions (the redactor's, the config's,
aiohttp's, the platform SDKs', the standard library's), nearly all at module level and the
same at every start: ~30 ms of CPU, most of it `re`'s parser and compiler in Python. What
they compile to is a list of integers for the regex engine (`_sre.compile` builds the
pattern from it in C), so for the start `re._compiler.compile` is this module's
`compile`: it looks the pattern up in the table and builds it from the stored parts, or
compiles it as `re` does.

What goes into the table: only what `python -m bot.code_cache` compiles while it imports
the modules, with no config read and no secret registered. A start reads the table and
never adds to it: a pattern it builds from its config or its secrets (the redactor's index
of registered secrets holds pieces of them) is compiled as usual and not written anywhere.
A stored pattern is the same as one compiled: the key holds the pattern, its flags, the
interpreter's version and the regex engine's magic number; the engine checks the stored
code when it builds the pattern (a table that does not hold is compiled past, see
bot/code_cache.py), and a pattern that it refuses is compiled instead.

A pattern whose parse warns (a DeprecationWarning or FutureWarning from `re`'s parser) is
not stored: read from the table, it would no longer warn. One compiled at a start is parsed
inside the stand-in, where `re._compiler.compile` parses it, so its warning names the same
line as `re`'s. On a Python whose `re` lacks the private parts used here, importing this
module raises ImportError or AttributeError and the start compiles as usual.
"""

from __future__ import annotations

import _sre
import hashlib
import sys
import warnings
from collections.abc import Callable
from re import _compiler, _parser  # type: ignore[attr-defined]
from types import FrameType
from typing import Any, Protocol

#: what the engine's `compile` takes after the pattern: the flags, the code, the groups
Parts = tuple[int, list[int], int, dict[str, int], tuple[str | None, ...]]

_KEY_SIZE = 32
_KEY_HEAD = f"regex\0{sys.version}\0{_sre.MAGIC}\0{_sre.CODESIZE}\0".encode()
#: the modules whose patterns hold a process's secrets: never stored, whoever stores
_NEVER_STORED = ("bot.security.known",)


class PartsStore(Protocol):
    def stored(self, key: bytes) -> object | None: ...

    def keep(self, key: bytes, value: object, *, new: bool) -> None: ...


def _key(pattern: str | bytes, flags: int) -> bytes:
    if isinstance(pattern, str):
        kind, text = b"s", pattern.encode("utf-8", "surrogatepass")
    else:
        kind, text = b"b", bytes(pattern)
    head = _KEY_HEAD + kind + str(int(flags)).encode() + b"\0"
    return hashlib.blake2b(head + text, digest_size=_KEY_SIZE).digest()


def compile_parts(pattern: str | bytes, flags: int) -> Parts:
    """What `re._compiler.compile` passes to the engine for `pattern` (the same steps)."""
    return _parts_of(_parser.parse(pattern, flags), flags)


def _parts_of(parsed: Any, flags: int) -> Parts:
    """The engine's arguments for a parsed pattern (the rest of `re._compiler.compile`)."""
    # plain ints: the compiler's opcodes are named int constants, which marshal refuses
    code = list(map(int, _compiler._code(parsed, flags)))
    groupindex = parsed.state.groupdict
    indexgroup: list[str | None] = [None] * parsed.state.groups
    for name, number in groupindex.items():
        indexgroup[number] = name
    flags = int(flags | parsed.state.flags)  # a plain int too, not a `re.RegexFlag`
    return flags, code, parsed.state.groups - 1, groupindex, tuple(indexgroup)


def _usable(value: object) -> bool:
    if type(value) is not tuple or len(value) != 5:
        return False
    flags, code, groups, groupindex, indexgroup = value
    return (
        type(flags) is int
        and type(code) is list
        and type(groups) is int
        and type(groupindex) is dict
        and type(indexgroup) is tuple
    )


def _in_re(module: str) -> bool:
    return module == "re" or module.startswith("re.")


def _stored_by_secret_holder(frame: FrameType | None) -> bool:
    """Whether the code that asked for the pattern (past `re`'s own frames) is one whose
    patterns hold secrets."""
    while frame is not None and _in_re(str(frame.f_globals.get("__name__", ""))):
        frame = frame.f_back
    return frame is not None and frame.f_globals.get("__name__") in _NEVER_STORED


def cached_compile(store: PartsStore, *, record: bool) -> Callable[..., Any]:
    """A stand-in for `re._compiler.compile` that reads patterns from `store`, and when
    `record`, puts there the ones it compiles (`python -m bot.code_cache` only)."""
    original = _compiler.compile
    debug = _compiler.SRE_FLAG_DEBUG

    def compile_(pattern: Any, flags: int = 0) -> Any:
        if type(pattern) not in (str, bytes) or flags & debug:
            return original(pattern, flags)  # a parsed pattern (re.Scanner's), or debug output
        key = _key(pattern, flags)
        parts = store.stored(key)
        if parts is not None and _usable(parts):
            try:
                compiled = _sre.compile(pattern, *parts)  # type: ignore[misc]
            except (RuntimeError, TypeError, ValueError, OverflowError):
                pass  # the engine refused the stored code: compile it below
            else:
                store.keep(key, parts, new=False)
                return compiled
        # parsed here, where `re._compiler.compile` parses: a warning names the same caller
        if not record:
            return _sre.compile(pattern, *_parts_of(_parser.parse(pattern, flags), flags))
        with warnings.catch_warnings(record=True) as warned:
            warnings.simplefilter("always")
            parsed = _parser.parse(pattern, flags)
        fresh = _parts_of(parsed, flags)
        for caught in warned:  # said again, as they came; such a pattern is not stored
            _warn_again(caught, sys._getframe(1))
        if not warned and not _stored_by_secret_holder(sys._getframe(1)):
            store.keep(key, fresh, new=True)
        return _sre.compile(pattern, *fresh)

    return compile_


def _warn_again(caught: warnings.WarningMessage, caller: FrameType | None) -> None:
    """A caught warning said again as `warnings.warn` says it: with the module and the
    `__warningregistry__` of the frame it names, so filters and `-W` options naming a module
    match it. (The catch that recorded it resets what "once" and "default" filters
    remember, so under those it may be said again by a later compile.)"""
    frame = caller
    while frame is not None and (
        frame.f_code.co_filename != caught.filename or frame.f_lineno != caught.lineno
    ):
        frame = frame.f_back
    if frame is None:  # the frame is gone: the module comes from the path, as warn_explicit does
        warnings.warn_explicit(caught.message, caught.category, caught.filename, caught.lineno)
        return
    module_globals = frame.f_globals
    warnings.warn_explicit(
        caught.message,
        caught.category,
        caught.filename,
        caught.lineno,
        module=module_globals.get("__name__", "<string>"),
        registry=module_globals.setdefault("__warningregistry__", {}),
        module_globals=module_globals,
    )


def works() -> bool:
    """Whether this interpreter's `re` builds patterns as `compile_parts` does (checked
    once, before the stand-in is put in place; when not, patterns are compiled as usual)."""
    probe, flags = r"(?P<word>\w+)(?i:x)|[^\s]{2,5}(?=y)", 0
    try:
        return same(_sre.compile(probe, *compile_parts(probe, flags)), _compiler.compile(probe))
    except Exception:  # a `re` whose private parts differ: not used
        return False


def same(built: Any, compiled: Any) -> bool:
    """Whether two patterns are the same: `==` compares the pattern, flags and engine code,
    not the groups or their names."""
    return bool(
        built == compiled
        and built.groups == compiled.groups
        and dict(built.groupindex) == dict(compiled.groupindex)
    )
