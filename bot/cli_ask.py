"""`decapod ask "…"`: one turn through the same agent, providers, tools and memory as the
gateway, answered on stdout; no channel account needed.

Each ask is a throwaway session (no history from earlier asks or chats) of the operator's
console identity, so it shares the owner's memory and tools with `decapod chat`. It never
delivers reminders: the running gateway does (Gateway.deliver_scheduled).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import sys
from dataclasses import asdict, dataclass, field
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from bot.config import Config
    from bot.gateway import Gateway
    from channels.oneshot import OneShotChannel

_NOTHING = "no answer came (`decapod logs --level warning` shows why)"
_CUT_SHORT = {
    "interrupted": "the answer was cut off (the model's stream broke)",
    "length": "the answer was cut off by the model's output limit (max_output_tokens)",
    "max_iterations": "the answer stopped after too many tool steps",
}


def add_subparsers(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = sub.add_parser(
        "ask",
        help="ask one question and print the answer",
        description=(
            "Ask one question through the configured providers and print the answer on "
            "stdout (streamed on a terminal). Each ask is a fresh, throwaway session of your "
            "console identity: it shares your memory and tools with `decapod chat`, but not "
            "the conversation. Exit code 0 on an answer, 1 when none came (the reason on "
            "stderr), 130 on Ctrl-C."
        ),
    )
    parser.add_argument("question", nargs="+", help="the question (words are joined)")
    parser.add_argument(
        "--json",
        action="store_true",
        help="print one JSON object: answer, provider, model, usage, outcome, session",
    )
    parser.set_defaults(run_command=run)


@dataclass(slots=True)
class AskResult:
    answer: str
    outcome: str = "ok"
    provider: str = ""
    model: str = ""
    usage: dict[str, int] = field(default_factory=dict)
    session: str = ""
    latency_ms: float | None = None
    error: str | None = None


def run(args: argparse.Namespace) -> int:
    from bot.config import load_config
    from bot.logging import setup_command_logging

    config = load_config(args.config, args.home)
    # stdout is the answer and stderr the one line that says why there is none: the
    # gateway's own warnings go to the log file only
    setup_command_logging(
        args,
        config.logging.level,
        config.logging.format,
        config.log_file,
        stream_level="CRITICAL",
        max_bytes=int(config.logging.file_max_mb * 1024 * 1024),
        backups=config.logging.file_backups,
    )
    stream = not args.json and sys.stdout.isatty()
    try:
        result = asyncio.run(ask(config, " ".join(args.question), stream=stream))
    except KeyboardInterrupt:
        print("\ninterrupted: no answer", file=sys.stderr)
        return 130
    if args.json:
        print(json.dumps(asdict(result), ensure_ascii=False))
    elif not stream:
        sys.stdout.write(result.answer + ("\n" if result.answer else ""))
    if result.error is not None:
        print(f"decapod: {result.error}", file=sys.stderr)
        return 1
    return 0


async def ask(config: Config, question: str, *, stream: bool = False) -> AskResult:
    from bot.config import HttpConfig
    from bot.gateway import Gateway
    from channels.oneshot import OneShotChannel

    # no HTTP server and no platform channel: the running gateway owns those; and no grace
    # at the stop, so Ctrl-C ends a one-shot at once
    config = config.model_copy(
        update={
            "http": HttpConfig(enabled=False),
            "channels": {},
            "gateway": config.gateway.model_copy(update={"shutdown_grace_s": 0.0}),
        }
    )
    channel = OneShotChannel(stream=stream)
    gateway = Gateway(config, channels={channel.name: channel}, deliver_scheduled=False)
    async with gateway:
        message = await channel.ask(question)
        try:
            await gateway.sessions.wait_idle()
            if not channel.answered.is_set():
                # an immediate command (/approve) runs beside the session queue
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(channel.answered.wait(), 30)
            return await _result(gateway, channel, message.session_key)
        finally:
            status = await gateway.store.inbound.status(channel.name, message.id)
            if status in ("pending", "running"):
                # stopped mid-turn: nobody will run this delivery again
                await gateway.store.inbound.set_status(channel.name, message.id, "cancelled")


async def _result(gateway: Gateway, channel: OneShotChannel, session_key: str) -> AskResult:
    session = gateway.sessions.get(session_key)
    if session.row is None:  # a command answered; no model turn ran
        channel.release()
        if not channel.answered.is_set():
            return AskResult("", "error", session=session_key, error=_NOTHING)
        return AskResult(channel.text.strip(), session=session_key)
    rows = await gateway.store.turns.for_session(session.row.id)
    last: dict[str, Any] = next((r for r in reversed(rows) if r.get("outcome")), {})
    result = AskResult(
        "",
        outcome=str(last.get("outcome") or "error"),
        provider=str(last.get("provider") or ""),
        model=str(last.get("model") or ""),
        usage={
            key: int(last.get(key) or 0)
            for key in ("input_tokens", "output_tokens", "cache_read_tokens", "cache_write_tokens")
        },
        session=session_key,
        latency_ms=last.get("latency_ms"),
    )
    if result.outcome == "ok":
        channel.release()
    else:
        # the held piece is the note for a chat ("Sorry, …"); here the reason goes to stderr
        result.error = _why(gateway, result.outcome, channel.held)
    result.answer = "".join(channel.parts).strip()
    if channel.written:
        channel.out.write("\n")
    return result


def _why(gateway: Gateway, outcome: str, note: str) -> str:
    if outcome in _CUT_SHORT:
        return _CUT_SHORT[outcome]
    failing = []
    for entry in gateway.providers.state() if gateway.providers is not None else []:
        if entry.get("last_error"):
            provider = gateway.config.providers.get(entry["name"].partition(":")[0])
            where = f" at {provider.resolved_base_url()}" if provider is not None else ""
            failing.append(f"{entry['name']}{where}: {entry['last_error']} error")
    if failing:
        from bot.security.redact import scrub

        # as in `decapod doctor`: a key in a base_url's query string stays off the terminal
        return scrub(
            "no answer: " + "; ".join(failing) + " (`decapod providers status` checks each one)"
        )
    return f"no answer ({outcome}): {note.strip()}"
