"""Prometheus metrics, in a registry per gateway (so tests can run several side by side)."""

from __future__ import annotations

import functools
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from prometheus_client import CollectorRegistry, Counter, Gauge


class _Instruments:
    """The registry and its instruments, made together on first use."""

    def __init__(self) -> None:
        from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

        self.registry = CollectorRegistry()
        r = self.registry
        self.turns = Counter(
            "decapod_turns", "Turns by outcome", ["outcome", "channel"], registry=r
        )
        self.turn_latency = Histogram(
            "decapod_turn_latency_seconds",
            "Inbound to reply sent",
            registry=r,
            buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120),
        )
        self.tokens = Counter("decapod_tokens", "Tokens by direction", ["direction"], registry=r)
        self.provider_errors = Counter(
            "decapod_provider_errors", "Provider errors by class", ["error"], registry=r
        )
        self.duplicates = Counter(
            "decapod_inbound_duplicates", "Duplicate deliveries dropped", ["channel"], registry=r
        )
        self.denied = Counter(
            "decapod_inbound_denied", "Messages refused by access policy", ["channel"], registry=r
        )
        self.queue_depth = Gauge("decapod_queue_depth", "Messages waiting in sessions", registry=r)
        self.active_turns = Gauge("decapod_active_turns", "Turns running now", registry=r)
        # the children every turn counts into, looked up once: `labels()` takes a lock and
        # turns each value into a string again on every call (three a turn)
        self.input_tokens = self.tokens.labels("input")
        self.output_tokens = self.tokens.labels("output")
        self.turns_by_label: dict[tuple[str, str], Any] = {}


class Metrics:
    """prometheus-client loads with the first message or scrape, not before the gateway is
    ready; every instrument is registered then, so a scrape shows them all from the start."""

    def __init__(self) -> None:
        self._watched: list[Any] = []

    @functools.cached_property
    def instruments(self) -> _Instruments:
        made = _Instruments()
        for provider_set in self._watched:
            made.registry.register(_ProviderCollector(provider_set))
        return made

    @property
    def registry(self) -> CollectorRegistry:
        return self.instruments.registry

    @property
    def provider_errors(self) -> Counter:
        return self.instruments.provider_errors

    @property
    def duplicates(self) -> Counter:
        return self.instruments.duplicates

    @property
    def denied(self) -> Counter:
        return self.instruments.denied

    @property
    def queue_depth(self) -> Gauge:
        return self.instruments.queue_depth

    @property
    def active_turns(self) -> Gauge:
        return self.instruments.active_turns

    def watch_providers(self, provider_set: Any) -> None:
        """Export the failover chain's own counters and breaker states at scrape time."""
        if "instruments" in vars(self):
            self.registry.register(_ProviderCollector(provider_set))
        else:
            self._watched.append(provider_set)

    def render(self) -> tuple[bytes, str]:
        from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

        return generate_latest(self.registry), CONTENT_TYPE_LATEST

    def observe_turn(self, channel: str, outcome: str, seconds: float, usage: Any) -> None:
        made = self.instruments
        turns = made.turns_by_label.get((outcome, channel))
        if turns is None:
            turns = made.turns_by_label[outcome, channel] = made.turns.labels(outcome, channel)
        turns.inc()
        made.turn_latency.observe(seconds)
        made.input_tokens.inc(usage.input_tokens)
        made.output_tokens.inc(usage.output_tokens)


_BREAKER_VALUE = {"closed": 0, "half_open": 1, "open": 2}


class _ProviderCollector:
    def __init__(self, provider_set: Any) -> None:
        self.provider_set = provider_set

    def describe(self) -> list[Any]:
        return []  # generated at scrape time; nothing to check at registration

    def collect(self) -> Any:
        from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily

        stats = self.provider_set.stats()
        calls = CounterMetricFamily(
            "decapod_provider_calls", "Provider calls by result", labels=["result"]
        )
        for result in (
            "calls",
            "successes",
            "failovers",
            "interrupted",
            "all_failed",
            "skipped_open",
        ):
            calls.add_metric([result], getattr(stats, result))
        yield calls
        errors = CounterMetricFamily(
            "decapod_provider_errors_by_class", "Provider errors by class", labels=["error"]
        )
        for name, count in stats.errors.items():
            errors.add_metric([name], count)
        yield errors
        state = GaugeMetricFamily(
            "decapod_provider_breaker_state", "0 closed, 1 half-open, 2 open", labels=["entry"]
        )
        for entry in self.provider_set.state():
            state.add_metric([entry["name"]], _BREAKER_VALUE.get(entry["state"], 2))
        yield state
