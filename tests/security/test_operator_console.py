"""Who is the operator at this machine: only the people of a running channel that says it is
the operator's console, never a name config.toml gives the console type on its own."""

from __future__ import annotations

from typing import Any

from bot.messages import Conversation, ConversationKind, Identity
from bot.security.access import ChannelAccess
from channels.console import ConsoleChannel
from channels.oneshot import OneShotChannel
from tests.fakes.channel import RecordingChannel


def _config(make_config: Any) -> Any:
    return make_config(
        channels={
            "console": {"type": "console"},
            "tg": {"type": "telegram", "access": {"dm_policy": "open"}},
        }
    )


async def test_a_console_not_running_is_nobodys(make_config: Any) -> None:
    me = Identity("console", "me", "me")
    here = Conversation("console", "me", ConversationKind.DM)
    running: dict[str, Any] = {"tg": RecordingChannel("tg", console=False)}
    # the store is asked nothing for a channel without an access policy
    access = ChannelAccess(_config(make_config), store=None, running=running)  # type: ignore[arg-type]
    assert access.role_of(me) == "user"
    assert not await access.allows(me, here)
    running["console"] = ConsoleChannel("console", user="me")
    assert access.role_of(me) == "owner"
    assert await access.allows(me, here)


async def test_decapod_asks_channel_speaks_as_the_console_while_it_runs(make_config: Any) -> None:
    me = Identity("console", "me", "me")
    ask = OneShotChannel(user="me")
    running: dict[str, Any] = {"tg": RecordingChannel("tg", console=False)}
    access = ChannelAccess(make_config(), store=None, running=running)  # type: ignore[arg-type]
    assert access.role_of(me) == "user"
    running[ask.name] = ask
    assert access.role_of(me) == "owner"
    assert await access.allows(me, ask.conversation)
    # the one-shot channel's own name is no identity channel of anyone's
    assert access.role_of(Identity(ask.name, "me", "me")) == "user"
