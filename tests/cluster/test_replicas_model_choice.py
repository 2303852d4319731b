"""A /model change on one replica reaches the others on the same PostgreSQL database (their
choices are read again after a NOTIFY), with the real OpenAI SDK against the fake LLM."""

from __future__ import annotations

from typing import Any

import openai  # noqa: F401  (the SDK loads before any wait starts)
import pytest

from bot.gateway import Gateway
from bot.store.choices import EVERYONE
from tests.cluster.harness import until
from tests.fakes.channel import RecordingChannel
from tests.fakes.llm import FakeLLM, Reply

pytestmark = pytest.mark.replicas


@pytest.fixture(autouse=True)
def _key(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("FAKE_LLM_KEY", "sk-test-not-a-secret")


async def test_the_owners_default_set_on_one_replica_answers_on_the_other(
    make_config: Any, pg_url: str
) -> None:
    async with FakeLLM() as fake:
        fake.reply_fn = lambda recorded: Reply(text=f"from {recorded.body['model']}")
        config = make_config(
            store={"url": pg_url},
            providers={"fake": fake.provider()},
            models={"chat": ["fake:alpha", "fake:beta"]},
            scheduler={"poll_seconds": 3600},
            memory={"enabled": False},
        )
        # everyone on them is the owner; a's deliveries get ids of their own (one inbox)
        on_a, on_b = RecordingChannel(console=True), RecordingChannel(console=True)
        async with (
            Gateway(config, channels={"test": on_a}),
            Gateway(config, channels={"test": on_b}) as b,
        ):
            await on_b.push("hello", user="u2")  # b reads the choices now
            assert await on_b.wait_for_messages(1, timeout=30) == ["from alpha"]
            await on_a.push("/model beta for everyone", user="u1", delivery_id="a1")
            await on_a.wait_for_messages(1, timeout=30)

            async def b_sees_beta() -> bool:
                return await b.model_choices.default() == "fake:beta"

            async def b_sees_none() -> bool:
                return await b.model_choices.default() is None

            await until(b_sees_beta, timeout=30)
            await on_b.push("hello again", user="u2")
            await on_b.wait_for_messages(2, timeout=30)
            await on_a.push("/model reset for everyone", user="u1", delivery_id="a2")
            await on_a.wait_for_messages(2, timeout=30)
            await until(b_sees_none, timeout=30)
            await on_b.push("and now", user="u2")
            await on_b.wait_for_messages(3, timeout=30)
        assert on_b.texts() == ["from alpha", "from beta", "from alpha"]


async def test_a_change_on_another_replica_reaches_the_receiver_of_turn_processes(
    make_config: Any, pg_url: str
) -> None:
    """The receiver runs no turns of people but runs the scheduler, whose tasks and check-ins
    answer with the choices it read."""
    sections: dict[str, Any] = {
        "store": {"url": pg_url},
        "models": {"chat": ["fake:alpha", "fake:beta"]},
        "scheduler": {"poll_seconds": 3600},
        "memory": {"enabled": False},
    }
    async with FakeLLM() as fake:
        provider = fake.provider()
        sections["providers"] = {"fake": provider}
        spread = make_config(**sections, gateway={"turn_processes": 2, "shutdown_grace_s": 1})
        async with (
            Gateway(spread, channels={"test": RecordingChannel(console=True)}) as receiver,
            Gateway(
                make_config(**sections), channels={"test": RecordingChannel(console=True)}
            ) as other,
        ):
            assert receiver.turn_processes is not None and receiver.replica is None
            assert await receiver.model_choices.default() is None  # read now, kept after
            await other.model_choices.set(EVERYONE, "fake:beta", "test:u1")

            async def receiver_sees_beta() -> bool:
                return await receiver.model_choices.default() == "fake:beta"

            await until(receiver_sees_beta, timeout=20)
