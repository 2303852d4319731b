"""Skills through a running gateway: the prompt lists them, use_skill returns the body, the
model writes a draft the owner approves, and an edit on disk reaches the next turn while a
turn in flight keeps the version it started with."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

from bot.gateway import Gateway
from bot.providers.base import ChatRequest, ToolCall
from bot.providers.testing import FunctionProvider
from bot.skills.runtime import SkillsDeps
from tests.fakes.channel import RecordingChannel
from tests.skills.conftest import simple_skill, write_skill

# generous: the machine is shared; nothing here is a timing claim
WAIT_S = 30.0


def _runtime(gw: Gateway) -> Any:
    skills = gw.deps.skills
    assert isinstance(skills, SkillsDeps)
    return skills.runtime


def _tool_results(request: ChatRequest) -> list[str]:
    return [m.content for m in request.messages if m.role == "tool"]


def _skill_edits(*edits: dict[str, Any]) -> tuple[list[ChatRequest], Any]:
    """A model that calls skill_edit with each of `edits` in turn, then answers; and the
    requests it was sent."""
    pending = iter(edits)
    seen: list[ChatRequest] = []

    async def model(request: ChatRequest) -> Any:
        seen.append(request)
        args = next(pending, None)
        if args is None:
            return "done"
        return [ToolCall(f"c{len(seen)}", "skill_edit", json.dumps(args))]

    return seen, model


async def test_prompt_lists_skills_and_use_skill_returns_the_body(
    make_config: Any, skills_root: Path
) -> None:
    write_skill(skills_root, "packing", simple_skill("packing", "Pack for a trip.", "STEP-ONE"))
    seen: list[ChatRequest] = []

    async def model(request: ChatRequest) -> Any:
        seen.append(request)
        if request.messages[-1].role == "user":
            return [ToolCall("c1", "use_skill", json.dumps({"name": "packing"}))]
        return "done"

    channel = RecordingChannel(console=True)
    async with Gateway(make_config(), provider=FunctionProvider(model), channels={"test": channel}):
        await channel.push("help me pack", user="owner")
        await channel.wait_for_messages(1, timeout=WAIT_S)
    first, second = seen
    assert "- packing: Pack for a trip." in first.system
    assert "STEP-ONE" not in first.system, "only names and descriptions go into the prompt"
    assert "use_skill" in [t.name for t in first.tools]
    [result] = _tool_results(second)
    assert result.startswith("# skill packing") and "STEP-ONE" in result


async def test_owner_asks_for_a_skill_approves_it_and_the_next_turn_uses_it(
    make_config: Any, home: Path
) -> None:
    seen: list[ChatRequest] = []

    async def model(request: ChatRequest) -> Any:
        seen.append(request)
        last = request.messages[-1]
        if last.role == "user" and "make yourself a skill" in last.content:
            args = {
                "action": "create",
                "name": "tea-timer",
                "description": "Brew tea: steep times per kind of tea.",
                "instructions": "Green tea: 2 minutes. Black tea: 4 minutes.",
            }
            return [ToolCall("c1", "skill_edit", json.dumps(args))]
        if last.role == "user" and "brew" in last.content:
            return [ToolCall("c2", "use_skill", json.dumps({"name": "tea-timer"}))]
        return "ok"

    channel = RecordingChannel(console=True)
    async with Gateway(make_config(), provider=FunctionProvider(model), channels={"test": channel}):
        await channel.push("make yourself a skill for brewing tea", user="owner")
        await channel.wait_for_messages(1, timeout=WAIT_S)
        await channel.push("how long do I brew green tea?", user="owner")
        await channel.wait_for_messages(2, timeout=WAIT_S)
        await channel.push("/approve tea-timer", user="owner")
        texts = await channel.wait_for_messages(3, timeout=WAIT_S)
        await channel.push("how long do I brew green tea?", user="owner")
        await channel.wait_for_messages(4, timeout=WAIT_S)
    created = _tool_results(seen[1])[0]
    assert "as a draft" in created and "/approve tea-timer" in created
    before_approval = seen[2]
    assert "tea-timer" not in before_approval.system, "a draft is not offered"
    assert "no skill named 'tea-timer'" in _tool_results(seen[3])[-1]
    assert texts[2] == "Enabled skill tea-timer; it is offered from the next message."
    after = seen[4]
    assert "- tea-timer: Brew tea: steep times per kind of tea." in after.system
    assert "Green tea: 2 minutes" in _tool_results(seen[5])[-1]
    assert (home / "skills" / "tea-timer" / "SKILL.md").is_file()
    assert not (home / "skill_drafts" / "tea-timer").exists()


async def test_skill_tools_are_the_owners_alone(make_config: Any) -> None:
    seen: list[ChatRequest] = []

    async def model(request: ChatRequest) -> Any:
        seen.append(request)
        return "hi"

    channel = RecordingChannel(console=False)
    config = make_config(
        gateway={"owners": ["test:boss"]},
        channels={"test": {"type": "telegram", "access": {"dm_policy": "open"}}},
    )
    async with Gateway(config, provider=FunctionProvider(model), channels={"test": channel}):
        await channel.push("hello", user="boss")
        await channel.wait_for_messages(1, timeout=WAIT_S)
        await channel.push("hello", user="guest")
        await channel.wait_for_messages(1, chat_id="guest", timeout=WAIT_S)
    owner_tools = {t.name for t in seen[0].tools}
    guest_tools = {t.name for t in seen[1].tools}
    assert {"use_skill", "skill_edit"} <= owner_tools
    assert "use_skill" in guest_tools and "skill_edit" not in guest_tools


async def test_skill_edit_creates_updates_and_deletes_through_one_tool(
    make_config: Any, home: Path, skills_root: Path
) -> None:
    write_skill(skills_root, "notes", simple_skill("notes", "Take notes.", "OLD BODY"))
    seen, model = _skill_edits(
        {"action": "create", "name": "half", "description": "Half a skill."},
        {"action": "update", "name": "notes", "instructions": "NEW BODY"},
        {"action": "delete", "name": "notes"},
        {"action": "rename", "name": "notes"},
    )
    channel = RecordingChannel(console=True)
    async with Gateway(make_config(), provider=FunctionProvider(model), channels={"test": channel}):
        await channel.push("tidy my skills", user="owner")
        await channel.wait_for_messages(1, timeout=WAIT_S)
    refused, updated, deleted, unknown = _tool_results(seen[-1])
    assert "the skill has no instructions" in refused
    assert not (home / "skill_drafts" / "half").exists()
    assert "updated skill notes as a draft" in updated
    assert "deleted the draft of notes" in deleted, "delete takes the pending draft first"
    assert not (home / "skill_drafts" / "notes").exists()
    assert "OLD BODY" in (skills_root / "notes" / "SKILL.md").read_text()
    assert "invalid arguments for skill_edit" in unknown and "action" in unknown


async def test_an_edit_reaches_the_next_turn_while_the_running_turn_keeps_its_version(
    make_config: Any, skills_root: Path
) -> None:
    folder = write_skill(skills_root, "greet", simple_skill("greet", "Old greeting.", "SAY-OLD"))
    seen: list[ChatRequest] = []
    edited = asyncio.Event()
    running: list[Gateway] = []

    async def model(request: ChatRequest) -> Any:
        seen.append(request)
        last = request.messages[-1]
        if last.role == "user" and last.content == "first":
            # the skill changes on disk while this turn runs
            runtime = _runtime(running[0])
            generation = runtime.current.generation
            (folder / "SKILL.md").write_text(simple_skill("greet", "New greeting.", "SAY-NEW"))
            await asyncio.wait_for(runtime.wait_for_generation(generation + 1), WAIT_S)
            edited.set()
            return [ToolCall("c1", "use_skill", json.dumps({"name": "greet"}))]
        if last.role == "user":
            return [ToolCall("c2", "use_skill", json.dumps({"name": "greet"}))]
        return "ok"

    channel = RecordingChannel(console=True)
    async with Gateway(
        make_config(), provider=FunctionProvider(model), channels={"test": channel}
    ) as gateway:
        running.append(gateway)
        await gateway.warmup.wait()  # the skills start after ready
        await asyncio.wait_for(_runtime(gateway).watching.wait(), WAIT_S)
        await channel.push("first", user="owner")
        await channel.wait_for_messages(1, timeout=WAIT_S)
        await channel.push("second", user="owner")
        await channel.wait_for_messages(2, timeout=WAIT_S)
    assert edited.is_set()
    first_turn, first_result, second_turn, second_result = seen
    assert "Old greeting." in first_turn.system
    assert "SAY-OLD" in _tool_results(first_result)[-1], "the running turn keeps its version"
    assert "New greeting." in second_turn.system and "Old greeting." not in second_turn.system
    assert "SAY-NEW" in _tool_results(second_result)[-1]


async def test_a_broken_edit_is_reported_and_the_gateway_goes_on(
    make_config: Any, skills_root: Path
) -> None:
    folder = write_skill(skills_root, "ok-skill", simple_skill("ok-skill", "Fine."))
    # valid YAML syntax that building fails on (a date that does not exist raises ValueError,
    # not a YAML error): that skill is broken, the others load
    dated = "---\nname: dated\ndescription: A typo in a date.\nupdated: 2024-02-30\n---\nx\n"
    write_skill(skills_root, "dated", dated)

    async def model(request: ChatRequest) -> Any:
        return "hi"

    channel = RecordingChannel(console=True)
    async with Gateway(
        make_config(), provider=FunctionProvider(model), channels={"test": channel}
    ) as gw:
        await gw.warmup.wait()  # the skills start after ready
        runtime = _runtime(gw)
        first = runtime.current
        await asyncio.wait_for(runtime.watching.wait(), WAIT_S)
        generation = runtime.current.generation
        (folder / "SKILL.md").write_text("---\nname: ok-skill\ndescription: [oops\n---\nx\n")
        current = await asyncio.wait_for(runtime.wait_for_generation(generation + 1), WAIT_S)
        await channel.push("/skills", user="owner")
        [listing] = await channel.wait_for_messages(1, timeout=WAIT_S)
    assert "ok-skill" in first.available and [b.folder.name for b in first.broken] == ["dated"]
    assert "ok-skill" not in current.available
    assert "broken   ok-skill (owner): the front matter is not valid YAML" in listing
    assert "broken   dated (owner): the front matter is not valid YAML: day is out" in listing


async def test_a_skill_the_model_writes_over_the_size_limit_is_refused_not_reported_made(
    make_config: Any, home: Path, skills_root: Path
) -> None:
    """Written, it would be skipped as broken at the next load; the model must hear why now
    rather than be told it was created and enabled."""
    write_skill(skills_root, "notes", simple_skill("notes", "Take notes.", "OLD BODY"))
    huge = "A step to follow, said at length. " * 3000  # some 100 KB, over the 64 KB limit
    seen, model = _skill_edits(
        {"action": "create", "name": "long", "description": "Long.", "instructions": huge},
        {"action": "update", "name": "notes", "instructions": huge},
    )
    channel = RecordingChannel(console=True)
    config = make_config(skills={"auto_enable": True})
    async with Gateway(config, provider=FunctionProvider(model), channels={"test": channel}) as gw:
        await channel.push("write it all down", user="owner")
        await channel.wait_for_messages(1, timeout=WAIT_S)
        await _runtime(gw).reload()
        current = _runtime(gw).current
    created, updated = _tool_results(seen[-1])
    for result in (created, updated):
        assert result.startswith("error: ") and "the limit is 65,536" in result
    assert not (skills_root / "long").exists()
    assert "OLD BODY" in (skills_root / "notes" / "SKILL.md").read_text()
    assert "notes" in current.available and not current.broken
