"""`decapod run` reads the code of its generated dataclass methods and string annotations
from a table (bot/code_cache.py): a start that finds its sources there compiles none of
them, and the classes and annotations it makes behave as those compiled from source."""

from __future__ import annotations

import builtins
import dataclasses
import gc
import hashlib
import json
import marshal
import os
import stat
import subprocess
import sys
import typing
import weakref
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from bot import code_cache

ROOT = Path(__file__).resolve().parents[2]

#: a start's kinds of generated code: a frozen, slotted dataclass with defaults, an ordered
#: one, and string annotations resolved through typing
CHECK = """
import dataclasses, json, sys, typing
from pathlib import Path

from bot import code_cache

cache = code_cache.install(Path(sys.argv[1])) if sys.argv[1] != "-" else None
source = '''
import dataclasses

@dataclasses.dataclass(frozen=True, slots=True)
class Point:
    x: int
    y: int = 2
    tags: list = dataclasses.field(default_factory=list)

@dataclasses.dataclass(order=True)
class Version:
    major: int
    minor: int = 0

class Holder:
    value: "list[Point]"
    other: "Version | None"
'''
module = type(sys)("generated_probe")
sys.modules["generated_probe"] = module
exec(compile(source, "generated_probe.py", "exec"), module.__dict__)
Point, Version = module.Point, module.Version
point = Point(1)
try:
    point.x = 5
    frozen = "assigned"
except dataclasses.FrozenInstanceError as exc:
    frozen = str(exc)
hints = typing.get_type_hints(module.Holder, vars(module))
result = {
    "repr": repr(point),
    "eq": point == Point(1, 2, []),
    "hash_equal": hash(Point(1, 2, ())) == hash(Point(1, 2, ())),
    "frozen": frozen,
    "slots": Point.__slots__,
    "order": Version(1, 2) < Version(1, 3),
    "hints": {name: repr(hint) for name, hint in hints.items()},
}
if cache is not None:
    sys.dont_write_bytecode = False
    result["compiled"] = cache.compiled
    finished = code_cache.finish()
    result["written"] = finished is cache and cache.save()
    result["exec_restored"] = "exec" not in vars(dataclasses)
    result["compile_restored"] = "compile" not in vars(typing)
print(json.dumps(result))
"""


def _run(*args: str, cwd: Path = ROOT) -> str:
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT), str(cwd)])}
    done = subprocess.run(
        [sys.executable, *args], env=env, capture_output=True, text=True, timeout=60, cwd=cwd
    )
    assert done.returncode == 0, done.stderr
    return done.stdout


def _start(table: Path | str, *flags: str) -> dict[str, Any]:
    return dict(json.loads(_run(*flags, "-c", CHECK, str(table))))


def test_a_second_start_compiles_nothing_and_its_classes_behave_as_compiled(
    tmp_path: Path,
) -> None:
    table = tmp_path / "__pycache__" / "generated.bin"
    plain = _start("-")  # no table: the builtins as usual
    first, second = _start(table), _start(table)

    assert first["compiled"] > 0 and first["written"] and table.is_file()
    assert second["compiled"] == 0  # every source found in the table
    assert not second["written"]  # nothing new: the table is left as it is
    for start in (first, second):
        assert start["exec_restored"] and start["compile_restored"]
        behaviour = {k: v for k, v in start.items() if k in plain}
        assert behaviour == plain
    assert plain["frozen"] == "cannot assign to field 'x'"
    assert plain["eq"] and plain["hash_equal"] and plain["order"]


@pytest.mark.parametrize(
    "content",
    [b"", b"not a table", b"\x00\x00\r\n" + b"decapod code cache 2\n" + b"\x00" * 40],
    ids=["empty", "garbage", "another interpreter's"],
)
def test_a_damaged_or_foreign_table_is_compiled_past_and_replaced(
    tmp_path: Path, content: bytes
) -> None:
    table = tmp_path / "generated.bin"
    table.write_bytes(content)
    first = _start(table)
    assert first["compiled"] > 0 and first["written"]
    assert _start(table)["compiled"] == 0


def test_a_table_that_cannot_be_written_is_skipped(tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("")
    cache = code_cache.CodeCache(blocker / "generated.bin")  # under a file: no folder
    cache.code("x + 1", "eval", 0)
    assert cache.compiled == 1
    assert not cache.save()


def test_without_a_table_nothing_is_written_when_bytecode_is_not(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(sys, "dont_write_bytecode", True)
    cache = code_cache.CodeCache(tmp_path / "generated.bin")
    cache.code("x + 1", "eval", 0)
    assert not cache.save() and not (tmp_path / "generated.bin").exists()


def test_the_callers_future_flags_are_kept(tmp_path: Path) -> None:
    """This module has `from __future__ import annotations`: what it compiles through the
    table keeps annotations as strings, as the builtins do when called from here."""
    cache = code_cache.CodeCache(tmp_path / "generated.bin")
    cached_exec = code_cache._cached_exec(cache)
    cached_compile = code_cache._cached_compile(cache)
    source = "def f(x: int) -> int:\n    return x\n"
    ours: dict[str, Any] = {}
    theirs: dict[str, Any] = {}
    cached_exec(source, ours)
    builtins.exec(source, theirs)
    assert ours["f"].__annotations__ == theirs["f"].__annotations__ == {"x": "int", "return": "int"}
    code = cached_compile(source, "<string>", "exec")
    assert code.co_flags == builtins.compile(source, "<string>", "exec").co_flags
    # inherited flags are part of what identifies the code: none from dataclasses
    plain = cached_compile(source, "<string>", "exec", dont_inherit=True)
    namespace: dict[str, Any] = {}
    builtins.exec(plain, namespace)
    assert namespace["f"].__annotations__ == {"x": int, "return": int}
    assert cache.compiled == 2


def test_install_and_finish_leave_the_builtins_in_place(tmp_path: Path) -> None:
    cache = code_cache.install(tmp_path / "generated.bin")
    try:
        assert cache is not None
        assert vars(dataclasses)["exec"] is not builtins.exec
        assert code_cache.install(tmp_path / "other.bin") is None  # once
    finally:
        finished = code_cache.finish()
    assert finished is cache and code_cache.finish() is None
    assert "exec" not in vars(dataclasses) and "compile" not in vars(typing)
    assert dataclasses.make_dataclass("After", ["a"])(1).a == 1


def test_after_finish_nothing_in_the_module_holds_the_table(tmp_path: Path) -> None:
    """An idle gateway keeps no code object of its start: once its caller lets go of the
    table (after writing it, or at once), it is gone."""
    cache = code_cache.install(tmp_path / "generated.bin")
    assert cache is not None
    dataclasses.make_dataclass("During", ["a"])
    held = weakref.ref(cache)
    finished = code_cache.finish()
    assert finished is cache and cache.compiled > 0
    del cache, finished
    gc.collect()
    assert held() is None


def _damage(table: Path, change: Callable[[dict[bytes, int]], None], *, rehash: bool) -> None:
    """Rewrite `table` with its index changed by `change`: with the digest of what is
    written (`rehash`), as a faulty writer would, or with the old one, as a damaged disk."""
    data = table.read_bytes()
    at = len(code_cache._HEADER) + 32
    length = int.from_bytes(data[at : at + 4], "little")
    index = marshal.loads(data[at + 4 : at + 4 + length])
    change(index)
    head = marshal.dumps(index)
    payload = len(head).to_bytes(4, "little") + head + data[at + 4 + length :]
    old = data[len(code_cache._HEADER) : at]
    digest = hashlib.blake2b(payload, digest_size=32).digest() if rehash else old
    table.write_bytes(code_cache._HEADER + digest + payload)


def _swap_two(index: dict[bytes, int]) -> None:
    first, second = list(index)[:2]
    index[first], index[second] = index[second], index[first]


def _one_not_a_number(index: dict[bytes, int]) -> None:
    index[next(iter(index))] = "0"  # type: ignore[assignment]


@pytest.mark.parametrize(
    ("change", "rehash"),
    [(_swap_two, False), (_one_not_a_number, True)],
    ids=["an offset at another entry's code", "an index value not a number"],
)
def test_a_table_whose_entries_do_not_hold_is_compiled_past(
    tmp_path: Path, change: Callable[[dict[bytes, int]], None], rehash: bool
) -> None:
    table = tmp_path / "generated.bin"
    plain = _start("-")
    first = _start(table)
    _damage(table, change, rehash=rehash)
    damaged = _start(table)
    assert damaged["compiled"] == first["compiled"] > 0  # the whole table ignored
    assert {k: v for k, v in damaged.items() if k in plain} == plain


def test_the_optimisation_level_is_part_of_what_identifies_the_code(tmp_path: Path) -> None:
    table = tmp_path / "generated.bin"
    assert _start(table)["compiled"] > 0
    assert _start(table, "-O")["compiled"] > 0  # not what a start without -O compiled
    assert _start(table)["compiled"] == 0


def test_a_rewrite_keeps_what_this_start_did_not_use(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(sys, "dont_write_bytecode", False)
    table = tmp_path / "generated.bin"
    filled = code_cache.CodeCache(table)
    for source in ("x + 1", "x + 2"):
        filled.code(source, "eval", 0)
    assert filled.save()
    start = code_cache.CodeCache(table)
    start.code("x + 1", "eval", 0)
    start.code("x + 3", "eval", 0)
    start.release()
    assert start.compiled == 1 and start.save()
    later = code_cache.CodeCache(table)
    for source in ("x + 1", "x + 2", "x + 3"):
        assert eval(later.code(source, "eval", 0), {"x": 1}) == 1 + int(source[-1])
    assert later.compiled == 0


def test_a_failed_rename_leaves_no_temporary_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(sys, "dont_write_bytecode", False)
    table = tmp_path / "generated.bin"
    (table / "in the way").mkdir(parents=True)  # a folder where the table goes
    cache = code_cache.CodeCache(table)
    cache.code("x + 1", "eval", 0)
    assert not cache.save()  # written, but not renamed over the folder
    assert sorted(p.name for p in tmp_path.iterdir()) == ["generated.bin"]


PROBE = {
    "__init__.py": "",
    "records.py": (
        "import dataclasses\n\n@dataclasses.dataclass(frozen=True)\n"
        "class Record:\n    name: str\n    size: int = 0\n"
    ),
    "needs_extra.py": "import decapod_extra_not_installed\n",
    "not_set_up.py": "raise RuntimeError('no settings for this part')\n",
}

FILL = """
import os, sys
from pathlib import Path
from bot import code_cache
os.umask(0o077)
print(code_cache.fill(["probe_parts"], Path(sys.argv[1])))
"""

USE = """
import sys
from pathlib import Path
from bot import code_cache
cache = code_cache.install(Path(sys.argv[1]))
from probe_parts.records import Record
assert repr(Record("a")) == "Record(name='a', size=0)"
print(cache.compiled)
"""


def test_fill_writes_a_readable_table_that_a_start_then_compiles_nothing_from(
    tmp_path: Path,
) -> None:
    """Every module imported, past those that fail to (an extra not installed, a part that
    raises), and the table readable by a service's own user whatever root's umask."""
    package = tmp_path / "probe_parts"
    package.mkdir()
    for name, text in PROBE.items():
        (package / name).write_text(text)
    table = tmp_path / "cache" / "generated.bin"
    assert int(_run("-c", FILL, str(table), cwd=tmp_path)) > 0
    assert stat.S_IMODE(table.stat().st_mode) == 0o644
    assert int(_run("-c", USE, str(table), cwd=tmp_path)) == 0
