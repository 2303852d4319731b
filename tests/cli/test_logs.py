"""`decapod logs`: the gateway's JSON log file, readable, filtered, followed across rotations."""

from __future__ import annotations

import json
import logging
import signal
import stat
from collections.abc import Iterator
from pathlib import Path

import pytest

from bot.cli import main
from bot.logging import log_fields, setup_logging
from tests.cli.harness import start, stop, until, write_config


@pytest.fixture
def gateway_log(home: Path) -> Iterator[Path]:
    """The log file as the gateway writes it: the real handler, JSON lines, under the home."""
    write_config(home, "")
    path = home / "logs" / "decapod.log"
    setup_logging("DEBUG", "json", path, stream_level="CRITICAL")
    yield path


def _write_some(count: int = 0) -> None:
    turn = logging.getLogger("decapod.turn")
    log_fields(turn, "turn", session="telegram:dm:42", outcome="ok", tokens_in=12)
    log_fields(turn, "turn", session="slack:dm:D1", outcome="error", tokens_in=3)
    logging.getLogger("decapod.gateway").warning("turn failed in %s: boom", "slack:dm:D1")
    logging.getLogger("decapod.http").debug("a detail")
    for n in range(count):
        logging.getLogger("decapod.bulk").info("line %d of many", n)


def test_logs_are_shown_readably(
    gateway_log: Path, home: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    _write_some()

    assert main(["logs"]) == 0

    lines = capsys.readouterr().out.splitlines()
    assert len(lines) == 4
    assert not any(line.startswith("{") for line in lines)
    first = lines[0].split()
    assert first[2:5] == ["INFO", "decapod.turn:", "turn"]
    assert "session=telegram:dm:42" in lines[0] and "outcome=ok" in lines[0]
    assert lines[2].split()[2] == "WARNING"


def test_level_session_json_and_count_filters(
    gateway_log: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    _write_some()

    assert main(["logs", "--level", "warning"]) == 0
    assert [line.split()[2] for line in capsys.readouterr().out.splitlines()] == ["WARNING"]

    assert main(["logs", "--session", "slack:dm:D1"]) == 0
    slack = capsys.readouterr().out.splitlines()
    assert len(slack) == 2 and all("slack:dm:D1" in line for line in slack)

    assert main(["logs", "--json", "-n", "2"]) == 0
    records = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert [r["logger"] for r in records] == ["decapod.gateway", "decapod.http"]


def test_older_lines_come_from_the_rotated_files(
    home: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    write_config(home, "")
    path = home / "logs" / "decapod.log"
    setup_logging("INFO", "json", path, stream_level="CRITICAL", max_bytes=2000, backups=3)
    _write_some(count=40)
    rotated = sorted(path.parent.glob("decapod.log.*"))
    assert rotated, "the file was never rotated"
    for file in [path, *rotated]:
        assert stat.S_IMODE(file.stat().st_mode) == 0o600, file

    assert main(["logs", "-n", "0", "--json"]) == 0

    shown = [json.loads(line)["msg"] for line in capsys.readouterr().out.splitlines()]
    kept = [f"line {n} of many" for n in range(40) if f"line {n} of many" in shown]
    assert kept == [m for m in shown if m.startswith("line ")]  # in order, oldest first
    assert shown[-1] == "line 39 of many"


def test_without_a_log_file_it_says_where_it_would_be(
    home: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    write_config(home, "")

    assert main(["logs"]) == 1

    err = capsys.readouterr().err
    assert str(home / "logs" / "decapod.log") in err and "decapod run" in err


def test_a_negative_count_is_refused_not_shown_as_an_empty_log(
    home: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit) as exited:
        main(["logs", "-n", "-5"])

    assert exited.value.code == 2
    assert "invalid count value: '-5'" in capsys.readouterr().err


async def test_follow_prints_new_lines_across_a_rotation(home: Path) -> None:
    write_config(home, "")
    path = home / "logs" / "decapod.log"
    setup_logging("INFO", "json", path, stream_level="CRITICAL", max_bytes=1500, backups=2)
    follower = await start(home, "logs", "-f", "-n", "0")
    try:
        logging.getLogger("decapod.test").info("before the follower started")
        assert follower.stdout is not None
        # the follower is up once it shows what is written now
        seen = ""
        marker = 0
        while "marker" not in seen:
            marker += 1
            logging.getLogger("decapod.test").info("marker %d", marker)
            try:
                seen += (await _line(follower)).decode()
            except TimeoutError:
                continue
        for n in range(30):  # past the 1500 bytes: at least one rotation
            logging.getLogger("decapod.test").info("followed line %d", n)
        assert sorted(path.parent.glob("decapod.log.*"))
        while "followed line 29" not in seen:
            try:
                seen += (await _line(follower, timeout=30)).decode()
            except TimeoutError:
                files = {p.name: p.read_text() for p in path.parent.iterdir()}
                raise AssertionError((seen, files)) from None
    finally:
        done = await stop(follower, signal.SIGINT)
    followed = [line for line in seen.splitlines() if "followed line" in line]
    assert [line.rsplit(" ", 1)[1] for line in followed] == [str(n) for n in range(30)], seen
    assert done.returncode == 0
    await until(lambda: follower.returncode is not None)


async def _line(proc: object, timeout: float = 2.0) -> bytes:
    import asyncio

    stdout = proc.stdout  # type: ignore[attr-defined]
    line: bytes = await asyncio.wait_for(stdout.readline(), timeout)
    assert line, "the follower ended"
    return line
