"""Buttons on Discord: a `discord.ui.View` of buttons whose custom_id is `decapod:<token>`.

The button is a `discord.ui.DynamicItem` registered on the client at start: discord.py then
routes a press on any message that carries such a custom_id to it, whether the message was
sent by this process or before a restart (a persistent view, with the state in the token).
The press itself is resolved by the channel's button book (channels/buttons.py).
"""

from __future__ import annotations

import re
from collections.abc import Awaitable, Callable
from typing import Any

import discord

from channels.buttons import Button

CUSTOM_ID_PREFIX = "decapod:"
_LABEL_MAX = 80  # Discord's limit for a button's label

#: a custom_id of ours, with the button's token
CUSTOM_ID = re.compile(re.escape(CUSTOM_ID_PREFIX) + r"(?P<token>[A-Za-z0-9_-]{1,90})")
#: what a press is handed to: the interaction and the token of the pressed button
OnPress = Callable[[discord.Interaction, str], Awaitable[None]]


class PressButton(
    discord.ui.DynamicItem[discord.ui.Button[Any]],
    template=CUSTOM_ID,
):
    def __init__(self, token: str, label: str) -> None:
        super().__init__(
            discord.ui.Button(
                label=label[:_LABEL_MAX] or "…",
                custom_id=CUSTOM_ID_PREFIX + token,
                style=discord.ButtonStyle.secondary,
            )
        )
        self.token = token

    @classmethod
    async def from_custom_id(
        cls, interaction: discord.Interaction, item: discord.ui.Item[Any], match: re.Match[str], /
    ) -> PressButton:
        return cls(match["token"], str(getattr(item, "label", "") or ""))

    async def callback(self, interaction: discord.Interaction) -> None:
        on_press: OnPress | None = getattr(interaction.client, "on_press", None)
        if on_press is not None:
            await on_press(interaction, self.token)


def view_of(buttons: list[Button]) -> discord.ui.View:
    view = discord.ui.View(timeout=None)
    for button in buttons:
        view.add_item(PressButton(button.token, button.label))
    return view
