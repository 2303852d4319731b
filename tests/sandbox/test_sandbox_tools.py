"""The sandbox tools through the ToolRegistry, as the agent calls them."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import pytest
from conftest import make_ctx

from bot.providers.base import ToolCall
from bot.sandbox import SandboxBackend, SandboxConfig, sandbox_tools, workspace_manager
from bot.tools import ToolContext, ToolRegistry

CONFIG = SandboxConfig(approval="never")


async def call(ctx: ToolContext, name: str, **arguments: Any) -> tuple[str, bool]:
    registry = ToolRegistry(sandbox_tools())
    result = await registry.call(ToolCall("c1", name, json.dumps(arguments)), ctx)
    return result.content, result.ok


@pytest.fixture
def fs_ctx(home: Path) -> ToolContext:
    """File tools need no backend: only the workspaces."""
    return make_ctx(workspaces=workspace_manager(CONFIG, home), sandbox_config=CONFIG)


def workspace_of(ctx: ToolContext) -> Path:
    assert ctx.deps.sandbox is not None
    return Path(ctx.deps.sandbox.workspaces.prepare(ctx.session_key).path)


async def test_file_tools_round_trip(fs_ctx: ToolContext) -> None:
    out, ok = await call(fs_ctx, "write_file", path="notes/todo.txt", content="milk\neggs\n")
    assert ok and out == "wrote 10 bytes to notes/todo.txt"
    out, ok = await call(
        fs_ctx, "write_file", path="/work/notes/todo.txt", content="tea\n", append=True
    )
    assert ok and out.startswith("appended 4 bytes")
    assert (await call(fs_ctx, "read_file", path="./notes/todo.txt")) == ("milk\neggs\ntea\n", True)
    out, ok = await call(fs_ctx, "list_files", path=".", recursive=True)
    assert ok and out.splitlines() == ["notes/", "notes/todo.txt (14 bytes)"]

    out, ok = await call(
        fs_ctx, "edit_file", path="notes/todo.txt", old_text="eggs", new_text="bread"
    )
    assert ok and out == "replaced 1 occurrence in notes/todo.txt"
    assert (workspace_of(fs_ctx) / "notes/todo.txt").read_text() == "milk\nbread\ntea\n"
    out, ok = await call(
        fs_ctx, "edit_file", path="notes/todo.txt", old_text="butter", new_text="x"
    )
    assert not ok and "not found" in out
    await call(fs_ctx, "write_file", path="twice.txt", content="a a a")
    out, ok = await call(fs_ctx, "edit_file", path="twice.txt", old_text="a", new_text="b")
    assert not ok and "occurs 3 times" in out
    out, ok = await call(
        fs_ctx, "edit_file", path="twice.txt", old_text="a", new_text="b", replace_all=True
    )
    assert ok and out == "replaced 3 occurrences in twice.txt"


@pytest.mark.parametrize(
    "path",
    [
        "../escape.txt",
        "/etc/passwd",
        "a/../../escape.txt",
        "/work/../etc/passwd",
        "/tmp/x",
        "nul\0byte",
    ],
)
async def test_path_traversal_refused(fs_ctx: ToolContext, path: str, home: Path) -> None:
    for name, args in [
        ("read_file", {"path": path}),
        ("write_file", {"path": path, "content": "pwned"}),
        ("edit_file", {"path": path, "old_text": "root", "new_text": "pwned"}),
        ("list_files", {"path": path}),
    ]:
        out, ok = await call(fs_ctx, name, **args)
        assert not ok and "refused" in out, (name, out)
    assert not (home.parent / "escape.txt").exists()
    assert not (home / "sandboxes" / "escape.txt").exists()


async def test_symlink_escapes_refused(fs_ctx: ToolContext, tmp_path: Path) -> None:
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "secret.txt").write_text("host secret")
    ws = workspace_of(fs_ctx)
    # What a sandboxed `ln -s` would leave behind: links resolve against the host's root.
    os.symlink(outside, ws / "dir-link")
    os.symlink(outside / "secret.txt", ws / "file-link")
    (ws / "real").mkdir()
    os.symlink(outside, ws / "real" / "nested-link")

    for name, args in [
        ("read_file", {"path": "file-link"}),
        ("read_file", {"path": "dir-link/secret.txt"}),
        ("read_file", {"path": "real/nested-link/secret.txt"}),
        ("write_file", {"path": "dir-link/new.txt", "content": "x"}),
        ("write_file", {"path": "file-link", "content": "overwritten"}),
        ("write_file", {"path": "file-link", "content": "x", "append": True}),
        ("edit_file", {"path": "file-link", "old_text": "host", "new_text": "x"}),
        ("list_files", {"path": "dir-link"}),
    ]:
        out, ok = await call(fs_ctx, name, **args)
        assert not ok and "refused" in out and "symlink" in out, (name, args, out)
    assert (outside / "secret.txt").read_text() == "host secret"
    assert sorted(p.name for p in outside.iterdir()) == ["secret.txt"]
    assert os.path.islink(ws / "file-link")
    out, ok = await call(fs_ctx, "list_files", path=".")
    assert ok and f'file-link -> "{outside / "secret.txt"}"' in out.splitlines()
    out, ok = await call(fs_ctx, "list_files", path=".", recursive=True)
    assert ok and "secret.txt" not in out.replace(f'file-link -> "{outside / "secret.txt"}"', "")


async def test_fifo_and_directories_refused_without_hanging(fs_ctx: ToolContext) -> None:
    ws = workspace_of(fs_ctx)
    os.mkfifo(ws / "pipe")
    (ws / "sub").mkdir()
    for name, args in [
        ("read_file", {"path": "pipe"}),
        ("read_file", {"path": "sub"}),
        ("write_file", {"path": "sub", "content": "x"}),
        ("write_file", {"path": "pipe", "content": "x", "append": True}),
    ]:
        out, ok = await call(fs_ctx, name, **args)
        assert not ok, (name, out)


async def test_read_file_caps_and_pages(fs_ctx: ToolContext) -> None:
    ws = workspace_of(fs_ctx)
    (ws / "big.txt").write_bytes(b"a" * 70_000 + b"END")
    out, ok = await call(fs_ctx, "read_file", path="big.txt")
    assert ok and out.startswith("a" * 65536)
    assert "[... truncated: bytes 0-65536 of 70003; read on with offset=65536 ...]" in out
    out, ok = await call(fs_ctx, "read_file", path="big.txt", offset=65536)
    assert ok and out.endswith("END")
    (ws / "blob.bin").write_bytes(b"\x00\x01\x02")
    assert (await call(fs_ctx, "read_file", path="blob.bin"))[0] == (
        "blob.bin is a binary file (3 bytes); not shown"
    )


async def test_written_files_belong_to_the_sandbox_user(
    bwrap_backend: SandboxBackend, home: Path
) -> None:
    ctx = make_ctx(sandbox=bwrap_backend, sandbox_config=CONFIG)
    assert (await call(ctx, "write_file", path="deep/dir/f.txt", content="one\n"))[1]
    ws = (await bwrap_backend.prepare(ctx.session_key)).path
    if os.geteuid() == 0:
        assert (ws / "deep/dir/f.txt").stat().st_uid == CONFIG.uid
        assert (ws / "deep").stat().st_uid == CONFIG.uid
    out, ok = await call(ctx, "exec", command="echo two >> deep/dir/f.txt && cat deep/dir/f.txt")
    assert ok and out.endswith("--- stdout ---\none\ntwo\n"), out


async def test_exec_output_capped_with_marker(bwrap_backend: SandboxBackend) -> None:
    ctx = make_ctx(sandbox=bwrap_backend, sandbox_config=CONFIG)
    out, ok = await call(
        ctx,
        "exec",
        command="head -c 100000 /dev/zero | tr '\\0' o; head -c 70000 /dev/zero | "
        "tr '\\0' e >&2; exit 3",
    )
    assert ok
    assert out.startswith("exit code 3 after ")
    assert "--- stdout ---\n" + "o" * 65536 + "\n[... stdout truncated" in out
    assert "--- stderr ---\n" + "e" * 65536 + "\n[... stderr truncated" in out
    assert "o" * 65537 not in out and "e" * 65537 not in out


async def test_exec_argv_stdin_and_timeout(bwrap_backend: SandboxBackend) -> None:
    ctx = make_ctx(sandbox=bwrap_backend, sandbox_config=CONFIG)
    out, ok = await call(ctx, "exec", command=["printf", "%s|", "a b", "$HOME"])
    assert ok and out.endswith("--- stdout ---\na b|$HOME|")
    out, ok = await call(ctx, "exec", command="wc -l", stdin="1\n2\n3\n")
    assert ok and out.endswith("--- stdout ---\n3\n")
    out, ok = await call(ctx, "exec", command="sleep 10", timeout=0.5)
    assert ok and "timed out (wall-clock timeout (0.5s))" in out
    out, ok = await call(ctx, "exec", command=[])
    assert not ok and "non-empty" in out


async def test_every_result_passes_the_redactor(bwrap_backend: SandboxBackend, home: Path) -> None:
    def redact(text: str) -> str:
        return text.replace("hunter2", "[REDACTED]")

    ctx = make_ctx(
        sandbox=bwrap_backend,
        workspaces=workspace_manager(CONFIG, home),
        sandbox_config=CONFIG,
        redact=redact,
    )
    results = [
        await call(ctx, "exec", command="echo password=hunter2; echo hunter2 >&2"),
        await call(ctx, "write_file", path="hunter2.txt", content="the hunter2 file"),
        await call(ctx, "read_file", path="hunter2.txt"),
        await call(ctx, "list_files", path="."),
        await call(ctx, "edit_file", path="hunter2.txt", old_text="the", new_text="a"),
        await call(ctx, "read_file", path="missing-hunter2.txt"),  # an error message
    ]
    for out, _ in results:
        assert "hunter2" not in out and "[REDACTED]" in out, out
    assert results[-1][1] is False


async def test_listed_names_stay_as_written_and_escaped_ones_never_merge(
    fs_ctx: ToolContext,
) -> None:
    work = os.fsencode(workspace_of(fs_ctx))
    names = [
        b"bad\xffname",  # a byte that is not UTF-8
        b"bad\\xffname",  # a backslash, then "xff": must not list like the one above
        "shot\u202fat 10.00.png".encode(),  # macOS screenshot names: U+202F before "AM"
        "\U0001f469\u200d\U0001f4bb.txt".encode(),  # an emoji joined with ZWJ
        "evil\u202etxt.exe".encode(),  # a bidi override that would show as "exe.txt"
        b'"quoted"',
        "zero\u200bwidth".encode(),  # invisible format characters: U+200B, U+FEFF, U+00AD
        "\ufeffbom".encode(),
        "soft\u00adhyphen".encode(),
        b"a.txt ",  # whitespace at an end: next to a.txt it would read the same
        b"a.txt",
    ]
    for name in names:
        with open(os.path.join(work, name), "wb"):
            pass
    out, ok = await call(fs_ctx, "list_files")
    assert ok and sorted(out.splitlines()) == sorted(
        [
            '"bad\\udcffname" (0 bytes)',
            "bad\\xffname (0 bytes)",
            "shot\u202fat 10.00.png (0 bytes)",
            "\U0001f469\u200d\U0001f4bb.txt (0 bytes)",
            '"evil\\u202etxt.exe" (0 bytes)',
            '"\\"quoted\\"" (0 bytes)',
            '"zero\\u200bwidth" (0 bytes)',
            '"\\ufeffbom" (0 bytes)',
            '"soft\\u00adhyphen" (0 bytes)',
            '"a.txt " (0 bytes)',
            "a.txt (0 bytes)",
        ]
    )


async def test_a_quoted_name_copied_into_a_path_reaches_that_same_file(
    fs_ctx: ToolContext,
) -> None:
    work = os.fsencode(workspace_of(fs_ctx))
    names = [b"bad\xffname", b"esc\x1b[31m", b"tab\there", b"a.txt ", b" a.txt"]
    for i, name in enumerate([*names, b"a.txt"]):
        with open(os.path.join(work, name), "wb") as f:
            f.write(b"file %d" % i)
    out, ok = await call(fs_ctx, "list_files")
    quoted = [line.rsplit(" (", 1)[0] for line in out.splitlines() if line.startswith('"')]
    assert ok and len(quoted) == len(names), out
    registry = ToolRegistry(sandbox_tools())
    for literal in quoted:
        # the model writes the name into its arguments as it was listed: a JSON string
        arguments = '{"path": ' + literal + "}"
        result = await registry.call(ToolCall("c1", "read_file", arguments), fs_ctx)
        name = os.fsencode(json.loads(literal))
        assert result.ok and result.content == f"file {names.index(name)}", (literal, result)


async def test_a_file_and_a_symlink_never_list_alike(fs_ctx: ToolContext) -> None:
    work = workspace_of(fs_ctx)
    (work / "x -> y").write_text("abc")  # a file, 3 bytes
    (work / "x").symlink_to("y (3 bytes)")  # a symlink to a name that reads like a size
    (work / "z").symlink_to("?")
    out, ok = await call(fs_ctx, "list_files")
    assert ok and out.splitlines() == ['x -> "y (3 bytes)"', '"x -> y" (3 bytes)', 'z -> "?"']


async def test_text_that_is_not_valid_unicode_is_refused_clearly(fs_ctx: ToolContext) -> None:
    out, ok = await call(fs_ctx, "write_file", path="half.txt", content="emoji: \ud83d!")
    assert not ok and "lone surrogate" in out and "nothing was written" in out
    assert not (workspace_of(fs_ctx) / "half.txt").exists()
    await call(fs_ctx, "write_file", path="whole.txt", content="abc")
    out, ok = await call(fs_ctx, "edit_file", path="whole.txt", old_text="b", new_text="\udcff")
    assert not ok and "lone surrogate" in out
    assert (workspace_of(fs_ctx) / "whole.txt").read_text() == "abc"
