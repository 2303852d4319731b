"""Check-ins: set with /checkin or in the config, run on the scheduler in their own session
with the person's reminders, wait out quiet hours, stay silent when there is nothing to say,
and say something once when there is."""

from __future__ import annotations

import asyncio
import datetime as dt
import json
from typing import Any

from bot.checkins import quiet_until, says_nothing
from bot.gateway import Gateway
from bot.messages import ConversationKind
from bot.providers.base import ChatRequest, ToolCall
from bot.providers.testing import FunctionProvider, estimate_tokens
from bot.scheduler.config import CheckinConfig
from bot.scheduler.text import describe_job
from bot.store.jobs import JobKind, JobStatus
from tests.core.checkins_harness import CHANNELS, START, ask, checkin_job, until
from tests.fakes.channel import RecordingChannel


def _config(make_config: Any, **checkins: Any) -> Any:
    # the loop only wakes when told: each test drives the deliveries at its own clock
    return make_config(channels=CHANNELS, scheduler={"poll_seconds": 3600}, checkins=checkins)


class _Model:
    def __init__(self, answer: str) -> None:
        self.answer = answer
        self.provider = FunctionProvider(self._answer)

    async def _answer(self, request: ChatRequest) -> str:
        return self.answer

    @property
    def requests(self) -> list[ChatRequest]:
        return self.provider.requests


async def test_a_checkin_due_in_quiet_hours_waits_and_with_nothing_to_say_sends_nothing(
    make_config: Any,
) -> None:
    model = _Model("NOTHING.")
    channel = RecordingChannel("tg", console=False)
    config = _config(make_config, quiet_hours="08:00-09:00", max_output_tokens=120)
    async with Gateway(config, provider=model.provider, channels={"tg": channel}) as gw:
        await gw.warmup.wait()  # the scheduler is a warm-up step
        scheduler = gw.deps.scheduler
        assert scheduler is not None
        clock = [START]
        scheduler.clock = lambda: clock[0]
        await ask(channel, "/remind in 3h dentist appointment")
        assert gw.deps.memory is not None
        await gw.deps.memory.save("tg:u1", "I said I would finish the tax forms this week")
        set_reply = await ask(channel, "/checkin daily 8:30")
        assert "I will check in daily 8:30 (UTC); first Mon 7 Jan 2030 08:30 UTC" in set_reply
        assert "Quiet hours 08:00-09:00" in set_reply

        clock[0] = START + 90 * 60 + 5  # 08:30:05: due, but inside the quiet hours
        await scheduler.deliver_due()
        job = await checkin_job(gw)
        assert job.run_at == START + 2 * 3600 and job.runs == 0  # waits until 09:00
        assert model.requests == []

        clock[0] = START + 2 * 3600 + 1  # 09:00:01: the quiet hours are over
        await scheduler.deliver_due()

        async def ran() -> bool:
            return (await checkin_job(gw)).runs == 1

        await until(ran)
        [request] = model.requests
        prompt = request.messages[-1].content
        assert "dentist appointment" in prompt and "answer exactly NOTHING" in prompt
        assert request.max_tokens == 120
        assert "tax forms" in request.system  # the person's memory, recalled
        job = await checkin_job(gw)
        assert job.due_at == START + 86400 + 90 * 60  # tomorrow 08:30
        # nothing was sent: the two command answers are all the chat has
        assert len(channel.texts()) == 2
        # it ran in its own session, not in the person's chat
        assert [m.content for m in gw.sessions.get("tg:dm:u1").messages()] == []
        assert gw.sessions.get(f"cron:{job.id}").messages()[-1].content == "NOTHING."


async def test_a_checkin_with_something_to_say_says_it_once(make_config: Any) -> None:
    model = _Model("Your dentist appointment is at 10:00 today.")
    channel = RecordingChannel("tg", console=False)
    config = _config(make_config, quiet_hours="")
    async with Gateway(config, provider=model.provider, channels={"tg": channel}) as gw:
        await gw.warmup.wait()  # the scheduler is a warm-up step
        scheduler = gw.deps.scheduler
        assert scheduler is not None
        clock = [START]
        scheduler.clock = lambda: clock[0]
        await ask(channel, "/checkin weekdays 7:30")
        clock[0] = START + 30 * 60 + 5
        await scheduler.deliver_due()
        texts = await channel.wait_for_messages(2)
        assert texts[1] == "Your dentist appointment is at 10:00 today."
        await scheduler.deliver_due()  # the same moment again: nothing is due any more

        async def ran() -> bool:
            return (await checkin_job(gw)).runs == 1

        await until(ran)
        await asyncio.sleep(0.2)
        assert len(channel.texts()) == 2 and len(model.requests) == 1
        assert "Your check-in: weekdays 7:30 (UTC)" in await ask(channel, "/checkin")
        assert "Check-ins are off" in await ask(channel, "/checkin off")
        assert "no check-in" in await ask(channel, "/checkin")


async def test_checkins_from_the_config_are_made_once_and_bad_requests_are_explained(
    make_config: Any,
) -> None:
    config = _config(make_config, people={"tg:u1": "weekdays 7:15"})
    channel = RecordingChannel("tg", console=False)
    model = _Model("NOTHING")
    for _ in range(2):  # a restart does not double it
        async with Gateway(config, provider=model.provider, channels={"tg": channel}) as gw:
            job = await checkin_job(gw)
            assert job.cron == "15 7 * * 1-5" and job.conversation.chat_id == "u1"
    async with Gateway(config, provider=model.provider, channels={"tg": channel}) as gw:
        assert "did not understand" in await ask(channel, "/checkin hourly")
        # full-width digits, read as /remind reads them
        assert "I will check in daily ８:３０" in await ask(channel, "/checkin daily ８:３０")
        assert (await checkin_job(gw)).cron == "30 8 * * *"
        # and a full-width colon, as a Japanese or Chinese keyboard types it
        assert "I will check in weekdays ７：４５" in await ask(
            channel, "/checkin weekdays ７：４５"
        )
        assert (await checkin_job(gw)).cron == "45 7 * * 1-5"
        group = {"chat": "g1", "kind": ConversationKind.GROUP}
        assert "direct message" in await ask(channel, "/checkin daily 9:00", **group)


def test_quiet_hours_are_read_in_the_persons_zone_and_may_wrap_midnight() -> None:
    config = CheckinConfig(quiet_hours="22:00-07:30")
    berlin = "Europe/Berlin"  # UTC+1 in January

    def at(hour: int, minute: int) -> float:
        return dt.datetime(2030, 1, 7, hour, minute, tzinfo=dt.UTC).timestamp()

    # 21:30 UTC is 22:30 in Berlin: quiet until 07:30 Berlin = 06:30 UTC the next day
    assert quiet_until(at(21, 30), berlin, config) == at(6, 30) + 86400
    assert quiet_until(at(21, 30), "UTC", config) is None
    assert quiet_until(at(5, 0), berlin, config) == at(6, 30)
    assert quiet_until(at(7, 0), berlin, config) is None
    assert quiet_until(at(3, 0), "UTC", CheckinConfig(quiet_hours="")) is None
    assert says_nothing(" **nothing**.\n", "NOTHING") and says_nothing("`NOTHING`", "NOTHING")
    assert not says_nothing("Nothing urgent, but the dentist is at 10.", "NOTHING")


async def test_a_checkin_run_stays_within_its_token_cap(make_config: Any) -> None:
    call = ToolCall("t1", "current_time", json.dumps({"zone": "UTC"}))
    padded = ToolCall("t2", "current_time", json.dumps({"zone": "UTC", "pad": "x" * 200}))
    script: list[Any] = [[call], "It is 07:30.", [padded]]

    async def answer(request: ChatRequest) -> Any:
        return script.pop(0)

    provider = FunctionProvider(answer)
    channel = RecordingChannel("tg", console=False)
    config = _config(make_config, quiet_hours="", max_output_tokens=40)
    async with Gateway(config, provider=provider, channels={"tg": channel}) as gw:
        await gw.warmup.wait()  # the scheduler is a warm-up step
        scheduler = gw.deps.scheduler
        assert scheduler is not None
        clock = [START]
        scheduler.clock = lambda: clock[0]
        await ask(channel, "/checkin daily 7:30")
        clock[0] = START + 30 * 60 + 5
        await scheduler.deliver_due()
        await channel.wait_for_messages(2)
        # the second call may write only what the first left of the run's 40 tokens
        first, second = provider.requests
        assert first.max_tokens == 40
        assert second.max_tokens == 40 - estimate_tokens(call.name + call.arguments)

        clock[0] += 86400  # the next day: the first call spends the whole cap
        await scheduler.deliver_due()

        async def ran_twice() -> bool:
            return (await checkin_job(gw)).runs == 2

        await until(ran_twice)
        assert len(provider.requests) == 3
        assert channel.texts()[1:] == ["It is 07:30."]  # nothing more was sent


async def test_a_person_no_longer_allowed_gets_no_checkin_until_allowed_again(
    make_config: Any,
) -> None:
    """The owner revoked the person's pairing: their check-in no longer runs the model as
    them nor writes to them, and keeps its schedule; approved again, they get the next one."""
    model = _Model("Your dentist appointment is at 10:00 today.")
    channel = RecordingChannel("tg", console=False)
    config = make_config(
        channels={"tg": {"type": "telegram", "access": {"dm_policy": "pairing"}}},
        scheduler={"poll_seconds": 3600},
        checkins={"quiet_hours": ""},
    )
    async with Gateway(config, provider=model.provider, channels={"tg": channel}) as gw:
        await gw.warmup.wait()  # the scheduler is a warm-up step
        scheduler = gw.deps.scheduler
        assert scheduler is not None
        clock = [START]
        scheduler.clock = lambda: clock[0]
        code = await gw.store.access.issue_code("ABCD2345", "tg", "u1", "U1", 3600, 10)
        assert code is not None and await gw.store.access.approve(code.code, "owner")
        assert "I will check in daily 7:30" in await ask(channel, "/checkin daily 7:30")
        assert await gw.store.access.revoke("tg", "u1")

        clock[0] = START + 30 * 60 + 5
        await scheduler.deliver_due()
        job = await checkin_job(gw)
        assert job.status is JobStatus.PENDING and job.due_at == START + 30 * 60 + 86400
        assert model.requests == [] and len(channel.texts()) == 1
        # its tries start over, and its listing says it did not run
        assert job.attempt == 0 and job.last_error == "skipped: not allowed"
        listed = describe_job(job)
        assert "skipped last time" in listed and "PAUSED" not in listed

        code = await gw.store.access.issue_code("EFGH2345", "tg", "u1", "U1", 3600, 10)
        assert code is not None and await gw.store.access.approve(code.code, "owner")
        clock[0] = START + 30 * 60 + 86400 + 5
        await scheduler.deliver_due()
        await channel.wait_for_messages(2)
        assert channel.texts()[1] == "Your dentist appointment is at 10:00 today."
        assert len(model.requests) == 1
        assert (await checkin_job(gw)).last_error is None


async def test_linked_accounts_keep_one_checkin_and_an_old_code_names_who_they_are_now(
    make_config: Any,
) -> None:
    """Two accounts with a check-in each are linked: the person keeps one check-in (the one
    of the account whose code was used), and /checkin shows it. A code made before its
    person was linked into another joins whoever redeems it to the person that remains."""
    model = _Model("Hello.")
    channel = RecordingChannel("tg", console=False)
    async with Gateway(
        _config(make_config), provider=model.provider, channels={"tg": channel}
    ) as gw:
        await gw.warmup.wait()
        assert "daily 8:30" in await ask(channel, "/checkin daily 8:30", user="u1")
        assert "daily 9:00" in await ask(channel, "/checkin daily 9:00", user="u2")
        old_code = (await ask(channel, "/link", user="u2")).split(": ")[1].split()[0]
        code = (await ask(channel, "/link", user="u1")).split(": ")[1].split()[0]
        assert (await ask(channel, f"/link {code}", user="u2")).startswith("Linked")

        person = await gw.store.identities.person_id("tg:u1")
        assert person is not None and await gw.store.identities.person_id("tg:u2") == person
        assert gw.deps.scheduler is not None
        jobs = await gw.deps.scheduler.list_jobs(person)
        assert [j.text for j in jobs if j.kind is JobKind.CHECKIN] == ["daily 8:30"]
        shown = await ask(channel, "/checkin", user="u2")
        assert shown.startswith("Your check-in: daily 8:30")

        # u2's code was made before u2 was linked to u1: it joins u3 to them both
        assert (await ask(channel, f"/link {old_code}", user="u3")).startswith("Linked")
        assert await gw.store.identities.person_id("tg:u3") == person


async def test_a_link_keeps_the_checkin_that_still_runs_over_a_paused_one(
    make_config: Any,
) -> None:
    """The code's account has only a paused check-in (its conversation refused it): the
    joined account's working one is kept, the paused one is cancelled."""
    channel = RecordingChannel("tg", console=False)
    async with Gateway(
        _config(make_config), provider=_Model("Hi.").provider, channels={"tg": channel}
    ) as gw:
        await ask(channel, "/checkin daily 8:30", user="u1")
        await ask(channel, "/checkin daily 9:00", user="u2")
        paused = await checkin_job(gw)
        await gw.store.write(
            lambda c: c.execute("UPDATE jobs SET status = 'paused' WHERE id = ?", (paused.id,))
        )
        code = (await ask(channel, "/link", user="u1")).split(": ")[1].split()[0]
        assert (await ask(channel, f"/link {code}", user="u2")).startswith("Linked")
        assert gw.deps.scheduler is not None
        jobs = await gw.deps.scheduler.jobs.listing(include_closed=True, person_id="tg:u1")
        kinds = {j.text: j.status for j in jobs if j.kind is JobKind.CHECKIN}
        assert kinds == {"daily 8:30": JobStatus.CANCELLED, "daily 9:00": JobStatus.PENDING}
