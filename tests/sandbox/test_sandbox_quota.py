"""The workspace quota, on every backend: growth past it stops the command, is undone,
and the model is told so; the workspace stays usable. File tools refuse writes past it."""

from __future__ import annotations

import dataclasses
import json
import os
import uuid
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from conftest import (
    TEST_LIMITS,
    assert_nothing_left,
    host_pids_matching,
    make_ctx,
    run_sh,
    start_backend,
)

from bot.providers.base import ToolCall
from bot.sandbox import SandboxBackend, SandboxConfig, sandbox_tools, workspace_manager
from bot.sandbox.quota import WorkspaceQuota
from bot.sandbox.tools import format_result
from bot.tools import ToolRegistry

QUOTA_MB = 16
MAX_ENTRIES = 300
MiB = 1 << 20


@pytest.fixture(params=["bwrap", "docker"])
async def quota_backend(
    request: pytest.FixtureRequest, home: Path
) -> AsyncIterator[SandboxBackend]:
    chosen = await start_backend(
        request.param, home, workspace_quota_mb=QUOTA_MB, workspace_max_files=MAX_ENTRIES
    )
    try:
        yield chosen
    finally:
        await chosen.aclose()
    assert_nothing_left(chosen)


async def usage_of(backend: SandboxBackend, session: str) -> tuple[int, int]:
    quota: WorkspaceQuota = backend.quota  # type: ignore[attr-defined]
    usage = await quota.usage((await backend.prepare(session)).path)
    assert not usage.error, usage
    return usage.bytes, usage.entries


async def test_growth_past_the_quota_is_undone_and_reported(quota_backend: SandboxBackend) -> None:
    ws = (await quota_backend.prepare("q")).path
    first = await run_sh(quota_backend, "q", "echo keep > keep.txt; head -c 6000000 /dev/zero > a")
    assert first.exit_code == 0 and first.killed_reason is None, first

    # 6 MB more would fit; the next 6 MB and 6 MB would not
    script = (
        "head -c 6000000 /dev/zero > b; head -c 6000000 /dev/zero > c; "
        "head -c 6000000 /dev/zero > d; echo written"
    )
    over = await run_sh(quota_backend, "q", script)
    text = format_result(over)
    assert (over.killed_reason or "").startswith(f"workspace quota ({QUOTA_MB} MiB"), text
    assert "undone, newest first: removed d (new" in text, text
    assert "/work now holds" in text and "still over" not in text, text
    used, _entries = await usage_of(quota_backend, "q")
    assert used <= QUOTA_MB * MiB
    assert (ws / "keep.txt").read_text() == "keep\n"
    assert (ws / "a").stat().st_size == 6000000  # what was there before is untouched
    assert not (ws / "d").exists()

    after = await run_sh(quota_backend, "q", "rm -f b c; echo ok > ok.txt && cat ok.txt")
    assert after.exit_code == 0 and after.stdout == b"ok\n" and after.killed_reason is None


async def test_a_file_grown_past_the_quota_is_cut_back(quota_backend: SandboxBackend) -> None:
    ws = (await quota_backend.prepare("grow")).path
    await run_sh(quota_backend, "grow", "head -c 3000000 /dev/urandom > log")
    before = (ws / "log").read_bytes()
    # RLIMIT_FSIZE is capped at the quota, so the file stops at 16 MiB: just over, with /work
    roomy = dataclasses.replace(TEST_LIMITS, file_size_mb=64)
    grown = await run_sh(
        quota_backend,
        "grow",
        "for i in 1 2 3 4 5 6; do head -c 3000000 /dev/zero >> log; done",
        limits=roomy,
    )
    assert f"cut log back to {3000000 / MiB:.1f} MiB" in (grown.killed_reason or ""), grown
    assert (ws / "log").read_bytes() == before


async def test_too_many_entries_are_undone_newest_first(quota_backend: SandboxBackend) -> None:
    made = await run_sh(
        quota_backend,
        "files",
        "mkdir many; i=0; while [ $i -lt 1000 ]; do : > many/f$i; i=$((i+1)); done; echo made",
    )
    assert f"{MAX_ENTRIES} entries) exceeded" in (made.killed_reason or ""), made
    _used, entries = await usage_of(quota_backend, "files")
    assert entries <= MAX_ENTRIES
    ws = (await quota_backend.prepare("files")).path
    assert (ws / "many" / "f0").exists()  # the oldest stay: what came last is undone


async def test_a_writer_is_stopped_while_it_runs(quota_backend: SandboxBackend) -> None:
    marker = f"quota-{uuid.uuid4().hex}"
    # 1 MB files, one every 20 ms, for up to a minute: only the watchdog can stop it
    script = (
        f"i=0; while [ $i -lt 3000 ]; do head -c 1000000 /dev/zero > f$i; "
        f"i=$((i+1)); sleep 0.02; done  # {marker}"
    )
    result = await run_sh(quota_backend, "writer", script, timeout=60)
    assert not result.timed_out, result
    assert (result.killed_reason or "").startswith("workspace quota"), result
    assert result.exit_code != 0  # killed, not finished
    assert host_pids_matching(marker) == []
    used, _entries = await usage_of(quota_backend, "writer")
    assert used <= QUOTA_MB * MiB


async def test_a_workspace_over_a_lowered_quota_may_shrink_but_not_grow(home: Path) -> None:
    roomy = await start_backend("bwrap", home)
    try:
        await run_sh(roomy, "lowered", "head -c 9000000 /dev/zero > a; cp a b")
    finally:
        await roomy.aclose()
    tight = await start_backend("bwrap", home, workspace_quota_mb=QUOTA_MB)
    try:
        ws = (await tight.prepare("lowered")).path
        grew = await run_sh(tight, "lowered", "echo more > more.txt")
        assert "removed more.txt" in (grew.killed_reason or ""), grew
        assert not (ws / "more.txt").exists() and (ws / "b").exists()
        shrank = await run_sh(tight, "lowered", "rm b; echo fits > fits.txt")
        assert shrank.exit_code == 0 and shrank.killed_reason is None, shrank
        assert (ws / "fits.txt").read_text() == "fits\n"
    finally:
        await tight.aclose()


async def test_file_tools_refuse_writes_past_the_quota(home: Path) -> None:
    config = SandboxConfig(workspace_quota_mb=1, workspace_max_files=MAX_ENTRIES)
    manager = workspace_manager(config, home)
    ctx = make_ctx(workspaces=manager, sandbox_config=config)
    registry = ToolRegistry(sandbox_tools())

    async def write(path: str, content: str, append: bool = False) -> tuple[str, bool]:
        args = {"path": path, "content": content, "append": append}
        result = await registry.call(ToolCall("c1", "write_file", json.dumps(args)), ctx)
        return result.content, result.ok

    assert (await write("a.txt", "x" * 600_000))[1]
    out, ok = await write("b.txt", "y" * 600_000)
    assert not ok and "past its quota (1 MiB" in out, out
    out, ok = await write("a.txt", "z" * 600_000, append=True)
    assert not ok and "past its quota" in out, out
    ws = manager.prepare(ctx.session_key).path
    assert not (ws / "b.txt").exists() and (ws / "a.txt").stat().st_size == 600_000
    out, ok = await write("a.txt", "small")  # replacing with less always fits
    assert ok, out


def test_the_quota_counts_hard_links_once_and_sparse_files_by_use(tmp_path: Path) -> None:
    quota = WorkspaceQuota(QUOTA_MB * MiB, MAX_ENTRIES, repair_access=os.geteuid() != 0)
    (tmp_path / "data").write_bytes(os.urandom(2 * MiB))
    os.link(tmp_path / "data", tmp_path / "again")
    with open(tmp_path / "sparse", "wb") as f:
        f.truncate(10 << 30)  # 10 GiB apparent, nothing allocated
    usage = quota.usage_sync(tmp_path)
    assert 2 * MiB <= usage.bytes < 3 * MiB, usage
    assert usage.entries == 3  # the directory, data (twice linked), sparse
