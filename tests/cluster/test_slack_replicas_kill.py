"""Two `decapod run` replicas on one PostgreSQL database behind a load balancer, Slack in HTTP
mode (the Events API, signed requests) against the fake Slack and the fake model: 400
messages across 40 channel threads POSTed to the replicas in turn, one replica killed with
SIGKILL mid-run, and an event whose replica is down retried on the other with Slack's
X-Slack-Retry-Num. Every message is answered exactly once (chat.postMessage counts at the
fake), each thread's answers come in the order its messages were sent.

Each thread starts with a mention; its other messages name nobody, so they are answered only
because the bot's threads are shared by the replicas (bot/channel_state.py): a reply that
reaches the replica that did not take the mention is still addressed to the bot. As in the
Telegram test (test_replicas_kill.py), the kill lands while every turn of the victim waits
for the model."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest

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
from tests.fakes.slack import BOT_USER_ID, FakeSlack

pytestmark = [pytest.mark.replicas, pytest.mark.slow, pytest.mark.timeout(600)]

REPLICAS = 2
THREADS = 40
PER_THREAD = 10
VICTIM = 1


def _config(pg_url: str, slack: FakeSlack, llm: FakeLLM, port: int) -> str:
    return (
        base_config(pg_url, llm, port)
        + f"""
[channels.slack]
type = "slack"
mode = "http"
api_url = "{slack.api_url}"
working_signal = ""

[channels.slack.access]
dm_policy = "open"

[channels.slack.access.groups."*"]
require_mention = true
"""
    )


def _channel(thread: int) -> str:
    return f"C{thread:05d}"


@pytest.fixture
async def slack() -> AsyncIterator[FakeSlack]:
    async with FakeSlack() as server:
        yield server


async def test_two_replicas_serve_slack_events_one_killed_nothing_lost_or_doubled(
    pg_url: str, slack: FakeSlack, tmp_path: Path
) -> None:
    replicas: list[ReplicaProcess] = []
    with logs_on_failure(replicas):
        started = time.monotonic()
        async with FakeLLM() as llm, aiohttp.ClientSession() as http:
            held_from: list[int] = []
            answer_what_was_asked(llm)
            replicas += make_replicas(
                tmp_path,
                REPLICAS,
                lambda port: _config(pg_url, slack, llm, port),
                {
                    "SLACK_BOT_TOKEN": slack.bot_token,
                    "SLACK_SIGNING_SECRET": slack.signing_secret,
                },
            )
            try:
                await start_all(replicas, http)

                async def send(target: ReplicaProcess, event: dict[str, Any], attempt: int) -> int:
                    # the balancer does not know a replica died: its connection is refused,
                    # and Slack's retry, numbered, lands on the next
                    result = await slack.post_signed(
                        http, target.url("/slack/events"), event, retry_num=attempt or None
                    )
                    return result.status

                balancer = LoadBalancer(replicas, send)

                async def thread(index: int) -> None:
                    channel = _channel(index)
                    mention = slack.event(
                        "app_mention", channel=channel, text=f"<@{BOT_USER_ID}> t{index}-m0"
                    )
                    root = mention["event"]["ts"]
                    await balancer.post(mention, index, f"event {mention['event_id']}")
                    for k in range(1, PER_THREAD):
                        if k == PER_THREAD // 2:
                            await killed.wait()  # the second half meets a dead replica
                        reply = slack.event(
                            "thread_reply", channel=channel, thread_ts=root, text=f"t{index}-m{k}"
                        )
                        await balancer.post(reply, index + k, f"event {reply['event_id']}")

                killed = asyncio.Event()
                senders = asyncio.gather(*(thread(i) for i in range(THREADS)))

                victim = replicas[VICTIM]
                await balancer.until_taken(THREADS * PER_THREAD // 2)
                assert balancer.taken == THREADS * PER_THREAD // 2
                # hold the victim's answers; kill it once each of its turns waits for one
                first_held, held_turns = await kill_once_its_turns_wait(victim, llm, http)
                held_from.append(first_held)
                killed_at = time.monotonic()
                killed.set()
                llm.hold.set()
                await senders

                def answered() -> int:
                    return sum(len(slack.texts(_channel(i))) >= PER_THREAD for i in range(THREADS))

                finish_by = time.monotonic() + 120
                while answered() < THREADS:
                    assert time.monotonic() < finish_by, f"{answered()} of {THREADS} threads done"
                    await asyncio.sleep(0.2)
                await settle(replicas, http)
            finally:
                await stop_all(replicas)
        elapsed = time.monotonic() - started
        posts = slack.method_calls("chat.postMessage")
        for i in range(THREADS):
            channel = _channel(i)
            expected = [f"answer to t{i}-m{k}" for k in range(PER_THREAD)]
            assert slack.texts(channel) == expected, f"thread {i}"
            in_channel = [p for p in posts if p.params.get("channel") == channel]
            assert len(in_channel) == PER_THREAD, f"thread {i}: {len(in_channel)} posts"
            assert len({p.params.get("thread_ts") for p in in_channel}) == 1, "all in the thread"
        assert_victims_turns_taken_over(llm, held_from[0], victim)
        print(
            f"\n{REPLICAS} replicas, {THREADS * PER_THREAD} Slack events in {elapsed:.0f}s "
            f"({balancer.retries} retried on the other replica); one killed "
            f"{killed_at - started:.0f}s in with {held_turns} turns waiting for the model; "
            f"{len(slack.method_calls('chat.update'))} chat.update calls"
        )
