"""The `[speech]` table: text to speech for voice answers.

    [speech]
    chain = ["openai:gpt-4o-mini-tts", "kokoro:kokoro"]   # "provider:model", tried in order
    voice = "alloy"

Each entry names a provider of `[providers]` (its base URL and key variables) that serves
OpenAI's `/v1/audio/speech`: OpenAI itself, or a local server such as Kokoro-FastAPI or
openedai-speech. An empty chain turns voice answers off.
"""

from __future__ import annotations

from collections.abc import Mapping

from pydantic import Field, field_validator

from bot.config_base import Section, empty_list
from bot.providers.config import ProviderConfig, split_model_ref


class SpeechConfig(Section):
    #: "provider:model" entries, tried in order: the next one when one fails
    chain: list[str] = Field(default_factory=empty_list)
    voice: str = Field(default="alloy", min_length=1)
    #: the longest answer read out; a longer one is cut at the end of a sentence
    max_chars: int = Field(default=4000, ge=100, le=4096)
    #: seconds one server may take to answer before the next one is tried
    timeout_s: float = Field(default=60.0, gt=0)

    @field_validator("chain")
    @classmethod
    def _refs(cls, refs: list[str]) -> list[str]:
        for ref in refs:
            split_model_ref(ref)
        return refs


def check_audio_chain(
    providers: Mapping[str, ProviderConfig], chain: list[str], key: str, endpoint: str
) -> None:
    """Every entry of an audio chain (`key`: "speech.chain") names a configured provider
    that speaks OpenAI's API, which is what serves `endpoint`."""
    for ref in chain:
        name, _model = split_model_ref(ref)
        provider = providers.get(name)
        if provider is None:
            raise ValueError(f"{key}: {ref!r} names provider {name!r}, not in [providers]")
        if provider.type != "openai":
            raise ValueError(
                f"{key}: {ref!r} needs an OpenAI-compatible provider ({endpoint}), and "
                f"{name!r} is type {provider.type!r}"
            )
