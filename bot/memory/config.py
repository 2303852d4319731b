"""The `[memory]` section of the config file."""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, model_validator

from bot.config_base import EnvName, no_url_credentials


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class OpenAIEmbedderConfig(_Strict):
    """Any server speaking the OpenAI /v1/embeddings API (OpenAI, Ollama, vLLM, llama.cpp)."""

    type: Literal["openai"]
    base_url: Annotated[str, AfterValidator(no_url_credentials)] = "https://api.openai.com/v1"
    model: str = "text-embedding-3-small"
    #: name of the environment variable holding the key; None for servers without auth
    api_key_env: EnvName | None = "OPENAI_API_KEY"
    timeout: float = Field(default=10.0, gt=0)
    batch_size: int = Field(default=64, ge=1, le=2048)


class Model2VecEmbedderConfig(_Strict):
    """A model2vec static model in a local directory (relative paths are under the home)."""

    type: Literal["model2vec"]
    path: str


class SentenceTransformersEmbedderConfig(_Strict):
    """A sentence-transformers model in a local directory; needs `sentence-transformers`."""

    type: Literal["sentence_transformers"]
    path: str


class PotionEmbedderConfig(_Strict):
    """potion-base-8M (Minish Lab, MIT), model2vec static embeddings whose table and
    tokenizer ship inside Decapod's own package: works offline with nothing to download,
    on the CPU, without torch. The default."""

    type: Literal["potion"]


class WordLlamaEmbedderConfig(_Strict):
    """WordLlama's static embeddings, whose weights ship inside the `wordllama` package:
    works offline with nothing to download, on the CPU, without torch."""

    type: Literal["wordllama"]


EmbedderConfig = Annotated[
    OpenAIEmbedderConfig
    | Model2VecEmbedderConfig
    | SentenceTransformersEmbedderConfig
    | PotionEmbedderConfig
    | WordLlamaEmbedderConfig,
    Field(discriminator="type"),
]


def _default_embedders() -> list[EmbedderConfig]:
    # Its files are in this package and its reader's libraries come with `decapod[memory]`;
    # without them, memory is keyword-only. It ranked better than WordLlama on both generated
    # sets (docs/performance.md, "Choosing the embedder").
    return [PotionEmbedderConfig(type="potion")]


class MemoryConfig(_Strict):
    enabled: bool = True
    #: tried in order at start; the first that answers defines the vector index
    embedders: list[EmbedderConfig] = Field(default_factory=_default_embedders)
    #: "score": weight * (BM25 / best BM25) + weight * cosine spread over the candidates;
    #: "rrf": reciprocal rank fusion, sum of weight / (rrf_k + rank)
    fusion: Literal["score", "rrf"] = "score"
    keyword_weight: float = Field(default=1.0, ge=0)
    vector_weight: float = Field(default=4.0, ge=0)
    rrf_k: int = Field(default=10, ge=1)
    #: the share of the question's words the best keyword hits hold decides how far keyword
    #: search is trusted (bot/memory/search.py, keyword_shares). Above keyword_sure
    #: ("sure"), such a hit counts on the vector side as at least keyword_sure_lift times
    #: as near as the nearest candidate (1: level with it; the vectors order the rest; score
    #: fusion only, rank fusion ignores it), and the vector weight falls by keyword_trust;
    #: at or below it, the vector weight falls by keyword_share_trust times that share.
    #: The weights were chosen on the generated sets' tuning halves (docs/performance.md);
    #: the lift was not (it changed nothing there) and ships at 1 to keep a hit holding
    #: most of the question first, LoCoMo's strong keyword case
    keyword_sure: float = Field(default=0.5, ge=0, le=1)
    keyword_sure_lift: float = Field(default=1.0, ge=0, le=1)
    keyword_trust: float = Field(default=0.0, ge=0, le=1)
    keyword_share_trust: float = Field(default=0.25, ge=0, le=1)
    #: a query word found in what an item depends on (the turn before, the day it was said)
    #: counts this much of one found in the item itself
    context_weight: float = Field(default=0.5, ge=0)
    #: a saved item is also searched by the classes its nouns belong to ("taekwondo": martial
    #: art; "Tampa": city, Florida, American state), from a WordNet table shipped with the
    #: package; with the context's weight (bot/memory/class_words.py)
    class_words: bool = True
    #: a hit said by the person the question names scores 1 + speaker_boost times more
    speaker_boost: float = Field(default=3.0, ge=0)
    #: a question naming a speaker is searched again without the name; the first search's
    #: hits add this share of their score
    named_weight: float = Field(default=0.0, ge=0)
    #: pseudo-relevance feedback: the names in the best `feedback_hits` hits (at most
    #: `feedback_terms`, e.g. "Pepper") are searched again with the question, and what that
    #: finds adds `feedback_weight` times its score; 0 turns it off
    feedback_hits: int = Field(default=0, ge=0, le=10)
    feedback_terms: int = Field(default=8, ge=1, le=16)
    feedback_weight: float = Field(default=0.5, ge=0)
    #: the last stage (bot/memory/rerank.py): items holding a day the question names score
    #: this many times the best score more; 0 turns it off
    date_boost: float = Field(default=1.0, ge=0)
    #: the best `neighbour_hits` hits pull in the turns said just before and after them,
    #: with `neighbour_weight` of their score; 0 turns it off
    neighbour_hits: int = Field(default=0, ge=0, le=20)
    neighbour_weight: float = Field(default=0.5, ge=0)
    #: the best `rerank_depth` candidates add `coverage_weight` times the share of the
    #: question's words they (or a word near in meaning) hold; 0 turns it off
    rerank_depth: int = Field(default=20, ge=0, le=200)
    coverage_weight: float = Field(default=0.5, ge=0)
    #: when the two best hits were said in one session (turns said within ten minutes of
    #: one another), its hits among the best `rerank_depth` score 1 + session_boost times
    #: more: a question's answers often sit together; 0 turns it off
    session_boost: float = Field(default=0.5, ge=0)
    #: when the turn after one of the best `follow_up_hits` hits asks about it ("Which dish
    #: did you like best?"), the turn after that (its answer) adds `follow_up_share` of
    #: the hit's score, entering the candidates when it was not one; 0 turns it off
    follow_up_hits: int = Field(default=5, ge=0, le=20)
    follow_up_share: float = Field(default=0.5, ge=0)
    #: a hit that asks a question (its text ends with "?") scores this share of its score:
    #: it repeats a question's words, the answer is in what was said; 1 turns it off
    question_weight: float = Field(default=0.7, gt=0, le=1)
    #: multiplies a hit's score by 1 + recency_boost * 0.5 ** (age / half life); 0 turns it off
    recency_boost: float = Field(default=0.1, ge=0)
    recency_half_life_days: float = Field(default=30.0, gt=0)
    #: the recalled block in the system prompt: at most this many tokens (chars / 4) and hits
    recall_budget_tokens: int = Field(default=400, ge=0)
    recall_limit: int = Field(default=8, ge=1, le=100)
    chunk_words: int = Field(default=400, ge=20)
    chunk_overlap: int = Field(default=50, ge=0)
    #: Markdown files indexed as knowledge shared by everyone (relative paths are under the home)
    knowledge_dir: str = "knowledge"
    watch_interval_ms: int = Field(default=500, ge=50)
    watch_debounce_ms: int = Field(default=500, ge=0)
    #: Markdown exports of finished sessions, pruned by age and count
    session_export_dir: str = "exports/sessions"
    session_export_keep: int = Field(default=200, ge=0)
    session_export_max_age_days: float = Field(default=90.0, gt=0)

    @model_validator(mode="after")
    def _overlap_below_chunk(self) -> MemoryConfig:
        if self.chunk_overlap >= self.chunk_words:
            raise ValueError("chunk_overlap must be smaller than chunk_words")
        return self
