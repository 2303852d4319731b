"""`portable`: a channel's error as it reaches the other process, pickled and unpickled."""

from __future__ import annotations

import pickle

from bot.errors import ChannelError, DeliveryRefused, RateLimited
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
