"""Config of the `[media]` table (what is done with attachments) and `[transcription]`
(the speech-to-text chain). Keys of transcription servers come from `[providers.X]`."""

from __future__ import annotations

from pydantic import Field, field_validator

from bot.config_base import Section, empty_list
from bot.providers.config import split_model_ref

#: model names (the part after "provider:") that take images, as shell patterns; matched
#: without regard to case. Models outside the list get a description from `models.vision`.
DEFAULT_VISION_MODELS = [
    "gpt-4o*",
    "gpt-4.1*",
    "gpt-4-turbo*",
    "gpt-4-vision*",
    "gpt-5*",
    "o1",
    "o1-2*",
    "o3*",
    "o4*",
    "chatgpt-4o*",
    "claude-3*",
    "claude-*-4*",
    "claude-sonnet-4*",
    "claude-opus-4*",
    "claude-haiku-4*",
    "*llava*",
    "*bakllava*",
    "*-vision*",
    "*vision-*",
    "*-vl*",
    "*vl:*",
    "qwen2.5vl*",
    "gemma3*",
    "pixtral*",
    "minicpm-v*",
    "moondream*",
    "gemini*",
]


class MediaConfig(Section):
    #: the largest attachment fetched from any channel; a platform's own lower limit wins
    max_file_mb: float = Field(default=20.0, gt=0)
    #: a lower limit for some channels, by channel name: { tg = 5 }
    max_file_mb_by_channel: dict[str, float] = Field(default_factory=dict)
    #: the longest side of an image sent to a model (Anthropic scales down past 1568 px,
    #: OpenAI past 2048 px: sending more only costs upload time)
    image_max_side: int = Field(default=1568, ge=64, le=8000)
    #: characters of a document's text the model gets; the rest is cut with a note
    document_max_chars: int = Field(default=30_000, ge=500)
    #: which model names take images (shell patterns); replaces the defaults when set
    vision_models: list[str] = Field(default_factory=lambda: list(DEFAULT_VISION_MODELS))
    #: seconds one message's attachments may take, downloads and transcription included;
    #: past it the person is told what was not read in time, and the rest is answered
    intake_timeout_s: float = Field(default=120.0, gt=0)

    def max_bytes_for(self, channel: str) -> int:
        mb = min(self.max_file_mb, self.max_file_mb_by_channel.get(channel, self.max_file_mb))
        return int(mb * 1024 * 1024)


class TranscriptionConfig(Section):
    """Speech to text through OpenAI-compatible `/v1/audio/transcriptions` servers, tried in
    order. Each entry is "provider:model", the provider an `[providers.X]` of type openai
    (its base_url and key variables are used), e.g. ["groq:whisper-large-v3",
    "openai:whisper-1"]."""

    chain: list[str] = Field(default_factory=empty_list)
    #: an ISO-639-1 hint ("de"); empty lets the server detect the language
    language: str = ""
    timeout_s: float = Field(default=60.0, gt=0)

    @field_validator("chain")
    @classmethod
    def _refs(cls, refs: list[str]) -> list[str]:
        for ref in refs:
            split_model_ref(ref)
        return refs
