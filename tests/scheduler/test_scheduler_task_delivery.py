"""A scheduled task whose answer cannot be sent: the send is retried, the task is not. Its
prompt ran once (tools and all), so a retry delivers the answer it gave, and the task's
session holds that one turn."""

from __future__ import annotations

import datetime as dt
import json
from typing import Any

from bot.errors import ChannelError, ProviderHTTPError
from bot.gateway import Gateway
from bot.messages import Conversation, ConversationKind, OutboundMessage, SentRef, cron_session_key
from bot.providers.base import ChatRequest, ToolCall
from bot.providers.testing import FunctionProvider
from bot.scheduler.service import Scheduler
from bot.scheduler.text import REMINDER_MARK, describe_job
from bot.scheduler.timing import Every, Once
from bot.store.job_model import Job
from bot.store.jobs import JobKind, JobStatus
from tests.fakes.channel import RecordingChannel
from tests.fakes.llm import FakeLLM, Reply

_START = dt.datetime(2030, 1, 7, 7, 0, tzinfo=dt.UTC).timestamp()
DM = Conversation("tg", "u1", ConversationKind.DM)


class FlakyChannel(RecordingChannel):
    """Sends fail while `down` (a platform outage), after the channel's own retries."""

    retry_backoff_s = 0.01

    def __init__(self, name: str) -> None:
        super().__init__(name, console=False)
        self.down = False

    async def _send_text(self, message: OutboundMessage, text: str) -> SentRef:
        if self.down:
            raise ChannelError("the platform answered 502")
        return await super()._send_text(message, text)


def _config(make_config: Any, **sections: Any) -> Any:
    channels = {"tg": {"type": "telegram", "access": {"dm_policy": "open"}}}
    # the loop only wakes when told: the test drives the deliveries at its own clock
    return make_config(channels=channels, scheduler={"poll_seconds": 3600}, **sections)


async def _sent_roles(gw: Gateway, scheduler: Scheduler, job: Job) -> list[str]:
    """The job, now sent: the roles of the turns its session stored."""
    [done] = await scheduler.jobs.listing(include_closed=True, person_id="tg:u1")
    assert done.status is JobStatus.SENT
    session = gw.sessions.get(cron_session_key(job.id))
    await gw.sessions.load(session)
    assert session.row is not None
    return [row["role"] for row in await gw.store.turns.for_session(session.row.id)]


def _fake_llm_config(make_config: Any, fake: FakeLLM) -> Any:
    return _config(
        make_config, providers={"fake": fake.provider()}, models={"chat": ["fake:alpha"]}
    )


async def test_a_task_whose_answer_could_not_be_sent_is_sent_later_without_running_again(
    make_config: Any,
) -> None:
    asked: list[ChatRequest] = []

    async def model(request: ChatRequest) -> str:
        asked.append(request)
        return f"Headline {len(asked)}: markets calm."

    channel = FlakyChannel("tg")
    provider = FunctionProvider(model)
    async with Gateway(_config(make_config), provider=provider, channels={"tg": channel}) as gw:
        scheduler, clock, job = await _one_job_due_in_a_minute(
            gw, "give me today's headline", JobKind.TASK
        )
        channel.down = True
        clock[0] += 61
        await scheduler.deliver_due()
        [pending] = await scheduler.list_jobs("tg:u1")
        assert pending.status is JobStatus.PENDING and "502" in (pending.last_error or "")
        assert len(asked) == 1 and channel.texts() == []

        channel.down = False
        clock[0] = pending.run_at + 1
        await scheduler.deliver_due()
        assert channel.texts() == ["Headline 1: markets calm."]
        assert len(asked) == 1  # the prompt ran once
        assert await _sent_roles(gw, scheduler, job) == ["user", "assistant"]


async def test_a_task_whose_model_call_fails_is_retried_not_answered_with_an_apology(
    make_config: Any,
) -> None:
    """Nobody is there to ask again when a scheduled task's model call fails: the task is
    tried again later (as a failed send is), not closed with "try again in a moment"."""
    asked: list[ChatRequest] = []

    async def model(request: ChatRequest) -> str:
        asked.append(request)
        if len(asked) == 1:
            raise ProviderHTTPError(503, "overloaded", retryable=False)
        return "Headline: markets calm."

    channel = FlakyChannel("tg")
    provider = FunctionProvider(model)
    async with Gateway(_config(make_config), provider=provider, channels={"tg": channel}) as gw:
        await _fails_then_is_sent_whole(gw, channel, "503", "Headline: markets calm.")
    failed, retried = asked
    # the failed try left nothing in the job's history: its prompt is not there twice
    assert retried.messages == failed.messages


async def test_a_task_whose_answer_breaks_off_mid_stream_is_retried_not_sent_half(
    make_config: Any, monkeypatch: Any
) -> None:
    """The model's stream breaks after a few words: none of it was shown, so the task is
    tried again later instead of sending those words with "(the answer was interrupted)"."""
    monkeypatch.setenv("FAKE_LLM_KEY", "sk-test-not-a-secret")
    whole = "Headline: markets calm, bonds rallied."
    async with FakeLLM() as fake:
        fake.push(Reply(text=whole, reset_after_chunks=3), whole)
        config = _fake_llm_config(make_config, fake)
        channel = RecordingChannel("tg", console=False)
        async with Gateway(config, channels={"tg": channel}) as gw:
            await _fails_then_is_sent_whole(gw, channel, "broke off", whole)
        broken, retried = fake.calls(path="/v1/chat/completions")
    # the try again does not see the half answer of the broken one
    assert retried.body["messages"] == broken.body["messages"]


async def test_a_task_whose_answer_breaks_off_after_a_tool_ran_sends_what_there_is(
    make_config: Any, monkeypatch: Any
) -> None:
    """The stream breaks after a tool ran: a try again would run the tool again (its
    effects twice) with a history that no longer shows it ran, so what there is is sent,
    marked interrupted, and the job's history keeps the tool's run."""
    whole = "Headline: markets calm, bonds rallied."
    broken = Reply(text=whole, reset_after_chunks=3)
    sent, roles = await _task_after_a_tool(make_config, monkeypatch, broken, whole)
    assert sent.endswith("(the answer was interrupted)") and whole not in sent
    assert roles[:3] == ["user", "assistant", "tool"]


async def test_a_task_whose_model_call_fails_after_a_tool_ran_is_not_tried_again(
    make_config: Any, monkeypatch: Any
) -> None:
    """The model call after a tool ran fails outright (no stream at all): as for a break-off,
    a try again would run the tool again, so the person is told once what went wrong, the
    job is done, and its history keeps the tool's run."""
    # the provider's own retries of a 500 fail alike
    failures = [Reply.error(500, "server")] * 6
    sent, roles = await _task_after_a_tool(make_config, monkeypatch, *failures, "Headline.")
    assert "not answering" in sent and "Headline." not in sent  # the note of the failure
    assert roles[:3] == ["user", "assistant", "tool"]


async def _task_after_a_tool(
    make_config: Any, monkeypatch: Any, *after_the_tool: Reply | str
) -> tuple[str, list[str]]:
    """A task whose model asks for a tool, then answers with `after_the_tool`: the one text
    the person was shown (also an hour later: the task is not tried again, and the model
    is not asked again), and the roles of the turns its session stored."""
    monkeypatch.setenv("FAKE_LLM_KEY", "sk-test-not-a-secret")
    call = ToolCall("t1", "current_time", json.dumps({"zone": "UTC"}))
    async with FakeLLM() as fake:
        fake.push(Reply(tool_calls=[call]), *after_the_tool)
        config = _fake_llm_config(make_config, fake)
        channel = RecordingChannel("tg", console=False)
        async with Gateway(config, channels={"tg": channel}) as gw:
            scheduler, clock, job = await _one_job_due_in_a_minute(gw, "headline", JobKind.TASK)
            clock[0] += 61
            await scheduler.deliver_due()
            [sent] = channel.texts()
            roles = await _sent_roles(gw, scheduler, job)
            asked = len(fake.calls(path="/v1/chat/completions"))
            clock[0] += 3600  # long past any retry's time
            await scheduler.deliver_due()
            assert channel.texts() == [sent]
        assert len(fake.calls(path="/v1/chat/completions")) == asked  # no try again
    return sent, roles


async def test_a_one_shot_task_of_a_person_not_allowed_is_cancelled_without_a_word(
    make_config: Any,
) -> None:
    """Its person may not be answered in the DM (never paired there): the model does not run
    as them, nothing is sent, and the task closes instead of waiting paused for good."""
    asked: list[ChatRequest] = []

    async def model(request: ChatRequest) -> str:
        asked.append(request)
        return "Headline: markets calm."

    channels = {"tg": {"type": "telegram", "access": {"dm_policy": "pairing"}}}
    config = make_config(channels=channels, scheduler={"poll_seconds": 3600})
    channel = RecordingChannel("tg", console=False)
    async with Gateway(config, provider=FunctionProvider(model), channels={"tg": channel}) as gw:
        scheduler, clock, job = await _one_job_due_in_a_minute(gw, "headlines", JobKind.TASK)
        clock[0] = _START + 65
        await scheduler.deliver_due()
        after = await scheduler.jobs.get(job.id)
        assert after is not None and after.status is JobStatus.CANCELLED
    assert asked == [] and channel.texts() == []


async def test_reminders_of_a_person_no_longer_allowed_are_skipped_as_their_tasks_are(
    make_config: Any,
) -> None:
    """The owner revoked the person's pairing: a plain reminder is not sent to them either.
    The one-shot one closes, the daily one keeps its schedule ("skipped last time"), and
    once they are approved again the daily one is sent at its next time."""
    channels = {"tg": {"type": "telegram", "access": {"dm_policy": "pairing"}}}
    config = make_config(channels=channels, scheduler={"poll_seconds": 3600})
    channel = RecordingChannel("tg", console=False)
    async with Gateway(config, channels={"tg": channel}) as gw:
        access = gw.store.access
        code = await access.issue_code("ABCD2345", "tg", "u1", "U1", 3600, 10)
        assert code is not None and await access.approve(code.code, "owner")
        scheduler, clock, once = await _one_job_due_in_a_minute(gw, "stretch", JobKind.REMINDER)
        daily = await scheduler.schedule(
            person_id="tg:u1",
            identity_key="tg:u1",
            conversation=DM,
            text="water the plants",
            when=Every(dt.timedelta(days=1), dt.datetime.fromtimestamp(_START + 60, dt.UTC)),
            timezone="UTC",
        )
        assert await access.revoke("tg", "u1")
        clock[0] = _START + 65
        await scheduler.deliver_due()
        assert channel.texts() == []
        closed = await scheduler.jobs.get(once.id)
        assert closed is not None and closed.status is JobStatus.CANCELLED
        kept = await scheduler.jobs.get(daily.id)
        assert kept is not None and kept.status is JobStatus.PENDING
        assert kept.due_at == _START + 60 + 86400
        assert "skipped last time" in describe_job(kept)

        code = await access.issue_code("EFGH2345", "tg", "u1", "U1", 3600, 10)
        assert code is not None and await access.approve(code.code, "owner")
        clock[0] = _START + 65 + 86400
        await scheduler.deliver_due()
        [sent] = channel.texts()
        assert "water the plants" in sent


async def test_a_task_on_a_channel_no_longer_configured_runs_nothing(
    make_config: Any,
) -> None:
    """The channel it delivers to was taken out of config.toml: nobody there is the owner
    (nor the console), so the model does not run as anyone, and the task is paused as one
    whose chat is gone."""
    asked: list[ChatRequest] = []

    async def model(request: ChatRequest) -> str:
        asked.append(request)
        return "Headline: markets calm."

    channel = RecordingChannel("tg", console=False)
    provider = FunctionProvider(model)
    async with Gateway(_config(make_config), provider=provider, channels={"tg": channel}) as gw:
        await gw.warmup.wait()
        scheduler = gw.deps.scheduler
        assert scheduler is not None
        clock = [_START]
        scheduler.clock = lambda: clock[0]
        gone = Conversation("old", "u1", ConversationKind.DM)
        job = await scheduler.schedule(
            person_id="old:u1",
            identity_key="old:u1",
            conversation=gone,
            text="headlines",
            when=Once(dt.datetime.fromtimestamp(_START + 60, dt.UTC)),
            timezone="UTC",
            kind=JobKind.TASK,
        )
        clock[0] = _START + 65
        await scheduler.deliver_due()
        after = await scheduler.jobs.get(job.id)
        assert after is not None and after.status is JobStatus.PAUSED
        assert "not configured" in (after.last_error or "")
    assert asked == [] and channel.texts() == []


async def test_a_channel_no_longer_configured_is_nobodys_console(make_config: Any) -> None:
    """A name neither in config.toml nor among the running channels is not the operator's
    console: whoever it names gets no owner role there, and may not be answered."""
    from bot.messages import Identity

    channels = {
        "tg": RecordingChannel("tg", console=False),
        "console": RecordingChannel("console", console=True),
    }
    async with Gateway(_config(make_config), channels=channels) as gw:
        assert gw.access.role_of(Identity("console", "me", "me")) == "owner"
        stale = Identity("old", "u1", "u1")
        assert gw.access.role_of(stale) == "user"
        assert not await gw.access.allows(stale, Conversation("old", "u1", ConversationKind.DM))


async def _fails_then_is_sent_whole(
    gw: Gateway, channel: RecordingChannel, error: str, answer: str
) -> None:
    """A task due a minute after `_START` fails its first try (its last error names
    `error`) without sending anything, and its next try sends `answer` alone."""
    scheduler, clock, _ = await _one_job_due_in_a_minute(
        gw, "give me today's headline", JobKind.TASK
    )
    clock[0] += 61
    await scheduler.deliver_due()
    assert channel.texts() == []
    [pending] = await scheduler.list_jobs("tg:u1")
    assert pending.status is JobStatus.PENDING and error in (pending.last_error or "")

    clock[0] = pending.run_at + 1
    await scheduler.deliver_due()
    assert channel.texts() == [answer]
    [done] = await scheduler.jobs.listing(include_closed=True, person_id="tg:u1")
    assert done.status is JobStatus.SENT


_LONG_ANSWER = (
    "Markets opened calm today.\n\nBonds rallied after the data.\n\nOil slipped at the close."
)
_PARTS = [
    "Markets opened calm today.",
    "Bonds rallied after the data.",
    "Oil slipped at the close.",
]


async def _long_task_failing_after(
    make_config: Any, sent_before_outage: int, kind: JobKind = JobKind.TASK
) -> list[str]:
    """Run a task whose answer (or a reminder whose text) needs three messages while sends
    fail after `sent_before_outage` of them, then its retry once the platform is back;
    returns every text the person was shown, in order."""
    asked: list[ChatRequest] = []

    async def model(request: ChatRequest) -> str:
        asked.append(request)
        return _LONG_ANSWER

    # messages of 40 characters at most: the answer goes out in three
    channel = RecordingChannel("tg", console=False, max_message_len=40)
    channel.retry_backoff_s = 0.01
    provider = FunctionProvider(model)
    async with Gateway(_config(make_config), provider=provider, channels={"tg": channel}) as gw:
        scheduler, clock, _ = await _one_job_due_in_a_minute(
            gw, "give me today's markets" if kind is JobKind.TASK else _LONG_ANSWER, kind
        )
        parts = (
            _PARTS if kind is JobKind.TASK else channel.chunks(f"{REMINDER_MARK} {_LONG_ANSWER}")
        )
        channel.sends_before_outage = sent_before_outage
        clock[0] += 61
        await scheduler.deliver_due()
        [pending] = await scheduler.list_jobs("tg:u1")
        assert pending.status is JobStatus.PENDING and "502" in (pending.last_error or "")
        assert channel.texts() == parts[:sent_before_outage]

        channel.sends_before_outage = None
        clock[0] = pending.run_at + 1  # within the "late by" note's threshold
        await scheduler.deliver_due()
        [done] = await scheduler.jobs.listing(include_closed=True, person_id="tg:u1")
        assert done.status is JobStatus.SENT and len(asked) == (kind is JobKind.TASK)
        assert channel.texts() == parts
        return channel.texts()


async def test_a_long_task_answer_cut_off_by_an_outage_is_sent_on_from_where_it_stopped(
    make_config: Any,
) -> None:
    """The first message went out before the platform failed: the retry sends the second
    and third, and the first is shown exactly once."""
    assert await _long_task_failing_after(make_config, 1) == _PARTS


async def test_a_long_task_answer_whose_last_message_failed_sends_only_that_one_again(
    make_config: Any,
) -> None:
    assert await _long_task_failing_after(make_config, 2) == _PARTS


async def test_a_long_reminder_cut_off_by_an_outage_is_sent_on_from_where_it_stopped(
    make_config: Any,
) -> None:
    texts = await _long_task_failing_after(make_config, 1, JobKind.REMINDER)
    assert len(texts) == 3 and texts[0].startswith(REMINDER_MARK)


async def test_a_long_task_answer_whose_first_message_failed_is_sent_whole_again(
    make_config: Any,
) -> None:
    assert await _long_task_failing_after(make_config, 0) == _PARTS


async def _one_job_due_in_a_minute(
    gw: Gateway, text: str, kind: JobKind
) -> tuple[Scheduler, list[float], Job]:
    """Once the warm-up is done: a job for tg:u1 due a minute after `_START`, on a clock the
    test moves (`clock[0]`)."""
    await gw.warmup.wait()
    scheduler = gw.deps.scheduler
    assert scheduler is not None
    clock = [_START]
    scheduler.clock = lambda: clock[0]
    job = await scheduler.schedule(
        person_id="tg:u1",
        identity_key="tg:u1",
        conversation=DM,
        text=text,
        when=Once(dt.datetime.fromtimestamp(_START + 60, dt.UTC)),
        timezone="UTC",
        kind=kind,
    )
    return scheduler, clock, job
