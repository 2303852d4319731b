"""`make bench`: every figure the code supports (P1-P10, the failover overhead, memory recall,
web_fetch overhead, the MCP tool-call overhead, the web UI, image messages; P2 and P6 on
PostgreSQL too, bench/pg_bench.py), side by side with nanobot where it has the figure, as one
table; bench/results.json keeps the figures, the machine and the versions measured.

    python -m bench [--quick] [--only P1,P4] [--no-peer]

Each figure lives in its own module; a module that is missing or fails prints its row as
"not run" with the reason, and the others still run. nanobot is installed once into its own
environment under ~/.cache/decapod-bench/ (bench/peer/); offline, its column says why it is
unavailable.
"""

from __future__ import annotations

import argparse
import contextlib
import importlib
import importlib.metadata
import json
import logging
import os
import platform
import sys
import time
import traceback
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from bench.common import FakeLLMProcess
from bench.pg_bench import rows as pg_rows
from bench.table import Row, kb, mb, ms, ratio, render, sec, verdict

FIGURES = (
    "P1",
    "P2",
    "P3",
    "P4",
    "P5",
    "P6",
    "P7",
    "P8",
    "P9",
    "P10",
    "FO",
    "ME",
    "WF",
    "MC",
    "UI",
    "IM",
)
PEER_FIGURES = {"P1", "P4", "P5", "P7"}
RESULTS = Path(__file__).resolve().parent / "results.json"
CHANNELS = ("telegram", "slack", "discord")
SDKS = (
    "openai",
    "httpx2",
    "aiohttp",
    "pydantic",
    "python-telegram-bot",
    "slack-bolt",
    "slack-sdk",
    "discord.py",
    "apscheduler",
    "sqlite-vec",
    "mcp",
)


def _machine() -> dict[str, Any]:
    model = ""
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    return {
        "cores": os.cpu_count(),
        "cpu": model,
        "python": platform.python_version(),
        "platform": platform.platform(),
        "load_avg_start": [round(x, 2) for x in os.getloadavg()],
    }


def _versions() -> dict[str, str]:
    from bot import __version__
    from bot.store.sqlite import sqlite_module

    out = {"decapod": __version__, "sqlite": sqlite_module().sqlite_version}
    for name in SDKS:
        with contextlib.suppress(importlib.metadata.PackageNotFoundError):
            out[name] = importlib.metadata.version(name)
    return out


def _step(name: str, fn: Callable[[], dict[str, Any]], results: dict[str, Any]) -> None:
    """Run one bench; a failure is recorded as the reason, and the others go on."""
    print(f"\n== {name}", flush=True)
    started = time.perf_counter()
    try:
        results.update(fn())
    except Exception as exc:
        reason = f"{type(exc).__name__}: {exc}".splitlines()[0][:200]
        results.setdefault("_errors", {})[name] = reason
        print(f"{name}: not run: {reason}", flush=True)
        if os.environ.get("BENCH_TRACEBACK"):
            traceback.print_exc()
    print(f"({name}: {time.perf_counter() - started:.1f} s)", flush=True)


def _module_run(module: str, quick: bool, **kwargs: Any) -> Callable[[], dict[str, Any]]:
    def call() -> dict[str, Any]:
        mod = importlib.import_module(f"bench.{module}")
        return dict(mod.run(quick, **kwargs))

    return call


@contextlib.contextmanager
def _quiet() -> Iterator[None]:
    """Benches print their own lines; the gateway's warnings (a keyword-only memory, a
    fail-over the bench provoked) would only bury them."""
    logging.basicConfig(level=logging.ERROR, format="%(levelname)s %(name)s: %(message)s")
    logging.getLogger().setLevel(logging.ERROR)
    yield


def _p1_rows(r: dict[str, Any], peer: dict[str, Any] | None, errors: dict[str, str]) -> list[Row]:
    rows = []
    p1 = r.get("P1")
    nb = (peer or {}).get("P1_inproc", {})
    if p1:
        ok = p1["p50_ms"] <= 5 and p1["p99_ms"] <= 20
        rows.append(
            Row(
                "P1 in-process p50 / p99",
                f"{ms(p1['p50_ms'])} / {ms(p1['p99_ms'])}",
                "<= 5 / 20 ms",
                verdict(ok),
                f"{ms(nb.get('median_ms'))} (SDK)" if nb else "",
                ratio(nb.get("median_ms"), p1["p50_ms"]) if nb else "",
            )
        )
    else:
        rows.append(Row("P1 in-process p50 / p99", "not run", "<= 5 / 20 ms", "not run"))
    ws = (peer or {}).get("P1_ws", {})
    bus = (peer or {}).get("P1_bus", {})
    for channel in CHANNELS:
        key = f"P1_{channel}"
        fig = r.get(key)
        label = f"P1 via {channel} adapter"
        peer_cell = f"{ms(ws.get('median_ms'))} (WebSocket)" if ws else ""
        if fig:
            rows.append(
                Row(
                    label,
                    f"{ms(fig['p50_ms'])} / {ms(fig['p99_ms'])}",
                    "(adapter cost)",
                    "info",
                    peer_cell,
                    ratio(ws.get("median_ms"), fig["p50_ms"]) if ws else "",
                )
            )
        else:
            reason = errors.get(f"{channel}_bench", "no result")
            rows.append(Row(label, "not run", "", "not run", peer_cell, notes=[reason]))
    if bus:
        rows.append(
            Row(
                "P1 peer: message bus path",
                "-",
                "",
                "info",
                ms(bus.get("median_ms")),
                notes=["the path a nanobot channel takes, without a socket"],
            )
        )
    return rows


def _p4_run_row(p4: dict[str, Any], peer: dict[str, Any] | None) -> Row:
    """`decapod run` until /health says ok. Against nanobot: the median of the ratios of
    starts paired with its gateway's (bench/startup_bench.py) when they were measured, else
    its own phase's median ready."""
    up = p4["run_to_channels_up_s"]
    notes = [
        f"/health answers first (503, channels starting) after {p4['run_to_health_s']:.2f} s, "
        f"and says ok with {p4['channels_running']} channels running after {up:.2f} s"
        + (
            f"; CPU by then {p4['run_cpu_s']:.2f} s (its event loop's "
            f"{p4['run_loop_cpu_s']:.2f} s), the floor's {p4['floor_cpu_s']:.2f} s"
            if "run_cpu_s" in p4
            else ""
        )
    ]
    paired = p4.get("peer_ratio")
    if paired:
        each = ", ".join(f"{o:.2f}/{p:.2f}" for o, p in p4["peer_pairs"])
        notes.append(
            f"against nanobot's gateway start, alternating with it: Decapod is {paired:.2f}x "
            f"nanobot's ready (median of {len(p4['peer_pairs'])} pairs, Decapod/nanobot: "
            f"{each}); medians {up:.2f} s / {p4['peer_ready_s']:.2f} s"
            + (
                f"; CPU by ready {p4['run_cpu_s']:.2f} s / {p4['peer_cpu_s']:.2f} s"
                if "peer_cpu_s" in p4
                else ""
            )
        )
        ok = up <= 1.0 and paired <= 0.6
        nanobot, times = f"{sec(p4['peer_ready_s'])} (1 channel)", f"{1 / paired:.1f}x"
    else:
        if p4.get("peer_error"):
            notes.append(f"not paired with nanobot's start: {p4['peer_error']}")
        ready = (peer or {}).get("gateway_ready_s")
        ok = up <= 1.0 and (not ready or up <= 0.6 * ready)
        nanobot, times = _against_ready(p4, peer, up)
    label = f"P4 decapod run -> /health ({p4['channels']} channels)"
    return Row(label, sec(up), "<= 1.0 s; <= 0.6x nanobot", verdict(ok), nanobot, times, notes)


def _against_ready(
    p4: dict[str, Any] | None, peer: dict[str, Any] | None, seconds: float
) -> tuple[str, str]:
    """nanobot's ready (one channel) and its ratio to `seconds`, when it was run: the median
    of its starts paired with P4's when there were, else of the peer's own."""
    ready = (p4 or {}).get("peer_ready_s") or (peer or {}).get("gateway_ready_s")
    if not ready:
        return "", ""
    return f"{sec(ready)} (1 channel)", ratio(ready, seconds)


def _rows(r: dict[str, Any], peer: dict[str, Any] | None, only: set[str]) -> list[Row]:
    errors = r.get("_errors", {})
    rows: list[Row] = []

    def missing(figure: str, label: str, target: str, module: str) -> Row:
        reason = errors.get(module, "no result")
        return Row(label, "not run", target, "not run", notes=[reason])

    if "P1" in only:
        rows += _p1_rows(r, peer, errors)
    floors = r.get("floors") or {}
    if "P2" in only:
        p2 = r.get("P2")
        rows.append(
            Row(
                "P2 throughput, 1,000 sessions",
                f"{p2['msgs_per_s']:.0f} msg/s",
                ">= 500 msg/s",
                verdict(p2["msgs_per_s"] >= 500),
            )
            if p2
            else missing("P2", "P2 throughput, 1,000 sessions", ">= 500 msg/s", "message_bench")
        )
        p2x2 = r.get("P2 2 processes")
        if p2x2:
            rows.append(
                Row(
                    "P2 with gateway.turn_processes = 2",
                    f"{p2x2['msgs_per_s']:.0f} msg/s",
                    "(scale-out)",
                    "info",
                    notes=[f"{p2x2['msgs_per_s'] / p2['msgs_per_s']:.2f}x one process"]
                    if p2
                    else [],
                )
            )
        for kind, label in (("sdk", "openai SDK"), ("raw", "aiohttp + SSE")):
            floor = floors.get(kind)
            if floor:
                rows.append(
                    Row(
                        f"P2 floor: bare {label} + SQLite",
                        f"{floor['msgs_per_s']:.0f} msg/s; {floor['cpu_ms_per_request']:.2f} ms",
                        "(floor)",
                        "info",
                        notes=[f"P2 is {p2['msgs_per_s'] / floor['msgs_per_s']:.2f}x this floor"]
                        if p2
                        else [],
                    )
                )
        rows += pg_rows(r, "P2", errors)
    if "P3" in only:
        p3 = r.get("P3") or {}
        burst = floors.get("burst") or {}
        floor_p99 = p3.get("floor_p99_s") or burst.get("p99_s")
        label = "P3 2,000 sessions x 2 s LLM"
        target = "all; p99 <= 1.25x floor; <= 300 MB"
        if "p99_s" in p3:
            notes = [
                f"p50 {p3['p50_s']:.2f} s; the last request reached the model "
                f"{p3['llm_requests_s'][1]:.2f} s after the burst"
            ]
            at_model, floor_at = p3.get("arrivals_s") or {}, p3.get("floor_arrivals_s") or {}
            if at_model and floor_at:
                notes.append(
                    "requests at the model (p1/p50/p99 from the burst): "
                    + "/".join(f"{at_model[k]:.2f}" for k in ("p1", "p50", "p99"))
                    + " s, the floor's "
                    + "/".join(f"{floor_at[k]:.2f}" for k in ("p1", "p50", "p99"))
                    + " s"
                )
            ratio_to_floor = p3.get("floor_ratio") or (
                p3["p99_s"] / floor_p99 if floor_p99 else None
            )
            if floor_p99 and ratio_to_floor:
                pairs = p3.get("pairs") or []
                each = ", ".join(f"{p['p99_s']:.2f}/{p['floor_p99_s']:.2f}" for p in pairs)
                notes.append(
                    f"floor (bare aiohttp, 2,000 at once, run just before): p99 "
                    f"{floor_p99:.2f} s; P3 p99 is {ratio_to_floor:.2f}x (median of "
                    f"{len(pairs) or 1} pairs, P3/floor p99: {each or 'one'})"
                )
            ok = p3["ok"] and ratio_to_floor is not None and ratio_to_floor <= 1.25
            rows.append(
                Row(
                    label,
                    f"{p3['answered']}/{p3['sessions']}; p99 {p3['p99_s']:.2f} s; "
                    f"{p3['peak_rss_mb']:.0f} MB",
                    target,
                    verdict(ok),
                    notes=notes,
                )
            )
        else:
            rows.append(Row(label, "not run", target, "not run", notes=[p3.get("error", "")]))
    if "P4" in only:
        p4 = r.get("P4")

        if p4:
            rows.append(
                Row(
                    "P4 decapod --version",
                    sec(p4["version_s"]),
                    "<= 0.25 s",
                    verdict(p4["version_s"] <= 0.25),
                    sec(peer["version_s"]) if peer else "",
                    ratio(peer["version_s"], p4["version_s"]) if peer else "",
                )
            )
            rows.append(_p4_run_row(p4, peer))
            if p4.get("floor_s"):
                rows.append(
                    Row(
                        "P4 floor: bare imports + /health",
                        sec(p4["floor_s"]),
                        "(floor)",
                        "info",
                        *_against_ready(p4, peer, p4["floor_s"]),
                        notes=[
                            "pydantic, aiohttp and the three platform SDKs imported, then "
                            "/health, no config or connection, before each run; decapod run "
                            f"is {p4['floor_ratio']:.2f}x this floor"
                        ],
                    )
                )
            one = r.get("P4_one_channel")
            if one:
                rows.append(
                    Row(
                        "P4 run -> /health, Telegram only",
                        sec(one["run_to_channels_up_s"]),
                        "(nanobot's one channel)",
                        "info",
                        *_against_ready(p4, peer, one["run_to_channels_up_s"]),
                        notes=[
                            f"like for like with nanobot's one channel; CPU by then "
                            f"{one['run_cpu_s']:.2f} s, idle RSS {one['idle_rss_mb']:.0f} MB "
                            "(target 80 MB with one channel)"
                        ],
                    )
                )
        else:
            rows.append(missing("P4", "P4 cold start", "<= 0.25 s; <= 1.0 s", "startup_bench"))
    if "P5" in only:
        p5, p4 = r.get("P5"), r.get("P4") or {}
        # the target: 90 MB with three channels, 80 MB with one
        p5_target = 90.0 if p4.get("channels", 3) >= 3 else 80.0
        if p5:
            rows.append(
                Row(
                    f"P5 idle RSS ({p4.get('channels', '?')} channels)",
                    mb(p5["idle_rss_mb"]),
                    f"<= {p5_target:.0f} MB",
                    verdict(p5["idle_rss_mb"] <= p5_target),
                    f"{mb(peer['gateway_idle_rss_mb'])} (1 channel)" if peer else "",
                    ratio(peer["gateway_idle_rss_mb"], p5["idle_rss_mb"]) if peer else "",
                )
            )
            if p5.get("floor_rss_mb"):
                rows.append(
                    Row(
                        "P5 floor: bare imports + /health",
                        mb(p5["floor_rss_mb"]),
                        "(floor)",
                        "info",
                    )
                )
        else:
            rows.append(missing("P5", "P5 idle RSS", f"<= {p5_target:.0f} MB", "startup_bench"))
    if "P6" in only:
        p6 = (r.get("P6") or {}).get("sizes") or r.get("sizes")
        if p6:
            for size, fig in p6.items():
                target = fig["target_p95_ms"]
                rows.append(
                    Row(
                        f"P6 memory search p95, {int(size) // 1000}k items",
                        ms(fig["hybrid"]["p95_ms"]),
                        f"<= {target:g} ms",
                        verdict(fig["ok"]),
                    )
                )
        else:
            rows.append(missing("P6", "P6 memory search", "<= 15 / 100 ms", "memory_bench"))
        rows += pg_rows(r, "P6", errors)
    if "P7" in only:
        p7 = r.get("P7")
        nb = (peer or {}).get("prompt")
        if p7:
            rows.append(
                Row(
                    f"P7 prompt weight ({p7['tools']} tools)",
                    kb(p7["bytes"]),
                    "<= 8 KB",
                    verdict(p7["ok"]),
                    f"{kb(nb['bytes'])} ({nb['tools']} tools)" if nb else "",
                    ratio(nb["bytes"], p7["bytes"]) if nb else "",
                )
            )
        else:
            rows.append(missing("P7", "P7 prompt weight", "<= 8 KB", "p7_prompt"))
    if "P8" in only:
        for key, label in (("P8", "in-process"), ("P8_telegram", "telegram adapter")):
            p8 = r.get(key) or {}
            title = f"P8 RSS growth, {label}"
            if "growth" in p8:
                rows.append(
                    Row(
                        title,
                        f"{p8['growth']:+.1%} ({mb(p8['rss_at_first_mb'])} -> "
                        f"{mb(p8['rss_at_last_mb'])})",
                        "<= 10 %",
                        verdict(p8["ok"]),
                        notes=[
                            f"{p8['first_messages']:,} -> {p8['last_messages']:,} messages, "
                            f"{p8['sessions']:,} sessions, {p8['msgs_per_s']:.0f} msg/s"
                        ],
                    )
                )
            else:
                reason = p8.get("error") or errors.get("p8_leak", "no result")
                rows.append(Row(title, "not run", "<= 10 %", "not run", notes=[reason]))
    if "P9" in only:
        p9 = r.get("P9") or (r if "p99_lateness_ms" in r else None)
        if p9:
            rows.append(
                Row(
                    "P9 reminder lateness, 1,000 due",
                    f"max {ms(p9['max_lateness_ms'])}; lost {p9['lost']}, twice {p9['duplicated']}",
                    "<= 1 s; none lost/twice",
                    verdict(p9["ok"]),
                )
            )
        else:
            rows.append(missing("P9", "P9 reminder precision", "<= 1 s", "reminder_bench"))
    if "P10" in only:
        p10 = r.get("P10")
        if p10:
            rows.append(
                Row(
                    "P10 skill reload",
                    f"max {ms(p10['reload_max_ms'])} (p50 {ms(p10['reload_p50_ms'])})",
                    "<= 1 s",
                    verdict(p10["ok"]),
                    notes=[
                        f"{p10['seen_by_next_turn']}/{p10['rounds']} edits seen by the next "
                        f"turn; {p10['skills_installed']} skills: system prompt "
                        f"{p10['system_bytes_50']:,} bytes, request {kb(p10['body_bytes_50'])} "
                        "(<= 8 KB)"
                    ],
                )
            )
        else:
            rows.append(missing("P10", "P10 skill reload", "<= 1 s", "skills_bench"))
    if "FO" in only:
        fo = r.get("failover")
        if fo:
            rows.append(
                Row(
                    "Failover overhead after a 429",
                    f"+{ms(fo['extra_p50_ms'])}",
                    "< 50 ms",
                    verdict(fo["ok"]),
                    notes=[
                        f"first text {ms(fo['failover_p50_ms'])} vs "
                        f"{ms(fo['fallback_only_p50_ms'])} on the fallback alone "
                        f"(p95 +{ms(fo['extra_p95_ms'])})"
                    ],
                )
            )
        else:
            rows.append(missing("FO", "Failover overhead", "< 50 ms", "failover_bench"))
    if "MC" in only:
        mc = r.get("mcp")
        if mc and "host_p50_ms" in mc:
            notes = [f"p95 {ms(mc['host_p95_ms'])} vs {ms(mc['builtin_p95_ms'])}"]
            if "boxed_p50_ms" in mc:
                notes.append(f"in the bwrap sandbox: p50 {ms(mc['boxed_p50_ms'])}")
            rows.append(
                Row(
                    "MCP tool call p50, stdio vs built-in",
                    f"{ms(mc['host_p50_ms'])} vs {ms(mc['builtin_p50_ms'])}",
                    "",
                    "info",
                    notes=notes,
                )
            )
        else:
            rows.append(missing("MC", "MCP tool-call overhead", "", "mcp_bench"))
    if "ME" in only:
        me = r.get("memory_eval")
        if me:
            default, keyword = me["rows"]["default"], me["rows"]["keyword"]
            rows.append(
                Row(
                    "Memory recall@5 / @10 (default)",
                    f"{default['recall@5']:.2f} / {default['recall@10']:.2f}",
                    f"> keyword {keyword['recall@5']:.2f} / {keyword['recall@10']:.2f}",
                    verdict(default["recall@10"] > keyword["recall@10"]),
                    notes=[f"{me['dataset']}, {me['questions']} questions, {default['embedder']}"],
                )
            )
    if "WF" in only:
        wf = r.get("web_fetch")
        if wf:
            rows.append(
                Row(
                    f"web_fetch, {wf['page_bytes'] // 1000} KB page, p50",
                    ms(wf["p50_ms"]),
                    "",
                    "info",
                    notes=[
                        f"p95 {ms(wf['p95_ms'])}; the loopback fetch {ms(wf['fetch_p50_ms'])}, "
                        f"the extraction to Markdown {ms(wf['extract_p50_ms'])}"
                    ],
                )
            )
        else:
            rows.append(missing("WF", "web_fetch overhead", "", "web_bench"))
    if "UI" in only:
        ui = r.get("webui")
        if ui:
            rows += [
                Row(
                    "web UI: TTFB of / p50",
                    ms(ui["page_ttfb_p50_ms"]),
                    "",
                    "info",
                    notes=[f"p95 {ms(ui['page_ttfb_p95_ms'])}; the signed-in chat page"],
                ),
                Row(
                    "web UI: chat answer TTFB p50",
                    ms(ui["answer_ttfb_p50_ms"]),
                    "",
                    "info",
                    notes=[
                        f"p95 {ms(ui['answer_ttfb_p95_ms'])}; send -> first streamed text over "
                        "the WebSocket, the fake LLM answering at once"
                    ],
                ),
                Row(
                    "web UI: chat page weight",
                    kb(ui["page_weight_bytes"]),
                    "< 100 KB",
                    verdict(ui["page_weight_ok"]),
                    notes=[f"HTML {kb(ui['html_bytes'])} + CSS and JS {kb(ui['asset_bytes'])}"],
                ),
            ]
        else:
            rows.append(missing("UI", "web UI", "", "webui_bench"))
    if "IM" in only:
        im = r.get("media")
        if im:
            rows += [
                Row(
                    "Image message overhead p50 (no model)",
                    ms(im["p50_ms"]),
                    "",
                    "info",
                    notes=[
                        f"p95 {ms(im['p95_ms'])}; a {mb(im['image_bytes'] / 2**20)} 12 MP JPEG: "
                        f"download, downscale, encode, request body {kb(im['body_bytes'])}"
                    ],
                ),
                Row(
                    f"Peak RSS handling a {im['big_image_bytes'] / 2**20:.0f} MB image",
                    mb(im["peak_rss_mb"]),
                    "",
                    "info",
                    notes=[f"{mb(im['imports_peak_rss_mb'])} after the imports alone"],
                ),
            ]
        else:
            rows.append(missing("IM", "image message overhead", "", "media_bench"))
    return rows


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="fewer samples (about 3 minutes)")
    parser.add_argument(
        "--only", default="", help=f"figures to run, e.g. P1,P4 ({','.join(FIGURES)})"
    )
    parser.add_argument("--no-peer", action="store_true", help="do not measure nanobot")
    args = parser.parse_args(argv)
    only = {f.strip().upper() for f in args.only.split(",") if f.strip()} or set(FIGURES)
    unknown = only - set(FIGURES)
    if unknown:
        parser.error(f"unknown figures: {', '.join(sorted(unknown))}")
    q = args.quick
    started = time.perf_counter()
    record: dict[str, Any] = {
        "started": datetime.now(UTC).isoformat(timespec="seconds"),
        "quick": q,
        "only": sorted(only),
        "machine": _machine(),
        "versions": _versions(),
    }
    results: dict[str, Any] = {}
    peer: dict[str, Any] | None = None
    peer_status = "not measured (--no-peer)" if args.no_peer else "not needed"
    with _quiet(), FakeLLMProcess() as llm:
        if only & {"P2", "P3"}:
            _step("floors", _module_run("floors", q, fake=llm), results)
        if only & {"P1", "P2"}:
            figures = tuple(sorted(only & {"P1", "P2"}))
            _step(
                "message_bench", _module_run("message_bench", q, fake=llm, figures=figures), results
            )
        if "P1" in only:
            for channel in CHANNELS:
                _step(f"{channel}_bench", _module_run(f"{channel}_bench", q), results)
        if "P3" in only:
            _step("p3_concurrency", _module_run("p3_concurrency", q), results)
        if only & {"P4", "P5"}:
            # P4's starts alternate with nanobot's gateway starts (bench/startup_bench.py)
            paired = llm if "P4" in only and not args.no_peer else None
            _step("startup_bench", _module_run("startup_bench", q, peer_llm=paired), results)
        if "P6" in only:
            _step("memory_bench", lambda: {"P6": _module_run("memory_bench", q)()}, results)
        if only & {"P2", "P6"}:  # the same figures on PostgreSQL (P2 pg, P6 pg)
            figures = tuple(sorted(only & {"P2", "P6"}))
            _step("pg_bench", _module_run("pg_bench", q, fake=llm, figures=figures), results)
        if "P7" in only:
            _step("p7_prompt", _module_run("p7_prompt", q), results)
        if "P8" in only:
            _step("p8_leak", _module_run("p8_leak", q), results)
        if "P9" in only:
            _step("reminder_bench", lambda: {"P9": _module_run("reminder_bench", q)()}, results)
        if "P10" in only:
            _step("skills_bench", _module_run("skills_bench", q), results)
        if "FO" in only:
            _step("failover_bench", _module_run("failover_bench", q), results)
        if "MC" in only:
            _step("mcp_bench", _module_run("mcp_bench", q), results)
        if "ME" in only:
            _step("memory_eval", lambda: {"memory_eval": _module_run("memory_eval", q)()}, results)
        if "WF" in only:
            _step("web_bench", _module_run("web_bench", q), results)
        if "UI" in only:
            _step("webui_bench", _module_run("webui_bench", q), results)
        if "IM" in only:
            _step("media_bench", _module_run("media_bench", q), results)
        if only & PEER_FIGURES and not args.no_peer:
            print("\n== nanobot (peer)", flush=True)
            peer_started = time.perf_counter()
            try:
                from bench.peer.measure import measure

                peer = measure(llm, q)
                peer_status = f"nanobot-ai {peer['version']}"
            except Exception as exc:
                reason = str(exc).splitlines()[0][:200] if str(exc) else type(exc).__name__
                peer_status = f"unavailable: {reason}"
                print(f"nanobot: {peer_status}", flush=True)
            print(f"(nanobot: {time.perf_counter() - peer_started:.1f} s)", flush=True)
    rows = _rows(results, peer, only)
    peer_name = f"nanobot {peer['version']}" if peer else "nanobot"
    if not peer and only & PEER_FIGURES:
        peer_rows = [r for r in rows if r.figure.startswith(("P1 in", "P4", "P5", "P7"))]
        for row in peer_rows:
            if not row.peer:  # a P4 row paired with nanobot's starts has its column
                row.peer = "-" if args.no_peer else "unavailable"
        if peer_rows and not args.no_peer:
            peer_rows[0].notes.append(f"nanobot {peer_status}")
    record["machine"]["load_avg_end"] = [round(x, 2) for x in os.getloadavg()]
    record["elapsed_s"] = round(time.perf_counter() - started, 1)
    if peer:
        record["versions"]["nanobot-ai"] = peer["version"]
        record["peer_versions"] = peer["packages"]
    record["peer"] = peer if peer else {"status": peer_status}
    record["figures"] = results
    record["table"] = [r.__dict__ for r in rows]
    RESULTS.write_text(json.dumps(record, indent=2, default=str))
    m = record["machine"]
    print(
        f"\nDecapod {record['versions']['decapod']} on {m['cores']} cores ({m['cpu'] or '?'}), "
        f"Python {m['python']}; load {m['load_avg_start'][0]} at start, "
        f"{m['load_avg_end'][0]} at end; {'quick' if q else 'full'} run, "
        f"{record['elapsed_s']:.0f} s; peer: {peer_status}\n"
    )
    print(render(rows, peer_name))
    print(f"\nwritten: {RESULTS}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
