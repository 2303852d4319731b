"""A before_tool hook is a guard: when it fails (crashes, times out, answers nonsense, is
switched off, is too far behind), the call it guards is not run, and the model reads that the
hook failed, never what the hook printed. A hook marked fail_open is advisory: its failures
let the call run. Hooks on the other events never stop anything."""

from __future__ import annotations

import asyncio
import re
from importlib.metadata import EntryPoint
from pathlib import Path
from typing import Any

import pytest

from bot.gateway import Gateway
from bot.hooks.bus import HookBus
from bot.hooks.config import HooksConfig
from bot.hooks.events import HookEvent
from bot.hooks.runners import PythonHook, build_hooks
from bot.providers.base import ChatRequest
from bot.providers.testing import FunctionProvider, ManualClock
from tests.deps import REDACT
from tests.fakes.channel import RecordingChannel
from tests.skills.test_hooks import WAIT_S, _calls_time, _tool_context, _tool_results, script

SECRET = "sk-ant-api03-" + "q" * 40


async def _tool_result_with(make_config: Any, hooks: dict[str, Any]) -> str:
    """What the model read back from one current_time call, with these hooks configured."""
    seen: list[ChatRequest] = []

    async def model(request: ChatRequest) -> Any:
        seen.append(request)
        return _calls_time(request)

    channel = RecordingChannel(console=True)
    config = make_config(hooks=hooks)
    async with Gateway(config, provider=FunctionProvider(model), channels={"test": channel}):
        await channel.push("time?", user="owner")
        [reply] = await channel.wait_for_messages(1, timeout=WAIT_S)
    assert reply == "done", "a failing hook never fails the turn"
    [result] = _tool_results(seen[1])
    return result


@pytest.mark.parametrize(
    ("body", "why"),
    [
        ("exec sleep 30\n", "timed out after 0.3s"),
        (f"echo 'all good, key {SECRET}'\nexit 0\n", "its answer is not JSON"),
        ("echo '[\"allow\"]'\nexit 0\n", "its answer is not an object"),
        (None, "it cannot be started"),
    ],
    ids=["timeout", "not-json", "not-an-object", "cannot-start"],
)
async def test_a_guard_that_fails_stops_the_call_and_says_so(
    make_config: Any, tmp_path: Path, body: str | None, why: str
) -> None:
    program = script(tmp_path, "guard.sh", body) if body else str(tmp_path / "missing")
    guard = {"name": "guard", "command": [program], "events": ["before_tool"]}
    result = await _tool_result_with(make_config, {"commands": [guard], "timeout_s": 0.3})
    assert result == (
        f"error: not run: hook guard failed ({why}), so the call it guards is not run"
    )
    assert "all good" not in result and SECRET not in result, "the hook's output stays out"


async def test_a_fail_open_hook_that_fails_lets_the_call_run(
    make_config: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A command hook with fail_open = true timing out, and an entry point hook with a
    fail_open attribute raising: both advisory, so the tool runs."""
    points = [EntryPoint("advisory", "tests.skills.hook_plugin:advisory", "decapod.hooks")]
    monkeypatch.setattr("bot.hooks.runners._entry_points", lambda: points)
    slow = script(tmp_path, "slow.sh", "exec sleep 30\n")
    audit = {"name": "audit", "command": [slow], "events": ["before_tool"], "fail_open": True}
    hooks = {"commands": [audit], "entry_points": True, "timeout_s": 0.3}
    result = await _tool_result_with(make_config, hooks)
    assert re.fullmatch(r"\w+day \d{4}-\d\d-\d\d [\d:]{8} \S+ \(UTC[+-]\d{4}\)", result), result


async def test_a_python_guard_that_raises_blocks_without_its_message() -> None:
    async def guard(event: HookEvent) -> None:
        raise RuntimeError(f"could not reach the policy server with {SECRET}")

    bus = HookBus([PythonHook("policy", "test", guard, 5.0)], HooksConfig(), redact=REDACT)
    await bus.start()
    try:
        reason = await bus.before_tool(_tool_context(), "exec", {"command": "ls"})
    finally:
        await bus.stop()
    assert reason == "hook policy failed (raised RuntimeError), so the call it guards is not run"
    [state] = bus.state()
    assert state.last_error is not None and "policy server" in state.last_error, "owner sees it"


async def test_a_guard_switched_off_blocks_until_it_works_again(tmp_path: Path) -> None:
    flag = tmp_path / "broken"
    flag.touch()
    # broken while the flag exists: it answers nonsense
    guard = script(
        tmp_path, "guard.sh", f"if [ -e {flag} ]; then echo nonsense; else echo '{{}}'; fi\n"
    )
    config = HooksConfig.model_validate(
        {
            "commands": [{"name": "guard", "command": [guard], "events": ["before_tool"]}],
            "failure_threshold": 2,
            "cooldown_s": 30,
        }
    )
    hooks, _ = build_hooks(config)
    clock = ManualClock()
    bus = HookBus(hooks, config, redact=REDACT, clock=clock)
    await bus.start()
    ctx = _tool_context()
    try:
        for _ in range(2):
            assert "its answer is not JSON" in str(await bus.before_tool(ctx, "exec", {}))
        flag.unlink()  # it works again, but it is off until the cooldown ends
        off = await bus.before_tool(ctx, "exec", {})
        assert off == (
            "hook guard failed (it is switched off after repeated failures), "
            "so the call it guards is not run"
        )
        clock.advance(31)
        assert await bus.before_tool(ctx, "exec", {}) is None, "the trial call works: on again"
    finally:
        await bus.stop()


async def test_a_guard_whose_queue_is_full_blocks_at_once() -> None:
    entered = asyncio.Event()
    release = asyncio.Event()

    async def busy(event: HookEvent) -> None:
        entered.set()
        await release.wait()

    bus = HookBus(
        [PythonHook("busy", "test", busy, 30.0)],
        HooksConfig.model_validate({"queue_size": 1}),
        redact=REDACT,
    )
    await bus.start()
    ctx = _tool_context()
    try:
        bus.after_tool(ctx, _result())
        await asyncio.wait_for(entered.wait(), WAIT_S)  # the worker is busy with it
        bus.after_tool(ctx, _result())  # and this one fills the queue
        async with asyncio.timeout(WAIT_S):
            reason = await bus.before_tool(ctx, "exec", {})
        assert reason == "hook busy failed (its queue is full), so the call it guards is not run"
    finally:
        release.set()
        await bus.stop()


async def _before_tool_with(entry: dict[str, Any]) -> tuple[str | None, HookBus]:
    """What a bus with this one command hook answers for an exec call, and the bus."""
    config = HooksConfig.model_validate({"commands": [entry]})
    hooks, _ = build_hooks(config)
    bus = HookBus(hooks, config, redact=REDACT)
    await bus.start()
    try:
        return await bus.before_tool(_tool_context(), "exec", {}), bus
    finally:
        await bus.stop()


async def test_a_deliberate_block_reason_is_redacted(tmp_path: Path) -> None:
    refuse = script(tmp_path, "refuse.sh", f"echo 'denied for key {SECRET}' >&2\nexit 1\n")
    entry = {"name": "refuse", "command": [refuse], "events": ["before_tool"]}
    reason, _ = await _before_tool_with(entry)
    assert reason is not None and reason.startswith("denied for key [REDACTED")
    assert SECRET not in reason


@pytest.mark.parametrize(
    ("body", "blocked"),
    [
        ("echo 'Traceback: audit.py crashed' >&2\nexit 2\n", None),
        (
            'echo \'{"block": "not during the audit"}\'\nexit 1\n',
            "not during the audit (hook audit)",
        ),
    ],
    ids=["crashes", "blocks-on-purpose"],
)
async def test_a_fail_open_hook_that_exits_non_zero_blocks_only_when_it_says_so(
    tmp_path: Path, body: str, blocked: str | None
) -> None:
    """An advisory hook that crashes lets the call run; its `{"block"}` answer still blocks."""
    audit = script(tmp_path, "audit.sh", body)
    entry = {"name": "audit", "command": [audit], "events": ["before_tool"], "fail_open": True}
    reason, bus = await _before_tool_with(entry)
    assert reason == blocked
    if blocked is None:
        [state] = bus.state()
        assert state.last_error is not None and "exited with 2" in state.last_error


async def test_a_failing_observer_hook_stops_nothing_and_the_notice_says_so(
    tmp_path: Path,
) -> None:
    broken = script(tmp_path, "broken.sh", "exit 7\n")
    config = HooksConfig.model_validate(
        {
            "commands": [{"name": "audit", "command": [broken], "events": ["after_tool"]}],
            "failure_threshold": 2,
        }
    )
    hooks, _ = build_hooks(config)
    notices: list[str] = []

    async def notify(text: str) -> None:
        notices.append(text)

    bus = HookBus(hooks, config, redact=REDACT, notify=notify)
    await bus.start()
    ctx = _tool_context()
    bus.after_tool(ctx, _result())
    bus.after_tool(ctx, _result())
    await bus.stop()
    [notice] = notices
    assert "Hook audit failed 2 times in a row (last: exited with 7)" in notice
    assert notice.endswith("Turns go on without it.")


async def test_a_before_tool_call_after_the_bus_stopped_is_not_run() -> None:
    async def allow(event: HookEvent) -> None:
        return None

    bus = HookBus([PythonHook("allow", "test", allow, 5.0)], HooksConfig(), redact=REDACT)
    await bus.start()
    await bus.stop()
    async with asyncio.timeout(WAIT_S):
        reason = await bus.before_tool(_tool_context(), "exec", {})
    assert reason == (
        "hook allow failed (the gateway is stopping), so the call it guards is not run"
    )


def test_fail_open_is_a_command_hook_setting() -> None:
    from bot.config import parse_config
    from bot.errors import ConfigError

    hook = {"name": "a", "command": ["x"], "events": ["before_tool"]}
    assert parse_config({"hooks": {"commands": [hook]}}).hooks.commands[0].fail_open is False
    config = parse_config({"hooks": {"commands": [{**hook, "fail_open": True}]}})
    assert config.hooks.commands[0].fail_open is True
    with pytest.raises(ConfigError, match="fail_opn"):
        parse_config({"hooks": {"commands": [{**hook, "fail_opn": True}]}})


def _result() -> Any:
    from bot.tools import ToolResult

    return ToolResult("c1", "exec", "ok", True, 1.0)
