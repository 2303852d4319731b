"""`portable`: a channel's error as it reaches the other process, pickled and unpickled."""

from __future__ import annotations

import pickle

from bot import errors
from bot.errors import (
    ChannelError,
    ConversationGone,
    DeliveryRefused,
    EditRejected,
    RateLimited,
    SendSmaller,
)
from bot.scaleout.wire import portable


def test_a_cut_off_send_says_how_far_it_got_on_the_other_side_too() -> None:
    error = RateLimited(3.0)
    error.delivered, error.reopen = 120, "```python\n"
    back = pickle.loads(pickle.dumps(portable(error)))
    assert isinstance(back, ChannelError)
    assert (back.delivered, back.reopen) == (120, "```python\n")
    assert back.unsent("x" * 120 + "\nrest") == "```python\nrest"


def test_refusals_keep_their_reason_and_anything_else_becomes_a_channel_error() -> None:
    refused = pickle.loads(
        pickle.dumps(portable(DeliveryRefused("blocked", "the bot was blocked")))
    )
    assert isinstance(refused, DeliveryRefused) and refused.reason == "blocked"
    other = pickle.loads(pickle.dumps(portable(OSError("connection reset"))))
    assert type(other) is ChannelError and str(other) == "OSError: connection reset"
    assert other.delivered == 0


def _every_channel_error() -> dict[type[ChannelError], ChannelError]:
    """One of each ChannelError of bot/errors.py; a new kind fails the check below until added."""
    made: list[ChannelError] = [
        ChannelError("boom"),
        RateLimited(2.0),
        EditRejected("too old"),
        DeliveryRefused("blocked", "the bot was blocked"),
        ConversationGone("kicked", "the bot was removed"),
        SendSmaller(100, "message is too long: 4200 counted"),
    ]
    return {type(error): error for error in made}


def test_every_channel_error_comes_back_from_the_other_side_saying_what_was_shown() -> None:
    examples = _every_channel_error()
    kinds = {
        kind
        for kind in vars(errors).values()
        if isinstance(kind, type) and issubclass(kind, ChannelError)
    }
    assert kinds == set(examples), "add the new ChannelError to _every_channel_error"
    for error in examples.values():
        error.delivered, error.reopen = 42, "```\n"
        back = pickle.loads(pickle.dumps(portable(error)))
        assert (back.delivered, back.reopen, str(back)) == (42, "```\n", str(error))
        assert isinstance(back, DeliveryRefused) == isinstance(error, DeliveryRefused)
        if isinstance(error, DeliveryRefused):
            assert isinstance(back, DeliveryRefused) and back.reason == error.reason
        assert isinstance(back, ConversationGone) == isinstance(error, ConversationGone)
