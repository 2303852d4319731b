"""The regular expressions a start reads from the code table (bot/regex_cache.py) are the
ones `re` compiles, only `python -m bot.code_cache` adds to the table, and the redactor's
index of registered secrets is never written to it."""

from __future__ import annotations

import _sre
import re
import sys
import warnings
from pathlib import Path

import pytest

import bot
from bot import code_cache, regex_cache
from bot.security import known, patterns, redact, tokens

COMPILE = vars(re._compiler)["compile"]  # type: ignore[attr-defined]


def _module_patterns() -> list[re.Pattern[str]]:
    """Every pattern the redactor's modules compile when imported."""
    found = [
        value
        for module in (patterns, tokens, redact, known)
        for value in vars(module).values()
        if isinstance(value, re.Pattern)
    ]
    assert len(found) >= 15
    return found


def _never_compiled(pattern: object, flags: int) -> regex_cache.Parts:
    raise AssertionError(f"compiled, not read from the table: {pattern!r}")


def test_the_redactors_patterns_read_from_the_table_are_the_ones_re_compiles(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr("sys.dont_write_bytecode", False)
    table = tmp_path / "generated.bin"
    filling = code_cache.CodeCache(table)
    record = regex_cache.cached_compile(filling, record=True)
    extra = [("x(?P<n>[0-9]+)", re.I), (b"\\x00+(?=ab)", 0), ("abc", 0), (b"abc", 0)]
    wanted = [(p.pattern, p.flags) for p in _module_patterns()] + extra
    for pattern, flags in wanted:
        assert regex_cache.same(record(pattern, flags), COMPILE(pattern, flags))
    assert filling.compiled == len(wanted) and filling.save()

    start = code_cache.CodeCache(table)
    read = regex_cache.cached_compile(start, record=False)
    monkeypatch.setattr(regex_cache, "compile_parts", _never_compiled)
    for pattern, flags in wanted:
        # the same flags, groups and engine code, so the same matches
        assert regex_cache.same(read(pattern, flags), COMPILE(pattern, flags))
    assert start.compiled == 0
    assert read("x(?P<n>[0-9]+)", re.I).match("X12").group("n") == "12"  # type: ignore[union-attr]


def test_a_start_adds_nothing_to_the_table(tmp_path: Path) -> None:
    cache = code_cache.CodeCache(tmp_path / "generated.bin")
    compile_ = regex_cache.cached_compile(cache, record=False)
    assert compile_("built from [a-z]+ config", 0).search("built from abc config")
    assert cache.compiled == 0 and not cache.save()
    assert not (tmp_path / "generated.bin").exists()


def test_stored_code_the_engine_refuses_is_compiled_again(tmp_path: Path) -> None:
    cache = code_cache.CodeCache(tmp_path / "generated.bin")
    compile_ = regex_cache.cached_compile(cache, record=False)
    key = regex_cache._key("ab+c", 0)
    cache.keep(key, (32, [999_999, 3, 1], 0, {}, (None,)), new=False)  # not engine code
    assert compile_("ab+c", 0) == COMPILE("ab+c", 0)
    cache.keep(key, ("not", "parts"), new=False)
    assert compile_("ab+c", 0).fullmatch("abbbc")


def test_the_index_of_registered_secrets_is_never_written_even_when_filling(
    tmp_path: Path,
) -> None:
    secret = "sk-live-Zq81vXr0pLm3Tn5Ws7Yu9"
    cache = code_cache.install(tmp_path / "generated.bin", record_patterns=True)
    assert cache is not None
    re.purge()  # re's own cache would hand out a pattern compiled before, past the table
    try:
        index = known.NeedleIndex(known.variants(secret))
        other = re.compile("decapod-probe-[0-9]{3}-recorded")
    finally:
        code_cache.finish()
    needles = index._pattern
    assert needles is not None and needles.search(f"key {secret} here")
    assert cache.stored(regex_cache._key(needles.pattern, 0)) is None
    # while a pattern of any other module compiled meanwhile is recorded
    assert cache.stored(regex_cache._key(other.pattern, 0)) is not None


def test_install_puts_res_own_compiler_back(tmp_path: Path) -> None:
    cache = code_cache.install(tmp_path / "generated.bin")
    try:
        assert cache is not None
        assert vars(re._compiler)["compile"] is not COMPILE  # type: ignore[attr-defined]
        assert re.compile("during-[0-9]start").match("during-1start")
    finally:
        code_cache.finish()
    assert vars(re._compiler)["compile"] is COMPILE  # type: ignore[attr-defined]


def test_same_compares_the_groups_and_their_names_too() -> None:
    compiled = COMPILE("(a)(?P<n>b)", 0)
    flags, code, groups, _, indexgroup = regex_cache.compile_parts("(a)(?P<n>b)", 0)
    unnamed = _sre.compile("(a)(?P<n>b)", flags, code, groups, {}, indexgroup)
    assert unnamed == compiled  # what `==` sees is the same
    assert not regex_cache.same(unnamed, compiled)
    assert regex_cache.same(
        _sre.compile("(a)(?P<n>b)", flags, code, groups, {"n": 2}, indexgroup), compiled
    )


def _warned_by(pattern: str) -> list[warnings.WarningMessage]:
    re.purge()
    with warnings.catch_warnings(record=True) as warned:
        warnings.simplefilter("always")
        re.compile(pattern)
    return warned


def test_a_pattern_compiled_at_a_start_warns_as_re_does_and_one_that_warns_is_not_stored(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    line = _warned_by.__code__.co_firstlineno + 4  # its `re.compile`
    (expected,) = _warned_by("[[:alpha:]]-as-re")
    assert expected.category is FutureWarning and expected.lineno == line
    cache = code_cache.CodeCache(tmp_path / "generated.bin")
    for record in (False, True):
        monkeypatch.setattr(
            "re._compiler.compile", regex_cache.cached_compile(cache, record=record)
        )
        (got,) = _warned_by(f"[[:alpha:]]-{record}")
        assert (got.category, got.filename, got.lineno) == (FutureWarning, __file__, line)
        assert str(got.message) == str(expected.message)
    assert cache.compiled == 0  # the warning would be lost when read from the table
    monkeypatch.setattr("re._compiler.compile", COMPILE)


def test_a_warning_said_again_is_filtered_by_the_callers_module_as_re_does(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    cache = code_cache.CodeCache(tmp_path / "generated.bin")
    monkeypatch.setattr("re._compiler.compile", regex_cache.cached_compile(cache, record=True))
    re.purge()
    with warnings.catch_warnings(record=True) as warned:
        warnings.simplefilter("error")
        # a filter naming the module, as `-W ignore::FutureWarning:tests.core...` does
        warnings.filterwarnings("ignore", category=FutureWarning, module=__name__)
        re.compile("[[:alpha:]]-by-module")  # ignored: it would raise if not
    assert warned == []
    monkeypatch.setattr("re._compiler.compile", COMPILE)


def test_a_python_whose_re_differs_starts_with_res_own_compiler(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delattr(_sre, "MAGIC")
    monkeypatch.delitem(sys.modules, "bot.regex_cache")
    monkeypatch.delattr(bot, "regex_cache")
    cache = code_cache.install(tmp_path / "generated.bin")
    try:
        assert cache is not None
        assert vars(re._compiler)["compile"] is COMPILE  # type: ignore[attr-defined]
        assert re.compile("differs-[0-9]start").match("differs-1start")
    finally:
        code_cache.finish()
