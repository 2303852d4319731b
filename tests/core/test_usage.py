"""/usage: a person's tokens and cost per window, the owner's view per person and model, and
the price table (built-in defaults, config overrides, the moved `webui.prices` key)."""

from __future__ import annotations

import datetime as dt
import time
from typing import Any

import openai  # noqa: F401  (the SDK loads before any wait starts)
import pytest

from bot.errors import ConfigError
from bot.gateway import Gateway
from bot.pricing import UsageConfig
from tests.fakes.channel import RecordingChannel
from tests.fakes.llm import FakeLLM, Reply


@pytest.fixture(autouse=True)
def _key(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("FAKE_LLM_KEY", "sk-test-not-a-secret")


def _config(make_config: Any, fake: FakeLLM) -> Any:
    return make_config(
        providers={"fake": fake.provider()},
        models={"chat": ["fake:gpt-4o", "fake:gpt-4o-mini"]},
        gateway={"owners": ["tg:boss"]},
        channels={"tg": {"type": "telegram", "access": {"dm_policy": "open"}}},
        usage={"prices": {"fake:gpt-4o-mini": [1.0, 2.0]}},
    )


async def _ask(channel: RecordingChannel, text: str, user: str) -> str:
    before = len(channel.texts())
    await channel.push(text, user=user)
    return (await channel.wait_for_messages(before + 1))[before]


def _expected(rows: list[tuple[Any, ...]], since: float, prices: UsageConfig) -> str:
    picked = [r for r in rows if r[4] >= since]
    tokens_in = sum(r[2] for r in picked)
    tokens_out = sum(r[3] for r in picked)
    cost = sum(prices.cost(r[1], r[2], r[3]) for r in picked)
    turns = f"{len(picked)} turn" + ("" if len(picked) == 1 else "s")
    return f"{tokens_in:,} / {tokens_out:,} tokens, ${cost:.4f} ({turns})"


async def test_usage_sums_match_the_stored_turns(make_config: Any) -> None:
    async with FakeLLM() as fake:
        fake.reply_fn = lambda request: Reply(
            text="ok", input_tokens=1000 + len(fake.requests), output_tokens=300
        )
        config = _config(make_config, fake)
        channel = RecordingChannel("tg", console=False)
        async with Gateway(config, channels={"tg": channel}) as gw:
            for text in ("one", "two", "three"):
                await _ask(channel, text, "alice")
            await _ask(channel, "/model gpt-4o-mini", "bob")
            await _ask(channel, "hello", "bob")
            # one of alice's turns was 10 days ago, another 3 days ago
            await gw.store.write(
                lambda c: c.execute(
                    "UPDATE turns SET created_at = created_at - ? WHERE turn_id = 'tg:d1'",
                    (10 * 86400,),
                )
            )
            await gw.store.write(
                lambda c: c.execute(
                    "UPDATE turns SET created_at = created_at - ? WHERE turn_id = 'tg:d2'",
                    (3 * 86400,),
                )
            )
            mine = await _ask(channel, "/usage", "alice")
            refused = await _ask(channel, "/usage all", "alice")
            everyone = await _ask(channel, "/usage all", "boss")

            def stored(conn: Any) -> list[tuple[Any, ...]]:
                return list(
                    conn.execute(
                        "SELECT i.person_id, a.provider || ':' || a.model, a.input_tokens, "
                        "a.output_tokens, a.created_at FROM turns a "
                        "JOIN turns u ON u.turn_id = a.turn_id AND u.identity_key IS NOT NULL "
                        "JOIN identities i ON i.key = u.identity_key "
                        "WHERE a.outcome IS NOT NULL"
                    ).fetchall()
                )

            rows = await gw.store.read(stored)
        now = time.time()
        midnight = dt.datetime.now(dt.UTC).replace(hour=0, minute=0, second=0, microsecond=0)
        alice = [r for r in rows if r[0] == "tg:alice"]
        assert len(alice) == 3 and len(rows) == 4
        assert mine.splitlines()[1:] == [
            f"today: {_expected(alice, midnight.timestamp(), config.usage)}",
            f"7 days: {_expected(alice, now - 7 * 86400 - 60, config.usage)}",
            f"30 days: {_expected(alice, now - 30 * 86400, config.usage)}",
        ]
        assert [line.rsplit("(", 1)[1] for line in mine.splitlines()[1:]] == [
            "1 turn)",
            "2 turns)",
            "3 turns)",
        ]
        assert refused == "Only the owner can see everyone's usage."
        month = now - 30 * 86400
        bob = [r for r in rows if r[0] == "tg:bob"]
        assert f"  tg:alice: {_expected(alice, month, config.usage)}" in everyone
        assert f"  tg:bob: {_expected(bob, month, config.usage)}" in everyone
        mini = [r for r in rows if r[1] == "fake:gpt-4o-mini"]
        # the configured price, not the built-in one
        assert f"  fake:gpt-4o-mini: {_expected(mini, month, config.usage)}" in everyone
        assert mini and config.usage.price("fake:gpt-4o-mini") == (1.0, 2.0)
        assert f"All: {_expected(rows, month, config.usage)}" in everyone


def test_built_in_prices_match_model_families_and_config_overrides_them() -> None:
    prices = UsageConfig(prices={"gpt-4o": (9.0, 9.0), "local:llama3": (0.0, 0.0)})
    assert prices.price("openai:gpt-4o-2024-08-06") == (9.0, 9.0)
    assert prices.price("openai:gpt-4o-mini-2024-07-18") == (0.15, 0.60)
    assert prices.price("openrouter:openai/gpt-4.1-mini") == (0.40, 1.60)
    assert prices.price("anthropic:claude-opus-4-5-20251101") == (5.0, 25.0)
    assert prices.price("anthropic:claude-opus-4-1-20250805") == (15.0, 75.0)
    assert prices.price("anthropic:claude-3-5-haiku-20241022") == (0.80, 4.0)
    assert prices.price("anthropic:claude-sonnet-4-5") == (3.0, 15.0)
    assert prices.price("openai:o3") == (2.0, 8.0)
    assert prices.price("local:llama3") == (0.0, 0.0)
    assert prices.price("local:o3x") is None  # a prefix counts only at a name boundary
    assert prices.cost("openai:gpt-4o-mini", 2_000_000, 1_000_000) == pytest.approx(0.9)


def test_the_old_webui_prices_key_names_the_new_one(make_config: Any) -> None:
    with pytest.raises(ConfigError, match=r"webui.*moved to `\[usage.prices\]`"):
        make_config(webui={"prices": {"openai:gpt-4o": [2.5, 10.0]}})


async def test_a_scheduled_turn_run_twice_counts_once(make_config: Any) -> None:
    """A task whose turn was stored but whose job was not finished (a crash between the two,
    or a failed try) runs again with the same turn id. Its tokens are those of the answers
    the model gave; the turn counts once, not once per pair of stored rows."""
    from bot.messages import Conversation, ConversationKind
    from bot.scheduler import JobKind
    from bot.store.job_model import NewJob

    async with FakeLLM() as fake:
        fake.reply_fn = lambda request: Reply(text="ok", input_tokens=1000, output_tokens=300)
        channels = {"tg": RecordingChannel("tg", console=False)}
        async with Gateway(_config(make_config, fake), channels=channels) as gw:
            await gw.warmup.wait()  # the scheduler is a warm-up step
            scheduler = gw.deps.scheduler
            assert scheduler is not None
            now = time.time()
            job = await scheduler.jobs.insert(
                NewJob(
                    person_id="tg:alice",
                    identity_key="tg:alice",
                    kind=JobKind.TASK,
                    text="summarise the news",
                    repeat="once",
                    interval_s=None,
                    cron=None,
                    timezone="UTC",
                    conversation=Conversation("tg", "alice", ConversationKind.DM),
                    due_at=now + 3600,  # not before this test runs it, twice
                    created_at=now,
                ),
                max_active=10,
            )
            for _ in range(2):
                await gw.turns.answer_task(job)
            [total] = await gw.store.usage.totals(now - 60)
    assert (total.person_id, total.model) == ("tg:alice", "fake:gpt-4o")
    assert (total.input_tokens, total.output_tokens, total.turns) == (2000, 600, 1)
