"""Replicas on one PostgreSQL database with Telegram in polling mode: exactly one of them
polls (the leader); when it is killed another polls within seconds, and what was sent
meanwhile is answered once; a leader whose lock connection is cut stops polling before
anyone else starts. The fake Bot API answers 409 Conflict to the earlier of two overlapping
long polls, as Telegram does, and counts them."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path
from typing import Any

import aiohttp
import psycopg

from bot.cluster.leader import LEADER_LOCK
from bot.runtime import read_runtime
from tests.cluster.replicas import Replica, eventually, roles, start_replica, stop_all
from tests.fakes.llm import FakeLLM, RecordedRequest, Reply
from tests.fakes.telegram import FakeTelegram

#: the stated fail-over bound is ~4 s (bot/cluster/leader.py TAKEOVER_S plus a poll start);
#: the test allows far more, for a loaded machine
FAILOVER_BOUND_S = 30.0


def _answer(request: RecordedRequest) -> Reply:
    return Reply(text=f"answer to {request.body['messages'][-1]['content']}")


def _slow_one(request: RecordedRequest) -> bool:
    return bool(request.body["messages"][-1]["content"] == "a slow one")


def _asked(llm: FakeLLM, text: str) -> int:
    return sum(
        1
        for r in llm.calls(path="/v1/chat/completions")
        if r.body["messages"][-1]["content"] == text
    )


async def _one_leader(replicas: list[Replica]) -> Replica | None:
    found = await roles(replicas)
    if None in found or found.count("leader") != 1:
        return None
    assert set(found) <= {"leader", "follower"}, found
    return replicas[found.index("leader")]


async def _live_replicas(replica: Replica) -> int:
    report = await replica.status()
    return 0 if report is None else len(report["cluster"]["replicas"])


async def test_one_replica_polls_and_another_takes_over_when_it_is_killed(
    pg_url: str, tmp_path: Path
) -> None:
    async with FakeTelegram() as telegram, FakeLLM() as llm:
        telegram.one_poller = True
        llm.reply_fn = _answer
        replicas = [
            await start_replica(tmp_path / f"r{i}", pg_url, telegram, llm) for i in range(3)
        ]
        try:
            leader = await eventually(lambda: _one_leader(replicas), 90, "one leader of three")
            telegram.push_private("before", user_id=100)
            await telegram.wait_until(lambda: telegram.texts(100) == ["answer to before"], 30)
            await asyncio.sleep(2)  # a while of steady state: one poller only
            assert telegram.max_polling == 1 and telegram.conflicts == 0
            for replica in replicas:  # /health: the role to the admin, the status to anyone
                admin, anyone = await _health(replica)
                assert admin["cluster"]["role"] == ("leader" if replica is leader else "follower")
                assert anyone == {"status": "ok"}
            for replica in replicas:
                report = await replica.status()
                assert report is not None
                assert len(report["cluster"]["replicas"]) == 3
                receiving = report["channels"]["tg"]["receiving"]
                assert receiving is (replica is leader), (replica.home.name, report)
                assert report["channels"]["tg"]["running"] is True  # followers send

            leader.kill()
            await leader.proc.wait()
            killed_at, polls_before = time.monotonic(), len(telegram.offsets)
            sent: list[str] = []
            for n in range(5):  # while no one polls, and maybe after
                text = f"during fail-over {n}"
                telegram.push_private(text, user_id=200 + n)
                sent.append(text)
                await asyncio.sleep(0.5)
            survivors = [r for r in replicas if r is not leader]
            while len(telegram.offsets) == polls_before:
                assert time.monotonic() - killed_at < FAILOVER_BOUND_S, "no one polls"
                await asyncio.sleep(0.05)
            took = time.monotonic() - killed_at
            print(f"\nfail-over after SIGKILL: {took:.2f}s")
            for n, text in enumerate(sent):
                await telegram.wait_until(
                    lambda n=n, text=text: telegram.texts(200 + n) == [f"answer to {text}"], 30
                )
            await eventually(lambda: _one_leader(survivors), 30, "one leader of two")
            # the killed replica's heartbeat ages out of the live list
            await eventually(lambda: _two(survivors[0]), 30, "two live replicas")
            await asyncio.sleep(1)  # nothing is answered twice, even late
            for n, text in enumerate(sent):
                assert telegram.texts(200 + n) == [f"answer to {text}"]
                assert _asked(llm, text) == 1
            assert telegram.texts(100) == ["answer to before"]
            assert telegram.max_polling == 1 and telegram.conflicts == 0
        finally:
            await stop_all(replicas)


async def _health(replica: Replica) -> tuple[dict[str, Any], dict[str, Any]]:
    """GET /health with the admin token the replica wrote in its home, and from elsewhere
    without it."""
    runtime = read_runtime(replica.home)
    assert runtime is not None
    async with aiohttp.ClientSession() as http:
        bearer = {"Authorization": f"Bearer {runtime.token}"}
        async with http.get(f"{runtime.url}/health", headers=bearer) as response:
            admin = await response.json()
        # as through the balancer: not a local request, so no details without the token
        proxied = {"X-Forwarded-For": "203.0.113.9"}
        async with http.get(f"{runtime.url}/health", headers=proxied) as response:
            anyone = await response.json()
    return admin, anyone


async def _two(replica: Replica) -> bool:
    return await _live_replicas(replica) == 2


def _lock_holder_backend(url: str) -> int | None:
    with psycopg.connect(url, autocommit=True) as conn:
        row = conn.execute(
            "SELECT pid FROM pg_locks WHERE locktype = 'advisory' AND granted "
            "AND classid::bigint = %s AND objid::bigint = %s AND objsubid = 1",
            (LEADER_LOCK >> 32, LEADER_LOCK & 0xFFFFFFFF),
        ).fetchone()
        return None if row is None else int(row[0])


async def test_a_leader_that_loses_its_lock_connection_stops_polling_first(
    pg_url: str, tmp_path: Path
) -> None:
    async with FakeTelegram() as telegram, FakeLLM() as llm:
        telegram.one_poller = True
        llm.reply_fn = _answer
        # "a slow one" is answered only when the test lets it: until then a stopped replica
        # drains it, for as long as a busy machine needs to hand over (the grace is only an
        # upper bound: the stop ends when the turn does)
        llm.hold_only = _slow_one
        llm.hold.clear()
        replicas = [
            await start_replica(tmp_path / f"r{i}", pg_url, telegram, llm, grace_s=120)
            for i in range(2)
        ]
        try:
            leader = await eventually(lambda: _one_leader(replicas), 90, "one leader of two")
            other = replicas[1 - replicas.index(leader)]
            await eventually(lambda: telegram.polling == 1, 30, "the leader polls")
            holder = _lock_holder_backend(pg_url)
            assert holder is not None
            with psycopg.connect(pg_url, autocommit=True) as conn:
                conn.execute("SELECT pg_terminate_backend(%s)", (holder,))

            async def took_over() -> bool:
                return await other.role() == "leader"

            await eventually(took_over, 30, "the other replica leads")
            report = await leader.status()
            assert report is not None
            assert report["cluster"]["role"] == "follower"
            assert report["channels"]["tg"]["receiving"] is False
            telegram.push_private("after the cut", user_id=300)
            await telegram.wait_until(
                lambda: telegram.texts(300) == ["answer to after the cut"], 30
            )
            # the cut leader stopped before the new one polled: never two polls at once
            assert telegram.max_polling == 1 and telegram.conflicts == 0
            assert "no longer the leader" in leader.log()

            # a stop on purpose hands over first, then lets its running turn finish
            telegram.push_private("a slow one", user_id=302)
            await eventually(lambda: _asked(llm, "a slow one") == 1, 30, "the slow turn runs")
            other.proc.terminate()
            await eventually(lambda: _one_leader([leader]), 30, "the first leads again")
            telegram.push_private("after the stop", user_id=301)
            await telegram.wait_until(
                lambda: telegram.texts(301) == ["answer to after the stop"], 30
            )
            assert other.proc.returncode is None, "answered while the stopped one still drains"
            llm.hold.set()  # the slow turn ends, and with it the drain
            assert await asyncio.wait_for(other.proc.wait(), 60) == 0
            assert telegram.max_polling == 1 and telegram.conflicts == 0
        finally:
            llm.hold.set()
            await stop_all(replicas)
