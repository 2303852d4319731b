"""What channel adapters keep between messages, kept in the store so that every replica on
one database sees it: the live buttons of sent messages, the Slack threads the bot posted in,
and Telegram groups that became supergroups.

Adapters import only bot's public model, so they get this seam (the store's
`channel_state` repository, bot/store/channel_state.py) from the gateway before they start,
as they get the command table.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

from bot.messages import Conversation


@dataclass(frozen=True, slots=True)
class ButtonChoice:
    token: str  # what the platform sends back on a press
    label: str
    command: str


@dataclass(frozen=True, slots=True)
class ButtonMessage:
    """One sent message's buttons: they answer once, until `expires_at`."""

    key: str  # the first choice's token
    conversation: Conversation
    text: str  # the message's text as shown with the buttons
    expires_at: float
    allowed: tuple[str, ...]  # identity keys; empty: anyone the access layer lets in
    choices: tuple[ButtonChoice, ...]
    used_by: str | None = None  # the press that used the buttons up


class ButtonState(Protocol):
    async def put_buttons(self, channel: str, messages: list[ButtonMessage]) -> None:
        """Record messages' buttons (one already there is left as it is)."""
        ...

    async def find_buttons(self, channel: str, token: str) -> ButtonMessage | None: ...

    async def use_buttons(self, channel: str, key: str, press_id: str, now: float) -> bool:
        """Take a message's buttons for `press_id`, once across every replica: True when
        they were free (or already taken by this same press) and not expired."""
        ...

    async def give_back_buttons(self, channel: str, key: str, press_id: str) -> None: ...


class ThreadState(Protocol):
    async def add_threads(self, channel: str, threads: list[tuple[str, str]]) -> None:
        """Threads (chat, root ts) the bot posted in."""
        ...

    async def has_thread(self, channel: str, chat: str, ts: str) -> bool: ...


class ChatMoveState(Protocol):
    async def add_chat_move(self, channel: str, old: str, new: str) -> None: ...

    async def chat_moves(self, channel: str) -> dict[str, str]:
        """new chat id -> the id it had before, for every recorded move."""
        ...


class ChannelState(ButtonState, ThreadState, ChatMoveState, Protocol):
    """The three, as the store offers them."""
