"""The scheduler, memory and the skills start after ready (bot/warmup.py): a message that
comes first waits for them and gets the full prompt and tools; a step that fails is logged,
shown by /health and `decapod status`, said to the person, and the message stays pending for
the next start."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from pathlib import Path
from typing import Any

import pytest

from bot import features, warmup
from bot.cli_status import render_status
from bot.gateway import Gateway
from bot.providers.base import ChatRequest
from bot.providers.testing import FunctionProvider
from bot.store.config import open_store
from bot.warmup import StartUpStepFailed
from tests.fakes.channel import RecordingChannel

# generous: the machine is shared; nothing here is a timing claim
WAIT_S = 30.0


def _write_skill(home: Path) -> None:
    folder = home / "skills" / "packing"
    folder.mkdir(parents=True)
    (folder / "SKILL.md").write_text(
        "---\nname: packing\ndescription: Pack for a trip.\n---\n\nSTEP-ONE\n", encoding="utf-8"
    )


async def test_a_message_before_the_warm_up_ends_waits_and_gets_skills_and_memory(
    make_config: Any, home: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    _write_skill(home)
    release = asyncio.Event()
    order: list[str] = []
    start_skills = features.start_skills

    async def slow_skills(gw: Gateway, stack: contextlib.AsyncExitStack) -> None:
        await release.wait()  # the step is slow: the message below comes first
        await start_skills(gw, stack)
        order.append("skills started")

    monkeypatch.setattr(features, "start_skills", slow_skills)
    seen: list[ChatRequest] = []

    async def model(request: ChatRequest) -> Any:
        order.append("model asked")
        seen.append(request)
        return "packed"

    channel = RecordingChannel(console=True)
    async with Gateway(
        make_config(), provider=FunctionProvider(model), channels={"test": channel}
    ) as gw:
        assert (await gw.health())["warm_up"]["skills"] in {"waiting", "running"}
        await channel.push("help me pack", user="owner")
        for _ in range(20):  # the turn has every chance to run ahead, were it not waiting
            await asyncio.sleep(0)
        assert seen == []
        release.set()
        assert await channel.wait_for_messages(1, timeout=WAIT_S) == ["packed"]
        assert (await gw.health())["warm_up"] == {
            "scheduler": "done",
            "memory": "done",
            "skills": "done",
        }
    assert order == ["skills started", "model asked"]
    [request] = seen
    assert "- packing: Pack for a trip." in request.system
    names = [t.name for t in request.tools]
    assert "use_skill" in names
    assert any(n.startswith("memory") for n in names)


async def test_a_failed_step_is_logged_shown_by_health_said_and_the_message_kept(
    make_config: Any, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    async def broken_skills(gw: Gateway, stack: contextlib.AsyncExitStack) -> None:
        raise OSError("skills folder unreadable")

    monkeypatch.setattr(features, "start_skills", broken_skills)
    asked: list[ChatRequest] = []

    async def model(request: ChatRequest) -> Any:
        asked.append(request)
        return "never"

    channel = RecordingChannel(console=True)
    async with Gateway(
        make_config(), provider=FunctionProvider(model), channels={"test": channel}
    ) as gw:
        message = await channel.push("hello", user="owner")
        [said] = await channel.wait_for_messages(1, timeout=WAIT_S)
        with pytest.raises(StartUpStepFailed, match="skills folder unreadable"):
            await gw.warmup.wait()
        health = await gw.health()
        pending = [d.message.id for d in await gw.store.deliveries.unfinished()]
    assert "part of my start-up (skills) failed" in said and "decapod status" in said
    assert asked == []
    assert health["status"] == "degraded"
    assert health["warm_up"]["memory"] == "done"
    assert "OSError: skills folder unreadable" in health["warm_up"]["skills"]
    shown = render_status("http://127.0.0.1:8080", health)  # `decapod status`
    assert "memory: done; skills: start-up step 'skills' failed: OSError" in shown
    assert "warm-up    scheduler: done; memory: done" in shown
    assert message.id in pending, "the message runs again at the next start"
    errors = [r.getMessage() for r in caplog.records if r.levelno >= logging.ERROR]
    assert any("start-up step 'skills' failed" in e for e in errors)


class _MenuDown(RecordingChannel):
    """A channel whose platform refuses the new command menu (its first `refusals` tries)."""

    def __init__(self, name: str = "test", refusals: int = 1000) -> None:
        super().__init__(name, console=True)
        self.offered: list[list[str]] = []
        self.refusals = refusals

    async def publish_commands(self, commands: Any) -> None:
        self.offered.append([c.name for c in commands])
        if len(self.offered) <= self.refusals:
            raise ConnectionError("platform unreachable")
        await super().publish_commands(commands)


@pytest.fixture
def quick_publish_retries(monkeypatch: pytest.MonkeyPatch) -> None:
    from bot import gateway_start

    monkeypatch.setattr(gateway_start, "PUBLISH_RETRY_S", (0.01, 0.01))


@pytest.mark.usefixtures("quick_publish_retries")
async def test_commands_registered_in_the_warm_up_are_offered_and_a_refusal_is_only_logged(
    make_config: Any, caplog: pytest.LogCaptureFixture
) -> None:
    channel = _MenuDown()
    async with Gateway(
        make_config(),
        provider=FunctionProvider(lambda request: "still here"),
        channels={"test": channel},
    ) as gw:
        await gw.warmup.wait()
        async with asyncio.timeout(WAIT_S):
            while len(channel.offered) < 3:
                await asyncio.sleep(0.01)
        assert {"forget", "link"} <= set(channel.offered[0])
        await channel.push("hello", user="owner")
        assert await channel.wait_for_messages(1, timeout=WAIT_S) == ["still here"]
    assert len(channel.offered) == 3, "tried three times, then left"
    warned = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert any("new commands not offered" in m and "platform unreachable" in m for m in warned)


@pytest.mark.usefixtures("quick_publish_retries")
async def test_a_channel_that_cannot_take_the_new_commands_at_first_gets_them_on_a_retry(
    make_config: Any,
) -> None:
    channel = _MenuDown(refusals=1)  # a blip just as the warm-up ends
    async with Gateway(
        make_config(), provider=FunctionProvider(lambda request: "hi"), channels={"test": channel}
    ):
        async with asyncio.timeout(WAIT_S):
            while "forget" not in {c.name for c in channel.commands}:
                await asyncio.sleep(0.01)
    assert len(channel.offered) == 2


@pytest.mark.usefixtures("quick_publish_retries")
async def test_a_channel_refusing_the_new_commands_does_not_keep_them_from_the_others(
    make_config: Any,
) -> None:
    down, up = _MenuDown("down"), RecordingChannel("up", console=True)
    async with Gateway(
        make_config(),
        provider=FunctionProvider(lambda request: "still here"),
        channels={"down": down, "up": up},
    ) as gw:
        await gw.warmup.wait()
        async with asyncio.timeout(WAIT_S):
            while "forget" not in {c.name for c in up.commands}:
                await asyncio.sleep(0.01)
    assert down.offered, "the refusing channel was asked as well"


async def _cancelled_inside(gw: Gateway, stack: contextlib.AsyncExitStack) -> None:
    # a library's own cancellation escaping the step; the warm-up itself was not stopped
    raise asyncio.CancelledError


async def _hangs(gw: Gateway, stack: contextlib.AsyncExitStack) -> None:
    await asyncio.Event().wait()


@pytest.mark.parametrize(
    ("step", "reason"),
    [(_cancelled_inside, "failed: CancelledError"), (_hangs, "still running after 0.5 s")],
    ids=["raises CancelledError", "hangs"],
)
async def test_a_step_that_raises_cancelled_or_hangs_fails_and_the_message_is_said_and_kept(
    make_config: Any, monkeypatch: pytest.MonkeyPatch, step: Any, reason: str
) -> None:
    monkeypatch.setattr(features, "start_skills", step)
    monkeypatch.setattr(warmup, "STEP_TIMEOUT_S", 0.5)
    channel = RecordingChannel(console=True)
    async with Gateway(
        make_config(),
        provider=FunctionProvider(lambda request: "never"),
        channels={"test": channel},
    ) as gw:
        message = await channel.push("hello", user="owner")
        [said] = await channel.wait_for_messages(1, timeout=WAIT_S)
        health = await gw.health()
        pending = [d.message.id for d in await gw.store.deliveries.unfinished()]
    assert "part of my start-up (skills) failed" in said
    assert health["status"] == "degraded"
    assert reason in health["warm_up"]["skills"]
    assert message.id in pending


async def test_a_message_kept_by_a_failed_warm_up_is_answered_once_at_the_next_start(
    make_config: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    start_skills = features.start_skills

    async def broken_skills(gw: Gateway, stack: contextlib.AsyncExitStack) -> None:
        raise OSError("skills folder unreadable")

    monkeypatch.setattr(features, "start_skills", broken_skills)
    asked: list[str] = []

    async def model(request: ChatRequest) -> Any:
        asked.append(request.messages[-1].content)
        return "answered"

    first = RecordingChannel(console=True)
    async with Gateway(make_config(), provider=FunctionProvider(model), channels={"test": first}):
        await first.push("hello", user="owner")
        await first.wait_for_messages(1, timeout=WAIT_S)
    monkeypatch.setattr(features, "start_skills", start_skills)
    second = RecordingChannel(console=True)
    async with Gateway(make_config(), provider=FunctionProvider(model), channels={"test": second}):
        assert await second.wait_for_messages(1, timeout=WAIT_S) == ["answered"]
    assert asked == ["hello"]
    assert await _pending(make_config()) == []


async def test_a_stop_while_a_step_runs_ends_and_keeps_the_waiting_message(
    make_config: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(features, "start_skills", _hangs)
    channel = RecordingChannel(console=True)
    gw = Gateway(
        make_config(gateway={"shutdown_grace_s": 0.2}),
        provider=FunctionProvider(lambda request: "never"),
        channels={"test": channel},
    )
    await gw.start()
    message = await channel.push("hello", user="owner")
    async with asyncio.timeout(WAIT_S):  # the steps before it may still run on a busy machine
        while (await gw.health())["warm_up"]["skills"] != "running":
            await asyncio.sleep(0.02)
    async with asyncio.timeout(WAIT_S):  # a stop does not wait for the step
        await gw.stop()
    assert channel.messages == {}
    assert await _pending(make_config()) == [message.id]


async def _pending(config: Any) -> list[str]:
    """The ids of the deliveries a next start would resume."""
    store = open_store(config.store, config.home)
    await store.start()
    try:
        return [d.message.id for d in await store.deliveries.unfinished()]
    finally:
        await store.stop()


async def test_a_reminder_due_at_the_start_is_delivered_while_a_later_step_still_runs(
    make_config: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The scheduler is the warm-up's first step: what came due while the gateway was down
    is delivered once the channels are up, without waiting for memory's start."""
    config = make_config(scheduler={"late_note_after_seconds": 0})
    first = RecordingChannel(console=True)
    async with Gateway(config, provider=FunctionProvider(lambda r: "ok"), channels={"test": first}):
        await first.push("/remind in 1s water the plants")
        await first.wait_for_messages(1, timeout=WAIT_S)
    await asyncio.sleep(1.5)  # due while nothing runs
    release = asyncio.Event()
    start_memory = features.start_memory

    async def slow_memory(gw: Gateway, stack: contextlib.AsyncExitStack) -> None:
        await release.wait()
        await start_memory(gw, stack)

    monkeypatch.setattr(features, "start_memory", slow_memory)
    second = RecordingChannel(console=True)
    async with Gateway(
        config, provider=FunctionProvider(lambda r: "ok"), channels={"test": second}
    ) as gw:
        [late] = await second.wait_for_messages(1, timeout=WAIT_S)
        state = (await gw.health())["warm_up"]
        release.set()
        await gw.warmup.wait()
    assert "water the plants" in late and "late by" in late
    assert state["scheduler"] == "done" and state["memory"] == "running"


async def test_waiting_for_one_step_needs_it_and_those_before_it_only() -> None:
    """The web UI's reminders pages wait for the scheduler's step alone: they work while a
    later step still runs or has failed, and fail with an earlier step."""
    later_may_end = asyncio.Event()

    async def quick(stack: contextlib.AsyncExitStack) -> None:
        return None

    async def slow_then_fails(stack: contextlib.AsyncExitStack) -> None:
        await later_may_end.wait()
        raise OSError("skills folder unreadable")

    steps = warmup.WarmUp()
    steps.add("scheduler", quick)
    steps.add("skills", slow_then_fails)
    steps.begin()
    try:
        async with asyncio.timeout(WAIT_S):
            await steps.wait_for("scheduler")  # while the later step still runs
        assert steps.state() == {"scheduler": "done", "skills": "running"}
        later_may_end.set()
        with pytest.raises(warmup.StartUpStepFailed, match="unreadable"):
            await steps.wait_for("skills")
        await steps.wait_for("scheduler")  # a later failure does not matter to it
    finally:
        await steps.aclose()

    first_fails = warmup.WarmUp()
    first_fails.add("scheduler", slow_then_fails)
    first_fails.add("skills", quick)
    first_fails.begin()
    try:
        with pytest.raises(warmup.StartUpStepFailed, match="scheduler"):
            await first_fails.wait_for("skills")
    finally:
        await first_fails.aclose()
