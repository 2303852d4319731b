"""When Slack errors on an answer already on its way: a message that cannot be updated is
continued in a new one, a refusal (`not_in_channel`) ends the delivery once with a notice
to the owner, a post that keeps failing is tried again later, and a restart posts nothing
twice. Faults are injected at the fake; what the person sees is read back from it."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator
from typing import Any

import pytest

from bot import delivery
from bot.gateway import Gateway
from bot.providers.base import ChatRequest, Finish, Provider, TextDelta
from bot.providers.testing import FunctionProvider, ScriptedProvider
from channels.base import BaseChannel
from tests.channels.slack.conftest import idle, message_key, slack_settings, until
from tests.fakes.slack import FakeSlack

WORDS = [f"w{i}" for i in range(40)]
DM, OWNER = "D0001", "U0001"


@pytest.fixture(autouse=True)
def _quick_retries(monkeypatch: pytest.MonkeyPatch) -> None:
    # the same rules as in production, on a shorter clock
    monkeypatch.setattr(BaseChannel, "retry_backoff_s", 0.05)
    monkeypatch.setattr(delivery, "RETRY_DELAYS_S", (0.3, 0.3))


@pytest.fixture
def gateway(make_config: Any, fake: FakeSlack) -> Any:
    async def start(provider: Provider, **settings: Any) -> Gateway:
        config = make_config(
            channels={"slack": slack_settings(fake, **settings)},
            gateway={"shutdown_grace_s": 0.5, "owners": [f"slack:{OWNER}"]},
        )
        gw = await Gateway(config, provider=provider).start()
        await fake.wait_connected()
        return gw

    return start


def _streaming(requests: list[ChatRequest]) -> FunctionProvider:
    async def slowly(request: ChatRequest) -> AsyncIterator[Any]:
        requests.append(request)
        for word in WORDS:
            await asyncio.sleep(0.06)
            yield TextDelta(word + " ")
        yield Finish()

    return FunctionProvider(slowly)


def _words(texts: list[str]) -> list[str]:
    return " ".join(texts).split()


async def _state(gw: Gateway, body: dict[str, Any]) -> tuple[str, str | None, Any]:
    found = await gw.store.deliveries.get(("slack", message_key(body)))
    assert found is not None
    return found


@pytest.mark.parametrize(
    ("status", "error", "tries"),
    [(500, "internal_error", 3), (200, "cant_update_message", 1), (200, "message_not_found", 1)],
)
async def test_a_message_that_cannot_be_updated_is_continued_in_a_new_one(
    fake: FakeSlack, gateway: Any, status: int, error: str, tries: int
) -> None:
    requests: list[ChatRequest] = []
    fake.fail("chat.update", status=status, error=error, retry_after=None, times=tries)
    gw = await gateway(_streaming(requests))
    try:
        body = fake.event("dm_message")
        await fake.socket_send("events_api", body)
        await until(lambda: _words(fake.texts(DM)) == WORDS, timeout=15)
        await idle(gw)
        state_now, _error, state = await _state(gw, body)
    finally:
        await gw.stop()
    assert len(fake.method_calls("chat.postMessage")) >= 2, "went on in a new message"
    updates = fake.method_calls("chat.update", status=None)
    on_first = [c.status for c in updates if c.params["ts"] == fake.timestamps(DM)[0]]
    assert len(on_first) == tries, "tried, then never updated again"
    assert state_now == "done" and len(state.refs) == len(fake.texts(DM))

    shown_before = fake.texts(DM)
    gw = await gateway(ScriptedProvider(["Still here."]))
    try:
        await fake.socket_send("events_api", fake.event("dm_message", text="thanks"))
        await until(lambda: fake.texts(DM)[-1:] == ["Still here."])
        await idle(gw)
    finally:
        await gw.stop()
    assert fake.texts(DM) == [*shown_before, "Still here."], "nothing posted twice"
    assert len(requests) == 1


async def test_not_in_channel_ends_the_delivery_once_and_tells_the_owner(
    fake: FakeSlack, gateway: Any, caplog: pytest.LogCaptureFixture
) -> None:
    provider = ScriptedProvider(["Paris.", "Hello."])
    fake.refuse("C0001", "not_in_channel")
    gw = await gateway(provider)
    try:
        mention = fake.event("app_mention")
        await fake.socket_send("events_api", mention)
        await until(lambda: len(fake.texts(OWNER)) == 1)
        await idle(gw)
        status, error, _state_now = await _state(gw, mention)
        await fake.socket_send("events_api", fake.event("dm_message"))
        await until(lambda: fake.texts(DM) == ["Hello."])
        await idle(gw)
    finally:
        await gw.stop()
    assert status == "failed" and error == "not_in_channel"
    assert "not_in_channel" in fake.texts(OWNER)[0]
    posts = [c for c in fake.method_calls("chat.postMessage") if c.params["channel"] == "C0001"]
    assert len(posts) == 1, "a refusal is not retried"
    assert not [r for r in caplog.records if r.exc_info], "no traceback"
    warnings = [r for r in caplog.records if r.levelno >= logging.WARNING]
    assert len([r for r in warnings if "gave up: not_in_channel" in r.getMessage()]) == 1

    gw = await gateway(provider)
    try:
        await asyncio.sleep(0.5)
        await idle(gw)
    finally:
        await gw.stop()
    assert len(provider.requests) == 2, "a failed delivery costs no further model call"
    assert len(fake.texts(OWNER)) == 1, "one notice"


async def test_a_post_that_keeps_failing_is_sent_at_the_next_try(
    fake: FakeSlack, gateway: Any
) -> None:
    provider = ScriptedProvider(["Hello there."])
    tries = BaseChannel.max_transient_attempts  # every send of the first try fails
    fake.fail(
        "chat.postMessage", status=503, error="service_unavailable", retry_after=None, times=tries
    )
    gw = await gateway(provider, stream=False)
    try:
        body = fake.event("dm_message")
        await fake.socket_send("events_api", body)
        await until(lambda: fake.texts(DM) == ["Hello there."], timeout=10)
        await idle(gw)
        status, error, state = await _state(gw, body)
    finally:
        await gw.stop()
    failed = fake.method_calls("chat.postMessage", status=503)
    assert len(failed) == tries and status == "done" and state.attempts == 1
    assert error is None and len(provider.requests) == 1
