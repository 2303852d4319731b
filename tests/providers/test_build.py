"""From config to chains: keys from the environment, shared chains and breakers, probes."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

# loaded before any test's clock starts: on a busy machine the import alone takes seconds
import openai  # noqa: F401
import pytest
import pytest_asyncio

from bot.errors import AllProvidersFailed, ConfigError
from bot.providers.base import ChatMessage, ChatRequest, complete
from bot.providers.build import LOCAL_DUMMY_KEY, ProviderSet, build_chain
from bot.providers.config import ModelsConfig, ProviderConfig
from bot.providers.testing import ManualClock
from tests.fakes.llm import FakeLLM, Reply

REQUEST = ChatRequest(model="", messages=(ChatMessage("user", "hello"),))


@pytest_asyncio.fixture
async def fake() -> AsyncIterator[FakeLLM]:
    async with FakeLLM() as server:
        yield server


def test_missing_key_variable_names_the_variable_and_the_key_path() -> None:
    providers = {"openai": ProviderConfig(preset="openai")}

    with pytest.raises(ConfigError) as caught:
        build_chain(providers, ModelsConfig(chat=["openai:gpt-4o"]), environ={})

    assert str(caught.value) == (
        "providers.openai.api_key_env: environment variable OPENAI_API_KEY is not set"
    )


def test_missing_rotation_key_names_its_index() -> None:
    providers = {"p": ProviderConfig(preset="openai", api_keys_env=["KEY_A", "KEY_B"])}

    with pytest.raises(ConfigError, match=r"providers\.p\.api_keys_env\[1\]: .* KEY_B"):
        build_chain(providers, ModelsConfig(chat=["p:m"]), environ={"KEY_A": "sk-a"})


def test_unknown_provider_in_a_chain_is_a_config_error() -> None:
    with pytest.raises(ConfigError, match="'ghost:m' names provider 'ghost'"):
        ProviderSet({}, ModelsConfig(chat=["ghost:m"]), environ={})


async def test_local_server_without_a_key_gets_a_dummy_key(fake: FakeLLM) -> None:
    providers = {"local": ProviderConfig(base_url=fake.base_url + "/v1")}
    chain = build_chain(providers, ModelsConfig(chat=["local:llama3.2"]), environ={})
    try:
        out = await complete(chain, REQUEST)
    finally:
        await chain.aclose()

    assert (out.finish.provider, out.finish.model) == ("local", "llama3.2")
    assert fake.requests[-1].headers["Authorization"] == f"Bearer {LOCAL_DUMMY_KEY}"


async def test_keys_come_from_the_named_variables_in_order(fake: FakeLLM) -> None:
    providers = {
        "p": ProviderConfig(base_url=fake.base_url + "/v1", api_keys_env=["KEY_A", "KEY_B"])
    }
    environ = {"KEY_A": "sk-first", "KEY_B": "sk-second"}
    fake.push(Reply.error(401))
    chain = build_chain(providers, ModelsConfig(chat=["p:m"]), environ=environ)
    try:
        await complete(chain, REQUEST)
    finally:
        await chain.aclose()

    assert [r.headers["Authorization"] for r in fake.requests] == [
        "Bearer sk-first",
        "Bearer sk-second",
    ]


def test_an_unused_provider_needs_no_key() -> None:
    providers = {
        "local": ProviderConfig(preset="ollama"),
        "openai": ProviderConfig(preset="openai"),  # OPENAI_API_KEY unset, but no chain uses it
    }
    built = ProviderSet(providers, ModelsConfig(chat=["local:llama3.2"]), environ={})

    assert list(built.providers) == ["local"]


async def test_one_chain_per_distinct_list_and_breakers_shared_across_chains(
    fake: FakeLLM,
) -> None:
    base = fake.base_url + "/v1"
    providers = {"a": ProviderConfig(base_url=base), "b": ProviderConfig(base_url=base)}
    models = ModelsConfig(
        chat=["a:big", "b:small"],
        routes={"scheduled": ["a:big", "b:small"], "cheap": ["b:small", "a:big"]},
    )
    clock = ManualClock()
    async with ProviderSet(providers, models, clock=clock, environ={}) as built:
        chat = built.for_purpose("chat")
        assert built.for_purpose("scheduled") is chat  # same list: same chain, same state
        assert built.for_purpose("compaction") is chat  # no route: the chat chain
        assert built.for_purpose("cheap") is not chat

        fake.push(Reply.error(429, retry_after=60), model="big")
        await complete(chat, REQUEST)
        # The cheap chain reaches a:big only as its fallback, and knows it is cooling.
        fake.push(Reply.error(500), Reply.error(500), model="small")
        with pytest.raises(AllProvidersFailed):
            await complete(built.for_purpose("cheap"), REQUEST)

        assert len(fake.calls(model="big")) == 1
        states = {s["name"]: s["state"] for s in built.state()}
        assert states == {"a:big": "open", "b:small": "closed"}
        assert built.stats().skipped_open == 1


async def test_probes_open_and_close_a_local_server(fake: FakeLLM) -> None:
    providers = {"local": ProviderConfig(base_url=fake.base_url + "/v1", probe_interval_s=0.02)}
    # A probe's failure opens the entry until the next probe; on the real clock that is a
    # 0.02 s window a busy machine can keep the check below from seeing. The manual clock
    # holds it open until a probe's answer closes it.
    built = ProviderSet(providers, ModelsConfig(chat=["local:m"]), clock=ManualClock(), environ={})
    try:
        fake.models_status = 503
        await built.start()
        async with asyncio.timeout(15):
            while built.state()[0]["state"] != "open":
                await asyncio.sleep(0.01)
        assert built.state()[0]["last_error"] == "server"

        fake.models_status = 200
        async with asyncio.timeout(15):
            while built.state()[0]["state"] != "closed":
                await asyncio.sleep(0.01)
    finally:
        await built.aclose()

    probes = fake.calls(path="/v1/models")
    assert len(probes) >= 2
    # Stopped: no more probes after close.
    count = len(probes)
    await asyncio.sleep(0.05)
    assert len(fake.calls(path="/v1/models")) == count


async def test_paid_apis_are_not_probed_by_default() -> None:
    providers = {"openai": ProviderConfig(preset="openai")}
    built = ProviderSet(
        providers, ModelsConfig(chat=["openai:gpt-4o"]), environ={"OPENAI_API_KEY": "sk-x"}
    )
    await built.start()
    try:
        assert not any(t.get_name().startswith("provider-probe") for t in asyncio.all_tasks())
    finally:
        await built.aclose()


async def test_owner_is_notified_through_the_set(fake: FakeLLM) -> None:
    sent: list[str] = []

    async def notify(text: str) -> None:
        sent.append(text)

    base = fake.base_url + "/v1"
    providers = {"a": ProviderConfig(base_url=base), "b": ProviderConfig(base_url=base)}
    async with ProviderSet(
        providers, ModelsConfig(chat=["a:m1", "b:m2"]), notify=notify, environ={}
    ) as built:
        fake.push(Reply.insufficient_quota(), model="m1")
        out = await complete(built.for_purpose(), REQUEST)
        assert out.finish.provider == "b"

    assert len(sent) == 1
    assert "'a'" in sent[0]


async def test_the_pool_holds_as_many_streams_as_the_gateway_runs_turns(fake: FakeLLM) -> None:
    turns = 150  # more than aiohttp's (and the SDKs') default pool of 100
    providers = {"p": ProviderConfig(base_url=fake.base_url + "/v1")}
    built = ProviderSet(
        providers, ModelsConfig(chat=["p:m"]), environ={}, max_concurrent_turns=turns
    )
    fake.push(*[Reply(hang=True) for _ in range(turns)])
    chain = built.for_purpose("chat")
    streams = [asyncio.create_task(complete(chain, REQUEST)) for _ in range(turns)]
    try:
        async with asyncio.timeout(60):
            while fake.open_requests < turns:
                await asyncio.sleep(0.05)
    finally:
        for task in streams:
            task.cancel()
        await asyncio.gather(*streams, return_exceptions=True)
        await built.aclose()

    assert built.providers["p"].pool_size == turns


def test_a_pool_is_never_smaller_than_the_default_nor_unlimited() -> None:
    from bot.providers.build import pool_size_for
    from bot.providers.remote import DEFAULT_POOL_SIZE
    from bot.providers.sse import SseClient

    assert pool_size_for(8) == DEFAULT_POOL_SIZE
    assert pool_size_for(2000) == 2000
    with pytest.raises(ValueError, match="at least 1"):
        SseClient(connect_timeout_s=1.0, pool_size=0)
