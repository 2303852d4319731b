"""What goes wrong with an attachment, said to the person in one line."""

from __future__ import annotations

from bot.errors import DecapodError


class MediaProblem(DecapodError):
    """An attachment that cannot be used: the message is the one line the person is told."""

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.user_message = message


class IntakeStopped(DecapodError):
    """The gateway stops while a message's attachments are still being read: the turn ends
    with nothing said or stored, and its delivery stays pending for the next start."""
