"""`gateway.turn_processes`: the receiver stores and hands each session to a fixed turn
process; replies come back through the receiver's channel. Real processes, real SQLite, the
fake model server."""

from __future__ import annotations

import asyncio
import os
import signal
from typing import Any

import pytest

from bot.gateway import Gateway
from bot.scaleout.pool import owner_of
from tests.fakes.channel import RecordingChannel
from tests.fakes.llm import FakeLLM, RecordedRequest, Reply


@pytest.fixture(autouse=True)
def _fake_key(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("FAKE_LLM_KEY", "sk-test-not-a-secret")


def _config(make_config: Any, fake: FakeLLM, processes: int = 2) -> Any:
    return make_config(
        providers={"fake": fake.provider(context_window=8000, first_token_timeout_s=60)},
        models={"chat": ["fake:test-model"]},
        gateway={"turn_processes": processes, "shutdown_grace_s": 1},
    )


def _last_user_text(recorded: RecordedRequest) -> str:
    return str(recorded.body["messages"][-1]["content"])


def _echo(recorded: RecordedRequest) -> Reply:
    return Reply(text=f"re: {_last_user_text(recorded)}")


def _users_on_each_process(count: int) -> list[str]:
    """Users whose DM sessions fall on every turn process."""
    seen: dict[int, str] = {}
    for n in range(100):
        seen.setdefault(owner_of(f"test:dm:u{n}", count), f"u{n}")
    assert len(seen) == count
    return list(seen.values())


async def test_each_session_keeps_its_order_across_turn_processes(make_config: Any) -> None:
    async with FakeLLM() as fake:
        fake.reply_fn = _echo
        channel = RecordingChannel(console=True)
        users = [*_users_on_each_process(2), "u90", "u91"]
        async with Gateway(_config(make_config, fake), channels={"test": channel}) as gw:
            assert gw.turn_processes is not None
            assert len(set(gw.turn_processes.pids())) == 2
            assert os.getpid() not in gw.turn_processes.pids()
            for i in range(3):
                for user in users:
                    await channel.push(f"{user} #{i}", user=user)
            await channel.wait_for_messages(3 * len(users), timeout=60)
            for user in users:
                assert channel.texts(user) == [f"re: {user} #{i}" for i in range(3)]
            # the turns ran in the turn processes: their rows are in the one shared store
            keys = [("test", f"d{n}") for n in range(1, 3 * len(users) + 1)]
            for _ in range(3000):  # the status is written just after the reply is sent
                states = [await gw.store.deliveries.get(key) for key in keys]
                if all(s is not None and s[0] == "done" for s in states):
                    break
                await asyncio.sleep(0.01)
            assert [s[0] if s else None for s in states] == ["done"] * len(keys)
        # nothing asked twice
        assert len(fake.calls(path="/v1/chat/completions")) == 3 * len(users)


async def test_a_turn_process_that_dies_is_restarted_and_its_delivery_runs_once(
    make_config: Any,
) -> None:
    async with FakeLLM() as fake:
        slow_seen = asyncio.Event()

        def reply(recorded: RecordedRequest) -> Reply:
            text = _last_user_text(recorded)
            if text == "slow" and not slow_seen.is_set():
                slow_seen.set()
                return Reply(text="never sent", delay_s=60)
            return Reply(text=f"re: {text}")

        fake.reply_fn = reply
        channel = RecordingChannel(console=True)
        user, other = _users_on_each_process(2)
        async with Gateway(_config(make_config, fake), channels={"test": channel}) as gw:
            pool = gw.turn_processes
            assert pool is not None
            await channel.push("slow", user=user)
            await asyncio.wait_for(slow_seen.wait(), 30)
            victim = pool.pids()[owner_of(f"test:dm:{user}", 2)]
            os.kill(victim, signal.SIGKILL)
            while pool.restarts == 0:  # noticed, and starting again
                await asyncio.sleep(0.01)
            # arrives while it starts again: held, and also found unfinished by its resume
            await channel.push("after", user=user)
            await channel.push("elsewhere", user=other)
            await channel.wait_for_messages(3, timeout=60)
            await asyncio.sleep(0.5)  # a doubled reply would land now
            assert pool.restarts == 1
            assert victim not in pool.pids()
            assert channel.texts(user) == ["re: slow", "re: after"]
            assert channel.texts(other) == ["re: elsewhere"]
        asked = [_last_user_text(c) for c in fake.calls(path="/v1/chat/completions")]
        # "slow" was asked again after the death (its turn never finished); nothing else was
        assert sorted(asked) == ["after", "elsewhere", "slow", "slow"]


async def test_a_turn_process_that_cannot_start_fails_the_start_plainly(
    make_config: Any, monkeypatch: pytest.MonkeyPatch, tmp_path: Any
) -> None:
    """A turn process that dies before it is ready (a broken install, a store it cannot
    open) would die the same way at every restart: the start fails with its exit code
    instead of starting it again and again while the gateway never becomes ready."""
    import sys

    broken = tmp_path / "python"
    broken.write_text("#!/bin/sh\necho 'cannot import bot' >&2\nexit 3\n")
    broken.chmod(0o755)
    async with FakeLLM() as fake:
        monkeypatch.setattr(sys, "executable", str(broken))
        gateway = Gateway(_config(make_config, fake, processes=2), channels={})
        async with asyncio.timeout(60):
            with pytest.raises(Exception, match=r"turn process \d exited \(code 3\)"):
                await gateway.__aenter__()


async def test_a_turn_process_that_keeps_dying_at_once_is_started_again_ever_later(
    make_config: Any,
) -> None:
    """The first death is restarted at once; from the second in a row within
    QUICK_DEATH_S of its start, each start waits twice as long as the one before, and what
    its sessions are sent meanwhile is held and answered once it runs again."""
    async with FakeLLM() as fake:
        fake.reply_fn = _echo
        channel = RecordingChannel(console=True)
        async with Gateway(_config(make_config, fake), channels={"test": channel}) as gw:
            pool = gw.turn_processes
            assert pool is not None
            waits: list[float] = []

            async def no_wait(seconds: float) -> None:
                waits.append(seconds)

            pool.restart_sleep = no_wait
            for deaths in range(1, 5):
                victim = pool.pids()[0]
                os.kill(victim, signal.SIGKILL)
                async with asyncio.timeout(60):
                    while pool.restarts < deaths or pool.pids()[0] == victim:
                        await asyncio.sleep(0.01)
            assert waits == [1.0, 2.0, 4.0]
            user = next(u for u in _users_on_each_process(2) if owner_of(f"test:dm:{u}", 2) == 0)
            await channel.push("still there?", user=user)
            assert await channel.wait_for_messages(1, chat_id=user, timeout=60) == [
                "re: still there?"
            ]


class _SlowFirstFetch(RecordingChannel):
    """Its first download hangs until released, as a large file or a slow platform's may."""

    def __init__(self) -> None:
        super().__init__(console=True)
        self.fetching = asyncio.Event()
        self.release = asyncio.Event()

    async def fetch(self, attachment: Any, max_bytes: int) -> bytes:
        if not self.fetching.is_set():
            self.fetching.set()
            await self.release.wait()
        return await super().fetch(attachment, max_bytes)


async def test_a_call_that_outlives_its_dead_turn_process_leaves_the_next_ones_reply_whole(
    make_config: Any,
) -> None:
    """A download the receiver was still doing for a turn process that died ends after the
    process was started again; the new process numbers its calls from 1 again, and the old
    call's end must not cut off the new process's answer that has the same number."""
    from bot.messages import Attachment

    answer = " ".join(f"word{i}" for i in range(40))
    async with FakeLLM() as fake:
        fake.reply_fn = lambda r: Reply(text=answer, chunk_delay_s=0.05)
        channel = _SlowFirstFetch()
        channel.files["notes"] = b"the notes"
        user = _users_on_each_process(2)[0]
        async with Gateway(_config(make_config, fake), channels={"test": channel}) as gw:
            pool = gw.turn_processes
            assert pool is not None
            await channel.push("hello", user=user)  # its reply is the process's call 1
            await channel.wait_for_messages(1, chat_id=user, timeout=60)
            for _ in range(3000):  # and its last edit is in: the answer is whole
                if channel.texts(user) == [answer]:
                    break
                await asyncio.sleep(0.01)
            notes = Attachment("document", "notes", "notes.txt", "text/plain", 9)
            await channel.push("read this", user=user, parts=(notes,))  # its call 2: fetch
            await asyncio.wait_for(channel.fetching.wait(), 30)
            victim = pool.pids()[owner_of(f"test:dm:{user}", 2)]
            os.kill(victim, signal.SIGKILL)
            # the new process resumes the message: fetch (its call 1), the reply (call 2)
            await channel.wait_for_messages(2, chat_id=user, timeout=60)
            channel.release.set()  # the dead process's download ends now, mid-answer
            for _ in range(3000):
                if channel.texts(user)[-1] == answer:
                    break
                await asyncio.sleep(0.01)
            assert channel.texts(user) == [answer, answer]


async def test_a_model_choice_made_in_one_turn_process_reaches_the_others(
    make_config: Any,
) -> None:
    async with FakeLLM() as fake:
        fake.reply_fn = lambda recorded: Reply(text=f"from {recorded.body['model']}")
        config = make_config(
            providers={"fake": fake.provider()},
            models={"chat": ["fake:alpha", "fake:beta"]},
            gateway={"turn_processes": 2, "shutdown_grace_s": 1},
        )
        channel = RecordingChannel(console=True)  # injected by code: everyone on it is the owner
        owner, user = _users_on_each_process(2)
        async with Gateway(config, channels={"test": channel}) as gw:
            assert gw.turn_processes is not None
            await channel.push("hello", user=user)  # its process reads the choices now
            assert await channel.wait_for_messages(1, timeout=60) == ["from alpha"]
            await channel.push("/model beta for everyone", user=owner)
            await channel.wait_for_messages(2, timeout=60)
            await channel.push("hello again", user=user)
            await channel.wait_for_messages(3, timeout=60)
            await channel.push("/model reset for everyone", user=owner)
            await channel.wait_for_messages(4, timeout=60)
            await channel.push("and now", user=user)
            await channel.wait_for_messages(5, timeout=60)
        assert channel.texts(user) == ["from alpha", "from beta", "from alpha"]
        # the turn processes were told the channel is the operator's console: its sender is
        # the owner there, who may change the model for everyone
        assert channel.texts(owner)[0] == (
            "fake:beta now answers everyone first; the configured chain takes over if it fails."
        )
