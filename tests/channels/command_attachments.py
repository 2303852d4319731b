"""What the platforms' tests of a typed command sent with an attachment check alike: a
`/remind tomorrow 9am call mum` with an attachment sets its reminder from the text alone,
asks no model, and its answer names the attachment it did not use."""

from __future__ import annotations

from bot.gateway import Gateway
from bot.store.job_model import Job
from tests.fakes.llm import FakeLLM

#: the command each platform's test sends with its attachment
REMIND = "/remind tomorrow 9am call mum"


async def the_reminder_set(gw: Gateway) -> Job:
    """The one job open in the gateway's scheduler."""
    assert gw.deps.scheduler is not None
    [job] = await gw.deps.scheduler.jobs.listing(include_closed=False)
    return job


def assert_set_without(answer: str, job: Job, llm: FakeLLM, attachment: str) -> None:
    """The reminder of REMIND was set and said so, the attachment named as not used."""
    assert llm.calls(path="/v1/chat/completions") == []
    assert answer.startswith("Reminder ") and f"Not used: {attachment}" in answer
    assert job.text == "call mum"
