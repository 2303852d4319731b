"""From config to chains: providers with their keys, one FailoverProvider per distinct chain.

`ProviderSet` is what the gateway holds for its lifetime: the providers (one SDK client per
key), one breaker board shared by every chain, the chains by purpose, and optional health
probes of servers on this machine.
"""

from __future__ import annotations

import asyncio
import logging
import os
import time
from collections.abc import Awaitable, Callable, Mapping
from types import TracebackType
from typing import TYPE_CHECKING

from bot.errors import ConfigError, ProviderError
from bot.providers.base import Provider
from bot.providers.breaker import BreakerBoard, BreakerSettings, EntryState, FailoverStats, Notify
from bot.providers.config import ModelsConfig, ProviderConfig, check_model_refs, split_model_ref
from bot.providers.failover import ChainEntry, FailoverPolicy, FailoverProvider, classify
from bot.providers.remote import DEFAULT_POOL_SIZE
from bot.proxy_env import check_proxy_env

log = logging.getLogger(__name__)

#: what a server on this machine gets as its key when none is configured (they ignore it)
LOCAL_DUMMY_KEY = "decapod-local"

if TYPE_CHECKING:
    from bot.providers.anthropic import AnthropicProvider
    from bot.providers.openai import OpenAIProvider

    RemoteProvider = OpenAIProvider | AnthropicProvider


def resolve_keys(name: str, config: ProviderConfig, environ: Mapping[str, str]) -> list[str]:
    """The provider's keys from the environment, in rotation order."""
    keys: list[str] = []
    for path, variable in config.key_env_names():
        value = environ.get(variable, "").strip()
        if not value:
            raise ConfigError(
                f"environment variable {variable} is not set", key=f"providers.{name}.{path}"
            )
        keys.append(value)
    return keys or [LOCAL_DUMMY_KEY]


def make_provider(
    name: str,
    config: ProviderConfig,
    *,
    environ: Mapping[str, str] = os.environ,
    clock: Callable[[], float] = time.monotonic,
    pool_size: int | None = None,
) -> RemoteProvider:
    keys = resolve_keys(name, config, environ)
    check_proxy_env(environ)
    # each API's client module is imported when a provider speaks it
    if config.type == "anthropic":
        from bot.providers.anthropic import AnthropicProvider

        return AnthropicProvider(name, config, keys, clock=clock, pool_size=pool_size)
    from bot.providers.openai import OpenAIProvider

    return OpenAIProvider(name, config, keys, clock=clock, pool_size=pool_size)


def pool_size_for(max_concurrent_turns: int) -> int:
    """A provider's connection pool for a gateway running this many turns at once: never
    smaller (a turn would wait for a connection, not for the model), and never unlimited."""
    return max(max_concurrent_turns, DEFAULT_POOL_SIZE)


def policy_from(models: ModelsConfig) -> FailoverPolicy:
    return FailoverPolicy(
        breaker=BreakerSettings(
            failure_threshold=models.failure_threshold,
            failure_rate_threshold=models.failure_rate_threshold,
            failure_rate_window_s=models.failure_rate_window_s,
            failure_rate_min_calls=models.failure_rate_min_calls,
            base_cooldown_s=models.base_cooldown_s,
            max_cooldown_s=models.max_cooldown_s,
        ),
        attempt_budget=models.attempt_budget,
        deadline_s=models.deadline_s,
        wait_for_primary=models.wait_for_primary,
        rate_limit_min_cooldown_s=models.rate_limit_min_cooldown_s,
        auth_cooldown_s=models.auth_cooldown_s,
        billing_cooldown_s=models.billing_cooldown_s,
    )


def _checked(providers: dict[str, ProviderConfig], models: ModelsConfig) -> None:
    try:
        check_model_refs(providers, models)
    except ValueError as exc:
        raise ConfigError(str(exc)) from None


def _entries(
    refs: list[str], providers: dict[str, ProviderConfig], built: Mapping[str, Provider]
) -> list[ChainEntry]:
    entries = []
    for ref in refs:
        name, model = split_model_ref(ref)
        entries.append(ChainEntry(built[name], model, providers[name].context_window))
    return entries


def build_chain(
    providers: dict[str, ProviderConfig],
    models: ModelsConfig,
    purpose: str = "chat",
    *,
    clock: Callable[[], float] = time.monotonic,
    notify: Notify | None = None,
    environ: Mapping[str, str] = os.environ,
) -> FailoverProvider:
    """One chain on its own (a CLI command, a test); its aclose() closes its providers too.

    A long-running process uses ProviderSet, so that every purpose shares providers and
    breaker state.
    """
    _checked(providers, models)
    refs = models.chain_for(purpose)
    names = {split_model_ref(ref)[0] for ref in refs}
    built = {
        name: make_provider(name, providers[name], environ=environ, clock=clock) for name in names
    }
    return FailoverProvider(
        _entries(refs, providers, built),
        policy_from(models),
        clock=clock,
        notify=notify,
        name=f"chain:{purpose}",
        closes_providers=True,
    )


class ProviderSet:
    """Every configured chain, sharing providers and one breaker board.

    Only providers that some chain names are built, so an unused provider's key need not be set.
    """

    def __init__(
        self,
        providers: dict[str, ProviderConfig],
        models: ModelsConfig,
        *,
        clock: Callable[[], float] = time.monotonic,
        notify: Notify | None = None,
        environ: Mapping[str, str] = os.environ,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
        max_concurrent_turns: int | None = None,
    ) -> None:
        _checked(providers, models)
        pool_size = None if max_concurrent_turns is None else pool_size_for(max_concurrent_turns)
        self._configs = providers
        self._models = models
        policy = policy_from(models)
        self._sleep = sleep
        self.board = BreakerBoard(policy.breaker, clock=clock, notify=notify)
        self.providers: dict[str, RemoteProvider] = {
            name: make_provider(
                name, providers[name], environ=environ, clock=clock, pool_size=pool_size
            )
            for name in models.provider_names()
        }
        self._chains: dict[tuple[str, ...], FailoverProvider] = {}
        for purpose in models.purposes():
            refs = tuple(models.chain_for(purpose))
            if refs not in self._chains:
                self._chains[refs] = FailoverProvider(
                    _entries(list(refs), providers, self.providers),
                    policy,
                    board=self.board,
                    sleep=sleep,
                    name=f"chain:{purpose}",
                )
        self._probes: list[asyncio.Task[None]] = []

    def for_purpose(self, purpose: str = "chat") -> FailoverProvider:
        """The chain for a purpose; a purpose without a route gets the chat chain."""
        return self._chains[tuple(self._models.chain_for(purpose))]

    def led_by(self, ref: str) -> FailoverProvider:
        """The chat chain with `ref` tried first (a person's /model choice); built once per
        model, on the shared board, so it fails over exactly like the configured chain."""
        refs = (ref, *(r for r in self._models.chat if r != ref))
        chain = self._chains.get(refs)
        if chain is None:
            chain = self._chains[refs] = FailoverProvider(
                _entries(list(refs), self._configs, self.providers),
                policy_from(self._models),
                board=self.board,
                sleep=self._sleep,
                name=f"chain:{ref}",
            )
        return chain

    def state(self) -> list[EntryState]:
        return self.board.state()

    def stats(self) -> FailoverStats:
        return self.board.stats()

    async def start(self) -> None:
        """Start health probes of the providers that want them (local servers by default)."""
        if self._probes:
            return
        for name in self.providers:
            config = self._configs[name]
            if config.probes_health():
                task = asyncio.create_task(
                    self._probe_forever(name, config.probe_interval_s),
                    name=f"provider-probe-{name}",
                )
                self._probes.append(task)

    async def warm_up(self) -> None:
        """Load what each provider needs before its first turn (in worker threads)."""
        results = await asyncio.gather(
            *(p.warm_up() for p in self.providers.values()), return_exceptions=True
        )
        for name, result in zip(self.providers, results, strict=True):
            if isinstance(result, Exception):
                log.error("provider %s: cannot load its SDK: %s", name, result)

    async def stop(self) -> None:
        for task in self._probes:
            task.cancel()
        await asyncio.gather(*self._probes, return_exceptions=True)
        self._probes.clear()

    async def aclose(self) -> None:
        await self.stop()
        await self.board.aclose()
        for provider in self.providers.values():
            await provider.aclose()

    async def __aenter__(self) -> ProviderSet:
        await self.start()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.aclose()

    async def probe_once(self, name: str) -> str | None:
        """Probe one provider now and apply the result; returns the failure class or None."""
        error: str | None = None
        try:
            await self.providers[name].probe()
        except ProviderError as exc:
            error = classify(exc)
        except Exception:
            log.exception("health probe of %s failed unexpectedly", name)
            error = "unexpected"
        self.board.probe_result(name, error, self._configs[name].probe_interval_s)
        return error

    async def _probe_forever(self, name: str, interval: float) -> None:
        last: str | None = None
        while True:
            error = await self.probe_once(name)
            # a change is news; the same outage every interval is noise
            if error is not None and error != last:
                log.warning("health probe: provider %s is down (%s)", name, error)
            elif error is None and last is not None:
                log.info("health probe: provider %s answers again", name)
            last = error
            await asyncio.sleep(interval)
