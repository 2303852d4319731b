"""R9 and R10: reminders survive kill -9, at a time and at each crash window of a delivery.

The harness process (harness.py) appends every delivery to a file, standing in for the
platform's 2xx. Bounds: a reminder due while the process was down is delivered once after the
restart, marked late; a crash after the claim delivers once the lease runs out; a crash after
the 2xx and before the commit delivers once or twice, never zero; a crash after the commit
does not deliver again. The database passes `PRAGMA integrity_check` every time.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from bot.store import sqlite

ROOT = Path(__file__).resolve().parents[2]
LEASE = 1.5

pytestmark = pytest.mark.slow


def harness(db: Path, out: Path, *args: str, fault: str | None = None) -> subprocess.Popen[str]:
    env = {k: v for k, v in os.environ.items() if k != "DECAPOD_FAULT"}
    if fault:
        env["DECAPOD_FAULT"] = fault
    command = [sys.executable, "-m", "tests.scheduler.harness", str(db), str(out)]
    return subprocess.Popen(
        [*command, "--lease", str(LEASE), *args], cwd=ROOT, env=env, text=True,
        stdout=subprocess.PIPE, stderr=subprocess.PIPE,
    )  # fmt: skip


def finish(process: subprocess.Popen[str], timeout: float = 30) -> int:
    _, err = process.communicate(timeout=timeout)
    assert process.returncode in (0, -signal.SIGKILL), err
    return process.returncode


def deliveries(out: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in out.read_text().splitlines()] if out.exists() else []


def job_row(db: Path) -> dict[str, Any]:
    conn = sqlite.connect(db, load_vec=False)
    try:
        cursor = conn.execute("SELECT status, attempt, lease_until, late_by FROM jobs")
        names = [d[0] for d in cursor.description]
        [row] = cursor.fetchall()
        return dict(zip(names, row, strict=True))
    finally:
        conn.close()


def integrity(db: Path) -> str:
    conn = sqlite.connect(db, load_vec=False)
    try:
        return str(conn.execute("PRAGMA integrity_check").fetchone()[0])
    finally:
        conn.close()


def test_r9_reminder_due_during_downtime(tmp_path: Path) -> None:
    db, out = tmp_path / "decapod.db", tmp_path / "deliveries.jsonl"
    first = harness(db, out, "--schedule-in", "3", "--timeout", "30")
    assert first.stdout is not None
    due = json.loads(first.stdout.readline())["due"]
    time.sleep(max(due - 2 - time.time(), 0))  # T+1 of a reminder due at T+3
    first.send_signal(signal.SIGKILL)
    assert finish(first) == -signal.SIGKILL
    assert deliveries(out) == [] and job_row(db)["status"] == "pending"
    assert integrity(db) == "ok"

    time.sleep(max(due + 2 - time.time(), 0))  # still down when it falls due
    restarted = time.time()
    assert finish(harness(db, out, "--until-lines", "1", "--settle", "1", "--timeout", "15")) == 0
    [delivery] = deliveries(out)
    assert delivery["at"] >= restarted
    assert delivery["text"].startswith("⏰ stretch\n(late by ")
    row = job_row(db)
    assert row["status"] == "sent" and row["late_by"] >= 1.5
    assert integrity(db) == "ok"


@pytest.mark.parametrize("window", ["claimed", "delivered", "committed"])
def test_r10_reminder_crash_windows(tmp_path: Path, window: str) -> None:
    db, out = tmp_path / "decapod.db", tmp_path / "deliveries.jsonl"
    crashed = harness(
        db, out, "--schedule-in", "0.3", "--timeout", "10", fault=f"scheduler.{window}"
    )
    assert finish(crashed) == -signal.SIGKILL
    assert integrity(db) == "ok"
    row = job_row(db)
    before = len(deliveries(out))
    assert (before, row["status"]) == {
        "claimed": (0, "sending"),  # (a) claimed, not sent
        "delivered": (1, "sending"),  # (b) the platform has it, the commit did not happen
        "committed": (1, "sent"),  # (c) sent and recorded
    }[window]

    wanted = "1" if window == "claimed" else "2"
    restart = harness(
        db, out, "--until-lines", wanted, "--settle", "0.5", "--timeout", str(LEASE + 2)
    )
    assert finish(restart) == 0
    after = deliveries(out)
    if window == "claimed":
        assert len(after) == 1 and after[0]["at"] >= row["lease_until"]
    elif window == "delivered":
        assert 1 <= len(after) <= 2  # at most one duplicate, never lost
        assert all(d["at"] >= row["lease_until"] for d in after[1:])
    else:
        assert len(after) == 1
    final = job_row(db)
    assert final["status"] == "sent" and final["attempt"] == (1 if window == "committed" else 2)
    assert integrity(db) == "ok"
