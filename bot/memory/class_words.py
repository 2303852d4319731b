"""Index-time expansion of a turn's nouns with the classes they belong to, so that a
question in a broader word finds an answer in a specific one ("What martial arts has John
done?" / "I'm off to do some taekwondo!"; "What state did Nate visit?" / "the beach in
Tampa"). Neither keyword search nor the static embedding relates the two.

The classes come from WordNet 3.0 (`data/classes.tsv.gz`, built by
`bench/memory_class_table.py`; its license notice is `data/WORDNET_LICENSE`). The table is
read at the first save that needs it, off the event loop, never at start-up; without it
memory works as before, without expansion.
"""

from __future__ import annotations

import asyncio
import gzip
import logging
import re
import threading
from collections.abc import Mapping
from pathlib import Path

from bot.memory.text import STOPWORDS, WORD, without_speaker

log = logging.getLogger("decapod.memory")

TABLE = Path(__file__).resolve().parent / "data" / "classes.tsv.gz"
#: words and sentence ends: a capitalized word right after one is no name ("Kids love it")
_TOKEN = re.compile(r"[^\W_]+|[.!?]")
#: plural endings, as WordNet's morphology strips them
_SUFFIXES = (("ies", "y"), ("ses", "s"), ("xes", "x"), ("zes", "z"), ("ches", "ch"),
             ("shes", "sh"), ("men", "man"), ("s", ""))  # fmt: skip
_MIN_LETTERS = 3


class ClassWords:
    """The class words of the nouns in a text, from a table loaded once."""

    def __init__(self, path: Path = TABLE) -> None:
        self.path = path
        self._table: Mapping[str, str] | None = None
        self._lock = threading.Lock()

    @property
    def loaded(self) -> bool:
        return self._table is not None

    @property
    def available(self) -> bool:
        """Whether the table is there (loaded or not): what `decapod doctor` reports."""
        return bool(self._table) if self._table is not None else self.path.is_file()

    def status(self, enabled: bool) -> str:
        if not enabled:
            return "class words off ([memory] class_words = false)"
        if not self.available:
            return f"class words off (no readable table at {self.path})"
        return "class words on (WordNet 3.0)"

    async def find(self, text: str) -> str:
        """`of(text)`; the table is read at the first call, in a thread: never at start-up,
        never on the event loop."""
        if not self.loaded:
            await asyncio.to_thread(self.load)
        return self.of(text)

    def load(self) -> Mapping[str, str]:
        """The table (empty when it cannot be read). Blocking: call it off the event loop."""
        with self._lock:
            if self._table is None:
                self._table = _read(self.path)
            return self._table

    def _classes(self, table: Mapping[str, str], word: str, initial: bool) -> str:
        low = word.lower()
        if word.islower():
            keys = [low]  # a common noun: "china" is no country
        elif initial:
            keys = [low, word.capitalize()]  # "Kids love it": a common noun first
        else:
            keys = [word.capitalize(), low]  # "a trip to Spain": the place first
        for key in keys:
            if key in table:
                return table[key]
        for suffix, base in _SUFFIXES:
            if low.endswith(suffix) and len(low) > len(suffix) + 2:
                found = table.get(low[: -len(suffix)] + base)
                if found is not None:
                    return found
        return ""

    def of(self, text: str) -> str:
        """The class words of `text`'s nouns that `text` does not say itself ("" without
        the table). Loads the table on first use."""
        table = self.load()
        if not table:
            return ""
        body = without_speaker(text)
        own = {w.lower() for w in WORD.findall(body)}
        found: dict[str, None] = {}
        initial = True
        for token in _TOKEN.findall(body):
            if token in ".!?":
                initial = True
                continue
            at_start, initial = initial, False
            if len(token) < _MIN_LETTERS or token.lower() in STOPWORDS or not token.isalpha():
                continue
            for word in self._classes(table, token, at_start).split():
                if word not in own:
                    found.setdefault(word, None)
        return " ".join(found)


def _read(path: Path) -> Mapping[str, str]:
    try:
        with gzip.open(path, "rt", encoding="utf-8") as f:
            return dict(line.rstrip("\n").split("\t", 1) for line in f if "\t" in line)
    except (OSError, EOFError, ValueError) as e:  # missing, truncated, not gzip, not UTF-8
        log.warning("memory class words are off: cannot read %s: %s", path, e)
        return {}


#: the table every memory service shares (read once per process)
CLASS_WORDS = ClassWords()
