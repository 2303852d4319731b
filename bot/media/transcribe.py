"""Speech to text through OpenAI-compatible `/v1/audio/transcriptions` servers (OpenAI, Groq,
a local whisper server), tried in the configured order until one answers."""

from __future__ import annotations

import logging
import os
from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING

from bot.media.config import TranscriptionConfig
from bot.media.errors import MediaProblem
from bot.providers.build import resolve_keys
from bot.providers.config import ProviderConfig, split_model_ref

if TYPE_CHECKING:
    from openai import AsyncOpenAI

log = logging.getLogger("decapod.media")

HOW_TO_ENABLE = (
    "I can't listen to voice notes yet: no transcription server is set up. The operator "
    "can enable it with a [transcription] chain in config.toml (for example "
    'chain = ["openai:whisper-1"]; see "Photos, documents and voice notes" in the README).'
)


@dataclass(slots=True)
class _Entry:
    provider: str
    model: str
    base_url: str
    key: str
    client: AsyncOpenAI | None = None

    @property
    def name(self) -> str:
        return f"{self.provider}:{self.model}"


class Transcriber:
    """The chain; `transcribe` returns the first transcript a server gives."""

    def __init__(
        self,
        config: TranscriptionConfig,
        providers: Mapping[str, ProviderConfig],
        environ: Mapping[str, str] = os.environ,
    ) -> None:
        self.config = config
        self._entries: list[_Entry] = []
        for ref in config.chain:
            name, model = split_model_ref(ref)
            provider = providers[name]
            # the first key: rotation belongs to the chat chain, one good key is enough here
            key = resolve_keys(name, provider, environ)[0]
            self._entries.append(_Entry(name, model, provider.resolved_base_url(), key))

    @property
    def configured(self) -> bool:
        return bool(self._entries)

    async def transcribe(self, audio: bytes, name: str, mime: str) -> str:
        if not self._entries:
            raise MediaProblem(HOW_TO_ENABLE)
        if not audio:
            raise MediaProblem(f"{name} is empty (0 seconds of audio)")
        import openai

        failures: list[str] = []
        for entry in self._entries:
            client = self._client(entry)
            try:
                result = await client.audio.transcriptions.create(
                    model=entry.model,
                    file=(name or "voice.ogg", audio, mime or "application/octet-stream"),
                    language=self.config.language or openai.omit,
                )
            except openai.APIStatusError as exc:
                failures.append(f"{entry.name}: HTTP {exc.status_code}")
            except openai.APIError as exc:
                failures.append(f"{entry.name}: {type(exc).__name__}")
            else:
                # a 200 that is not the API's JSON (a proxy's error page) comes back as a
                # str, and JSON without "text" as text=None: neither is what was said
                heard = getattr(result, "text", None)
                if isinstance(heard, str):
                    return heard.strip()
                failures.append(f"{entry.name}: an answer without a transcript")
            log.warning("transcription by %s failed", failures[-1])
        raise MediaProblem(
            f"I could not transcribe {name}: every transcription server failed "
            f"({'; '.join(failures)})"
        )

    def _client(self, entry: _Entry) -> AsyncOpenAI:
        if entry.client is None:
            from openai import AsyncOpenAI

            entry.client = AsyncOpenAI(
                api_key=entry.key,
                base_url=entry.base_url,
                timeout=self.config.timeout_s,
                max_retries=1,
            )
        return entry.client

    async def aclose(self) -> None:
        for entry in self._entries:
            if entry.client is not None:
                await entry.client.close()
                entry.client = None
