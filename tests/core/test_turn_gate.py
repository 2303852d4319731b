"""The burst gate: at most `size` turns between it and their model request, the rest in the
order they came; answers arriving let everyone through; and in a gateway, the first
requests of a burst reach the model while later turns still wait to build theirs."""

from __future__ import annotations

import asyncio
import contextlib
from typing import Any

import openai  # noqa: F401  (the SDK loads before any wait starts)
import pytest

from bot.gateway import Gateway
from bot.providers import openai as openai_provider
from bot.turn_gate import BurstGate, request_leaving
from tests.fakes.channel import RecordingChannel
from tests.fakes.llm import FakeLLM, RecordedRequest, Reply


async def _settle() -> None:
    for _ in range(5):
        await asyncio.sleep(0)


async def test_at_most_size_turns_hold_a_slot_and_the_rest_go_in_arrival_order() -> None:
    gate = BurstGate(size=2)
    through: list[int] = []
    slots: dict[int, Any] = {}

    async def turn(n: int) -> None:
        slots[n] = await gate.enter()
        through.append(n)

    tasks = [asyncio.create_task(turn(n)) for n in range(6)]
    await _settle()
    assert through == [0, 1] and gate.waiting == 4
    slots[1].release()
    slots[1].release()  # a second release gives nothing back
    await _settle()
    assert through == [0, 1, 2] and gate.waiting == 3
    slots[0].release()
    slots[2].release()
    await _settle()
    assert through == [0, 1, 2, 3, 4] and gate.waiting == 1
    for n in (3, 4):
        slots[n].release()
    await asyncio.gather(*tasks)
    assert through == list(range(6))
    slots[5].release()
    assert gate._free == 2  # every slot came back, none was made up


async def test_answers_arriving_lets_every_waiting_turn_through_without_a_slot() -> None:
    gate = BurstGate(size=1)
    first = await gate.enter()
    waiting = [asyncio.create_task(gate.enter()) for _ in range(3)]
    await _settle()
    assert gate.waiting == 3
    gate.answers_arriving()
    flushed = await asyncio.gather(*waiting)
    assert gate.waiting == 0
    for slot in flushed:
        slot.release()  # they held nothing
    assert gate._free == 0, "the first turn still holds the only slot"
    first.release()
    assert gate._free == 1


async def test_a_cancelled_wait_leaves_the_queue_and_a_slot_handed_to_it_moves_on() -> None:
    gate = BurstGate(size=1)
    first = await gate.enter()
    gone = asyncio.create_task(gate.enter())
    after = asyncio.create_task(gate.enter())
    await _settle()
    gone.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await gone
    assert gate.waiting == 1
    first.release()
    slot = await after
    assert gate.waiting == 0 and gate._free == 0
    slot.release()
    assert gate._free == 1


async def test_request_leaving_frees_the_slot_of_this_context_and_of_tasks_it_started() -> None:
    gate = BurstGate(size=1)

    async def turn() -> None:
        await gate.enter()

        async def agent() -> None:  # the agent runs in a task the turn starts
            request_leaving()

        await asyncio.create_task(agent())

    await turn()
    assert gate._free == 1
    request_leaving()  # no slot held here: nothing happens
    assert gate._free == 1


def test_a_gate_needs_room_for_one_turn() -> None:
    with pytest.raises(ValueError, match="at least one"):
        BurstGate(size=0)


async def test_a_burst_reaches_the_model_while_later_turns_still_wait_to_build(
    make_config: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Without the gate, every turn of the burst built its request (and opened its
    connection) before the first one was written; through it, the model server reads the
    first requests while most turns have not built theirs yet. Every turn is answered, in
    the order the burst came."""
    monkeypatch.setenv("FAKE_LLM_KEY", "sk-test-not-a-secret")
    count, size = 120, 8
    built: list[int] = []
    built_when_first_arrived: list[int] = []
    open_request = openai_provider.OpenAIProvider._open

    async def counting_open(self: Any, headers: Any, request: Any) -> Any:
        built.append(1)
        return await open_request(self, headers, request)

    monkeypatch.setattr(openai_provider.OpenAIProvider, "_open", counting_open)
    async with FakeLLM() as fake:
        asked: list[str] = []

        def reply(request: RecordedRequest) -> Reply:
            if not built_when_first_arrived:
                built_when_first_arrived.append(len(built))
            asked.append(request.body["messages"][-1]["content"])
            return Reply(text="ok")

        fake.reply_fn = reply
        config = make_config(
            providers={"fake": {"base_url": fake.base_url + "/v1", "api_key_env": "FAKE_LLM_KEY"}},
            models={"chat": ["fake:gpt-4o"]},
            gateway={"max_concurrent_turns": count},
        )
        channel = RecordingChannel()
        async with Gateway(config, channels={"test": channel}) as gw:
            gw.turns.gate = BurstGate(size)
            burst = [channel.inbound(f"m{i:03d}", user=f"u{i:03d}") for i in range(count)]
            await asyncio.gather(*(gw.handle_inbound(m) for m in burst))
            await channel.wait_for_messages(count, timeout=60)
    assert len(asked) == count
    assert built_when_first_arrived[0] < count // 2, built_when_first_arrived


async def test_a_stream_closed_while_it_waits_gives_no_slot_away() -> None:
    gate = BurstGate(size=1)
    first = await gate.enter()

    async def stream() -> Any:
        await gate.enter()
        yield "never"

    waiting = stream()
    pending = asyncio.ensure_future(waiting.__anext__())
    await _settle()
    assert gate.waiting == 1
    pending.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await pending
    await waiting.aclose()
    assert gate.waiting == 0
    first.release()
    assert gate._free == 1, "the freed slot went back to the gate, not to the closed stream"
