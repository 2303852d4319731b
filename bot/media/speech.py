"""Text to speech through OpenAI-compatible `/v1/audio/speech` servers, with failover.

The chain is the `[speech]` table's (bot/media/speech_config.py): each entry is a provider
of `[providers]` and a model; its keys come from the environment variables that provider
names, as for chat. A server that fails (an error status, a timeout, no audio, text or
JSON instead of audio) hands the text to the next; when all fail, SpeechFailed, and the
caller keeps the text answer only.
"""

from __future__ import annotations

import logging
import os
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from bot.errors import DecapodError

if TYPE_CHECKING:
    from openai import AsyncOpenAI

    from bot.media.speech_config import SpeechConfig
    from bot.providers.config import ProviderConfig

log = logging.getLogger("decapod.media")

_CODE_BLOCK = re.compile(r"```.*?(```|$)", re.DOTALL)
_LINK = re.compile(r"\[([^\]]+)\]\([^)]+\)")
_MARKUP = re.compile(r"[*_`#>|~]+")
_SENTENCE_END = re.compile(r"[.!?…](\s|$)")


class SpeechFailed(DecapodError):
    """No server of the speech chain produced audio."""


@dataclass(frozen=True, slots=True)
class SpeechEntry:
    provider: str
    model: str
    base_url: str
    api_key: str


class SpeechChain:
    def __init__(self, entries: list[SpeechEntry], config: SpeechConfig) -> None:
        if not entries:
            raise ValueError("a speech chain needs at least one entry")
        self.entries = entries
        self.config = config
        self._clients: dict[SpeechEntry, AsyncOpenAI] = {}

    @classmethod
    def from_config(
        cls,
        config: SpeechConfig,
        providers: Mapping[str, ProviderConfig],
        environ: Mapping[str, str] = os.environ,
    ) -> SpeechChain | None:
        """The chain of `[speech]`, or None when it is empty. A key variable that is not
        set is a ConfigError now, not a failure at the first voice answer."""
        from bot.providers.build import resolve_keys
        from bot.providers.config import split_model_ref

        entries = []
        for ref in config.chain:
            name, model = split_model_ref(ref)
            provider = providers[name]
            key = resolve_keys(name, provider, environ)[0]
            entries.append(SpeechEntry(name, model, provider.resolved_base_url(), key))
        return cls(entries, config) if entries else None

    async def synthesize(self, text: str, audio_format: str) -> bytes:
        """`text` spoken, as `audio_format` ("opus": OGG/Opus, "mp3", ...)."""
        failures = []
        for entry in self.entries:
            try:
                return await self._speak(entry, text, audio_format)
            except Exception as exc:  # any failure of one server: the next one is tried
                reason = _reason(exc)
                log.warning("speech from %s failed: %s", entry.provider, reason)
                failures.append(f"{entry.provider}: {reason}")
        raise SpeechFailed("no speech server answered (" + "; ".join(failures) + ")")

    async def _speak(self, entry: SpeechEntry, text: str, audio_format: str) -> bytes:
        client = self._client(entry)
        response = await client.audio.speech.create(
            model=entry.model,
            voice=self.config.voice,
            input=text,
            response_format=audio_format,  # type: ignore[arg-type]
        )
        # an error page or JSON error sent with 200 is not audio: sent on, it would be a
        # voice message that does not play
        sent = response.response.headers.get("content-type", "").split(";")[0].strip().lower()
        if sent.startswith("text/") or sent.endswith(("/json", "+json", "/xml", "+xml")):
            raise SpeechFailed(f"the server sent {sent}, not audio")
        audio = response.content
        if not audio:
            raise SpeechFailed("the server sent no audio")
        return audio

    def _client(self, entry: SpeechEntry) -> AsyncOpenAI:
        client = self._clients.get(entry)
        if client is None:
            import openai

            client = openai.AsyncOpenAI(
                api_key=entry.api_key,
                base_url=entry.base_url,
                max_retries=0,  # a failure goes to the next server, not the same one again
                timeout=self.config.timeout_s,
            )
            self._clients[entry] = client
        return client

    async def aclose(self) -> None:
        for client in self._clients.values():
            await client.close()
        self._clients.clear()


def speakable(text: str, max_chars: int) -> str:
    """An answer as it should be read out: no code blocks, links as their words, no
    Markdown marks; cut at the end of a sentence to fit `max_chars`."""
    text = _CODE_BLOCK.sub(" ", text)
    text = _LINK.sub(r"\1", text)
    text = _MARKUP.sub("", text)
    text = re.sub(r"\s+", " ", text).strip()
    if len(text) <= max_chars:
        return text
    head = text[:max_chars]
    ends = [m.end() for m in _SENTENCE_END.finditer(head)]
    return head[: ends[-1]].strip() if ends else head.rsplit(" ", 1)[0]


def _reason(exc: BaseException) -> str:
    status: Any = getattr(exc, "status_code", None)
    if status is not None:
        return f"HTTP {status}"
    return str(exc) or type(exc).__name__
