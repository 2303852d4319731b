"""The usage chart as plain SVG geometry (rendered by the template: no chart library, and no
inline style, which the page's Content-Security-Policy would refuse)."""

from __future__ import annotations

import time
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from bot.store.panel import UsageRow

WIDTH, HEIGHT, LABEL_H = 640, 180, 18


@dataclass(frozen=True, slots=True)
class Bar:
    day: str
    x: float
    width: float
    in_y: float
    in_h: float
    out_y: float
    out_h: float
    input_tokens: int
    output_tokens: int


@dataclass(frozen=True, slots=True)
class Chart:
    width: int
    height: int
    bars: list[Bar]
    peak: int


def usage_chart(rows: Sequence[UsageRow], days: int, now: float | None = None) -> Chart:
    """Stacked bars of input and output tokens per day, the last `days` days (UTC)."""
    now = time.time() if now is None else now
    labels = [
        time.strftime("%Y-%m-%d", time.gmtime(now - (days - 1 - i) * 86400)) for i in range(days)
    ]
    per_day: dict[str, list[int]] = defaultdict(lambda: [0, 0])
    for r in rows:
        per_day[r.day][0] += r.input_tokens
        per_day[r.day][1] += r.output_tokens
    peak = max((sum(per_day[d]) for d in labels), default=0) or 1
    slot = WIDTH / days
    plot = HEIGHT - LABEL_H
    bars = []
    for i, day in enumerate(labels):
        tokens_in, tokens_out = per_day[day]
        in_h = plot * tokens_in / peak
        out_h = plot * tokens_out / peak
        bars.append(
            Bar(
                day=day,
                x=round(i * slot + slot * 0.15, 1),
                width=round(slot * 0.7, 1),
                in_y=round(plot - in_h, 1),
                in_h=round(in_h, 1),
                out_y=round(plot - in_h - out_h, 1),
                out_h=round(out_h, 1),
                input_tokens=tokens_in,
                output_tokens=tokens_out,
            )
        )
    return Chart(WIDTH, HEIGHT, bars, peak)
