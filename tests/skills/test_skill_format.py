"""Skills load from disk in the AgentSkills format; what cannot load is reported, never
raised; requirements hide a skill; the prompt carries names and descriptions only, within
its budget."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from bot.skills.catalog import PROMPT_HEADER, SkillLoader, prompt_block
from bot.skills.skill import Origin, Skill, Surroundings
from tests.skills.conftest import simple_skill, write_skill

# The layout OpenClaw documents for its skills (ClawHub skill format): runtime requirements
# under metadata.openclaw, written as a JSON flow mapping with trailing commas, an emoji
# and keys Decapod does not know. Loads unchanged.
PEER_OPENCLAW = """---
name: todo-sync
description: Manage tasks through a to-do service's API.
version: 1.0.0
homepage: https://example.org/todo-sync
metadata:
  {
    "openclaw":
      {
        "emoji": "✅",
        "requires": { "env": ["TODO_API_KEY"], "bins": ["curl"], },
        "primaryEnv": "TODO_API_KEY",
      },
  }
---

# To-do sync

1. Read the key from `TODO_API_KEY`.
2. Call the API with curl.
"""

# nanobot's and the AgentSkills spec's optional keys: license, compatibility, allowed-tools,
# metadata as a string map.
PEER_AGENTSKILLS = """---
name: pdf-notes
description: >-
  Extract the headings of a PDF and write notes about them.
  Use when the person sends a PDF.
license: Apache-2.0
compatibility: Needs a sandbox with python3
allowed-tools: Bash(python3:*) Read
metadata:
  author: example-org
  version: "1.0"
  nanobot: {"requires": {"bins": ["python3"]}}
---

## Steps
Run `scripts/headings.py FILE` and summarise what it prints.
"""


def around(**kw: Any) -> Surroundings:
    defaults: dict[str, Any] = {
        "tools": {"use_skill", "schedule_job"},
        "config": {"memory": {"enabled": True}},
        "environ": {},
        "which": lambda program: f"/usr/bin/{program}" if program != "nope" else None,
        "platform": "linux",
    }
    defaults.update(kw)
    return Surroundings(**defaults)


def load(root: Path, budget: int = 10_000, **kw: Any) -> Any:
    return SkillLoader([(root, Origin.OWNER)], 64 * 1024).load(around(**kw), budget)


def test_peer_formats_load_unchanged_and_keep_unknown_keys(skills_root: Path) -> None:
    write_skill(skills_root, "todo-sync", PEER_OPENCLAW)
    write_skill(skills_root, "pdf-notes", PEER_AGENTSKILLS)
    current = load(skills_root, environ={"TODO_API_KEY": "k"})
    assert sorted(current.available) == ["pdf-notes", "todo-sync"]
    assert not current.broken
    todo = current.available["todo-sync"]
    assert todo.requires.env == ("TODO_API_KEY",) and todo.requires.bins == ("curl",)
    assert todo.meta["version"] == "1.0.0"
    assert todo.meta["metadata"]["openclaw"]["emoji"] == "✅"
    assert todo.body.startswith("# To-do sync")
    pdf = current.available["pdf-notes"]
    assert pdf.requires.bins == ("python3",)
    assert pdf.meta["allowed-tools"] == "Bash(python3:*) Read"


def test_unmet_requirements_hide_a_skill_and_say_why(skills_root: Path) -> None:
    write_skill(skills_root, "todo-sync", PEER_OPENCLAW)  # TODO_API_KEY unset
    write_skill(
        skills_root,
        "needs-bin",
        "---\nname: needs-bin\ndescription: d\nrequires: {bins: [nope]}\n---\nx\n",
    )
    write_skill(
        skills_root,
        "needs-tool",
        "---\nname: needs-tool\ndescription: d\nrequires: {tools: [web_fetch]}\n---\nx\n",
    )
    write_skill(
        skills_root,
        "needs-config",
        "---\nname: needs-config\ndescription: d\nrequires: {config: [memory.enabled]}\n---\nx\n",
    )
    write_skill(
        skills_root,
        "mac-only",
        '---\nname: mac-only\ndescription: d\nmetadata: {"openclaw": {"os": ["darwin"]}}\n---\nx\n',
    )
    current = load(skills_root)
    assert list(current.available) == ["needs-config"]
    reasons = {u.skill.name: u.reason for u in current.unavailable}
    assert reasons == {
        "mac-only": "made for darwin, not linux",
        "needs-bin": "missing program nope",
        "needs-tool": "tool not available: web_fetch",
        "todo-sync": "environment variable not set: TODO_API_KEY",
    }
    assert "todo-sync" not in current.prompt_block and "needs-config" in current.prompt_block


def test_broken_skills_are_skipped_with_one_reason_each(skills_root: Path, caplog: Any) -> None:
    write_skill(skills_root, "good", simple_skill("good", "works"))
    write_skill(skills_root, "bad-yaml", "---\nname: [unclosed\ndescription: x\n---\nbody\n")
    write_skill(skills_root, "no-name", "---\ndescription: x\n---\nbody\n")
    write_skill(skills_root, "no-front", "# just markdown\n")
    write_skill(skills_root, "huge", simple_skill("huge", "big", "x" * 70_000))
    write_skill(skills_root, "other", simple_skill("good", "same name, other folder"))
    (skills_root / "empty-folder").mkdir()
    (skills_root / ".hidden").mkdir()
    with caplog.at_level("WARNING", logger="decapod.skills"):
        current = load(skills_root)
    assert list(current.available) == ["good"]
    assert current.available["good"].description == "works", "the folder named like it wins"
    reasons = {b.folder.name: b.reason for b in current.broken}
    assert set(reasons) == {"bad-yaml", "no-name", "no-front", "huge", "other", "empty-folder"}
    assert "not valid YAML at line 3" in reasons["bad-yaml"]
    assert reasons["no-name"] == "the front matter has no name"
    assert "no YAML front matter" in reasons["no-front"]
    assert "the limit is 65,536" in reasons["huge"]
    assert reasons["other"].startswith("name clash: 'good'")
    assert reasons["empty-folder"] == "no SKILL.md in the folder"
    assert len([r for r in caplog.records if "skipped" in r.getMessage()]) == 6


def test_a_reload_parses_only_what_changed_and_logs_a_broken_file_once(
    skills_root: Path, caplog: Any
) -> None:
    one = write_skill(skills_root, "one", simple_skill("one", "first"))
    write_skill(skills_root, "bad", "---\nname: bad\n---\nno description\n")
    loader = SkillLoader([(skills_root, Origin.OWNER)], 64 * 1024)
    with caplog.at_level("WARNING", logger="decapod.skills"):
        first = loader.load(around(), 1000)
        second = loader.load(around(), 1000)
    assert second.available["one"] is first.available["one"], "unchanged: not parsed again"
    assert len([r for r in caplog.records if "skipped" in r.getMessage()]) == 1
    (one / "SKILL.md").write_text(simple_skill("one", "changed"))
    os.utime(one / "SKILL.md", ns=(1, 1))  # a new mtime, whatever the clock's resolution
    third = loader.load(around(), 1000)
    assert third.available["one"].description == "changed"
    assert third.generation > second.generation > first.generation


def test_the_owner_replaces_a_bundled_skill_of_the_same_name(tmp_path: Path) -> None:
    bundled, owner = tmp_path / "bundled", tmp_path / "owner"
    write_skill(bundled, "brief", simple_skill("brief", "shipped"))
    write_skill(owner, "brief", simple_skill("brief", "mine"))
    loader = SkillLoader([(bundled, Origin.BUNDLED), (owner, Origin.OWNER)], 64 * 1024)
    current = loader.load(around(), 1000)
    assert current.available["brief"].description == "mine"
    assert current.available["brief"].origin is Origin.OWNER
    assert not current.broken


def _skills(n: int) -> list[Skill]:
    return [
        Skill(
            f"skill-{i:02d}",
            f"Does task number {i} with several careful steps, and says when it is used.",
            "BODY-TEXT-THAT-MUST-NOT-LEAK",
            Path("/x"),
            Origin.OWNER,
        )
        for i in range(n)
    ]


def test_the_prompt_lists_names_and_descriptions_only() -> None:
    block = prompt_block(_skills(2), 1000)
    assert block.splitlines() == [
        PROMPT_HEADER,
        "- skill-00: Does task number 0 with several careful steps, and says when it is used.",
        "- skill-01: Does task number 1 with several careful steps, and says when it is used.",
    ]
    assert "BODY" not in block


def test_fifty_skills_stay_within_the_budget() -> None:
    block = prompt_block(_skills(50), 320)
    assert len(block.encode()) <= 320
    assert block.startswith(PROMPT_HEADER)
    assert "- skill-00: Does task" in block, "descriptions while they fit"
    last = block.splitlines()[-1]
    assert last.startswith("- also: ") and last.endswith("more)"), last
    named = block.count("skill-")
    hidden = int(last.rsplit("+", 1)[1].split()[0])
    assert named + hidden == 50, "every skill is listed or counted"
    assert prompt_block(_skills(50), 0) == ""
