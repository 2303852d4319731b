"""Every secret a start holds is registered before the channels start, so the redactor's
index of known secrets is built once per start, not again for a token read later."""

from __future__ import annotations

import io
import logging
import secrets
from collections.abc import Iterable, Iterator
from typing import Any

import pytest

from bot.gateway import Gateway
from bot.providers.testing import ScriptedProvider
from bot.security import known
from bot.security.redact import RedactingFilter, scrub
from tests.fakes.discord import TOKEN, FakeDiscord

TOKEN_ENV = "DECAPOD_TEST_INDEX_DISCORD_TOKEN"
KEY_ENV = "DECAPOD_TEST_INDEX_PROVIDER_KEY"


@pytest.fixture
def redacted_logs() -> Iterator[None]:
    """A root handler that redacts every record, as `decapod run` sets up (bot/logging.py)."""
    handler = logging.StreamHandler(io.StringIO())
    handler.addFilter(RedactingFilter())
    root = logging.getLogger()
    root.addHandler(handler)
    yield
    root.removeHandler(handler)


async def test_the_index_of_known_secrets_is_built_once_per_start(
    make_config: Any, monkeypatch: pytest.MonkeyPatch, redacted_logs: None
) -> None:
    builds: list[int] = []

    class CountedIndex(known.NeedleIndex):
        def __init__(self, needles: Iterable[str]) -> None:
            super().__init__(needles)
            builds.append(1)

    monkeypatch.setattr(known, "NeedleIndex", CountedIndex)
    # secrets no earlier test registered, so registering each changes the index
    token = TOKEN[:-12] + secrets.token_hex(6)
    monkeypatch.setenv(TOKEN_ENV, token)
    monkeypatch.setenv(KEY_ENV, f"sk-index-{secrets.token_hex(12)}")

    import bot.gateway

    start_features = bot.gateway.start_features

    async def logging_start_features(*args: Any) -> None:
        # a line logged between making the channels and starting them is redacted
        await start_features(*args)
        logging.getLogger("decapod.test").warning("features started")

    monkeypatch.setattr(bot.gateway, "start_features", logging_start_features)
    begin_sandbox_choice = bot.gateway.begin_sandbox_choice

    def logging_sandbox_choice(*args: Any) -> Any:
        # a line logged before the channels are made, as a quick sandbox choice does
        logging.getLogger("decapod.test").warning("choosing the sandbox")
        return begin_sandbox_choice(*args)

    monkeypatch.setattr(bot.gateway, "begin_sandbox_choice", logging_sandbox_choice)
    async with FakeDiscord(token=token) as fake:
        config = make_config(
            security={"secret_env": [KEY_ENV]},
            channels={
                "discord": {
                    "type": "discord",
                    "token_env": TOKEN_ENV,
                    "api_base_url": fake.api_base,
                    "gateway_url": fake.gateway_url,
                }
            },
        )
        async with Gateway(config, provider=ScriptedProvider([])):
            assert fake.connected
            assert token not in scrub(f"token {token}")
    assert len(builds) == 1
