"""Interactions mode end to end: Discord POSTs signed interactions to the gateway's own HTTP
server (the fake signs them with the application's key), the real discord.py answers them
through the fake's callback and webhook routes, and no gateway connection is opened."""

from __future__ import annotations

import json
import time
from typing import Any

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from bot.errors import ConfigError
from bot.gateway import Gateway
from bot.messages import Choice, Conversation, ConversationKind, OutboundMessage
from bot.providers.testing import ScriptedProvider
from channels.discord_outbound import PLACEHOLDER
from tests.channels.discord.conftest import channel_of, running, settle
from tests.fakes.discord import ALICE, BOT_ID, FakeDiscord

EPHEMERAL = 64


@pytest.fixture
def interactions_config(discord_config: Any, fake: FakeDiscord) -> Any:
    """A discord channel in interactions mode, served on the gateway's HTTP server."""

    def build(**channel: Any) -> Any:
        settings = {"mode": "interactions", "public_key": fake.public_key, **channel}
        config = discord_config(**settings)
        config.http.enabled = True
        config.http.port = 0
        return config

    return build


def endpoint(gateway: Gateway) -> str:
    return f"http://127.0.0.1:{gateway.http.port}/discord/interactions"


async def inbound_rows(gateway: Gateway) -> list[Any]:
    rows: list[Any] = await gateway.store.read(
        lambda c: c.execute("SELECT * FROM inbound").fetchall()
    )
    return rows


async def test_ping_is_answered_and_no_gateway_connection_is_opened(
    fake: FakeDiscord, interactions_config: Any
) -> None:
    async with running(interactions_config(), ScriptedProvider([])) as gateway:
        status, body = await fake.post_interaction(endpoint(gateway), {"type": 1, "token": "p"})
        channel = channel_of(gateway)
        health = channel.health()
        await fake.wait_for("PUT", "/commands", timeout=10)  # once the warm-up is over
    assert (status, body) == (200, {"type": 1})
    assert channel.health()["running"] is False, "stopped: the endpoint answers 503"
    assert fake.connections == 0 and fake.identifies == 0, "REST only: no gateway session"
    assert health["mode"] == "interactions" and health["running"] is True
    assert {c["name"] for c in fake.commands["global"]} >= {"ask", "status"}


async def test_bad_or_missing_signatures_get_401_and_nothing_is_processed(
    fake: FakeDiscord, interactions_config: Any
) -> None:
    provider = ScriptedProvider(["never"])
    async with running(interactions_config(), provider) as gateway:
        url = endpoint(gateway)
        command = fake.interaction("ask", {"question": "hi"})
        body = json.dumps(command).encode()
        other_key = Ed25519PrivateKey.generate()
        tampered = fake.sign(json.dumps({**command, "id": "1"}).encode())
        attempts = [
            await fake.post_interaction(url, command, key=other_key),  # not the app's key
            await fake.post_interaction(url, body, headers=tampered),  # signed another body
            await fake.post_interaction(url, body, headers={}),  # no signature at all
            await fake.post_interaction(
                url, body, headers={"X-Signature-Ed25519": "zz", "X-Signature-Timestamp": "now"}
            ),
            await fake.post_interaction(url, {"type": 1, "token": "p"}, key=other_key),
        ]
        await settle(gateway)
        stored = await inbound_rows(gateway)
        refused = channel_of(gateway).health()["refused_signatures"]
    assert [status for status, _ in attempts] == [401] * 5
    assert stored == [] and provider.requests == []
    assert not fake.calls_to("POST", "/callback", status=None), "nothing was acknowledged"
    assert refused == 5


async def test_a_stale_timestamp_is_refused_even_with_a_valid_signature(
    fake: FakeDiscord, interactions_config: Any
) -> None:
    provider = ScriptedProvider(["never"])
    async with running(interactions_config(), provider) as gateway:
        command = fake.interaction("ask", {"question": "replayed"})
        stale = await fake.post_interaction(
            endpoint(gateway), command, timestamp=int(time.time()) - 600
        )
        ahead = await fake.post_interaction(
            endpoint(gateway), command, timestamp=int(time.time()) + 600
        )
        await settle(gateway)
        stored = await inbound_rows(gateway)
    assert (stale[0], ahead[0]) == (401, 401)
    assert stored == [] and provider.requests == []


async def test_a_slash_command_is_acknowledged_then_answered_in_its_placeholder_once(
    fake: FakeDiscord, interactions_config: Any
) -> None:
    provider = ScriptedProvider(["A decapod has ten legs."])
    async with running(interactions_config(), provider) as gateway:
        command = fake.interaction("ask", {"question": "what is a decapod?"})
        status, body = await fake.post_interaction(endpoint(gateway), command)
        token = command["token"]
        await fake.until(lambda: fake.interaction_texts(token) == ["A decapod has ten legs."])
        await settle(gateway)
    assert (status, body) == (202, None), "answered through the callback endpoint"
    (ack,) = fake.callback_answers(command)
    assert ack["type"] == 4 and ack["data"]["content"] == PLACEHOLDER
    assert ack["data"]["flags"] == 4, "created without link previews"
    placeholder = fake.originals[token]
    edits = fake.calls_to("PATCH", f"/webhooks/{BOT_ID}/{token}/messages/{placeholder}")
    assert [e.body["content"] for e in edits][-1] == "A decapod has ten legs."
    assert not fake.calls_to("POST", f"/webhooks/{BOT_ID}/{token}"), "no followup: one message"
    assert [r.messages[-1].content for r in provider.requests] == ["what is a decapod?"]


async def test_a_long_answer_continues_in_followups_within_2000_characters(
    fake: FakeDiscord, interactions_config: Any
) -> None:
    answer = "\n\n".join(f"Paragraph {i}: " + "words " * 60 for i in range(12))
    async with running(interactions_config(), ScriptedProvider([answer])) as gateway:
        command = fake.interaction("ask", {"question": "write a lot"})
        await fake.post_interaction(endpoint(gateway), command)
        await fake.wait_for("POST", f"/webhooks/{BOT_ID}/{command['token']}", count=2)
        await settle(gateway)
    texts = fake.interaction_texts(command["token"])
    assert len(texts) >= 3 and all(len(t) <= 2000 for t in texts)
    assert " ".join(" ".join(texts).split()) == " ".join(answer.split()), "whole, once"


async def test_the_same_interaction_delivered_twice_is_answered_once(
    fake: FakeDiscord, interactions_config: Any
) -> None:
    provider = ScriptedProvider(["once", "twice"])
    async with running(interactions_config(), provider) as gateway:
        command = fake.interaction("ask", {"question": "only once"})
        first = await fake.post_interaction(endpoint(gateway), command)
        second = await fake.post_interaction(endpoint(gateway), command)
        await fake.until(lambda: fake.interaction_texts(command["token"]) == ["once"])
        await settle(gateway)
        stored = await inbound_rows(gateway)
    assert (first[0], second[0]) == (202, 202)
    assert len(provider.requests) == 1
    assert fake.interaction_texts(command["token"]) == ["once"]
    assert len(stored) == 1 and command["id"] in tuple(stored[0]), "keyed by interaction id"
    assert not fake.texts_in(command["channel_id"])[1:], "nothing went to the channel"


async def test_a_button_press_runs_its_command_once_and_updates_the_message(
    fake: FakeDiscord, interactions_config: Any
) -> None:
    """An unknown person's slash command in a DM gets a pairing code (access as in gateway
    mode); the owner approves with the button of the request in their DM."""
    stranger = fake.user("1200000000000000077", "sam")
    owner_dm = fake.dm_channel_id(ALICE)
    config = interactions_config(access={"dm_policy": "pairing", "groups": {"*": {}}})
    config.gateway.owners = [f"discord:{ALICE}"]
    provider = ScriptedProvider(["hello stranger"])
    async with running(config, provider) as gateway:
        asked = fake.interaction("ask", {"question": "hi"}, dm=True, user=stranger)
        await fake.post_interaction(endpoint(gateway), asked)
        await fake.until(lambda: "code" in "".join(fake.interaction_texts(asked["token"])))
        await fake.until(lambda: fake.buttons_in(owner_dm)[1])
        assert provider.requests == [], "an unknown person is not answered by the model"
        message_id, keys = fake.buttons_in(owner_dm)
        assert [label for label, _ in keys] == ["Approve", "Deny"]
        press = fake.component_interaction(message_id, keys[0][1])
        again = fake.component_interaction(message_id, keys[0][1])
        status, _ = await fake.post_interaction(endpoint(gateway), press)
        await fake.until(lambda: any(t.startswith("Approved Sam") for t in fake.texts_in(owner_dm)))
        repeat, _ = await fake.post_interaction(endpoint(gateway), again)
        await settle(gateway)
        later = fake.interaction("ask", {"question": "now?"}, dm=True, user=stranger)
        await fake.post_interaction(endpoint(gateway), later)
        await fake.until(lambda: fake.interaction_texts(later["token"]) == ["hello stranger"])
        await settle(gateway)
    assert (status, repeat) == (202, 202)
    assert fake.callback_answers(press)[0]["type"] == 7, "the message shows the decision"
    assert fake.buttons_in(owner_dm) == ("", [])
    (refusal,) = fake.callback_answers(again)
    assert refusal["type"] == 4 and refusal["data"]["flags"] & EPHEMERAL
    assert sum(t.startswith("Approved Sam") for t in fake.texts_in(owner_dm)) == 1


async def test_a_command_in_a_channel_without_access_is_refused_privately(
    fake: FakeDiscord, interactions_config: Any
) -> None:
    provider = ScriptedProvider(["never"])
    async with running(interactions_config(access={"dm_policy": "open"}), provider) as gateway:
        command = fake.interaction("ask", {"question": "hello?"})
        status, _ = await fake.post_interaction(endpoint(gateway), command)
        await settle(gateway)
    (answer,) = fake.callback_answers(command)
    assert status == 202 and answer["data"]["flags"] & EPHEMERAL
    assert "not enabled" in answer["data"]["content"]
    assert provider.requests == []


async def test_a_failing_followup_is_retried_without_doubles_and_a_refusal_is_reported(
    fake: FakeDiscord, interactions_config: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    from channels.base import BaseChannel

    monkeypatch.setattr(BaseChannel, "retry_backoff_s", 0.05)
    answer = "\n\n".join(f"Paragraph {i}: " + "words " * 60 for i in range(8))
    provider = ScriptedProvider([answer, answer])
    config = interactions_config()
    config.gateway.owners = [f"discord:{ALICE}"]
    async with running(config, provider) as gateway:
        first = fake.interaction("ask", {"question": "one"})
        fake.fail("POST", f"/webhooks/{BOT_ID}/{first['token']}", 503, 0, "Unavailable")
        await fake.post_interaction(endpoint(gateway), first)
        await fake.until(
            lambda: (
                " ".join(" ".join(fake.interaction_texts(first["token"])).split())
                == " ".join(answer.split())
            )
        )
        await settle(gateway)
        second = fake.interaction("ask", {"question": "two"})
        fake.fail("POST", f"/webhooks/{BOT_ID}/{second['token']}", 400, 50035, "Invalid Form")
        await fake.post_interaction(endpoint(gateway), second)
        owner_dm = fake.dm_channel_id(ALICE)
        await fake.until(lambda: any("Invalid Form" in t for t in fake.texts_in(owner_dm)))
        await settle(gateway)
        found = await gateway.store.deliveries.get(("discord", second["id"]))
    assert fake.calls_to("POST", f"/webhooks/{BOT_ID}/{first['token']}", status=503)
    texts = fake.interaction_texts(first["token"])
    assert len(texts) == len(set(texts)), "the failed followup was not sent twice"
    assert found is not None and found[0] == "failed" and "50035" in str(found[1])
    shown = fake.interaction_texts(second["token"])
    assert len(shown) == 1 and shown[0].startswith("Paragraph 0"), "what was shown stays once"


async def test_interactions_mode_needs_a_public_key_and_the_http_server(
    discord_config: Any, fake: FakeDiscord
) -> None:
    with pytest.raises(ConfigError) as missing:
        config = discord_config(mode="interactions")
        config.http.enabled = True
        async with Gateway(config, provider=ScriptedProvider([])):
            pass
    assert missing.value.key == "channels.discord.public_key"
    with pytest.raises(ConfigError) as no_http:
        async with Gateway(
            discord_config(mode="interactions", public_key=fake.public_key),
            provider=ScriptedProvider([]),
        ):
            pass
    assert no_http.value.key == "channels.discord.mode"


async def test_two_channels_on_one_interactions_path_are_a_start_error(
    fake: FakeDiscord, interactions_config: Any
) -> None:
    config = interactions_config()
    config.channels["second"] = config.channels["discord"].model_copy()
    with pytest.raises(ConfigError) as taken:
        async with Gateway(config, provider=ScriptedProvider([])):
            pass
    assert taken.value.key == "channels.second"
    assert "/discord/interactions is already channel discord's" in str(taken.value)


async def test_a_public_key_of_another_application_is_a_start_error(
    fake: FakeDiscord, interactions_config: Any
) -> None:
    other = "ab" * 32
    with pytest.raises(ConfigError) as wrong:
        async with running(interactions_config(public_key=other), ScriptedProvider([])):
            pass
    assert wrong.value.key == "channels.discord.public_key"
    assert fake.public_key in str(wrong.value)


async def test_only_gateway_mode_is_an_exclusive_receiver(
    fake: FakeDiscord, interactions_config: Any, discord_config: Any
) -> None:
    from bot.cluster.node import ClusterNode

    async with running(interactions_config(), ScriptedProvider([])) as gateway:
        node = ClusterNode(gateway.config, gateway.store)
        node.elects = True  # as on PostgreSQL: held channels wait for leadership
        interactions = channel_of(gateway)
        assert not interactions.receives_exclusively()
        assert not node.hold(interactions), "every replica serves the endpoint"
        assert interactions.receive_on_start
    async with running(discord_config(), ScriptedProvider([])) as gateway:
        node = ClusterNode(gateway.config, gateway.store)
        node.elects = True
        assert node.hold(channel_of(gateway)), "the gateway connection exists once"


async def test_unknown_commands_other_types_and_unreadable_bodies_change_nothing(
    fake: FakeDiscord, interactions_config: Any
) -> None:
    provider = ScriptedProvider(["never"])
    async with running(interactions_config(), provider) as gateway:
        url = endpoint(gateway)
        unknown = await fake.post_interaction(url, fake.interaction("gone"))
        autocomplete = await fake.post_interaction(url, {**fake.interaction("ask"), "type": 4})
        unreadable = await fake.post_interaction(url, b"{not json")
        no_data = {k: v for k, v in fake.interaction("ask").items() if k != "data"}
        malformed = await fake.post_interaction(url, no_data)
        await settle(gateway)
        stored = await inbound_rows(gateway)
    status, body = unknown
    assert status == 200 and body["type"] == 4 and body["data"]["flags"] & EPHEMERAL
    assert "/gone" in body["data"]["content"]
    assert [autocomplete[0], unreadable[0], malformed[0]] == [400, 400, 400]
    assert stored == [] and provider.requests == []


async def test_a_question_that_fills_a_message_still_shows_the_decision_after_a_press(
    fake: FakeDiscord, interactions_config: Any
) -> None:
    owner_dm = fake.dm_channel_id(ALICE)
    config = interactions_config(access={"dm_policy": "open"})
    config.gateway.owners = [f"discord:{ALICE}"]
    async with running(config, ScriptedProvider(["unused"])) as gateway:
        channel = channel_of(gateway)
        lines = "\n".join(f"rm -rf /tmp/cache/{i:04d}" for i in range(120))
        question = ("Approval needed to run:\n" + lines)[: channel.max_message_len]
        ask = OutboundMessage(
            Conversation(channel.name, ALICE, ConversationKind.DM),
            question,
            choices=(Choice("Approve", "/help"), Choice("Deny", "/help")),
        )
        await channel.send(ask)
        message_id, keys = fake.buttons_in(owner_dm)
        press = fake.component_interaction(message_id, keys[0][1])
        status, _ = await fake.post_interaction(endpoint(gateway), press)
        await settle(gateway)
    assert status == 202 and fake.callback_answers(press)[0]["type"] == 7
    assert fake.buttons_in(owner_dm) == ("", []), "the spent buttons are gone"
    decided = fake.messages[message_id]["content"]
    assert decided.startswith("Approval needed") and decided.endswith("→ Approve (Alice)")
