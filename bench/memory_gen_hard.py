"""The second generated set: the same kind of conversations as `bench/memory_gen.py`, asked
in forms that neither name the person nor repeat the words that were said, so that a search
which leans on who the question names, or on the statement's own words, gets no help:

- unnamed (category 4, single-hop): "Who has a trip to Japan coming up?": the thing in other
  words, and nobody's name;
- synonym (category 3, open-domain): "Who got injured?", "Who relocated recently?": only a
  broader word for what was said, and nobody's name; when both people raised it, both
  turns are evidence;
- two sessions (category 1, multi-hop): a plan or a start in one session, how it went in a
  later one, said without naming it again ("Just got back, the food was unreal"): "How did
  the trip to Japan go?" needs both turns; half of them name the person;
- relative dates (category 2, temporal): "What happened to Maria two days before 9 May
  2023?", "What news did someone share a week after 2 March 2023?": the day is given
  relative to another one, and half of them name nobody.

Seeded and deterministic, with its own seed (other conversations than the first set). The
split is fixed by `sample_id` before any setting is chosen: `-tune-` conversations for
choosing, `-heldout-` ones only for reporting.

    python -m bench.memory_gen_hard [--seed 11] [--conversations 24] [--out FILE]
"""

from __future__ import annotations

import datetime as dt
import random
from pathlib import Path
from typing import Any

from bench import memory_gen
from bench.memory_gen import Fact, Turn, build, number, to_sample
from bench.memory_gen import _Conversation as Conversation
from bench.memory_gen_questions import day_text, resolve
from bench.memory_gen_words import WHEN_WORDS

OUT = Path(__file__).parent / "data" / "memory_gen_hard.json"

#: how it went, said in a later session without naming the thing again
FOLLOW_UPS = {
    "travel": [
        "Just got back, jet-lagged but so happy we went.",
        "Back home! The food there was unreal and we walked everywhere.",
    ],
    "job": [
        "First month at the new place done, my team is lovely.",
        "Still getting used to the early shifts, but I love the work.",
    ],
    "course": [
        "I passed the final exam, certificate is on the fridge!",
        "Handed in the last assignment, the tutor gave me top marks.",
    ],
    "race": [
        "I did it, crossed the finish line in under two hours!",
        "Finished it! My legs are still shaking but I didn't stop once.",
    ],
    "move": [
        "Finally unpacked the last box, and the neighbours brought cookies.",
        "The new place is so quiet at night, I sleep like a baby.",
    ],
    "hobby": [
        "My teacher says I'm improving fast, I even got a compliment today.",
        "I practised every evening this week and it's finally clicking.",
    ],
}
#: "How did <it> go?", naming the thing as questions name it (Fact.asked)
FOLLOW_QUESTIONS = {
    "travel": "How did the trip to {asked} go",
    "job": "How is it going since starting to {asked}",
    "course": "How did the online class on {asked} end",
    "race": "How did {asked} go",
    "move": "How is settling in at {asked} going",
    "hobby": "How is the progress with {asked}",
}
#: nobody named, the thing in other words (Fact.asked)
UNNAMED = {
    "travel": "Who has a trip to {asked} coming up?",
    "pet": "Who got a new {asked}?",
    "job": "Who started to {asked}?",
    "hobby": "Who has taken up {asked}?",
    "injury": "Who hurt their {asked}?",
    "family": "Who {asked}?",
    "allergy": "Who cannot eat {asked}?",
    "move": "Who moved to {asked}?",
    "car": "Who got a new {asked}?",
    "concert": "Who went to a live {asked}?",
    "course": "Who is studying {asked}?",
    "race": "Who is preparing for {asked}?",
    "volunteer": "Who spends free time {asked}?",
    "event": "Who enjoyed {asked}?",
}
#: only a broader word for the topic
SYNONYM = {
    "travel": "Who has a journey abroad planned?",
    "pet": "Who has a new companion at home?",
    "job": "Who changed employers?",
    "hobby": "Who found a new pastime?",
    "book": "Which title was suggested as a good read?",
    "injury": "Who got injured?",
    "family": "Whose relatives had big news?",
    "allergy": "Who has a dietary restriction?",
    "move": "Who relocated recently?",
    "car": "Who acquired new transport?",
    "concert": "Who attended a gig?",
    "course": "Who is taking a class on the internet?",
    "race": "Who is in training for a competition?",
    "volunteer": "Who does charity work?",
}
#: how far the question's day is from the day meant
OFFSETS = [("the day", 1), ("two days", 2), ("three days", 3), ("a week", 7)]
#: what happened on a resolved day, by topic
HAPPENED = {"injury": "happened to {p}", "concert": "did {p} do", "volunteer": "did {p} do"}


def _follow_ups(c: Conversation) -> list[tuple[Fact, Turn]]:
    """For each plan or start a person raised once, how it went, in a later session (where
    there is one), said by them without naming it; placed after the session's first turn."""
    out = []
    counts: dict[tuple[str, str], int] = {}
    for f in c.facts:
        counts[(f.person, f.topic)] = counts.get((f.person, f.topic), 0) + 1
    for f in c.facts:
        later = range(f.session + 1, len(c.sessions))
        if f.topic not in FOLLOW_UPS or counts[(f.person, f.topic)] > 1 or not later:
            continue
        if c.rng.random() < 0.3:
            continue
        turn = Turn(f.person, c.rng.choice(FOLLOW_UPS[f.topic]))
        session = c.sessions[c.rng.choice(later)]
        session.turns.insert(c.rng.randint(1, len(session.turns)), turn)
        out.append((f, turn))
    return out


def _questions(c: Conversation, follow_ups: list[tuple[Fact, Turn]]) -> None:
    rng = c.rng
    by_thing: dict[tuple[str, str], list[Fact]] = {}
    by_topic: dict[str, list[Fact]] = {}
    for f in c.facts:
        by_thing.setdefault((f.topic, f.asked), []).append(f)
        by_topic.setdefault(f.topic, []).append(f)
    for (topic, asked), facts in by_thing.items():
        if topic in UNNAMED and len(facts) <= 2:
            answer = " and ".join(dict.fromkeys(f.person for f in facts))
            c.ask(4, UNNAMED[topic].format(asked=asked), answer, [f.turn for f in facts])
    for topic, facts in by_topic.items():
        if topic in SYNONYM and len(facts) <= 2:
            answer = " / ".join(f.turn.text for f in facts)
            c.ask(3, SYNONYM[topic], answer, [f.turn for f in facts])
    for f, turn in follow_ups:
        # named only where the thing alone would not say whose it is
        alone = len(by_thing[(f.topic, f.asked)]) == 1 and rng.random() < 0.5
        question = FOLLOW_QUESTIONS[f.topic].format(asked=f.asked)
        question += "?" if alone else f" for {f.person}?"
        c.ask(1, question, turn.text, [f.turn, turn])
    days: dict[dt.date, list[Fact]] = {}
    for f in c.facts:
        if "when" in f.facts:
            said = c.sessions[f.session].when.date()
            day = resolve((f.facts["when"], dict(WHEN_WORDS)[f.facts["when"]]), said)
            days.setdefault(day, []).append(f)
    for day, facts in days.items():
        # what anyone did that day, or what one person did: every such turn is evidence
        for f in facts:
            words, offset = rng.choice(OFFSETS)
            anchor = day_text(day + dt.timedelta(days=offset))
            named = rng.random() < 0.5
            what = HAPPENED[f.topic].format(p=f.person if named else "anyone")
            ev = [g.turn for g in facts if g.person == f.person or not named]
            c.ask(2, f"What {what} {words} before {anchor}?", f.turn.text, ev)
    for s, session in enumerate(c.sessions):
        told = [f for f in c.facts if f.session == s and "when" not in f.facts]
        for f in told:
            if rng.random() >= 0.4:
                continue
            words, offset = rng.choice(OFFSETS)
            anchor = day_text(session.when.date() - dt.timedelta(days=offset))
            named = rng.random() < 0.5
            ev = [g.turn for g in told if g.person == f.person or not named]
            who = f.person if named else "someone"
            c.ask(2, f"What news did {who} share {words} after {anchor}?", f.turn.text, ev)


def conversation(rng: random.Random, sample_id: str) -> dict[str, Any]:
    c = build(rng, sample_id)
    follow_ups = _follow_ups(c)
    number(c)
    _questions(c, follow_ups)
    return to_sample(c)


def generate(seed: int = 11, conversations: int = 24) -> list[dict[str, Any]]:
    """Half the conversations are the tuning split, half the held-out split."""
    return memory_gen.generate(seed, conversations, conversation, "hard")


if __name__ == "__main__":
    memory_gen.main(generate, 11, OUT, __doc__)
