"""`decapod ask`: one answer on stdout, through the real gateway core and the real openai SDK
against the fake LLM."""

from __future__ import annotations

import asyncio
import json
import os
import pty
import sys
import time
from pathlib import Path

from bot.messages import Conversation, ConversationKind
from bot.store import Store
from bot.store.jobs import JobKind, JobRepo, JobStatus, NewJob
from tests.cli.harness import decapod, env_for, fake_llm_config, write_config
from tests.fakes.llm import FakeLLM, Reply


def _chat_calls(fake: FakeLLM) -> list[list[dict[str, object]]]:
    return [r.body["messages"] for r in fake.calls(path="/v1/chat/completions")]


async def test_ask_prints_the_answer_and_exits_zero(home: Path) -> None:
    async with FakeLLM() as fake:
        fake.push("Forty-two, of course.")
        write_config(home, fake_llm_config(fake.base_url))

        done = await decapod(home, "ask", "what", "is", "the", "answer?")

    assert done.returncode == 0, done
    assert done.stdout == "Forty-two, of course.\n"
    assert done.stderr == ""
    [messages] = _chat_calls(fake)
    assert messages[-1] == {"role": "user", "content": "what is the answer?"}


async def test_ask_json_and_a_fresh_session_each_time(home: Path) -> None:
    async with FakeLLM() as fake:
        fake.push(Reply(text="Noted.", input_tokens=31, output_tokens=3), "I do not know.")
        write_config(home, fake_llm_config(fake.base_url))
        first = await decapod(home, "ask", "--json", "my secret word is mango")
        second = await decapod(home, "ask", "--json", "what is my secret word?")

    assert first.returncode == second.returncode == 0, (first, second)
    result = json.loads(first.stdout)
    assert result["answer"] == "Noted."
    assert (result["provider"], result["model"], result["outcome"]) == ("fake", "m", "ok")
    assert result["usage"]["input_tokens"] == 31 and result["usage"]["output_tokens"] == 3
    assert result["error"] is None
    # each ask is its own session: the second never sees the first
    assert result["session"] != json.loads(second.stdout)["session"]
    later = _chat_calls(fake)[-1]
    assert not any("mango" in str(m.get("content")) for m in later)


async def test_a_provider_that_is_down_is_one_line_on_stderr_and_exit_1(home: Path) -> None:
    fake = await FakeLLM().start()
    url = fake.base_url
    await fake.stop()  # nothing listens there now
    write_config(home, fake_llm_config(url))

    done = await decapod(home, "ask", "hello")
    as_json = await decapod(home, "ask", "--json", "hello")

    assert done.returncode == 1 and done.stdout == ""
    (line,) = done.stderr.splitlines()
    assert line.startswith("decapod: no answer: fake:m at ") and url in line, line
    assert as_json.returncode == 1
    result = json.loads(as_json.stdout)
    assert result["outcome"] == "error" and result["answer"] == ""
    assert url in result["error"]


async def test_a_key_in_the_provider_url_is_not_printed(home: Path) -> None:
    # a provider whose key rides in the base_url's query string fails: `ask` and
    # `providers status` name the URL without the key, as `decapod doctor` does
    write_config(home, fake_llm_config("http://127.0.0.1:9/v1?api_key=hunter2-pass-Xy9"))

    done = await decapod(home, "ask", "hello")
    status = await decapod(home, "providers", "status")

    assert done.returncode == 1 and "decapod: no answer: fake:m at http://127.0.0.1:9/v1?" in (
        done.stderr
    )
    assert status.returncode == 1 and "FAIL fake" in status.stdout
    for shown in (done.stdout, done.stderr, status.stdout, status.stderr):
        assert "hunter2-pass-Xy9" not in shown


async def test_a_command_is_answered_without_the_model(home: Path) -> None:
    async with FakeLLM() as fake:
        write_config(home, fake_llm_config(fake.base_url))
        done = await decapod(home, "ask", "/help")

    assert done.returncode == 0, done
    assert done.stdout.startswith("Commands:\n/start")
    assert _chat_calls(fake) == []


async def test_on_a_terminal_the_answer_shows_while_the_model_still_writes(home: Path) -> None:
    words = " ".join(f"word{n}" for n in range(40))
    async with FakeLLM() as fake:
        fake.push(Reply(text=words, chunk_delay_s=0.1))
        write_config(home, fake_llm_config(fake.base_url))
        primary, secondary = pty.openpty()
        proc = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "bot",
            "ask",
            "count",
            env=env_for(home),
            stdin=asyncio.subprocess.DEVNULL,
            stdout=secondary,
            stderr=asyncio.subprocess.PIPE,
        )
        os.close(secondary)
        os.set_blocking(primary, False)
        shown = b""
        try:
            deadline = time.monotonic() + 60
            while b"word1" not in shown:
                assert time.monotonic() < deadline, shown
                try:
                    shown += os.read(primary, 4096)
                except BlockingIOError:
                    await asyncio.sleep(0.02)
            # the start is on screen while the fake is still sending the rest
            assert fake.open_requests == 1
            assert b"word39" not in shown
            assert await asyncio.wait_for(proc.wait(), 60) == 0
        finally:
            if proc.returncode is None:
                proc.kill()
            while True:
                try:
                    chunk = os.read(primary, 4096)
                except (BlockingIOError, OSError):
                    break
                if not chunk:
                    break
                shown += chunk
            os.close(primary)
    assert shown.replace(b"\r\n", b"\n").decode().strip() == words


async def test_ask_leaves_reminders_to_the_running_gateway(home: Path) -> None:
    """A due reminder of a channel the ask process does not have stays pending: the
    one-shot must not try it, fail, and pause it for the gateway that can deliver it."""
    async with FakeLLM() as fake:
        write_config(home, fake_llm_config(fake.base_url))
        now = time.time()
        async with Store(home / "decapod.db") as store:
            job = await JobRepo(store).insert(
                NewJob(
                    person_id="p1",
                    identity_key="telegram:42",
                    kind=JobKind.REMINDER,
                    text="stretch",
                    repeat="once",
                    interval_s=None,
                    cron=None,
                    timezone="UTC",
                    conversation=Conversation("telegram", "42", ConversationKind.DM),
                    due_at=now - 5,
                    created_at=now - 60,
                ),
                max_active=50,
            )

        done = await decapod(home, "ask", "hello")

        async with Store(home / "decapod.db") as store:
            after = await JobRepo(store).get(job.id)
    assert done.returncode == 0, done
    assert after is not None and after.status is JobStatus.PENDING, after
