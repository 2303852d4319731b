"""Fixtures for scheduler tests: a started store, a clock the test moves, a recording deliverer."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
import pytest_asyncio

from bot.errors import DeliveryRefused
from bot.messages import Conversation, ConversationKind
from bot.scheduler import ConversationGone, Job, JobKind, Scheduler, SchedulerConfig
from bot.scheduler.timing import Cron, Every, Once
from bot.store import Store

DM = Conversation("test", "dm-alice")
GROUP = Conversation("test", "group-1", ConversationKind.GROUP)
# Monday 3 March 2025, 17:00 in Berlin (CET, UTC+1)
MONDAY_5PM = datetime(2025, 3, 3, 16, 0, tzinfo=UTC).timestamp()


class FakeClock:
    def __init__(self, now: float = MONDAY_5PM) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


@dataclass
class RecordingDeliverer:
    """Stands in for the gateway: records every send; chats in `gone` raise ConversationGone,
    chats in `refusing` raise DeliveryRefused with their reason, and `failures` sends in a
    row raise an ordinary error first."""

    sent: list[tuple[Conversation, str]] = field(default_factory=list)
    gone: set[str] = field(default_factory=set)
    refusing: dict[str, str] = field(default_factory=dict)
    failures: int = 0

    async def deliver(self, conversation: Conversation, text: str) -> str:
        if conversation.chat_id in self.gone:
            raise ConversationGone(f"chat {conversation.chat_id} was deleted")
        if conversation.chat_id in self.refusing:
            raise DeliveryRefused(self.refusing[conversation.chat_id])
        if self.failures:
            self.failures -= 1
            raise RuntimeError("platform answered 502")
        self.sent.append((conversation, text))
        return f"m{len(self.sent)}"

    def texts(self, chat_id: str | None = None) -> list[str]:
        return [t for c, t in self.sent if chat_id is None or c.chat_id == chat_id]


class EchoTaskRunner:
    def __init__(self) -> None:
        self.jobs: list[Job] = []

    async def run_task(self, job: Job) -> str:
        self.jobs.append(job)
        return f"answer to: {job.text}"


@pytest_asyncio.fixture
async def store(tmp_path: Path) -> AsyncIterator[Store]:
    async with Store(tmp_path / "decapod.db") as s:
        yield s


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def deliverer() -> RecordingDeliverer:
    return RecordingDeliverer()


@pytest.fixture
def make_scheduler(
    store: Store, clock: FakeClock, deliverer: RecordingDeliverer
) -> Callable[..., Scheduler]:
    def make(task_runner: Any = None, **config: Any) -> Scheduler:
        settings: dict[str, Any] = {"default_timezone": "Europe/Berlin"}
        settings.update(config)
        return Scheduler(
            store, deliverer, task_runner, config=SchedulerConfig(**settings), clock=clock
        )

    return make


MakeScheduler = Callable[..., Scheduler]


def once_in(clock: FakeClock, seconds: float) -> Once:
    return Once(datetime.fromtimestamp(clock.now + seconds, UTC))


async def remind(
    scheduler: Scheduler,
    when: Once | Every | Cron,
    text: str = "stretch",
    person: str = "alice",
    conversation: Conversation = DM,
    kind: JobKind = JobKind.REMINDER,
) -> str:
    job = await scheduler.schedule(
        person_id=person, identity_key=f"test:{person}", conversation=conversation, text=text,
        when=when, timezone="Europe/Berlin", kind=kind,
    )  # fmt: skip
    return job.id
