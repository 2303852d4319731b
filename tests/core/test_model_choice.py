"""/model: a person's own model, the owner's default for everyone, reset, and a choice that
outlives a restart; the chosen model is asked first and the configured chain fails over."""

from __future__ import annotations

from typing import Any

import openai  # noqa: F401  (the SDK loads before any wait starts)
import pytest

from bot.gateway import Gateway
from bot.messages import Choice
from tests.fakes.channel import RecordingChannel
from tests.fakes.llm import FakeLLM, Reply


@pytest.fixture(autouse=True)
def _key(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("FAKE_LLM_KEY", "sk-test-not-a-secret")


def _config(make_config: Any, fake: FakeLLM) -> Any:
    return make_config(
        providers={"fake": fake.provider()},
        models={"chat": ["fake:alpha", "fake:beta"], "routes": {"cheap": ["fake:gamma"]}},
        gateway={"owners": ["tg:boss"]},
        # a configured channel: on a channel injected by code everyone is the owner
        channels={"tg": {"type": "telegram", "access": {"dm_policy": "open"}}},
    )


class _Buttons(RecordingChannel):
    """Records the choices sent with each message (the platform adapters turn them into
    buttons)."""

    def __init__(self) -> None:
        super().__init__("tg", console=False)
        self.choices: list[tuple[Choice, ...]] = []

    async def send(self, message: Any) -> Any:
        self.choices.append(message.choices)
        return await super().send(message)


async def _ask(channel: RecordingChannel, text: str, user: str = "u1") -> str:
    before = len(channel.texts())
    await channel.push(text, user=user)
    return (await channel.wait_for_messages(before + 1))[before]


async def test_a_person_picks_a_model_that_is_asked_first_and_it_survives_a_restart(
    make_config: Any,
) -> None:
    async with FakeLLM() as fake:
        config = _config(make_config, fake)
        channel = _Buttons()
        async with Gateway(config, channels={"tg": channel}):
            listing = await _ask(channel, "/model")
            assert "Model: fake:alpha (the configured chain)" in listing
            offered = [c.command for c in channel.choices[-1]]
            # every model of the configured chains, and only those
            assert offered == ["/model fake:beta", "/model fake:gamma"]
            assert "not one of the configured models" in await _ask(channel, "/model gpt-9")
            assert "fake:gamma now answers you first" in await _ask(channel, "/model gamma")
            await _ask(channel, "hello")
            assert fake.requests[-1].model == "gamma"
            # another person still gets the configured chain
            await _ask(channel, "hi", user="u2")
            assert fake.requests[-1].model == "alpha"

        async with Gateway(config, channels={"tg": channel}):  # a restart on the same home
            assert "Model: fake:gamma (your choice)" in await _ask(channel, "/model")
            assert "/model reset" in [c.command for c in channel.choices[-1]]
            # the chosen model fails: the configured chain answers after it
            fake.push(Reply.error(500), Reply.error(500), model="gamma")
            fake.push("from alpha", model="alpha")
            assert await _ask(channel, "again") == "from alpha"
            assert [r.model for r in fake.requests[-3:]] == ["gamma", "gamma", "alpha"]
            assert "Back to the default" in await _ask(channel, "/model reset")
            await _ask(channel, "after reset")
            assert fake.requests[-1].model == "alpha"


async def test_only_the_owner_changes_the_model_for_everyone(make_config: Any) -> None:
    async with FakeLLM() as fake:
        config = _config(make_config, fake)
        channel = RecordingChannel("tg", console=False)
        async with Gateway(config, channels={"tg": channel}):
            refused = await _ask(channel, "/model beta for everyone")
            assert refused == "Only the owner can change the model for everyone."
            done = await _ask(channel, "/model beta for everyone", user="boss")
            assert "fake:beta now answers everyone first" in done
            await _ask(channel, "hello")
            assert fake.requests[-1].model == "beta"
            # a person's own choice wins over the default
            await _ask(channel, "/model gamma")
            await _ask(channel, "hello again")
            assert fake.requests[-1].model == "gamma"
            assert "the owner's default" in await _ask(channel, "/model", user="u3")
        async with Gateway(config, channels={"tg": channel}):
            # typed with doubled spaces, as a phone's keyboard leaves them
            await _ask(channel, "/model reset  for  everyone", user="boss")
            await _ask(channel, "and now", user="u3")
            assert fake.requests[-1].model == "alpha"


async def test_the_first_turns_after_a_start_read_the_choices_once(tmp_path: Any) -> None:
    import asyncio

    from bot.model_choice import ModelChoices
    from bot.providers.config import ModelsConfig
    from bot.store import Store

    async with Store(tmp_path / "d.db") as store:
        await store.model_choices.set("alice", "a:big", "alice")
        choices = ModelChoices(store, ModelsConfig(chat=["a:small", "a:big"]))
        reads = 0
        read_all = store.model_choices.all

        async def counting() -> dict[str, str]:
            nonlocal reads
            reads += 1
            return await read_all()

        store.model_choices.all = counting  # type: ignore[method-assign]
        firsts = await asyncio.gather(*(choices.first_for(p) for p in ["alice", "bob"] * 20))
    assert reads == 1
    assert firsts == ["a:big", "a:small"] * 20


async def test_a_change_stays_made_when_telling_another_process_of_it_fails(
    make_config: Any,
) -> None:
    async with FakeLLM() as fake:
        config = _config(make_config, fake)
        channel = _Buttons()
        told: list[str] = []

        async def link_gone() -> None:
            raise ConnectionResetError("the link to the receiver is gone")

        async def tell() -> None:
            told.append("told")

        async with Gateway(config, channels={"tg": channel}) as gw:
            gw.model_choices.on_change += [link_gone, tell]
            picked = await _ask(channel, "/model beta")
            listing = await _ask(channel, "/model")
    assert picked.startswith("fake:beta now answers you first")
    assert "Model: fake:beta (your choice)" in listing
    assert told == ["told"]  # the handler after the failed one still ran
