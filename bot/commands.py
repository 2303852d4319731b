"""The shared command table. Every adapter maps these to its platform (Telegram's command
menu, Slack subcommands of one slash command, Discord application commands).

Commands run in the session's queue, so `/new` after a message applies after that message.
A handler returns the reply text, or None to let the text go to the model as a normal turn
(e.g. `/ask question`).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass

from bot.deps import Deps
from bot.messages import Choice, ConversationKind, InboundMessage


@dataclass(slots=True)
class CommandContext:
    message: InboundMessage
    args: str
    person_id: str
    role: str  # owner | operator | user
    #: what handlers may use (store, memory, scheduler, ...); commands that steer the
    #: gateway itself close over it when they are registered
    deps: Deps

    @property
    def in_dm(self) -> bool:
        """Only the person reads the answer. In a group or channel everyone there does, so
        a command shows nothing private there (what a DM or another chat left behind)."""
        return self.message.conversation.kind is ConversationKind.DM


@dataclass(frozen=True, slots=True)
class Reply:
    """A command's answer with buttons (a picker, an approval)."""

    text: str
    choices: tuple[Choice, ...] = ()


CommandHandler = Callable[[CommandContext], Awaitable[str | Reply | None]]


@dataclass(frozen=True, slots=True)
class CommandSpec:
    name: str
    description: str  # one line, shown in menus (Telegram caps it at 256 chars)
    handler: CommandHandler
    usage: str = ""
    #: option name for platforms with typed arguments (Discord): None = no argument
    arg_name: str | None = None
    owner_only: bool = False
    #: runs at once instead of waiting behind the session's running turn (/approve answers
    #: the very turn that is waiting for it)
    immediate: bool = False


class CommandTable:
    def __init__(self) -> None:
        self._specs: dict[str, CommandSpec] = {}

    def register(self, spec: CommandSpec) -> None:
        if spec.name in self._specs:
            raise ValueError(f"command /{spec.name} registered twice")
        self._specs[spec.name] = spec

    def add(
        self,
        name: str,
        description: str,
        *,
        usage: str = "",
        arg_name: str | None = None,
        owner_only: bool = False,
        immediate: bool = False,
    ) -> Callable[[CommandHandler], CommandHandler]:
        def deco(fn: CommandHandler) -> CommandHandler:
            spec = CommandSpec(name, description, fn, usage, arg_name, owner_only, immediate)
            self.register(spec)
            return fn

        return deco

    def get(self, name: str) -> CommandSpec | None:
        return self._specs.get(name)

    def __iter__(self) -> Iterator[CommandSpec]:
        return iter(self._specs.values())

    def __len__(self) -> int:
        return len(self._specs)
