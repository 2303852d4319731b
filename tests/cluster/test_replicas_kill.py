"""Three `decapod run` replicas on one PostgreSQL database, Telegram in webhook mode against
the fake Bot API and the fake model: 2,000 messages across 200 sessions POSTed round-robin
(a session's messages land on every replica), one replica killed with SIGKILL mid-run.
Every message is answered exactly once, each session's answers come in the order its
messages were received, and the reminders due during the run fire once.

The kill lands while every turn of the victim waits for the model (its answers held at the
fake): a replica killed between a platform accepting a message and the record of it
repeats that one message after a restart, as a single process does (the platforms take no
idempotency key; bot/delivery.py). Everything else in flight is taken over."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import psycopg
import pytest

from bot.messages import Conversation, ConversationKind
from bot.store.config import StoreConfig, open_store
from bot.store.jobs import JobKind, JobRepo, NewJob
from tests.cluster.processes import (
    LoadBalancer,
    ReplicaProcess,
    answer_what_was_asked,
    assert_victims_turns_taken_over,
    base_config,
    kill_once_its_turns_wait,
    logs_on_failure,
    make_replicas,
    settle,
    start_all,
    stop_all,
)
from tests.fakes.llm import FakeLLM
from tests.fakes.telegram import TOKEN, FakeTelegram

pytestmark = [pytest.mark.replicas, pytest.mark.slow, pytest.mark.timeout(600)]

REPLICAS = 3
SESSIONS = 200
PER_SESSION = 10
VICTIM = 1
SECRET = "replicas-hook-secret-0123456789"
USER0 = 10_000
REMINDER_CHAT0 = 90_000


def _config(pg_url: str, telegram: FakeTelegram, llm: FakeLLM, port: int) -> str:
    return (
        base_config(pg_url, llm, port, "\n[scheduler]\nlease_seconds = 5\n")
        + f"""
[channels.tg]
type = "telegram"
token_env = "TG_TOKEN"
api_base_url = "{telegram.base_url}"
file_base_url = "{telegram.file_base_url}"
chat_interval_s = 0
mode = "webhook"
webhook_url = "https://bot.example.test/telegram/tg"
webhook_secret_env = "TG_HOOK_SECRET"

[channels.tg.access]
dm_policy = "open"
"""
    )


def _job(text: str, chat: int, due: float) -> NewJob:
    return NewJob(
        person_id=f"person-{chat}",
        identity_key=f"tg:{chat}",
        kind=JobKind.REMINDER,
        text=text,
        repeat="once",
        interval_s=None,
        cron=None,
        timezone="UTC",
        conversation=Conversation("tg", str(chat), ConversationKind.DM),
        due_at=due,
        created_at=time.time(),
    )


async def _schedule(pg_url: str, jobs: list[NewJob]) -> None:
    store = open_store(StoreConfig(url=pg_url), None)  # type: ignore[arg-type]
    await store.start()
    try:
        repo = JobRepo(store)
        for job in jobs:
            await repo.insert(job, max_active=100)
    finally:
        await store.stop()
    with psycopg.connect(pg_url, autocommit=True) as conn:  # as a scheduling replica does
        conn.execute("SELECT pg_notify('decapod', 'job:test')")


def _sent_jobs(pg_url: str) -> int:
    with psycopg.connect(pg_url, autocommit=True) as conn:
        row = conn.execute("SELECT count(*) FROM jobs WHERE status = 'sent'").fetchone()
        return int(row[0]) if row else 0


@pytest.fixture
async def telegram() -> AsyncIterator[FakeTelegram]:
    async with FakeTelegram() as server:
        yield server


async def test_three_replicas_one_killed_nothing_lost_or_doubled(
    pg_url: str, telegram: FakeTelegram, tmp_path: Path
) -> None:
    replicas: list[ReplicaProcess] = []
    with logs_on_failure(replicas):
        started = time.monotonic()
        async with FakeLLM() as llm, aiohttp.ClientSession() as http:
            held_from: list[int] = []  # index of the first request made while answers are held
            answer_what_was_asked(llm)
            replicas += make_replicas(
                tmp_path,
                REPLICAS,
                lambda port: _config(pg_url, telegram, llm, port),
                {"TG_TOKEN": TOKEN, "TG_HOOK_SECRET": SECRET},
            )
            # reminders due while the messages flow
            await _schedule(
                pg_url,
                [_job(f"early {j}", REMINDER_CHAT0 + j, time.time() + 6) for j in range(10)],
            )
            try:
                await start_all(replicas, http)
                headers = {"X-Telegram-Bot-Api-Secret-Token": SECRET}

                async def send(target: ReplicaProcess, update: dict[str, Any], _: int) -> int:
                    async with http.post(
                        target.url("/telegram/tg"), json=update, headers=headers
                    ) as resp:
                        return resp.status

                balancer = LoadBalancer(replicas, send)

                async def session(sid: int) -> None:
                    user = USER0 + sid
                    for k in range(PER_SESSION):
                        text = f"s{sid}-m{k}"
                        message = telegram.message(
                            text, chat={"id": user, "type": "private"}, user_id=user
                        )
                        update = {"update_id": sid * PER_SESSION + k + 1, "message": message}
                        await balancer.post(update, sid + k, f"update {update['update_id']}")

                senders = asyncio.gather(*(session(sid) for sid in range(SESSIONS)))

                victim = replicas[VICTIM]
                await balancer.until_taken(SESSIONS * PER_SESSION // 2)
                early_done = time.monotonic() + 60
                while _sent_jobs(pg_url) < 10:  # fired and recorded: none is mid-delivery
                    assert time.monotonic() < early_done, "the early reminders did not fire"
                    await asyncio.sleep(0.1)
                # hold the victim's answers; kill it once each of its turns waits for one
                first_held, held_turns = await kill_once_its_turns_wait(victim, llm, http)
                held_from.append(first_held)
                balancer.down.add(VICTIM)
                killed_at = time.monotonic()
                await _schedule(
                    pg_url,
                    [
                        _job(f"late {j}", REMINDER_CHAT0 + 10 + j, time.time() + 3)
                        for j in range(10)
                    ],
                )
                llm.hold.set()
                await senders

                def answered() -> int:
                    return sum(
                        len(telegram.texts(USER0 + sid)) >= PER_SESSION for sid in range(SESSIONS)
                    )

                finish_by = time.monotonic() + 240
                while answered() < SESSIONS or not all(
                    telegram.texts(REMINDER_CHAT0 + j) for j in range(20)
                ):
                    assert time.monotonic() < finish_by, f"{answered()} of {SESSIONS} sessions done"
                    await asyncio.sleep(0.2)
                await settle(replicas, http)
            finally:
                await stop_all(replicas)
        elapsed = time.monotonic() - started
        for sid in range(SESSIONS):
            user = USER0 + sid
            expected = [f"answer to s{sid}-m{k}" for k in range(PER_SESSION)]
            assert telegram.texts(user) == expected, f"session {sid}"
            assert len(telegram.calls_of("sendMessage", chat_id=user)) == PER_SESSION
        for j in range(10):
            assert telegram.texts(REMINDER_CHAT0 + j) == [f"⏰ early {j}"]
            assert telegram.texts(REMINDER_CHAT0 + 10 + j) == [f"⏰ late {j}"]
        assert_victims_turns_taken_over(llm, held_from[0], victim)
        print(
            f"\n{REPLICAS} replicas, {SESSIONS * PER_SESSION} messages in {elapsed:.0f}s; one "
            f"killed {killed_at - started:.0f}s in with {held_turns} turns waiting for the model"
        )
