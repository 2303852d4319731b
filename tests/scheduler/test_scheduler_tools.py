"""The model's tools, the /remind and /reminders commands, and the operator CLI."""

from __future__ import annotations

import argparse
import asyncio
import json
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pytest

from bot.commands import CommandContext, CommandTable
from bot.errors import ToolError
from bot.messages import Command, Identity, InboundMessage
from bot.scheduler import Scheduler, register_scheduler_commands, scheduler_tools
from bot.scheduler.cli import add_subparsers, run
from bot.scheduler.timing import following
from bot.store import Store
from bot.tools import Tool, ToolContext, ToolRegistry
from tests.deps import make_deps

from .conftest import DM, GROUP, FakeClock, RecordingDeliverer

MakeScheduler = Callable[..., Scheduler]
ALICE = Identity("test", "alice", "Alice")


def tool_context(scheduler: Scheduler | None, person: str = "alice", **kw: Any) -> ToolContext:
    identity = Identity("test", person)
    return ToolContext(
        identity, kw.pop("conversation", DM), DM.session_key, make_deps(scheduler=scheduler),
        person_id=person, timezone=kw.pop("timezone", "Europe/Berlin"), **kw,
    )  # fmt: skip


def tools() -> dict[str, Tool]:
    return {t.name: t for t in scheduler_tools()}


async def test_tools_are_registered_with_strict_schemas() -> None:
    registry = ToolRegistry(scheduler_tools())
    assert registry.names() == ["schedule_job", "list_jobs", "cancel_job"]
    schema = tools()["schedule_job"].spec.parameters
    assert schema["additionalProperties"] is False and schema["required"] == ["text"]
    assert "ISO 8601" in json.dumps(schema["properties"]["at"])
    assert "pattern" in json.dumps(tools()["cancel_job"].spec.parameters)


async def test_schedule_tool_echoes_the_resolved_local_time(
    make_scheduler: MakeScheduler, clock: FakeClock, deliverer: RecordingDeliverer
) -> None:
    scheduler = make_scheduler()
    ctx = tool_context(scheduler)
    answer = await tools()["schedule_job"].invoke(ctx, {"text": "stretch", "delay": "20m"})
    [job] = await scheduler.list_jobs("alice")
    assert answer.startswith(f"Reminder {job.id} set for Mon 3 Mar 2025 17:20 CET (Europe/Berlin)")
    assert "It is now Mon 3 Mar 2025 17:00 CET" in answer
    answer = await tools()["schedule_job"].invoke(
        ctx, {"text": "standup", "cron": "0 9 * * 1-5", "kind": "reminder"}
    )
    assert "every weekday at 09:00 (Europe/Berlin), first Tue 4 Mar 2025 09:00 CET" in answer
    answer = await tools()["schedule_job"].invoke(ctx, {"text": "x", "at": "2025-03-04T18:30"})
    assert "Tue 4 Mar 2025 18:30 CET" in answer
    new_york = tool_context(scheduler, timezone="America/New_York")
    answer = await tools()["schedule_job"].invoke(new_york, {"text": "x", "at": "2025-03-04T18:30"})
    assert "Tue 4 Mar 2025 18:30 EST (America/New_York)" in answer
    listing = await tools()["list_jobs"].invoke(ctx, {})
    assert job.id in listing and "stretch" in listing


@pytest.mark.parametrize(
    ("arguments", "error"),
    [
        ({"text": "x"}, "exactly one of at, delay, every, cron"),
        ({"text": "x", "delay": "5m", "every": "1h"}, "exactly one of"),
        ({"text": "x", "delay": "soon"}, "not a duration"),
        ({"text": "x", "at": "tomorrow"}, "like 2025-03-04T18:30, not 'tomorrow'"),
        ({"text": "x", "at": "2025-03-30T02:30"}, "does not exist in Europe/Berlin"),
        ({"text": "x", "at": "2025-03-01T09:00"}, "has already passed"),
        ({"text": "x", "every": "10s"}, "shortest repeat allowed is 1m"),
        ({"text": "x", "cron": "0 9 1 * 1"}, "not both"),
        ({"text": "x", "delay": "5m", "kind": "alarm"}, "kind"),
        ({"text": "", "delay": "5m"}, "text"),
        ({"text": "x", "delay": "5m", "channel": "other"}, "Extra inputs"),
        ({"text": "x", "delay": "5m", "kind": "task"}, "tasks are not available"),
        ({"text": "x", "delay": "99999999999999d"}, "99999999999999d is too long"),
        ({"text": "x", "delay": "600000w"}, "too far ahead"),
        ({"text": "x", "every": "999999w"}, "too far ahead"),
        ({"text": "x", "at": "9999-12-31T23:59"}, "too far ahead"),
    ],
)
async def test_schedule_tool_rejects_bad_arguments(
    make_scheduler: MakeScheduler, arguments: dict[str, Any], error: str
) -> None:
    scheduler = make_scheduler()
    with pytest.raises(ToolError, match=error):
        await tools()["schedule_job"].invoke(tool_context(scheduler), arguments)
    assert await scheduler.list_jobs("alice") == []


async def test_tools_act_only_for_the_person_asking(make_scheduler: MakeScheduler) -> None:
    scheduler = make_scheduler()
    alice, bob = tool_context(scheduler, "alice"), tool_context(scheduler, "bob")
    await tools()["schedule_job"].invoke(alice, {"text": "alice's", "delay": "1h"})
    [job] = await scheduler.list_jobs("alice")
    assert "no reminders" in await tools()["list_jobs"].invoke(bob, {})
    with pytest.raises(ToolError, match="no open reminder or task"):
        await tools()["cancel_job"].invoke(bob, {"job_id": job.id})
    with pytest.raises(ToolError, match="job_id"):
        await tools()["cancel_job"].invoke(alice, {"job_id": "'; DROP TABLE jobs"})
    assert await tools()["cancel_job"].invoke(alice, {"job_id": job.id}) == f"Cancelled {job.id}."
    with pytest.raises(ToolError, match="not available"):
        await tools()["list_jobs"].invoke(tool_context(None), {})
    with pytest.raises(ToolError, match="unknown"):
        await tools()["list_jobs"].invoke(tool_context(scheduler, person=""), {})


def command_context(scheduler: Scheduler, name: str, args: str, person: str = "alice") -> Any:
    identity = Identity("test", person)
    message = InboundMessage(
        "d1", identity, GROUP if person == "bob" else DM, f"/{name} {args}",
        command=Command(name, args),
    )  # fmt: skip
    return CommandContext(message, args, person, "user", make_deps(scheduler=scheduler))


async def test_remind_and_reminders_commands(
    make_scheduler: MakeScheduler, clock: FakeClock, deliverer: RecordingDeliverer, store: Store
) -> None:
    table = CommandTable()
    register_scheduler_commands(table)
    remind, reminders = table.get("remind"), table.get("reminders")
    assert remind is not None and reminders is not None and remind.arg_name == "request"
    scheduler = make_scheduler()

    async def say(name: str, args: str, person: str = "alice") -> str:
        spec = remind if name == "remind" else reminders
        reply = await spec.handler(command_context(scheduler, name, args, person))
        assert reply is not None
        return reply

    reply = await say("remind", "me in 2 minutes to stretch")
    [job] = await scheduler.list_jobs("alice")
    assert reply == f"Reminder {job.id} set for Mon 3 Mar 2025 17:02 CET (Europe/Berlin): stretch"
    assert (await say("remind", "at 9 call mom")).startswith("9 in the morning or in the evening")
    reply = await say("remind", "at 16:00 tea")
    assert "(16:00 has passed today, so tomorrow.)" in reply and "Tue 4 Mar 2025 16:00" in reply
    assert "every 2h" in await say("remind", "every 2h drink water")
    assert "shortest repeat" in await say("remind", "every 10s blink")
    listing = await say("reminders", "")
    assert listing.startswith("Your reminders and tasks (your time zone: Europe/Berlin)")
    assert job.id in listing and "drink water" in listing
    assert await say("reminders", f"cancel {job.id}") == f"Cancelled {job.id}."
    assert "no open reminder" in await say("reminders", f"cancel {job.id}")
    assert "no open reminder" in await say("reminders", "cancel zzzzzz", person="bob")
    assert await say("reminders", "delete everything") == (
        "/reminders lists yours with their ids; /reminders cancel ID cancels one."
    )
    # a person's own zone is used for the grammar and the echo
    await store.identities.touch(Identity("test", "bob"))
    await store.identities.set_timezone("test:bob", "Asia/Tokyo")
    reply = await say("remind", "at 9:00 breakfast", person="bob")  # 01:00 in Tokyo now
    # bob asks in a group: the time is his, the zone's name is not told to the group
    assert "Tue 4 Mar 2025 09:00 JST:" in reply and "Asia/Tokyo" not in reply


def test_operator_cli_lists_and_cancels(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    db = tmp_path / "decapod.db"

    async def seed() -> list[str]:
        async with Store(db) as store:
            from bot.scheduler import SchedulerConfig

            scheduler = Scheduler(store, RecordingDeliverer(), config=SchedulerConfig())
            ids = []
            for person in ("alice", "bob"):
                ctx = tool_context(scheduler, person)
                await tools()["schedule_job"].invoke(ctx, {"text": f"{person}'s", "delay": "1h"})
                ids += [j.id for j in await scheduler.list_jobs(person)]
            return ids

    alice_job, bob_job = asyncio.run(seed())
    parser = argparse.ArgumentParser(prog="decapod")
    add_subparsers(parser.add_subparsers(dest="command"))

    assert run(parser.parse_args(["reminders", "list"]), db) == 0
    out = capsys.readouterr().out
    assert alice_job in out and bob_job in out and "alice's" in out and "pending" in out
    assert run(parser.parse_args(["reminders", "cancel", bob_job]), db) == 0
    assert capsys.readouterr().out == f"cancelled {bob_job}\n"
    assert run(parser.parse_args(["reminders", "cancel", bob_job]), db) == 1
    capsys.readouterr()
    assert run(parser.parse_args(["reminders", "list", "--person", "bob"]), db) == 0
    assert capsys.readouterr().out == "no jobs\n"
    assert run(parser.parse_args(["reminders", "list", "--all", "--person", "bob"]), db) == 0
    assert "cancelled" in capsys.readouterr().out


async def test_remind_on_the_night_the_clocks_go_back(store: Store) -> None:
    import time_machine

    from bot.scheduler import SchedulerConfig

    berlin = ZoneInfo("Europe/Berlin")
    table = CommandTable()
    register_scheduler_commands(table)
    spec = table.get("remind")
    assert spec is not None
    config = SchedulerConfig(default_timezone="Europe/Berlin")
    scheduler = Scheduler(store, RecordingDeliverer(), config=config)  # the real clock
    with time_machine.travel(datetime(2025, 10, 26, 1, 30, tzinfo=berlin), tick=False):
        reply = await spec.handler(command_context(scheduler, "remind", "in 2h check the oven"))
        assert reply is not None and "Sun 26 Oct 2025 02:30 CET" in reply  # 2h elapsed
        reply = await spec.handler(command_context(scheduler, "remind", "at 2:30 feed the baby"))
        assert reply is not None and "happens twice" in reply
        reply = await spec.handler(command_context(scheduler, "remind", "every day 2:30 pills"))
        assert reply is not None and "first Sun 26 Oct 2025 02:30 CEST" in reply
    jobs = {j.text: j for j in await scheduler.list_jobs("alice")}
    assert (
        jobs["check the oven"].due_at - datetime(2025, 10, 25, 23, 30, tzinfo=UTC).timestamp()
        == 7200
    )
    pills = jobs["pills"]
    assert following(pills, pills.due_at) == datetime(2025, 10, 27, 1, 30, tzinfo=UTC).timestamp()
