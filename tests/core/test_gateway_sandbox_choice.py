"""The sandbox is chosen while the channels' SDKs are imported (its probes are other
processes), yet settled before the gateway is ready: a choice that fails fails the start, and
a start that fails before taking the choice closes the backend it chose."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import pytest

from bot.errors import ConfigError
from bot.gateway import Gateway
from bot.providers.testing import ScriptedProvider
from bot.sandbox import SandboxConfig


class _Backend:
    def __init__(self) -> None:
        self.closed = False

    async def aclose(self) -> None:
        self.closed = True


class _Choice:
    """Stands in for bot.sandbox.select_backend; records when it begins and ends. Its probe
    lasts until a channel is created (at most 5 s): the start makes the channels meanwhile."""

    def __init__(self, events: list[str], fail: BaseException | None = None) -> None:
        self.events, self.fail = events, fail
        self.backend = _Backend()

    async def __call__(
        self, config: SandboxConfig, home: Path, ro_mounts: dict[str, Path] | None = None
    ) -> tuple[_Backend, str]:
        self.events.append("choice begun")
        for _ in range(500):
            if "channel created" in self.events:
                break
            await asyncio.sleep(0.01)
        if self.fail is not None:
            raise self.fail
        self.events.append("choice made")
        return self.backend, "fake sandbox"


def _channels(make_config: Any) -> Any:
    return make_config(channels={"tg": {"type": "telegram", "token_env": "TG_CHOICE_TOKEN"}})


@pytest.fixture
def events(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    import bot.gateway

    events: list[str] = []
    created = bot.gateway.create_channel

    def create_channel(*args: Any) -> Any:
        events.append("channel created")
        return created(*args)

    monkeypatch.setattr(bot.gateway, "create_channel", create_channel)
    monkeypatch.setenv("TG_CHOICE_TOKEN", "123:abc")
    return events


async def test_the_choice_runs_while_the_channels_are_made_and_is_settled_at_ready(
    make_config: Any, events: list[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    choice = _Choice(events)
    monkeypatch.setattr("bot.sandbox.select_backend", choice)
    gateway = Gateway(_channels(make_config), provider=ScriptedProvider([]))
    # the channel's start is not part of this test: only its creation (its SDK's import)
    monkeypatch.setattr("channels.telegram.TelegramChannel.start", _started)
    async with gateway:
        # the channel (its SDK's import) was made while the choice was under way
        assert events == ["choice begun", "channel created", "choice made"]
        assert gateway.sandbox_status == "fake sandbox"
        assert gateway.sandbox_choice is None
    assert choice.backend.closed


async def test_a_choice_that_fails_fails_the_start(
    make_config: Any, events: list[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr("bot.sandbox.select_backend", _Choice(events, RuntimeError("probe broke")))
    monkeypatch.setattr("channels.telegram.TelegramChannel.start", _started)
    gateway = Gateway(_channels(make_config), provider=ScriptedProvider([]))
    with pytest.raises(RuntimeError, match="probe broke"):
        await gateway.start()


async def test_a_start_that_fails_before_taking_the_choice_closes_its_backend(
    make_config: Any, events: list[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    choice = _Choice(events)
    monkeypatch.setattr("bot.sandbox.select_backend", choice)

    def refuse(*args: Any) -> Any:
        raise ConfigError("no such channel type")

    monkeypatch.setattr("bot.gateway.create_channel", refuse)
    gateway = Gateway(_channels(make_config), provider=ScriptedProvider([]))
    with pytest.raises(ConfigError, match="no such channel type"):
        await gateway.start()
    # cancelled in its probe, or closed once made: no backend is left behind
    assert choice.backend.closed or "choice made" not in events


async def test_a_start_that_fails_after_the_choice_was_made_closes_its_backend(
    make_config: Any, events: list[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    choice = _Choice(events)
    monkeypatch.setattr("bot.sandbox.select_backend", choice)

    async def refusing_providers(gw: Any, stack: Any) -> None:
        events.append("channel created")  # ends the choice's probe
        while "choice made" not in events:
            await asyncio.sleep(0.01)
        raise ConfigError("provider refused")

    monkeypatch.setattr("bot.gateway.start_providers", refusing_providers)
    gateway = Gateway(_channels(make_config))
    with pytest.raises(ConfigError, match="provider refused"):
        await gateway.start()
    assert choice.backend.closed


async def _started(self: Any, sink: Any) -> None:
    self._sink = sink
