"""The gateway watches the skills' folder from a little after its start (the watch is not
needed to be ready); an edit made before the watch begins is loaded when it begins."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

from bot.features import SKILLS_WATCH_AFTER_S
from bot.gateway import Gateway
from bot.providers.testing import FunctionProvider
from bot.skills.runtime import SkillsDeps
from tests.fakes.channel import RecordingChannel
from tests.skills.conftest import simple_skill, write_skill

# generous: the machine is shared; nothing here is a timing claim
WAIT_S = 30.0


async def test_an_edit_before_the_watch_begins_is_loaded_when_it_begins(
    make_config: Any, skills_root: Path
) -> None:
    folder = write_skill(skills_root, "greet", simple_skill("greet", "Old greeting."))

    async def model(request: Any) -> Any:
        return "hi"

    async with Gateway(
        make_config(),
        provider=FunctionProvider(model),
        channels={"test": RecordingChannel(console=True)},
    ) as gateway:
        await gateway.warmup.wait()  # the skills start after ready
        skills = gateway.deps.skills
        assert isinstance(skills, SkillsDeps)
        runtime = skills.runtime
        assert SKILLS_WATCH_AFTER_S > 0 and not runtime.watching.is_set()
        generation = runtime.current.generation
        (folder / "SKILL.md").write_text(simple_skill("greet", "New greeting."))
        current = await asyncio.wait_for(runtime.wait_for_generation(generation + 1), WAIT_S)
        assert runtime.watching.is_set()
    assert "New greeting." in current.available["greet"].description
