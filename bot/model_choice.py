"""/model: a person picks the model that answers them first (the owner: for everyone).

Only models of the configured chains are offered. A choice is stored (model_choices) and
read into memory once, so a turn looks it up without I/O. The chosen model is tried first
and the configured chat chain fails over after it, on the same breaker board.

A change is told to the other processes, which `forget` what they read and read it again at
their next turn: replicas by a notification sent in the write that stores it (`in_write`),
turn processes over their link to the receiver (`on_change`, after the write).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING

from bot.commands import CommandContext, CommandTable, Reply
from bot.messages import Choice
from bot.providers.config import ModelsConfig, split_model_ref
from bot.store.choices import EVERYONE

if TYPE_CHECKING:
    from bot.providers.base import Provider
    from bot.providers.build import ProviderSet
    from bot.store import Conn, Store

log = logging.getLogger("decapod.model_choice")
_USAGE = (
    "/model shows the models; /model NAME picks one for you; /model reset goes back to the "
    "default. The owner adds `for everyone` to change the default."
)
_FOR_EVERYONE = "for everyone"


class ModelChoices:
    def __init__(self, store: Store, models: ModelsConfig) -> None:
        self.store = store
        self.models = models
        #: scope (person id or '*') -> "provider:model"; None until loaded
        self._chosen: dict[str, str] | None = None
        self._loading: asyncio.Future[dict[str, str]] | None = None
        #: counts `forget`s: a read begun before one is not kept
        self._generation = 0
        #: run inside the write that stores a change, so what they send is committed with it
        self.in_write: list[Callable[[Conn], None]] = []
        #: told after this process stored a change; one that fails is logged, not raised:
        #: the change is stored, and the person is told so
        self.on_change: list[Callable[[], Awaitable[None]]] = []

    def offered(self) -> list[str]:
        """Every model of the configured chains, the chat chain's first, without repeats."""
        refs = list(self.models.chat)
        for chain in self.models.routes.values():
            refs += chain
        return list(dict.fromkeys(refs))

    def resolve(self, name: str) -> str | None:
        """ "provider:model", or a model name that only one provider offers."""
        offered = self.offered()
        if name in offered:
            return name
        matches = [ref for ref in offered if split_model_ref(ref)[1] == name]
        return matches[0] if len(matches) == 1 else None

    async def _loaded(self) -> dict[str, str]:
        if self._chosen is None:
            # One read for the first turns after a start, however many arrive at once, and
            # all of them wake together when it is done (a lock wakes its waiters one per
            # turn of the event loop: with 2,000 turns waiting, the last ran seconds late).
            if self._loading is None:
                self._loading = asyncio.ensure_future(self._read())
            loading, generation = self._loading, self._generation
            try:
                chosen = await asyncio.shield(loading)
            except Exception:
                if self._loading is loading:
                    self._loading = None  # the next turn reads again
                raise
            if generation != self._generation:
                return chosen  # what was read may predate the change: the next turn reads
            if self._chosen is None:
                self._chosen = chosen
        return self._chosen

    def forget(self) -> None:
        """Another process changed a choice: read them again at the next turn."""
        self._generation += 1
        self._chosen, self._loading = None, None

    async def _read(self) -> dict[str, str]:
        stored = await self.store.model_choices.all()
        # a model dropped from the config since is no choice any more
        offered = set(self.offered())
        return {scope: ref for scope, ref in stored.items() if ref in offered}

    async def own(self, person_id: str) -> str | None:
        return (await self._loaded()).get(person_id)

    async def default(self) -> str | None:
        return (await self._loaded()).get(EVERYONE)

    async def first_for(self, person_id: str) -> str:
        """The model tried first for this person."""
        chosen = await self._loaded()
        return chosen.get(person_id) or chosen.get(EVERYONE) or self.models.chat[0]

    async def set(self, scope: str, ref: str | None, set_by: str) -> None:
        await self.store.model_choices.set(scope, ref, set_by, also=self.in_write)
        chosen = await self._loaded()
        if ref is None:
            chosen.pop(scope, None)
        else:
            chosen[scope] = ref
        for tell in self.on_change:
            try:
                await tell()
            except Exception:
                log.exception("telling the other processes of a /model change failed")

    async def provider_for(self, person_id: str, providers: ProviderSet | None) -> Provider | None:
        """The chain that answers this person, or None for the configured one."""
        if providers is None:
            return None
        first = await self.first_for(person_id)
        return None if first == self.models.chat[0] else providers.led_by(first)


def register_model_command(table: CommandTable, choices: ModelChoices) -> None:
    @table.add(
        "model",
        "Show the models, or pick the one that answers you",
        usage="[NAME | reset] [for everyone]",
        arg_name="model",
    )
    async def model(ctx: CommandContext) -> str | Reply:
        args = " ".join(ctx.args.split())  # "reset  for  everyone" as typed on a phone
        everyone = args.lower().endswith(_FOR_EVERYONE)
        if everyone:
            args = args[: -len(_FOR_EVERYONE)].strip()
            if ctx.role != "owner":
                return "Only the owner can change the model for everyone."
        if not args:
            return await _listing(choices, ctx.person_id)
        scope = EVERYONE if everyone else ctx.person_id
        whom = "everyone" if everyone else "you"
        if args.lower() == "reset":
            await choices.set(scope, None, ctx.message.identity.key)
            first = await choices.first_for(ctx.person_id)
            return f"Back to the default for {whom}. {first} answers you first now."
        ref = choices.resolve(args)
        if ref is None:
            listed = ", ".join(choices.offered())
            return f"{args!r} is not one of the configured models: {listed}."
        await choices.set(scope, ref, ctx.message.identity.key)
        return f"{ref} now answers {whom} first; the configured chain takes over if it fails."


async def _listing(choices: ModelChoices, person_id: str) -> Reply:
    first = await choices.first_for(person_id)
    own, default = await choices.own(person_id), await choices.default()
    fallback = [ref for ref in choices.models.chat if ref != first]
    why = "your choice" if own else "the owner's default" if default else "the configured chain"
    lines = [f"Model: {first} ({why})"]
    if fallback:
        lines.append(f"If it fails: {', '.join(fallback)}")
    lines.append(_USAGE)
    buttons = [Choice(ref, f"/model {ref}") for ref in choices.offered() if ref != first]
    if own:
        buttons.append(Choice("Reset", "/model reset"))
    return Reply("\n".join(lines), tuple(buttons))
