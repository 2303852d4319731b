"""The owner's control panel: server-rendered pages, one per subject, and small POST forms
(each with the session's CSRF token, checked by the page wrapper in bot/webui/app.py).

Everything reads through the same services the chat commands use (access store, memory,
scheduler, providers, audit), so the panel cannot do what the owner could not do in a chat.
"""

from __future__ import annotations

import json
import logging
import os
import time
import tomllib
from collections import defaultdict
from typing import TYPE_CHECKING, Any

from aiohttp import web

from bot.errors import ConfigError
from bot.messages import Conversation, ConversationKind, Identity
from bot.providers.recent_errors import KEEP_PER_ENTRY
from bot.warmup import StartUpStepFailed

if TYPE_CHECKING:
    from bot.scheduler.service import Scheduler
    from bot.webui.app import Handler, WebUI

log = logging.getLogger("decapod.webui")

TABS = [
    ("/panel", "Pairing & people"),
    ("/panel/guests", "Guests"),
    ("/panel/memory", "Memory"),
    ("/panel/reminders", "Reminders"),
    ("/panel/providers", "Providers"),
    ("/panel/sessions", "Sessions"),
    ("/panel/usage", "Usage"),
    ("/panel/workspaces", "Workspaces"),
    ("/panel/skills", "Skills"),
    ("/panel/mcp", "MCP"),
    ("/panel/passkeys", "Passkeys & password"),
    ("/panel/config", "Config"),
    ("/panel/audit", "Security audit"),
]
USAGE_DAYS = 14
WEB_OWNER = Identity("web", "owner", "owner")


class Panel:
    def __init__(self, ui: WebUI) -> None:
        self.ui = ui
        self.gw = ui.gw

    def routes(self) -> list[tuple[str, str, Handler]]:
        from bot.webui.panel_features import FeaturePages

        return [
            *FeaturePages(self).routes(),
            *self.ui.guests.panel_routes(self),
            *self.ui.passkeys.owner_routes(self),
            ("GET", "/panel", self.people),
            ("POST", "/panel/pairing", self.pairing),
            ("GET", "/panel/memory", self.memory),
            ("POST", "/panel/memory/forget", self.memory_forget),
            ("POST", "/panel/memory/export", self.memory_export),
            ("GET", "/panel/reminders", self.reminders),
            ("POST", "/panel/reminders/cancel", self.reminder_cancel),
            ("POST", "/panel/reminders/create", self.reminder_create),
            ("GET", "/panel/providers", self.providers),
            ("GET", "/panel/sessions", self.sessions),
            ("GET", "/panel/usage", self.usage),
            ("GET", "/panel/config", self.config),
            ("POST", "/panel/config", self.config_edit),
            ("GET", "/panel/audit", self.audit),
        ]

    async def warmed_up(self) -> None:
        """The scheduler, memory and the skills start after ready (bot/warmup.py): their
        pages wait for them, and say so plainly if their start failed."""
        try:
            await self.gw.warmup.wait()
        except StartUpStepFailed as exc:
            raise web.HTTPServiceUnavailable(text=str(exc)) from exc

    async def _scheduler(self) -> Scheduler:
        """The scheduler, a warm-up step (the first): its pages wait for that step only, so
        they work while a later one (memory, the skills) still runs or has failed."""
        if self.gw.deps.scheduler is None:
            try:
                await self.gw.warmup.wait_for("scheduler")
            except StartUpStepFailed as exc:
                raise web.HTTPServiceUnavailable(text=str(exc)) from exc
        assert self.gw.deps.scheduler is not None  # the step's whole work
        return self.gw.deps.scheduler

    def _render(self, request: web.Request, name: str, **context: Any) -> web.Response:
        return self.ui.render(request, name, page="panel", tabs=TABS, here=request.path, **context)

    @staticmethod
    async def _form(request: web.Request) -> dict[str, str]:
        form = await request.post()
        return {k: v for k, v in form.items() if isinstance(v, str)}

    @staticmethod
    def _back(location: str) -> web.HTTPSeeOther:
        return web.HTTPSeeOther(location)

    # pairing and people -----------------------------------------------------------------------
    async def people(self, request: web.Request) -> web.StreamResponse:
        store = self.gw.store
        people: dict[str, list[Any]] = defaultdict(list)
        for row in await self.ui.panel_queries.identities():
            people[row.person_id].append(row)
        return self._render(
            request,
            "panel_people.html",
            pending=await store.access.pending(),
            paired=await store.access.paired(),
            people=sorted(people.items()),
            note=request.query.get("note", ""),
        )

    async def pairing(self, request: web.Request) -> web.StreamResponse:
        form = await self._form(request)
        code = form.get("code", "").strip().upper()
        if form.get("action") == "approve":
            found = await self.gw.store.access.approve(code, WEB_OWNER.key)
            note = f"approved {found.display_name or found.user_id}" if found else "no such code"
        else:
            note = "denied" if await self.ui.panel_queries.deny_code(code) else "no such code"
        raise self._back(f"/panel?note={note.replace(' ', '+')}")

    # memory -----------------------------------------------------------------------------------
    async def _memory_people(self) -> list[str]:
        from bot.store.memory import SHARED, split_owner  # with memory, after ready

        await self.warmed_up()
        memory = self.gw.deps.memory
        owners = await memory.repo.owners() if memory is not None else []
        people = {split_owner(o)[0] for o in owners}
        people |= {r.person_id for r in await self.ui.panel_queries.identities()}
        # shared knowledge is the knowledge folder's, edited there, not a person's memory
        return sorted(people - {SHARED})

    async def memory(self, request: web.Request) -> web.StreamResponse:
        from bot.memory.export import person_items
        from bot.store.memory import SHARED, split_owner  # with memory, after ready

        await self.warmed_up()
        memory = self.gw.deps.memory
        person = request.query.get("person", "")
        query = request.query.get("q", "").strip()
        items: list[Any] = []
        if memory is not None and person and person != SHARED:
            # what the person said in groups too, each with its place ("" for a private one)
            if query:
                hits = await memory.search(
                    person, query, limit=50, include_shared=False, everywhere=True
                )
                items = [
                    (h.item_id, h.kind, h.text, h.updated_at, split_owner(h.owner)[1]) for h in hits
                ]
            else:
                rows = await person_items(memory.repo, person)
                items = [
                    (r.id, r.kind, r.text, r.updated_at, split_owner(r.owner)[1]) for r in rows
                ]
        return self._render(
            request,
            "panel_memory.html",
            enabled=memory is not None,
            people=await self._memory_people(),
            person=person,
            query=query,
            items=items,
            note=request.query.get("note", ""),
            when=_when,
        )

    async def memory_forget(self, request: web.Request) -> web.StreamResponse:
        from bot.store.memory import SHARED  # with memory, after ready

        await self.warmed_up()
        memory = self.gw.deps.memory
        form = await self._form(request)
        person = form.get("person", "")
        if memory is None or person in ("", SHARED) or not form.get("item", "").isdigit():
            raise web.HTTPBadRequest(text="memory is off, or no person or item given")
        gone = await memory.forget(person, item_ids=[int(form["item"])], everywhere=True)
        log.info("web UI: forgot %d memory items of %s", len(gone), person)
        raise self._back(f"/panel/memory?person={_q(person)}&note=forgot+{len(gone)}")

    async def memory_export(self, request: web.Request) -> web.StreamResponse:
        from bot.memory.export import person_items, person_markdown, safe_name
        from bot.store.memory import SHARED  # with memory, after ready

        await self.warmed_up()
        memory = self.gw.deps.memory
        person = (await self._form(request)).get("person", "")
        if memory is None or person in ("", SHARED):
            raise web.HTTPBadRequest(text="memory is off, or no person given")
        text = person_markdown(person, await person_items(memory.repo, person))
        return web.Response(
            text=text,
            content_type="text/markdown",
            headers={"Content-Disposition": f'attachment; filename="{safe_name(person)}.md"'},
        )

    # reminders --------------------------------------------------------------------------------
    async def reminders(self, request: web.Request) -> web.StreamResponse:
        from bot.scheduler.text import describe_job

        scheduler = await self._scheduler()
        jobs = await scheduler.jobs.listing(include_closed=False)
        return self._render(
            request,
            "panel_reminders.html",
            jobs=[(j, describe_job(j)) for j in jobs],
            note=request.query.get("note", ""),
        )

    async def reminder_cancel(self, request: web.Request) -> web.StreamResponse:
        scheduler = await self._scheduler()
        form = await self._form(request)
        done = await scheduler.cancel(form.get("person", ""), form.get("job", ""))
        raise self._back("/panel/reminders?note=" + ("cancelled" if done else "no+such+job"))

    async def reminder_create(self, request: web.Request) -> web.StreamResponse:
        from bot.scheduler.grammar import Clarify, parse_reminder
        from bot.scheduler.service import ScheduleError

        scheduler = await self._scheduler()
        text = (await self._form(request)).get("text", "")
        zone = await scheduler.timezone_for(WEB_OWNER.key)
        parsed = parse_reminder(text, scheduler.now_in(zone))
        if isinstance(parsed, Clarify):
            note = parsed.question
        else:
            try:
                job = await scheduler.schedule(
                    person_id=await self.gw.store.identities.touch(WEB_OWNER),
                    identity_key=WEB_OWNER.key,
                    conversation=Conversation("web", "owner", ConversationKind.DM),
                    text=parsed.text,
                    when=parsed.when,
                    timezone=zone,
                )
                note = f"scheduled {job.id}"
            except ScheduleError as exc:
                note = str(exc)
        raise self._back(f"/panel/reminders?note={_q(note)}")

    # providers, sessions, usage ---------------------------------------------------------------
    async def providers(self, request: web.Request) -> web.StreamResponse:
        cfg = self.gw.config
        providers = self.gw.providers
        states = providers.state() if providers is not None else []
        recent = providers.board.recent if providers is not None else None
        errors = [(e, recent.of(e)) for e in recent.entries()] if recent is not None else []
        configured = [
            (name, p.base_url or p.preset or "", [env for _, env in p.key_env_names()])
            for name, p in cfg.providers.items()
        ]
        return self._render(
            request,
            "panel_providers.html",
            chains=cfg.models.model_dump(),
            states=states,
            configured=configured,
            errors=errors,
            keep=KEEP_PER_ENTRY,
            when=_when_s,
        )

    async def sessions(self, request: web.Request) -> web.StreamResponse:
        turns = await self.ui.panel_queries.recent_turns(100)
        return self._render(request, "panel_sessions.html", turns=turns, when=_when)

    async def usage(self, request: web.Request) -> web.StreamResponse:
        from bot.webui.charts import usage_chart  # with the first usage page, not at start

        since = time.time() - USAGE_DAYS * 86400
        rows = await self.ui.panel_queries.usage(since)
        prices = self.gw.config.usage
        by_key: dict[tuple[str, str], list[float]] = defaultdict(lambda: [0, 0, 0, 0.0])
        for r in rows:
            total = by_key[(r.person_id, r.model)]
            total[0] += r.input_tokens
            total[1] += r.output_tokens
            total[2] += r.turns
            total[3] += prices.cost(r.model, r.input_tokens, r.output_tokens)
        return self._render(
            request,
            "panel_usage.html",
            chart=usage_chart(rows, USAGE_DAYS),
            totals=sorted(by_key.items()),
            priced=any(prices.price(model) for _, model in by_key),
        )

    # config and audit -------------------------------------------------------------------------
    def _config_path(self) -> Any:
        return self.gw.config.home / "config.toml"

    async def config(self, request: web.Request, **result: Any) -> web.StreamResponse:
        path = self._config_path()
        text = result.pop("text", None)
        if text is None:
            text = path.read_text(encoding="utf-8") if path.exists() else ""
        # the config holds no secret values, only the names of the variables that do
        effective = json.dumps(self.gw.config.model_dump(mode="json"), indent=2, sort_keys=True)
        return self._render(
            request,
            "panel_config.html",
            path=str(path),
            text=text,
            effective=effective,
            **result,
        )

    async def config_edit(self, request: web.Request) -> web.StreamResponse:
        from bot.config import parse_config
        from bot.config_lines import line_finder

        form = await self._form(request)
        text = form.get("text", "").replace("\r\n", "\n")
        try:
            parse_config(tomllib.loads(text), self.gw.config.home, line_finder(text))
        except tomllib.TOMLDecodeError as exc:
            return await self.config(request, text=text, problem=f"not valid TOML: {exc}")
        except ConfigError as exc:
            return await self.config(request, text=text, problem=str(exc))
        if form.get("action") != "save":
            return await self.config(request, text=text, checked=True)
        path = self._config_path()
        partial = path.with_name(path.name + ".new")
        fd = os.open(partial, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w", encoding="utf-8") as out:
            out.write(text)
        os.replace(partial, path)
        log.info("web UI: config saved to %s", path)
        return await self.config(request, text=text, saved=True)

    async def audit(self, request: web.Request) -> web.StreamResponse:
        from bot.security.audit import audit

        path = self._config_path()
        findings = audit(self.gw.config, path if path.exists() else None)
        order = {"high": 0, "medium": 1, "low": 2}
        findings.sort(key=lambda f: order[f.risk])
        return self._render(request, "panel_audit.html", findings=findings)


def _when(ts: float | None) -> str:
    return time.strftime("%Y-%m-%d %H:%M", time.localtime(ts)) if ts else ""


def _when_s(ts: float) -> str:
    return time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(ts))


def _q(text: str) -> str:
    from urllib.parse import quote_plus

    return quote_plus(text)
