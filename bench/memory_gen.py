"""A generated long-conversation memory set in LoCoMo's JSON format: two people chat over
many dated sessions; questions about what they said come later, in other words.

Seeded and deterministic: the same seed writes the same file. Conversations whose
`sample_id` holds `-tune-` are for choosing settings, `-heldout-` ones only for reporting.

What makes it hard, each on purpose and in the proportions below:
- paraphrase: a fact is said with one word and asked with another ("tickets to Toronto" /
  "trip to Canada", "greyhound" / "dog", "highly recommend" / "suggest");
- context: the answer is a reply whose meaning sits in the other person's question before it
  ("How was the road trip?" / "Amazing, we hiked to a waterfall");
- time: things happen "yesterday", "last Saturday", "two weeks ago", and some questions name
  the date itself;
- multi-hop: the answer needs two or three turns from different sessions, each saying
  something the others do not; bridges: later news names only a pet or a make ("Pepper won a
  ribbon"), so "What happened with Maria's dog?" needs the turn saying Pepper is her dog;
- distractors: both people talk about the same topics, chit-chat repeats the words of facts,
  and every turn carries a speaker's name.

    python -m bench.memory_gen [--seed 7] [--conversations 24] [--out FILE]
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import random
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from bench.memory_gen_questions import first_questions
from bench.memory_gen_words import (
    ALLERGIES,
    BANDS,
    BOOKS,
    CAR_NEWS,
    CARS,
    CHITCHAT,
    COURSES,
    DECK,
    EVENTS,
    FAMILY,
    GREETINGS,
    HOBBIES,
    INJURIES,
    JOBS,
    MOVES,
    NAMES,
    PET_NAMES,
    PET_NEWS,
    PETS,
    RACE_SAYINGS,
    RACES,
    REACTIONS,
    TRAVEL,
    VOLUNTEER,
    WHEN_WORDS,
)

OUT = Path(__file__).parent / "data" / "memory_gen.json"
CATEGORIES = {1: "multi-hop", 2: "temporal", 3: "open-domain", 4: "single-hop", 5: "adversarial"}


@dataclass
class Turn:
    speaker: str
    text: str
    dia_id: str = ""


@dataclass
class Session:
    when: dt.datetime
    turns: list[Turn] = field(default_factory=list)


@dataclass
class Fact:
    """One thing a person said, with the questions it can answer."""

    person: str
    topic: str
    session: int
    turn: Turn
    asked: str  # the paraphrased name of the thing, used in questions
    facts: dict[str, str] = field(default_factory=dict)


def _locomo_time(t: dt.datetime) -> str:
    hour = t.hour % 12 or 12
    half = "am" if t.hour < 12 else "pm"
    return f"{hour}:{t.minute:02d} {half} on {t.day} {t.strftime('%B')}, {t.year}"


class _Conversation:
    def __init__(self, rng: random.Random, sample_id: str, a: str, b: str) -> None:
        self.rng, self.sample_id, self.people = rng, sample_id, (a, b)
        self.sessions: list[Session] = []
        self.facts: list[Fact] = []
        self.qa: list[dict[str, Any]] = []
        #: (question, answer, evidence) of questions that need an earlier turn to make sense
        #: of a later one
        self.bridges: list[tuple[str, str, list[Turn]]] = []

    def other(self, person: str) -> str:
        return self.people[1] if person == self.people[0] else self.people[0]

    # what people say -------------------------------------------------------------------------
    def say(self, s: int, speaker: str, text: str) -> Turn:
        turn = Turn(speaker, text)
        self.sessions[s].turns.append(turn)
        return turn

    def fact(self, s: int, person: str, topic: str, text: str, asked: str, **facts: str) -> Fact:
        f = Fact(person, topic, s, self.say(s, person, text), asked, facts)
        self.facts.append(f)
        return f

    def chitchat(self, s: int, n: int) -> None:
        for _ in range(n):
            self.say(s, self.rng.choice(self.people), self.rng.choice(CHITCHAT))

    def ask(self, category: int, question: str, answer: str, evidence: list[Turn]) -> None:
        self.qa.append(
            {
                "question": question,
                "answer": answer,
                "evidence": [t.dia_id for t in evidence],
                "category": category,
            }
        )

    # one topic each: a statement in one session, questions phrased another way --------------
    def travel(self, s: int, p: str) -> Fact:
        city, country = self.rng.choice(TRAVEL)
        text = self.rng.choice(
            [
                f"Guess what, I just bought tickets to {city} for the summer!",
                f"We finally booked flights to {city}, I can't wait.",
                f"I'm heading to {city} next month for ten days.",
            ]
        )
        return self.fact(s, p, "travel", text, country, city=city)

    def pet(self, s: int, p: str) -> Fact:
        kind, asked = self.rng.choice(PETS)
        name = self.rng.choice(PET_NAMES)
        text = self.rng.choice(
            [
                f"We adopted a {kind} over the weekend, we named her {name}!",
                f"Meet {name}, my new {kind}. Best decision ever.",
            ]
        )
        return self.fact(s, p, "pet", text, asked, kind=kind, name=name)

    def job(self, s: int, p: str) -> Fact:
        job, asked = self.rng.choice(JOBS)
        text = self.rng.choice(
            [
                f"Big news: I started a new position as a {job}.",
                f"I got the offer! I'm a {job} now.",
            ]
        )
        return self.fact(s, p, "job", text, asked, job=job)

    def hobby(self, s: int, p: str) -> Fact:
        hobby, asked = self.rng.choice(HOBBIES)
        text = self.rng.choice(
            [
                f"I signed up for {hobby} lessons on Tuesday evenings.",
                f"I've been getting really into {hobby} lately, it calms me down.",
            ]
        )
        return self.fact(s, p, "hobby", text, asked, hobby=hobby)

    def book(self, s: int, p: str) -> Fact:
        title = self.rng.choice(BOOKS)
        text = self.rng.choice(
            [
                f"You have to read '{title}', I highly recommend it.",
                f"If you need something for the flight, '{title}' is fantastic.",
            ]
        )
        return self.fact(s, p, "book", text, "book", title=title)

    def injury(self, s: int, p: str, when: tuple[str, int | None]) -> Fact:
        what, verb, part = self.rng.choice(INJURIES)
        text = f"Ugh, I {what} {when[0]}."
        return self.fact(s, p, "injury", text, part, what=what, verb=verb, when=when[0])

    def family(self, s: int, p: str) -> Fact:
        who, what, asked = self.rng.choice(FAMILY)
        text = f"My {who} {what}! The whole family is celebrating."
        return self.fact(s, p, "family", text, asked, who=who, what=what)

    def allergy(self, s: int, p: str) -> Fact:
        food, asked = self.rng.choice(ALLERGIES)
        text = f"Just so you know for the party, I'm allergic to {food}."
        return self.fact(s, p, "allergy", text, asked, food=food)

    def move(self, s: int, p: str) -> Fact:
        place, asked = self.rng.choice(MOVES)
        text = f"We finally moved into {place}, boxes everywhere."
        return self.fact(s, p, "move", text, asked, place=place)

    def car(self, s: int, p: str) -> Fact:
        car, asked = self.rng.choice(CARS)
        text = f"I bought a {car}, so no more waiting for the bus."
        return self.fact(s, p, "car", text, asked, car=car)

    def concert(self, s: int, p: str, when: tuple[str, int | None]) -> Fact:
        band = self.rng.choice(BANDS)
        text = f"We saw {band} live {when[0]}, what a show."
        return self.fact(s, p, "concert", text, "performance", band=band, when=when[0])

    def course(self, s: int, p: str) -> Fact:
        course, asked = self.rng.choice(COURSES)
        text = f"I enrolled in an online course on {course}."
        return self.fact(s, p, "course", text, asked, course=course)

    def race(self, s: int, p: str) -> Fact:
        race, asked = self.rng.choice(RACES)
        text = self.rng.choice(RACE_SAYINGS).format(race=race)
        return self.fact(s, p, "race", text, asked, race=race)

    def volunteer(self, s: int, p: str, when: tuple[str, int | None]) -> Fact:
        place, asked = self.rng.choice(VOLUNTEER)
        text = f"I spent {when[0]} volunteering at {place}."
        return self.fact(s, p, "volunteer", text, asked, place=place, when=when[0])

    def event(self, s: int, p: str) -> Fact:
        told = {f.facts["event"] for f in self.facts if f.person == p and f.topic == "event"}
        event, reply, asked = self.rng.choice([e for e in EVENTS if e[0] not in told])
        self.say(s, self.other(p), f"So how was the {event}?")
        text = self.rng.choice([f"Amazing! {reply.capitalize()}.", f"So good, {reply}."])
        return self.fact(s, p, "event", text, asked, event=event)

    def news(self) -> None:
        """Later news about a pet or a vehicle, said by its owner in a later session and
        naming only the pet or the make: the question about it is a bridge (multi-hop),
        since what the pet is, or who bought the car, is in the earlier turn."""
        names = [f.facts["name"] for f in self.facts if f.topic == "pet"]
        for f in list(self.facts):
            later = range(f.session + 1, len(self.sessions))
            if f.topic not in ("pet", "car") or not later:
                continue
            if f.topic == "pet":
                if names.count(f.facts["name"]) > 1:  # two pets of one name: ambiguous
                    continue
                what = self.rng.choice(PET_NEWS)
                text, question = (
                    f"{f.facts['name']} {what}!",
                    f"What happened with {f.person}'s {f.asked}?",
                )
            else:
                make = f.facts["car"].split()[-1]
                what = self.rng.choice(CAR_NEWS)
                text = f"The {make} {what}."
                question = f"What trouble did {f.person} have with the {f.asked} they bought?"
            s = self.rng.choice(later)
            turn = Turn(f.person, text)
            self.sessions[s].turns.insert(self.rng.randint(1, len(self.sessions[s].turns)), turn)
            self.bridges.append((question, what, [f.turn, turn]))


def build(rng: random.Random, sample_id: str) -> _Conversation:
    """Two people's dated sessions, with the later news about pets and vehicles; turns are
    numbered by `to_sample`."""
    a, b = rng.sample(NAMES, 2)
    c = _Conversation(rng, sample_id, a, b)
    start = dt.datetime(2023, 1, 1, 9) + dt.timedelta(days=rng.randint(0, 300))
    when = start
    # each person raises each topic at most as often as it appears in their deck
    decks = {p: rng.sample(DECK, len(DECK)) for p in c.people}
    for s in range(rng.randint(13, 16)):
        when = when + dt.timedelta(days=rng.randint(3, 18), minutes=rng.randint(0, 600))
        c.sessions.append(Session(when))
        c.say(s, rng.choice(c.people), rng.choice(GREETINGS))
        for _ in range(rng.randint(2, 3)):
            p = rng.choice([q for q in c.people if decks[q]] or c.people)
            c.chitchat(s, rng.randint(1, 3))
            if not decks[p]:
                continue
            topic = decks[p].pop()
            if topic in ("injury", "concert", "volunteer"):
                getattr(c, topic)(s, p, rng.choice(WHEN_WORDS))
            else:
                getattr(c, topic)(s, p)
            c.say(s, c.other(p), rng.choice(REACTIONS))
        c.chitchat(s, rng.randint(1, 3))
    c.news()
    return c


def number(c: _Conversation) -> None:
    """LoCoMo's turn ids: D<session>:<turn>, both from 1."""
    for n, session in enumerate(c.sessions, start=1):
        for i, turn in enumerate(session.turns, start=1):
            turn.dia_id = f"D{n}:{i}"


def to_sample(c: _Conversation) -> dict[str, Any]:
    a, b = c.people
    sessions: dict[str, Any] = {"speaker_a": a, "speaker_b": b}
    for n, session in enumerate(c.sessions, start=1):
        sessions[f"session_{n}_date_time"] = _locomo_time(session.when)
        sessions[f"session_{n}"] = [
            {"speaker": t.speaker, "dia_id": t.dia_id, "text": t.text} for t in session.turns
        ]
    return {"sample_id": c.sample_id, "conversation": sessions, "qa": c.qa}


def conversation(rng: random.Random, sample_id: str) -> dict[str, Any]:
    c = build(rng, sample_id)
    number(c)
    first_questions(c)
    return to_sample(c)


def generate(
    seed: int = 7,
    conversations: int = 24,
    make: Callable[[random.Random, str], dict[str, Any]] = conversation,
    prefix: str = "gen",
) -> list[dict[str, Any]]:
    """Half the conversations are the tuning split, half the held-out split."""
    rng = random.Random(seed)
    out = []
    for i in range(conversations):
        split = "tune" if i % 2 == 0 else "heldout"
        out.append(make(random.Random(rng.getrandbits(64)), f"{prefix}-{split}-{i:02d}"))
    return out


def main(
    make: Callable[[int, int], list[dict[str, Any]]] = generate,
    seed: int = 7,
    out: Path = OUT,
    doc: str | None = __doc__,
) -> None:
    parser = argparse.ArgumentParser(description=(doc or "").splitlines()[0])
    parser.add_argument("--seed", type=int, default=seed)
    parser.add_argument("--conversations", type=int, default=24)
    parser.add_argument("--out", type=Path, default=out)
    args = parser.parse_args()
    samples = make(args.seed, args.conversations)
    args.out.write_text(json.dumps(samples, indent=1) + "\n", encoding="utf-8")
    turns = sum(len(v) for s in samples for k, v in s["conversation"].items() if k[-1].isdigit())
    questions = sum(1 for s in samples for q in s["qa"] if q["category"] != 5)
    print(f"wrote {args.out}: {len(samples)} conversations, {turns} turns, {questions} questions")


if __name__ == "__main__":
    main()
