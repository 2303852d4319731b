"""Sandboxed tools inside real turns: the owner runs code, a group is refused, secrets printed
by a command never reach the model, and a busy sandbox does not slow other chats."""

from __future__ import annotations

import asyncio
import base64
import json
import time
import urllib.parse
from typing import Any

import pytest

from bot.gateway import Gateway
from bot.messages import ConversationKind
from bot.providers.base import ChatRequest, ToolCall
from bot.providers.testing import FunctionProvider, ScriptedProvider
from tests.fakes.channel import RecordingChannel
from tests.fakes.llm import FakeLLM, Reply

pytestmark = pytest.mark.skipif(
    __import__("shutil").which("bwrap") is None, reason="bubblewrap is not installed"
)

PRIMES = """\
primes, n = [], 2
while len(primes) < 20:
    if all(n % p for p in primes):
        primes.append(n)
    n += 1
print(primes)
"""


def _sandbox_config(make_config: Any, *, turn_deadline_s: float = 120.0, **extra: Any) -> Any:
    return make_config(
        sandbox={"backend": "bwrap", "approval": "never"},
        gateway={"owners": ["tg:owner"], "turn_deadline_s": turn_deadline_s},
        channels={
            "tg": {
                "type": "telegram",
                "access": {"dm_policy": "open", "groups": {"*": {"require_mention": False}}},
            }
        },
        **extra,
    )


def _script_primes() -> list[Any]:
    return [
        [ToolCall("c1", "write_file", json.dumps({"path": "primes.py", "content": PRIMES}))],
        [ToolCall("c2", "exec", json.dumps({"command": "python3 primes.py"}))],
        lambda request: "Output: " + request.messages[-1].content,
    ]


async def test_owner_writes_and_runs_a_script_in_the_sandbox(make_config: Any) -> None:
    provider = ScriptedProvider(_script_primes())
    channel = RecordingChannel("tg", console=False)
    async with Gateway(_sandbox_config(make_config), provider=provider, channels={"tg": channel}):
        await channel.push(
            "write a Python script that prints the first 20 primes and run it", user="owner"
        )
        [reply] = await channel.wait_for_messages(1, timeout=20)
    assert "[2, 3, 5, 7, 11, 13, 17, 19, 23, 29, 31, 37, 41, 43, 47, 53, 59, 61, 67, 71]" in reply
    assert "exec" in {t.name for t in provider.requests[0].tools}


async def test_the_same_request_from_a_non_owner_in_a_group_is_refused(make_config: Any) -> None:
    provider = ScriptedProvider(_script_primes())
    channel = RecordingChannel("tg", console=False)
    async with Gateway(_sandbox_config(make_config), provider=provider, channels={"tg": channel}):
        await channel.push(
            "write a Python script that prints the first 20 primes and run it",
            user="someone",
            chat="group1",
            kind=ConversationKind.GROUP,
        )
        [reply] = await channel.wait_for_messages(1, timeout=20)
    assert "exec" not in {t.name for t in provider.requests[0].tools}
    exec_result = provider.requests[2].messages[-1]
    assert exec_result.role == "tool" and "not available" in exec_result.content
    assert "[2, 3, 5" not in reply


@pytest.mark.parametrize(
    "secret",
    [
        "sk-fake-provider-KEY-0123456789abcdefXYZ",
        # Low entropy and no known shape: only the registry's variants can hide its encodings.
        "changeme-changeme-changeme",
    ],
)
async def test_s2_known_secret_encodings_in_tool_output(
    secret: str, make_config: Any, monkeypatch: pytest.MonkeyPatch, caplog: Any
) -> None:
    monkeypatch.setenv("FAKE_PROVIDER_KEY", secret)
    raw = secret.encode()
    shown = [
        secret,
        urllib.parse.quote(secret, safe=""),
        raw.hex(),
        raw.hex().upper(),
        base64.b64encode(raw).decode(),
    ]
    shown += [base64.b64encode(b"x" * k + raw).decode() for k in range(9)]
    script = "\n".join(f"print({s!r})" for s in shown)
    script += "\nimport os\nprint(sorted(os.environ))"
    provider = ScriptedProvider(
        [
            [ToolCall("c1", "write_file", json.dumps({"path": "leak.py", "content": script}))],
            [ToolCall("c2", "exec", json.dumps({"command": "python3 leak.py"}))],
            "done",
        ]
    )
    config = _sandbox_config(
        make_config,
        providers={"local": {"preset": "ollama", "api_key_env": "FAKE_PROVIDER_KEY"}},
    )
    channel = RecordingChannel("tg", console=False)
    async with Gateway(config, provider=provider, channels={"tg": channel}):
        await channel.push("print the encodings", user="owner")
        await channel.wait_for_messages(1, timeout=20)
    tool_output = provider.requests[2].messages[-1].content
    assert "[REDACTED" in tool_output
    for variant in shown[:5]:
        assert variant not in tool_output and variant not in caplog.text
    for k in range(9):
        # the stable middle of each base64 alignment is what the registry knows
        middle = base64.b64encode(b"x" * k + raw).decode()[8:-8]
        assert middle not in tool_output
    # the real protection: the key never entered the sandbox's environment
    env_line = tool_output.splitlines()[-1]
    assert "FAKE_PROVIDER_KEY" not in env_line and secret not in env_line


async def test_chat_stays_responsive_while_a_sandboxed_command_burns_cpu(
    make_config: Any,
) -> None:
    async def answer(request: ChatRequest) -> Any:
        last = request.messages[-1]
        if last.content == "burn" and last.role == "user":
            return [
                ToolCall(
                    "b",
                    "exec",
                    json.dumps({"command": "python3 -c 'while True: pass'", "timeout": 10}),
                )
            ]
        return "ok"

    channel = RecordingChannel("tg", console=False)
    async with Gateway(
        _sandbox_config(make_config), provider=FunctionProvider(answer), channels={"tg": channel}
    ):
        await channel.push("burn", user="owner")
        await asyncio.sleep(0.5)  # the command is running now
        started = time.monotonic()
        await channel.push("hello", user="other")
        await channel.wait_for_messages(1, chat_id="other", timeout=5)
        # answered while the 10 s command still burns (a blocked loop would answer after it);
        # the bound leaves a busy machine 8 s for one short turn, the order is the point
        assert time.monotonic() - started < 8.0 and channel.texts("owner") == []
        await channel.wait_for_messages(1, chat_id="owner", timeout=30)


async def test_a_command_longer_than_the_turn_has_left_is_stopped_in_time_to_answer(
    make_config: Any,
) -> None:
    # The model may ask for up to `wall_seconds` (300 s by default), more than the turn's
    # deadline (120 s): the whole turn was stopped, and the person got "that took too long"
    # instead of the output so far.
    command = "echo started; sleep 60; echo finished"
    provider = ScriptedProvider(
        [
            [ToolCall("c1", "exec", json.dumps({"command": command, "timeout": 60}))],
            lambda request: "Output: " + request.messages[-1].content,
        ]
    )
    channel = RecordingChannel("tg", console=False)
    # 20 s: the answer's room is min(10, 20 / 4) = 5 s, so the command gets ~15 s of its
    # 60 s, with room for a busy machine either side
    config = _sandbox_config(make_config, turn_deadline_s=20)
    async with Gateway(config, provider=provider, channels={"tg": channel}):
        await channel.push("run the slow job", user="owner")
        [reply] = await channel.wait_for_messages(1, timeout=30)
    assert reply.startswith("Output: exit code") and "timed out" in reply
    assert "started" in reply and "finished" not in reply
    # said, so the model does not try again with a larger timeout
    assert "the turn's time limit cut this command's wall clock" in reply


#: a name with byte 0xFF, as `list_files` shows it and the model writes it back
UNDECODABLE = "bad\udcffname"
MAKE_UNDECODABLE = "open(b'bad\\xffname', 'wb').write(b'made with byte 0xFF\\n')"
SECRET = "sk-fake-llm-KEY-0123456789abcdefXYZ"


def _provider_table(api: str, fake: FakeLLM) -> dict[str, Any]:
    if api == "anthropic":
        return {"type": "anthropic", "base_url": fake.base_url, "api_key_env": "FAKE_LLM_KEY"}
    return fake.provider(first_token_timeout_s=5, health_probe=False)


def _past_paths(body: dict[str, Any]) -> list[str]:
    """The `path` of every past file call in a request body, in either API's form."""
    arguments = [
        json.loads(call["function"]["arguments"])
        for message in body["messages"]
        for call in message.get("tool_calls") or ()
    ]
    arguments += [
        block["input"]
        for message in body["messages"]
        if isinstance(message["content"], list)
        for block in message["content"]
        if block.get("type") == "tool_use"
    ]
    return [a["path"] for a in arguments if "path" in a]


@pytest.mark.parametrize("api", ["openai", "anthropic"])
async def test_a_name_that_is_no_utf8_goes_back_to_the_model_and_through_the_store(
    api: str, make_config: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The model reads and writes a file whose name has byte 0xFF by its escaped name: the
    # next request repeats that call, whose name has no UTF-8 form (only its \udcff escape);
    # it failed to encode, as no provider error, and the turn failed with no answer.
    monkeypatch.setenv("FAKE_LLM_KEY", SECRET)
    path = "/v1/messages" if api == "anthropic" else "/v1/chat/completions"
    async with FakeLLM() as fake:
        make = {"command": ["python3", "-c", MAKE_UNDECODABLE]}
        # a secret in the arguments: the redacted call is written anew, name included
        write = {"path": UNDECODABLE, "content": SECRET}
        fake.push(
            Reply(tool_calls=[ToolCall("c1", "exec", json.dumps(make))]),
            Reply(tool_calls=[ToolCall("c2", "read_file", json.dumps({"path": UNDECODABLE}))]),
            Reply(tool_calls=[ToolCall("c3", "write_file", json.dumps(write))]),
            Reply(text="Read and written."),
        )
        config = _sandbox_config(
            make_config,
            providers={"llm": _provider_table(api, fake)},
            models={"chat": ["llm:test-model"]},
        )
        channel = RecordingChannel("tg", console=False)
        async with Gateway(config, channels={"tg": channel}):
            await channel.push("read the odd file", user="owner", delivery_id="r1")
            assert await channel.wait_for_messages(1, timeout=30) == ["Read and written."]
        requests = fake.calls(path=path)
        assert len(requests) == 4
        read = json.dumps(requests[2].body["messages"][-1])
        assert "made with byte 0xFF" in read
        assert _past_paths(requests[3].body) == [UNDECODABLE, UNDECODABLE]
        assert SECRET not in json.dumps(requests[3].body)

        # after a restart the history comes from the store, the name unchanged
        fake.push(Reply(text="Still there."))
        channel = RecordingChannel("tg", console=False)
        async with Gateway(config, channels={"tg": channel}):
            await channel.push("and now?", user="owner", delivery_id="r2")
            assert await channel.wait_for_messages(1, timeout=30) == ["Still there."]
    assert _past_paths(fake.calls(path=path)[4].body) == [UNDECODABLE, UNDECODABLE]
