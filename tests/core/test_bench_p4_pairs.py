"""P4 against nanobot (bench/startup_bench.py, bench/__main__.py): Decapod's starts alternate
with nanobot's gateway starts and the ratio is the median of the pairs' ratios."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from bench import startup_bench
from bench.__main__ import _p4_run_row
from bench.peer.environment import PeerUnavailable


def test_paired_ratio_is_the_median_of_each_pairs_ratio() -> None:
    # the load rose in the last pairs: both sides slowed alike
    ours, peers = [0.5, 0.6, 1.2, 1.3], [1.0, 1.0, 2.0, 2.2]
    # each pair: 0.5, 0.6, 0.6, 0.59; their median is not the medians' ratio (0.9 / 1.5)
    assert startup_bench.paired_ratio(ours, peers) == pytest.approx((0.59090909 + 0.6) / 2)
    assert startup_bench.paired_ratio([0.6], [1.0]) == pytest.approx(0.6)


@pytest.mark.parametrize(("ours", "peers"), [([], []), ([0.5, 0.6], [1.0])])
def test_paired_ratio_needs_whole_pairs(ours: list[float], peers: list[float]) -> None:
    with pytest.raises(ValueError, match="pairs"):
        startup_bench.paired_ratio(ours, peers)


def _p4(**extra: Any) -> dict[str, Any]:
    return {
        "run_to_channels_up_s": 0.62,
        "run_to_health_s": 0.6,
        "channels_running": 3,
        "channels": 3,
        **extra,
    }


def test_the_verdict_takes_the_paired_ratio_over_the_peers_own_phase() -> None:
    # nanobot's own phase, later and quieter, would make 0.62 s 0.69x its ready: missed
    phase = {"gateway_ready_s": 0.9}
    pairs = [[0.6, 1.05], [0.62, 1.04], [0.7, 1.2]]
    row = _p4_run_row(
        _p4(
            peer_pairs=pairs,
            peer_ready_s=1.05,
            run_cpu_s=0.5,
            run_loop_cpu_s=0.49,
            floor_cpu_s=0.4,
            peer_cpu_s=0.9,
            peer_ratio=startup_bench.paired_ratio([o for o, _ in pairs], [p for _, p in pairs]),
        ),
        phase,
    )
    assert row.verdict == "ok"
    assert row.peer == "1.05 s (1 channel)"
    assert row.ratio == "1.7x"
    assert "0.58x nanobot's ready (median of 3 pairs" in row.notes[-1]
    assert "0.60/1.05, 0.62/1.04, 0.70/1.20" in row.notes[-1]
    assert row.notes[-1].endswith("; CPU by ready 0.50 s / 0.90 s")
    missed = _p4_run_row(_p4(peer_pairs=[[0.62, 1.0]], peer_ready_s=1.0, peer_ratio=0.62), None)
    assert missed.verdict == "MISSED"


def test_without_pairs_the_row_is_as_before() -> None:
    assert _p4_run_row(_p4(), {"gateway_ready_s": 1.1}).verdict == "ok"
    assert _p4_run_row(_p4(), {"gateway_ready_s": 1.0}).verdict == "MISSED"
    alone = _p4_run_row(_p4(peer_error="nanobot gateway exited at start"), None)
    assert (alone.verdict, alone.peer) == ("ok", "")
    assert "not paired with nanobot's start: nanobot gateway exited at start" in alone.notes


class _Starts:
    """Records the order of the starts `_measure` makes, without starting anything."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch, peer_fails_at: int = -1) -> None:
        self.order: list[str] = []
        self.peer_fails_at = peer_fails_at
        monkeypatch.setattr(startup_bench, "compile_bytecode", lambda: None)
        monkeypatch.setattr(startup_bench, "_version_times", lambda runs: [0.03] * runs)
        monkeypatch.setattr(startup_bench, "_run_until_health", self.decapod)

    def decapod(
        self, home: Path, port: int, env: dict[str, str], command: Any = None, idle_s: float = 2
    ) -> dict[str, float]:
        side = "floor" if command else ("decapod-warm" if idle_s == 0 else "decapod")
        self.order.append(side)
        up = 0.4 if command else 0.6
        return {"answered": up, "all_up": up, "cpu": up, "loop_cpu": up, "rss": 80, "up": 3}

    def peer(self) -> tuple[float, float]:
        self.order.append("nanobot")
        if self.order.count("nanobot") == self.peer_fails_at:
            raise PeerUnavailable("nanobot gateway exited at start")
        return 1.0, 0.8


def test_the_starts_alternate_after_one_untimed_start_of_each(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    starts = _Starts(monkeypatch)
    p4 = startup_bench._measure(False, "", {}, 3, starts.peer)["P4"]
    assert starts.order[:2] == ["nanobot", "decapod-warm"]
    # each pair after the floor's run, the side that starts first alternating
    first, second = ["floor", "nanobot", "decapod"], ["floor", "decapod", "nanobot"]
    assert starts.order[2:] == first + second + first + second + first
    assert p4["peer_pairs"] == [[0.6, 1.0]] * 5
    assert p4["peer_ratio"] == pytest.approx(0.6)
    assert p4["peer_ready_s"] == 1.0
    assert p4["peer_cpu_s"] == 0.8


def test_a_peer_that_fails_midway_leaves_p4_unpaired(monkeypatch: pytest.MonkeyPatch) -> None:
    starts = _Starts(monkeypatch, peer_fails_at=3)
    p4 = startup_bench._measure(True, "", {}, 3, starts.peer)["P4"]
    assert "peer_ratio" not in p4 and "peer_pairs" not in p4 and "peer_cpu_s" not in p4
    assert p4["peer_error"] == "nanobot gateway exited at start"
    assert starts.order.count("nanobot") == 3
    assert starts.order.count("decapod") == 3  # the runs go on, alone


def test_without_a_peer_p4_runs_as_before(monkeypatch: pytest.MonkeyPatch) -> None:
    starts = _Starts(monkeypatch)
    p4 = startup_bench._measure(False, "", {}, 3)["P4"]
    assert starts.order == ["floor", "decapod"] * 4
    assert "peer_ratio" not in p4
