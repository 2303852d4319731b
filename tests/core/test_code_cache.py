"""`decapod run` reads the code of its generated dataclass methods and string annotations
from a table (bot/code_cache.py): a start that finds its sources there compiles none of
them, and the classes and annotations it makes behave as those compiled from source."""

from __future__ import annotations

import builtins
import dataclasses
import json
import os
import subprocess
import sys
import typing
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
    result["written"] = code_cache.finish()
    result["exec_restored"] = "exec" not in vars(dataclasses)
    result["compile_restored"] = "compile" not in vars(typing)
print(json.dumps(result))
"""


def _start(table: Path | str) -> dict[str, Any]:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    done = subprocess.run(
        [sys.executable, "-c", CHECK, str(table)],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    return dict(json.loads(done.stdout))


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
    [b"", b"not a table", b"\x00\x00\r\n" + b"decapod code cache 1\n" + b"\x00" * 8],
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
        code_cache.finish(write=False)
        code_cache.save_last()
    assert "exec" not in vars(dataclasses) and "compile" not in vars(typing)
    assert dataclasses.make_dataclass("After", ["a"])(1).a == 1
