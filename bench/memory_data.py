"""Readers for memory evaluation data: LoCoMo's published JSON as it is (the generated set of
`bench/memory_gen.py` is written in the same format), and LongMemEval's.

Every turn becomes one memory item of the conversation's person, saved with who said it,
when (the session's date and time) and the turn before it; a question searches that person's
memory, and its evidence is the turns (dia_ids) that hold the answer.
"""

from __future__ import annotations

import datetime as dt
import json
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

CATEGORIES = {1: "multi-hop", 2: "temporal", 3: "open-domain", 4: "single-hop", 5: "adversarial"}
_LOCOMO_TIME = re.compile(
    r"(?P<h>\d{1,2}):(?P<mi>\d{2})\s*(?P<ampm>am|pm)\s+on\s+(?P<d>\d{1,2})\s+(?P<mo>[A-Za-z]+)"
    r",?\s+(?P<y>\d{4})",
    re.IGNORECASE,
)
_EVIDENCE = re.compile(r"D\d+:\d+")


@dataclass
class Turn:
    id: str
    speaker: str
    text: str
    at: float | None  # seconds since the epoch, None when the session has no readable date
    context: str = ""  # the turn before, "Speaker: text"


@dataclass
class Conversation:
    id: str
    turns: list[Turn] = field(default_factory=list)


@dataclass
class Question:
    id: str
    conversation: str
    question: str
    evidence: list[str]
    category: int = 0


@dataclass
class Dataset:
    name: str
    conversations: list[Conversation]
    questions: list[Question]

    def split(self, name: str) -> Dataset:
        """Only conversations whose id holds `-{name}-` ("tune", "heldout"); all for "all"."""
        if name == "all":
            return self
        keep = {c.id for c in self.conversations if f"-{name}-" in c.id}
        if not keep:
            raise ValueError(f"{self.name}: no conversation in split {name!r}")
        return Dataset(
            f"{self.name} ({name})",
            [c for c in self.conversations if c.id in keep],
            [q for q in self.questions if q.conversation in keep],
        )


def parse_locomo_time(text: str) -> float | None:
    """'1:56 pm on 8 May, 2023' -> seconds since the epoch (UTC); None if unreadable."""
    m = _LOCOMO_TIME.search(text or "")
    if m is None:
        return None
    try:
        month = dt.datetime.strptime(m.group("mo")[:3].title(), "%b").month
        hour = int(m.group("h")) % 12 + (12 if m.group("ampm").lower() == "pm" else 0)
        when = dt.datetime(
            int(m.group("y")), month, int(m.group("d")), hour, int(m.group("mi")), tzinfo=dt.UTC
        )
    except ValueError:
        return None
    return when.timestamp()


def _locomo_text(turn: dict[str, Any]) -> str:
    # Shared photos are part of what was said: LoCoMo gives a caption for each.
    text = str(turn.get("text", ""))
    caption = turn.get("blip_caption")
    return f"{text} [shares a photo: {caption}]" if caption else text


def from_locomo(samples: list[dict[str, Any]], name: str, *, with_adversarial: bool) -> Dataset:
    """LoCoMo: samples with `sample_id`, `conversation` (speaker_a, speaker_b, session_N
    lists of {speaker, dia_id, text} and session_N_date_time) and `qa` ({question, answer,
    evidence: [dia_id], category}). Category 5 (adversarial) is left out unless asked."""
    convs, questions = [], []
    for sample in samples:
        cid = str(sample["sample_id"])
        conv = Conversation(cid)
        sessions = sample["conversation"]
        numbers = sorted(int(k.split("_")[1]) for k in sessions if re.fullmatch(r"session_\d+", k))
        for n in numbers:
            at = parse_locomo_time(str(sessions.get(f"session_{n}_date_time", "")))
            previous = ""
            for i, t in enumerate(sessions[f"session_{n}"]):
                text = _locomo_text(t)
                # turns of one session keep their order one second apart
                when = None if at is None else at + i
                conv.turns.append(Turn(str(t["dia_id"]), str(t["speaker"]), text, when, previous))
                previous = f"{t['speaker']}: {text}"
        convs.append(conv)
        for i, qa in enumerate(sample.get("qa", [])):
            category = int(qa.get("category", 0) or 0)
            if category == 5 and not with_adversarial:
                continue
            evidence = [e for raw in qa.get("evidence", []) for e in _EVIDENCE.findall(str(raw))]
            if evidence:
                questions.append(
                    Question(f"{cid}-q{i}", cid, str(qa["question"]), evidence, category)
                )
    return Dataset(name, convs, questions)


def from_longmemeval(items: list[dict[str, Any]], name: str) -> Dataset:
    """LongMemEval: one haystack per question; evidence = turns marked `has_answer`."""
    convs, questions = [], []
    for item in items:
        qid = str(item["question_id"])
        conv, evidence = Conversation(qid), []
        dates = item.get("haystack_dates", [])
        for s, session in enumerate(item["haystack_sessions"]):
            previous = ""
            for t, turn in enumerate(session):
                tid = f"{qid}-s{s}-t{t}"
                at = _longmemeval_time(str(dates[s])) if s < len(dates) else None
                conv.turns.append(Turn(tid, turn["role"], turn["content"], at, previous))
                previous = f"{turn['role']}: {turn['content']}"
                if turn.get("has_answer"):
                    evidence.append(tid)
        convs.append(conv)
        if evidence:
            questions.append(Question(qid, qid, item["question"], evidence))
    return Dataset(name, convs, questions)


def _longmemeval_time(text: str) -> float | None:
    try:  # "2023/05/20 (Sat) 02:21"
        day, _, clock = text.split(" ", 2)
        when = dt.datetime.strptime(f"{day} {clock}", "%Y/%m/%d %H:%M").replace(tzinfo=dt.UTC)
    except ValueError:
        return None
    return when.timestamp()


def load(path: Path, *, with_adversarial: bool = False) -> Dataset:
    data = json.loads(path.read_text(encoding="utf-8"))
    if isinstance(data, list) and data and "qa" in data[0]:
        return from_locomo(data, path.stem, with_adversarial=with_adversarial)
    if isinstance(data, list) and data and "haystack_sessions" in data[0]:
        return from_longmemeval(data, path.stem)
    raise ValueError(f"{path}: not LoCoMo or LongMemEval JSON (see bench/data/README.md)")
