"""Hooks: a program or an entry point told about events; before_tool may block; a failing
hook never fails a turn, and its breaker switches it off after repeated failures (a failing
before_tool guard: see test_hooks_fail_closed.py)."""

from __future__ import annotations

import asyncio
import json
import os
import textwrap
from importlib.metadata import EntryPoint
from pathlib import Path
from typing import Any

import pytest

from bot.gateway import Gateway
from bot.hooks.bus import HookBus, HookFailed
from bot.hooks.config import HookEventName, HooksConfig
from bot.hooks.runners import CommandHook, build_hooks
from bot.providers.base import ChatRequest, ToolCall
from bot.providers.testing import FunctionProvider, ManualClock
from tests.deps import REDACT
from tests.fakes.channel import RecordingChannel
from tests.skills import hook_plugin

WAIT_S = 30.0


def script(tmp_path: Path, name: str, body: str) -> str:
    path = tmp_path / name
    path.write_text("#!/bin/sh\n" + textwrap.dedent(body))
    path.chmod(0o755)
    return str(path)


def _tool_results(request: ChatRequest) -> list[str]:
    return [m.content for m in request.messages if m.role == "tool"]


def _calls_time(request: ChatRequest) -> Any:
    if request.messages[-1].role == "user":
        return [ToolCall("c1", "current_time", "{}")]
    return "done"


async def test_a_command_hook_sees_every_event_with_a_clean_environment(
    make_config: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("SOME_PROVIDER_KEY", "sk-should-never-reach-a-hook")
    log = tmp_path / "events.jsonl"
    hook = script(
        tmp_path,
        "log.sh",
        f"""\
        cat >> {log}
        env | grep -c SOME_PROVIDER_KEY >> {tmp_path / "leaks"} || true
        """,
    )
    config = make_config(
        hooks={"commands": [{"name": "log", "command": [hook], "events": list(HookEventName)}]}
    )
    channel = RecordingChannel(console=True)
    async with Gateway(config, provider=FunctionProvider(_calls_time), channels={"test": channel}):
        await channel.push("what time is it?", user="owner")
        await channel.wait_for_messages(1, timeout=WAIT_S)
        await channel.push("/new", user="owner")
        await channel.wait_for_messages(2, timeout=WAIT_S)
    events = [json.loads(line) for line in log.read_text().splitlines()]
    names = [e["event"] for e in events]
    assert names == [
        "message_received",
        "before_model",
        "before_tool",
        "after_tool",
        "before_model",
        "reply_sent",
        "message_received",
        "session_reset",
    ]
    assert events[0]["text"] == "what time is it?" and events[0]["identity"] == "test:owner"
    assert events[2]["tool"] == "current_time" and events[3]["ok"] is True
    assert events[5]["text"] == "done" and events[5]["session"] == events[0]["session"]
    assert set((tmp_path / "leaks").read_text().split()) == {"0"}, "no gateway variable leaks"


async def test_before_tool_blocks_by_exit_code_or_json_and_the_turn_goes_on(
    make_config: Any, tmp_path: Path
) -> None:
    refuse = script(tmp_path, "refuse.sh", "echo 'clock access is off' >&2; exit 3\n")
    seen: list[ChatRequest] = []

    async def model(request: ChatRequest) -> Any:
        seen.append(request)
        return _calls_time(request)

    config = make_config(
        hooks={"commands": [{"name": "guard", "command": [refuse], "events": ["before_tool"]}]}
    )
    channel = RecordingChannel(console=True)
    async with Gateway(config, provider=FunctionProvider(model), channels={"test": channel}):
        await channel.push("time?", user="owner")
        [reply] = await channel.wait_for_messages(1, timeout=WAIT_S)
    assert reply == "done"
    assert _tool_results(seen[1]) == ["error: not run: clock access is off (hook guard)"]


async def test_a_hook_answering_json_blocks_and_an_entry_point_hook_is_loaded(
    make_config: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    points = [
        EntryPoint("recorder", "tests.skills.hook_plugin:record", "decapod.hooks"),
        EntryPoint("exploder", "tests.skills.hook_plugin:explode", "decapod.hooks"),
        EntryPoint("missing", "tests.skills.no_such_module:hook", "decapod.hooks"),
    ]
    monkeypatch.setattr("bot.hooks.runners._entry_points", lambda: points)
    hook_plugin.SEEN.clear()
    seen: list[ChatRequest] = []

    async def model(request: ChatRequest) -> Any:
        seen.append(request)
        if request.messages[-1].role == "user":
            return [ToolCall("c1", "set_timezone", json.dumps({"zone": "Asia/Tokyo"}))]
        return "done"

    channel = RecordingChannel(console=True)
    config = make_config(hooks={"entry_points": True})
    async with Gateway(config, provider=FunctionProvider(model), channels={"test": channel}) as gw:
        await channel.push("I live in Tokyo", user="owner")
        [reply] = await channel.wait_for_messages(1, timeout=WAIT_S)
        bus = gw.deps.hooks
    assert bus is not None
    states = {s.name: s for s in bus.state()}  # the stop delivered what was queued
    assert reply == "done", "a hook that raises never fails the turn"
    assert _tool_results(seen[1]) == ["error: not run: time zones are fixed here (hook recorder)"]
    assert [e.name.value for e in hook_plugin.SEEN][:3] == [
        "message_received",
        "before_model",
        "before_tool",
    ]
    assert set(states) == {"recorder", "exploder"}, "a hook that cannot load is left out"
    assert states["exploder"].consecutive_failures == 2
    assert states["exploder"].last_error == "raised RuntimeError: this hook is broken"


async def test_timeouts_trip_the_breaker_the_owner_is_told_once_and_it_comes_back(
    tmp_path: Path,
) -> None:
    calls = tmp_path / "calls"
    slow = script(tmp_path, "slow.sh", f"echo x >> {calls}\nexec sleep 30\n")
    config = HooksConfig.model_validate(
        {
            "commands": [{"name": "slow", "command": [slow], "events": ["before_tool"]}],
            "timeout_s": 0.3,
            "failure_threshold": 3,
            "cooldown_s": 60,
        }
    )
    hooks, _ = build_hooks(config)
    notices: list[str] = []

    async def notify(text: str) -> None:
        notices.append(text)

    clock = ManualClock()
    bus = HookBus(hooks, config, redact=REDACT, notify=notify, clock=clock)
    await bus.start()
    ctx = _tool_context()
    try:
        reasons = [await bus.before_tool(ctx, "exec", {"command": "ls"}) for _ in range(5)]
        assert reasons == 3 * [
            "hook slow failed (timed out after 0.3s), so the call it guards is not run"
        ] + 2 * [
            "hook slow failed (it is switched off after repeated failures), "
            "so the call it guards is not run"
        ], "a failing guard blocks, and so does a switched-off one"
        await asyncio.sleep(0)
        assert len(calls.read_text().split()) == 3, "off after three timeouts"
        [notice] = notices
        assert "Hook slow failed 3 times in a row (last: timed out after 0.3s)" in notice
        assert "The tool calls it guards are blocked meanwhile." in notice
        [state] = bus.state()
        assert state.state == "open"
        clock.advance(61)
        await bus.before_tool(ctx, "exec", {"command": "ls"})
        assert len(calls.read_text().split()) == 4, "one trial call after the cooldown"
        assert len(notices) == 1, "told once"
    finally:
        await bus.stop()


async def test_a_killed_hook_takes_its_children_with_it(tmp_path: Path) -> None:
    pid_file = tmp_path / "child.pid"
    hook = script(tmp_path, "spawn.sh", f"sleep 60 &\necho $! > {pid_file}\nwait\n")
    config = HooksConfig.model_validate({"timeout_s": 0.5})
    from bot.hooks.config import CommandHookConfig

    runner = CommandHook(
        CommandHookConfig(name="spawn", command=[hook], events=["after_tool"]), 0.5
    )
    bus = HookBus([runner], config, redact=REDACT)
    from bot.hooks.events import HookEvent

    outcome = await bus._call(bus._slots[0], HookEvent(HookEventName.AFTER_TOOL))
    assert outcome == HookFailed("timed out after 0.5s")
    pid = int(pid_file.read_text())
    for _ in range(100):
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            break
        await asyncio.sleep(0.05)
    else:
        pytest.fail("the hook's child outlived the timeout")


def test_hook_config_is_checked() -> None:
    from bot.config import parse_config
    from bot.errors import ConfigError

    with pytest.raises(ConfigError, match=r"hooks\.commands\.0\.events\.0"):
        parse_config({"hooks": {"commands": [{"name": "a", "command": ["x"], "events": ["x"]}]}})
    with pytest.raises(ConfigError, match="repeated: a"):
        parse_config(
            {
                "hooks": {
                    "commands": [
                        {"name": "a", "command": ["x"], "events": ["reply_sent"]},
                        {"name": "a", "command": ["y"], "events": ["reply_sent"]},
                    ]
                }
            }
        )


def _tool_context() -> Any:
    from bot.messages import Conversation, ConversationKind, Identity
    from bot.tools import ToolContext
    from tests.deps import make_deps

    return ToolContext(
        identity=Identity("test", "owner", "Owner"),
        conversation=Conversation("test", "owner", ConversationKind.DM),
        session_key="test:owner",
        deps=make_deps(),
    )


async def test_a_delivered_job_is_a_job_fired_event(tmp_path: Path) -> None:
    from bot.hooks.runners import PythonHook
    from bot.scheduler.config import SchedulerConfig
    from bot.scheduler.service import Scheduler
    from bot.store import Store
    from tests.scheduler.conftest import FakeClock, RecordingDeliverer, once_in, remind

    got: list[Any] = []

    async def hook(event: Any) -> None:
        got.append(event)

    config = HooksConfig()
    bus = HookBus([PythonHook("jobs", "test", hook, 5.0)], config, redact=REDACT)
    await bus.start()
    clock = FakeClock()
    async with Store(tmp_path / "decapod.db") as store:
        scheduler = Scheduler(
            store,
            RecordingDeliverer(),
            config=SchedulerConfig(default_timezone="Europe/Berlin"),
            clock=clock,
            on_fired=lambda job, late: bus.job_fired(job, late_by_s=late),
        )
        job_id = await remind(scheduler, once_in(clock, 60), "Stretch")
        clock.advance(90)
        assert await scheduler.deliver_due() == 1
    await bus.stop()
    [event] = got
    assert event.name is HookEventName.JOB_FIRED and event.identity == "test:alice"
    assert dict(event.data) == {
        "job": job_id,
        "kind": "reminder",
        "text": "Stretch",
        "late_by_s": 30.0,
    }


async def test_a_python_hook_raising_cancelled_error_fails_and_tool_calls_go_on() -> None:
    """A hook whose library ends a wait with CancelledError (nobody cancelled anything) is a
    failing hook: the call it was asked about is not run, its worker lives on, and the next
    tool call is not left waiting for an answer that no one would give."""
    from bot.hooks.runners import PythonHook

    seen: list[str] = []

    async def flaky(event: Any) -> None:
        seen.append(event.name.value)
        if len(seen) == 1:
            raise asyncio.CancelledError  # as a library's own timeout does

    config = HooksConfig.model_validate({"timeout_s": 5})
    bus = HookBus([PythonHook("flaky", "test", flaky, 5.0)], config, redact=REDACT)
    await bus.start()
    ctx = _tool_context()
    try:
        async with asyncio.timeout(WAIT_S):
            first = await bus.before_tool(ctx, "exec", {"command": "ls"})
            assert first == (
                "hook flaky failed (raised CancelledError without a cancellation), "
                "so the call it guards is not run"
            )
            assert await bus.before_tool(ctx, "exec", {"command": "ls"}) is None
        assert seen == ["before_tool", "before_tool"]
        [state] = bus.state()
        assert state.last_error is not None and "CancelledError" in state.last_error
    finally:
        await bus.stop()


async def test_a_guard_is_asked_about_a_path_that_is_not_utf8(tmp_path: Path) -> None:
    """A file name with byte 0xFF (a lone surrogate in Python) has no UTF-8 form: the event
    carries its escape, and the guard answers as for any other path."""
    seen = tmp_path / "seen.json"
    guard = script(tmp_path, "guard.sh", f"head -n 1 > {seen}\nexit 0\n")
    config = HooksConfig.model_validate(
        {"commands": [{"name": "guard", "command": [guard], "events": ["before_tool"]}]}
    )
    hooks, _ = build_hooks(config)
    bus = HookBus(hooks, config, redact=REDACT)
    await bus.start()
    try:
        blocked = await bus.before_tool(_tool_context(), "read_file", {"path": "bad\udcffname"})
    finally:
        await bus.stop()
    assert blocked is None, "the guard allowed it"
    assert json.loads(seen.read_text())["arguments"] == {"path": "bad\udcffname"}
