"""/usage: tokens and estimated cost, from the stored turns.

A person sees their own (today in their time zone, the last 7 days, the last 30 days); the
owner's `/usage all` shows the last 30 days per person and per model. Costs come from the
price table (bot/pricing.py); a model without a known price counts as 0 and is named.
"""

from __future__ import annotations

import datetime as dt
import time
from collections import defaultdict
from collections.abc import Iterable
from typing import TYPE_CHECKING
from zoneinfo import ZoneInfo

from bot.commands import CommandContext, CommandTable

if TYPE_CHECKING:
    from bot.pricing import UsageConfig
    from bot.store import Store
    from bot.store.usage import UsageTotal

_DAY = 86_400.0


class UsageReport:
    def __init__(self, store: Store, prices: UsageConfig, default_zone: str) -> None:
        self.store = store
        self.prices = prices
        self.default_zone = default_zone

    async def for_person(self, person_id: str, identity_key: str) -> str:
        zone = await self.store.identities.timezone(identity_key) or self.default_zone
        now = time.time()
        midnight = dt.datetime.fromtimestamp(now, ZoneInfo(zone)).replace(
            hour=0, minute=0, second=0, microsecond=0
        )
        windows = [
            ("today", midnight.timestamp()),
            ("7 days", now - 7 * _DAY),
            ("30 days", now - 30 * _DAY),
        ]
        lines = ["Your usage (tokens in / out, estimated cost):"]
        unpriced: set[str] = set()
        for name, since in windows:
            totals = await self.store.usage.totals(since, person_id)
            lines.append(f"{name}: {self._line(totals)}")
            unpriced |= self._unpriced(totals)
        return "\n".join(lines + self._note(unpriced))

    async def for_everyone(self) -> str:
        totals = await self.store.usage.totals(time.time() - 30 * _DAY)
        by_person: dict[str, list[UsageTotal]] = defaultdict(list)
        by_model: dict[str, list[UsageTotal]] = defaultdict(list)
        for total in totals:
            by_person[total.person_id].append(total)
            by_model[total.model].append(total)
        lines = ["Usage of the last 30 days (tokens in / out, estimated cost)", "Per person:"]
        lines += [f"  {person}: {self._line(group)}" for person, group in by_person.items()]
        lines.append("Per model:")
        lines += [
            f"  {_model_name(model)}: {self._line(group)}" for model, group in by_model.items()
        ]
        if not totals:
            lines.append("  (no turns yet)")
        lines.append(f"All: {self._line(totals)}")
        return "\n".join(lines + self._note(self._unpriced(totals)))

    def _line(self, totals: Iterable[UsageTotal]) -> str:
        tokens_in = tokens_out = turns = 0
        cost = 0.0
        for t in totals:
            tokens_in += t.input_tokens
            tokens_out += t.output_tokens
            turns += t.turns
            cost += self.prices.cost(t.model, t.input_tokens, t.output_tokens)
        count = f"{turns} turn" + ("" if turns == 1 else "s")
        return f"{tokens_in:,} / {tokens_out:,} tokens, ${cost:.4f} ({count})"

    def _unpriced(self, totals: Iterable[UsageTotal]) -> set[str]:
        return {
            t.model
            for t in totals
            if (t.input_tokens or t.output_tokens) and self.prices.price(t.model) is None
        }

    @staticmethod
    def _note(unpriced: set[str]) -> list[str]:
        if not unpriced:
            return []
        names = ", ".join(sorted(_model_name(m) for m in unpriced))
        return [f"No price known for {names} (counted as 0; set [usage.prices])."]


def _model_name(ref: str) -> str:
    return ref if ref.strip(":") else "(no model)"


def register_usage_command(table: CommandTable, report: UsageReport) -> None:
    @table.add(
        "usage",
        "Show your tokens and their estimated cost (owner: /usage all)",
        usage="[all]",
        arg_name="scope",
    )
    async def usage(ctx: CommandContext) -> str:
        scope = ctx.args.strip().lower()
        if not ctx.in_dm and scope in ("", "all"):
            # the figures count the turns of every chat, DMs too (`all`: everyone's)
            return (
                "Usage counts your direct messages too, so I show it only in a direct "
                "message with me."
            )
        if scope == "all":
            if ctx.role != "owner":
                return "Only the owner can see everyone's usage."
            return await report.for_everyone()
        if scope:
            return "Usage: /usage, or /usage all (owner)."
        return await report.for_person(ctx.person_id, ctx.message.identity.key)
