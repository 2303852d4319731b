"""The one table `make bench` prints: figure, Decapod, target, verdict, the peer, the ratio."""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any


@dataclass
class Row:
    figure: str
    decapod: str
    target: str = ""
    #: "ok", "MISSED", "not run", "info" or ""
    verdict: str = ""
    peer: str = ""
    #: how many times the peer's figure is Decapod's (bigger is better for Decapod)
    ratio: str = ""
    notes: list[str] = field(default_factory=list)


def _num(value: Any) -> float | None:
    return float(value) if isinstance(value, int | float) and math.isfinite(value) else None


def ms(value: Any) -> str:
    v = _num(value)
    return (
        "-"
        if v is None
        else (f"{v:.2f} ms" if v < 10 else f"{v:.1f} ms" if v < 100 else f"{v:.0f} ms")
    )


def sec(value: Any) -> str:
    v = _num(value)
    return "-" if v is None else f"{v:.2f} s"


def mb(value: Any) -> str:
    v = _num(value)
    return "-" if v is None else f"{v:.0f} MB"


def kb(value: Any) -> str:
    v = _num(value)
    return "-" if v is None else f"{v / 1024:.1f} KB"


def ratio(peer: Any, ours: Any) -> str:
    """The peer's figure over ours: 12.3x means ours is 12.3 times smaller (faster, lighter)."""
    p, o = _num(peer), _num(ours)
    if p is None or o is None or o <= 0:
        return ""
    return f"{p / o:.1f}x"


def verdict(ok: Any) -> str:
    return "ok" if ok else "MISSED"


def render(rows: list[Row], peer_name: str) -> str:
    headers = ["figure", "Decapod", "target", "", peer_name, "peer/Decapod"]
    table = [[r.figure, r.decapod, r.target, r.verdict, r.peer, r.ratio] for r in rows]
    widths = [max(len(h), *(len(row[i]) for row in table)) for i, h in enumerate(headers)]
    sep = "  "

    def line(cells: list[str]) -> str:
        return sep.join(c.ljust(w) for c, w in zip(cells, widths, strict=True)).rstrip()

    out = [line(headers), line(["-" * w for w in widths])]
    out += [line(row) for row in table]
    notes = [(r.figure, n) for r in rows for n in r.notes]
    if notes:
        out.append("")
        out += [f"  {figure}: {note}" for figure, note in notes]
    return "\n".join(out)
