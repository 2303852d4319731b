"""The shared command table as Discord application (slash) commands.

Each CommandSpec becomes a command of the same name. One with an `arg_name` takes one text
option of that name (`/ask question`): required when its usage shows `<...>`, optional for
`[...]`. Every command calls `on_command(interaction, name, args)`.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable, Iterable
from typing import Any

import discord
from discord import app_commands

from bot.commands import CommandSpec

log = logging.getLogger("decapod.channels.discord")

OnCommand = Callable[[discord.Interaction, str, str], Awaitable[None]]
_DESCRIPTION_MAX = 100  # Discord's limit for command and option descriptions


class CheckedCommandTree(app_commands.CommandTree[Any]):
    """A tree that skips an interaction without command data instead of failing on it in a
    task of its own, where the error would surface only as an unretrieved exception."""

    def __init__(self, client: discord.Client, on_malformed: Callable[[str], None]) -> None:
        super().__init__(client)
        self._on_malformed = on_malformed

    async def interaction_check(self, interaction: discord.Interaction) -> bool:
        data = interaction.data
        if isinstance(data, dict) and isinstance(data.get("name"), str):
            return True
        log.warning("skipped a malformed INTERACTION_CREATE dispatch (no command data)")
        self._on_malformed("INTERACTION_CREATE")
        return False


def add_commands(
    tree: app_commands.CommandTree[Any], specs: Iterable[CommandSpec], on_command: OnCommand
) -> None:
    for spec in specs:
        try:
            tree.add_command(app_command(spec, on_command))
        except (TypeError, ValueError, app_commands.AppCommandError) as exc:
            log.warning("cannot offer /%s as a Discord slash command: %s", spec.name, exc)


def app_command(spec: CommandSpec, on_command: OnCommand) -> app_commands.Command[Any, Any, None]:
    name = spec.name
    description = _clip(spec.description or name)
    if spec.arg_name is None:

        async def bare(interaction: discord.Interaction) -> None:
            await on_command(interaction, name, "")

        return app_commands.Command(name=name, description=description, callback=bare)
    callback: Callable[..., Awaitable[None]]
    if argument_required(spec):

        async def required(interaction: discord.Interaction, text: str) -> None:
            await on_command(interaction, name, text)

        callback = required
    else:

        async def optional(interaction: discord.Interaction, text: str | None = None) -> None:
            await on_command(interaction, name, text or "")

        callback = optional
    # the option shows as the command's own argument name ("question", "code", ...)
    callback = app_commands.describe(text=_clip(spec.usage or spec.arg_name))(callback)
    callback = app_commands.rename(text=spec.arg_name)(callback)
    return app_commands.Command(name=name, description=description, callback=callback)


def argument_required(spec: CommandSpec) -> bool:
    """`<x>` in the usage marks a required argument, `[x]` an optional one."""
    usage = spec.usage.strip()
    if usage.startswith(f"/{spec.name}"):
        usage = usage[len(spec.name) + 1 :].strip()
    return usage.startswith("<")


async def sync_commands(tree: app_commands.CommandTree[Any], guild_ids: list[str]) -> None:
    """Register the commands globally, or in each of `guild_ids` (where they appear at once)."""
    try:
        if not guild_ids:
            await tree.sync()
            return
        for guild_id in guild_ids:
            guild = discord.Object(id=int(guild_id))
            tree.copy_global_to(guild=guild)
            await tree.sync(guild=guild)
    except (discord.HTTPException, discord.RateLimited, app_commands.AppCommandError) as exc:
        # the bot still works: commands registered before stay, messages are unaffected
        log.warning("Discord slash commands not synced: %s", exc)


def _clip(text: str) -> str:
    return text if len(text) <= _DESCRIPTION_MAX else text[: _DESCRIPTION_MAX - 1] + "…"
