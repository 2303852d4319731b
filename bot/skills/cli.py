"""`decapod skills list | show NAME | enable NAME | remove NAME | install PATH`.

The gateway watches the skills folder, so what these change reaches a running gateway by
itself (an enabled draft is offered from the next message).
"""

from __future__ import annotations

import argparse
import os
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # the parser is built at every start: the modules load when used
    from bot.skills.catalog import SkillSet
    from bot.skills.library import Draft, SkillLibrary


def add_subparsers(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    skills = sub.add_parser("skills", help="list, enable, install and remove skills")
    actions = skills.add_subparsers(dest="skills_command", metavar="ACTION", required=True)
    actions.add_parser("list", help="every skill and draft, and why one is not offered")
    for name, text in (
        ("show", "print a skill's or draft's SKILL.md"),
        ("enable", "enable a draft the model wrote"),
        ("remove", "delete an installed skill (or a draft)"),
    ):
        action = actions.add_parser(name, help=text)
        action.add_argument("name")
    install = actions.add_parser("install", help="install a skill folder, .zip or .tar.gz")
    install.add_argument("path", type=Path)
    install.add_argument("--force", action="store_true", help="replace one of the same name")


def run(args: argparse.Namespace, config: Any) -> int:
    from bot.skills.library import SkillError, SkillLibrary

    library = SkillLibrary(config.skills, config.home)
    try:
        return _ACTIONS[args.skills_command](args, library, config)
    except SkillError as exc:
        print(exc)
        return 1


def load_report(config: Any) -> tuple[SkillSet, list[Draft]]:
    """The skills as a gateway would load them, and the drafts (for list and doctor)."""
    from bot.sandbox.base import SANDBOX_PATH
    from bot.skills.library import SkillLibrary
    from bot.skills.skill import Surroundings, host_which

    library = SkillLibrary(config.skills, config.home)
    # the CLI does not know the gateway's tools: a `tools` requirement is not checked here
    around = Surroundings(None, config, dict(os.environ), host_which(SANDBOX_PATH))
    current = library.loader().load(around, library.config.prompt_budget_bytes)
    return current, library.drafts()


def _list(args: argparse.Namespace, library: SkillLibrary, config: Any) -> int:
    from bot.skills.commands import report

    for line in report(*load_report(config)):
        print(line)
    return 0


def _show(args: argparse.Namespace, library: SkillLibrary, config: Any) -> int:
    from bot.skills.commands import show_text

    print(show_text(library, args.name, limit=None))
    return 0


def _enable(args: argparse.Namespace, library: SkillLibrary, config: Any) -> int:
    skill = library.enable(args.name)
    print(f"enabled {skill.name}: {skill.description}")
    return 0


def _remove(args: argparse.Namespace, library: SkillLibrary, config: Any) -> int:
    if not library.remove(args.name):
        print(f"no skill or draft named {args.name}")
        return 1
    print(f"removed {args.name}")
    return 0


def _install(args: argparse.Namespace, library: SkillLibrary, config: Any) -> int:
    from bot.skills.install import install

    skill = install(library, args.path.expanduser(), force=args.force)
    print(f"installed {skill.name} into {skill.folder}: {skill.description}")
    return 0


_ACTIONS = {
    "list": _list,
    "show": _show,
    "enable": _enable,
    "remove": _remove,
    "install": _install,
}
