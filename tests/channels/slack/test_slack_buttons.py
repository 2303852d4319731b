"""Block Kit buttons end to end through slack-bolt: the owner approves a sandbox command with
a tap (Socket Mode); someone else's tap, a tap on an expired request and a second tap get an
ephemeral answer and change nothing; a pairing request's buttons work after a restart, in
HTTP mode (interactivity on the Events API's URL)."""

from __future__ import annotations

import asyncio
import json
import shutil
from typing import Any

import aiohttp
import pytest

from bot.gateway import Gateway
from bot.providers.testing import ScriptedProvider
from channels.buttons import EXPIRED, NOT_YOURS
from tests.channels.conftest import runs_a_command
from tests.channels.slack.conftest import OPEN_ACCESS, events_url, idle, slack_settings, until
from tests.fakes.slack import FakeSlack

needs_bwrap = pytest.mark.skipif(shutil.which("bwrap") is None, reason="needs bubblewrap")
OWNER, OTHER, DM = "U0001", "U0002", "D0001"


def _config(make_config: Any, fake: FakeSlack, **sandbox: Any) -> Any:
    return make_config(
        channels={"slack": slack_settings(fake, access=OPEN_ACCESS)},
        gateway={"owners": [f"slack:{OWNER}"], "shutdown_grace_s": 0.5},
        sandbox={"backend": "bwrap", "approval": "always", **sandbox},
        memory={"enabled": False},
    )


async def _ask(fake: FakeSlack) -> tuple[str, list[tuple[str, str]]]:
    await fake.wait_connected()
    await fake.socket_send("events_api", fake.event("dm_message", user=OWNER, channel=DM))
    await until(lambda: fake.buttons(DM)[1], timeout=15)
    return fake.buttons(DM)


def _ephemeral(fake: FakeSlack) -> list[str]:
    return [
        r.params["text"] for r in fake.responses if r.params.get("response_type") == "ephemeral"
    ]


@needs_bwrap
async def test_the_owner_approves_with_a_tap_once_and_other_taps_change_nothing(
    make_config: Any, fake: FakeSlack
) -> None:
    async with Gateway(_config(make_config, fake), provider=runs_a_command()) as gw:
        ts, keys = await _ask(fake)
        assert [label for label, _ in keys] == ["Approve", "Deny"]
        approve = keys[0][1]
        ask = fake.messages[(DM, ts)]
        assert "Approval needed" in ask, "the plain text stays as the fallback"

        foreign = fake.block_actions(DM, ts, approve, user=OTHER, name="bob")
        assert await fake.socket_send("interactive", foreign) is not None
        await until(lambda: _ephemeral(fake) == [NOT_YOURS])
        assert fake.buttons(DM) == (ts, keys), "the buttons stay for the owner"

        first = fake.block_actions(DM, ts, approve, user=OWNER)
        second = fake.block_actions(DM, ts, approve, user=OWNER)
        acks = await asyncio.gather(
            fake.socket_send("interactive", first), fake.socket_send("interactive", second)
        )
        assert all(ack is not None for ack in acks)
        await until(lambda: any(t.startswith("result:") for t in fake.texts(DM)), timeout=20)
        await until(lambda: len(_ephemeral(fake)) == 2)
        await idle(gw)
    assert _ephemeral(fake) == [NOT_YOURS, EXPIRED]
    texts = fake.texts(DM)
    assert texts.count("Approved.") == 1
    assert "ran-42" in texts[-1]
    assert fake.buttons(DM) == ("", []), "the decided message lost its buttons"
    assert fake.messages[(DM, ts)].endswith("→ Approve (alice)")


@needs_bwrap
async def test_a_tap_on_an_expired_request_or_an_unknown_button_changes_nothing(
    make_config: Any, fake: FakeSlack
) -> None:
    config = _config(make_config, fake, approval_timeout_s=0.5)
    async with Gateway(config, provider=runs_a_command()) as gw:
        ts, keys = await _ask(fake)
        await until(lambda: any(t.startswith("result:") for t in fake.texts(DM)), timeout=20)
        late = fake.block_actions(DM, ts, keys[0][1], user=OWNER)
        unknown = fake.block_actions(DM, ts, "decapod:no-such-token", user=OWNER)
        await fake.socket_send("interactive", late)
        await fake.socket_send("interactive", unknown)
        await until(lambda: len(_ephemeral(fake)) == 2)
        await idle(gw)
        stored = await gw.store.inbound.status("slack", f"press:{late['trigger_id']}")
    assert _ephemeral(fake) == [EXPIRED, EXPIRED]
    assert stored is None, "an expired press never reaches the inbox"
    texts = fake.texts(DM)
    assert "not run" in texts[-1] and "ran-42" not in texts[-1]
    assert not any(t.startswith(("Approved", "No pending")) for t in texts)


async def test_a_pairing_request_is_approved_with_a_tap_after_a_restart_in_http_mode(
    make_config: Any, fake: FakeSlack
) -> None:
    settings = slack_settings(fake, mode="http", access={"dm_policy": "pairing"})
    config = make_config(
        channels={"slack": settings},
        gateway={"owners": [f"slack:{OWNER}"], "shutdown_grace_s": 0.5},
        http={"enabled": True, "port": 0},
        sandbox={"backend": "none"},
        memory={"enabled": False},
    )
    provider = ScriptedProvider(["hello stranger"])
    stranger_dm = "D0009"
    async with aiohttp.ClientSession() as http:
        async with Gateway(config, provider=provider) as gw:
            hi = fake.event("dm_message", user="U0009", channel=stranger_dm, text="hi")
            assert (await fake.post_signed(http, events_url(gw), hi)).status == 200
            await until(lambda: fake.buttons(OWNER)[1])
        ts, keys = fake.buttons(OWNER)
        assert [label for label, _ in keys] == ["Approve", "Deny"]
        async with Gateway(config, provider=provider) as gw:
            press = fake.block_actions(OWNER, ts, keys[0][1], user=OWNER)
            form = {"payload": json.dumps(press)}
            assert (await fake.post_signed(http, events_url(gw), form, form=True)).status == 200
            await until(lambda: any(t.startswith("Approved") for t in fake.texts(OWNER)))
            now = fake.event("dm_message", user="U0009", channel=stranger_dm, text="now?")
            assert (await fake.post_signed(http, events_url(gw), now)).status == 200
            await until(lambda: "hello stranger" in fake.texts(stranger_dm))
            await until(lambda: fake.buttons(OWNER) == ("", []))
            await idle(gw)
    assert fake.messages[(OWNER, ts)].endswith("→ Approve (alice)")
