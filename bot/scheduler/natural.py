"""A plain "remind me ..." sentence, read as the /remind command without a model."""

from __future__ import annotations

import re

from bot.commands import CommandTable
from bot.messages import Command

_REMIND_ME = re.compile(r"^\s*remind me\b", re.IGNORECASE)


def natural_command(text: str, commands: CommandTable) -> Command | None:
    """ "remind me in 20 minutes to stretch" is read by the reminder grammar itself: a
    reminder must not depend on how well a small local model calls tools. Text the grammar
    cannot read still gets its clarifying question, never a guess."""
    if _REMIND_ME.match(text) and commands.get("remind") is not None:
        return Command("remind", text.strip())
    return None
