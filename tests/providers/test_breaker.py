"""Breaker and BreakerBoard on their own, with a manual clock."""

from __future__ import annotations

import asyncio
import logging

import pytest

from bot.providers.breaker import Breaker, BreakerBoard, BreakerSettings, Permit
from bot.providers.testing import ManualClock

NORMAL = Permit(probe=False)


def breaker(clock: ManualClock, **settings: float) -> Breaker:
    return Breaker(BreakerSettings(**settings), clock)  # type: ignore[arg-type]


def test_failure_rate_over_the_window_opens_it() -> None:
    clock = ManualClock()
    b = breaker(clock, failure_threshold=100, failure_rate_threshold=0.5, failure_rate_min_calls=4)
    for ok in (False, True, False):
        if ok:
            b.record_success()
        else:
            b.record_failure(NORMAL, "server")
        clock.advance(1)
    assert b.try_acquire() == NORMAL  # three calls: below the minimum
    b.record_success()
    b.record_failure(NORMAL, "server")  # 3 of 5 failed

    assert b.try_acquire() is None
    assert b.snapshot("x")["state"] == "open"


def test_outcomes_older_than_the_window_do_not_count() -> None:
    clock = ManualClock()
    b = breaker(
        clock,
        failure_threshold=100,
        failure_rate_min_calls=4,
        failure_rate_window_s=10,
    )
    for _ in range(3):
        b.record_failure(NORMAL, "server")
    clock.advance(11)
    b.record_success()
    b.record_failure(NORMAL, "server")

    assert b.try_acquire() == NORMAL


def test_failed_probes_double_the_cooldown_up_to_the_cap() -> None:
    clock = ManualClock()
    b = breaker(clock, failure_threshold=1, base_cooldown_s=30, max_cooldown_s=100)
    b.record_failure(NORMAL, "timeout")
    cooldowns = []
    for _ in range(4):
        cooldowns.append(b.snapshot("x")["cooldown_remaining_s"])
        clock.advance(cooldowns[-1])
        probe = b.try_acquire()
        assert probe == Permit(probe=True)
        b.record_failure(probe, "timeout")

    assert cooldowns == [30, 60, 100, 100]


def test_a_late_short_cooldown_never_shortens_a_long_one() -> None:
    clock = ManualClock()
    b = breaker(clock)
    b.record_failure(NORMAL, "auth", cooldown_s=600)
    b.record_failure(NORMAL, "rate_limit", cooldown_s=5)

    assert b.snapshot("x")["cooldown_remaining_s"] == 600


def test_release_frees_the_probe_for_another_caller() -> None:
    clock = ManualClock()
    b = breaker(clock, failure_threshold=1)
    b.record_failure(NORMAL, "server")
    clock.advance(30)
    probe = b.try_acquire()
    assert probe is not None and probe.probe
    assert b.try_acquire() is None

    b.release(probe)

    assert b.try_acquire() == Permit(probe=True)


def test_a_success_closes_and_resets() -> None:
    clock = ManualClock()
    b = breaker(clock, failure_threshold=2)
    b.record_failure(NORMAL, "server")
    b.record_success()
    b.record_failure(NORMAL, "server")

    assert b.snapshot("x") == {
        "name": "x",
        "state": "closed",
        "cooldown_remaining_s": 0.0,
        "consecutive_failures": 1,
        "last_error": "server",
    }


def test_probe_results_act_only_on_outages_a_probe_can_see() -> None:
    clock = ManualClock()
    board = BreakerBoard(BreakerSettings(base_cooldown_s=30), clock=clock)
    local = board.breaker("local:llama", "local")
    keyed = board.breaker("paid:gpt", "paid")
    keyed.record_failure(NORMAL, "auth", cooldown_s=600)

    board.probe_result("local", "connection", cooldown_s=15)
    board.probe_result("paid", None, cooldown_s=15)  # /models answers; the key is still refused

    assert [s["cooldown_remaining_s"] for s in board.state()] == [15, 600]
    board.probe_result("local", None, cooldown_s=15)
    assert board.state(["local:llama"])[0]["state"] == "closed"
    assert local.try_acquire() == NORMAL


async def test_owner_notices_go_once_per_outage_and_failures_to_send_are_logged(
    caplog: pytest.LogCaptureFixture,
) -> None:
    sent: list[str] = []

    async def notify(text: str) -> None:
        sent.append(text)
        if len(sent) == 2:
            raise ConnectionError("channel down")

    board = BreakerBoard(clock=ManualClock(), notify=notify)
    board.notify_once("openai", "auth", "key refused")
    board.notify_once("openai", "auth", "key refused")
    board.notify_once("openai", "billing", "quota")
    await asyncio.sleep(0)
    board.recovered("openai")
    board.notify_once("openai", "auth", "key refused again")
    with caplog.at_level(logging.ERROR, logger="bot.providers.breaker"):
        await board.aclose()

    assert sent == ["key refused", "quota", "key refused again"]
    assert "could not notify the owner" in caplog.text
