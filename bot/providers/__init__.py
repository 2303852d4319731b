"""LLM providers: one async stream of chat events per request, behind the `Provider` seam.

- `base`: the seam (ChatRequest, ChatEvent, Provider, complete).
- `config`: pydantic models of the `[providers.*]` and `[models]` tables.
- `openai`, `anthropic`: the official SDKs (imported only when a provider of that type is built);
  `remote`: what they share (key rotation, stream deadlines, HTTP error mapping).
- `failover` and `breaker`: a chain of (provider, model) entries that is itself a Provider, and
  the circuit breakers whose state outlives turns.
- `build`: config -> chains; `ProviderSet` owns the providers, the shared breaker state and probes.
- `testing`: scripted and function providers and a manual clock, for tests and dry runs.

Importing this package imports neither SDK.
"""
