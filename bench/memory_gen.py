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
- multi-hop: the answer needs two or three turns from different sessions;
- distractors: both people talk about the same topics, chit-chat repeats the words of facts,
  and every turn carries a speaker's name.

    python -m bench.memory_gen [--seed 7] [--conversations 24] [--out FILE]
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import random
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

OUT = Path(__file__).parent / "data" / "memory_gen.json"
CATEGORIES = {1: "multi-hop", 2: "temporal", 3: "open-domain", 4: "single-hop", 5: "adversarial"}

NAMES = [
    "Maria",
    "Jon",
    "Aisha",
    "Tomas",
    "Priya",
    "Lukas",
    "Mei",
    "Daniel",
    "Sofia",
    "Kwame",
    "Elena",
    "Marcus",
    "Yuki",
    "Omar",
    "Hannah",
    "Diego",
    "Ingrid",
    "Ravi",
    "Chloe",
    "Mateo",
    "Leila",
    "Felix",
    "Nadia",
    "Oscar",
    "Zara",
    "Hugo",
    "Amara",
    "Finn",
    "Rosa",
    "Ivan",
]

#: (what is said, how a question names it): a city said, its country asked, and so on
TRAVEL = [
    ("Toronto", "Canada"),
    ("Kyoto", "Japan"),
    ("Lisbon", "Portugal"),
    ("Marrakech", "Morocco"),
    ("Cusco", "Peru"),
    ("Hanoi", "Vietnam"),
    ("Munich", "Germany"),
    ("Florence", "Italy"),
    ("Reykjavik", "Iceland"),
    ("Melbourne", "Australia"),
    ("Seville", "Spain"),
    ("Edinburgh", "Scotland"),
    ("Nairobi", "Kenya"),
    ("Oaxaca", "Mexico"),
    ("Bergen", "Norway"),
]
PETS = [
    ("greyhound", "dog"),
    ("beagle", "dog"),
    ("golden retriever", "dog"),
    ("tabby", "cat"),
    ("Siamese kitten", "cat"),
    ("cockatiel", "bird"),
    ("parakeet", "bird"),
    ("bearded dragon", "reptile"),
    ("rabbit", "bunny"),
    ("goldfish", "fish"),
]
PET_NAMES = [
    "Biscuit",
    "Luna",
    "Pepper",
    "Mochi",
    "Ziggy",
    "Olive",
    "Rocket",
    "Clover",
    "Nugget",
    "Pickles",
    "Juniper",
]
JOBS = [
    ("nurse at the children's hospital", "work in healthcare"),
    ("paramedic", "work in emergency medicine"),
    ("junior architect at a design firm", "design buildings"),
    ("accountant", "work in finance"),
    ("high school chemistry teacher", "teach"),
    ("software developer at a startup", "work in tech"),
    ("barista at a coffee shop downtown", "make coffee for a living"),
    ("sous chef at an Italian restaurant", "cook professionally"),
    ("veterinary assistant", "work with animals"),
    ("electrician", "do electrical work"),
]
HOBBIES = [
    ("pottery", "ceramics"),
    ("salsa", "dancing"),
    ("violin", "a string instrument"),
    ("watercolor", "painting"),
    ("bouldering", "climbing"),
    ("Mandarin", "a language"),
    ("woodworking", "carpentry"),
    ("chess", "a board game"),
    ("swimming", "a water sport"),
    ("photography", "taking pictures"),
    ("knitting", "a craft"),
    ("guitar", "an instrument"),
]
BOOKS = [
    "The Overstory",
    "Project Hail Mary",
    "Educated",
    "Circe",
    "The Midnight Library",
    "Sapiens",
    "Atomic Habits",
    "Piranesi",
    "The Night Circus",
    "Born a Crime",
]
INJURIES = [
    ("sprained my ankle playing basketball", "hurt", "leg"),
    ("broke my wrist falling off my bike", "injured", "arm"),
    ("pulled a muscle in my back lifting boxes", "hurt", "back"),
    ("got a concussion during a soccer match", "injured", "head"),
]
FAMILY = [
    ("sister", "had a baby boy", "became an aunt or uncle"),
    ("brother", "got engaged", "is going to a wedding soon"),
    ("mom", "retired after thirty years", "has a parent who stopped working"),
    ("grandpa", "turned ninety", "celebrated an elderly relative's birthday"),
]
ALLERGIES = [("peanuts", "nuts"), ("shellfish", "seafood"), ("gluten", "wheat"), ("dairy", "milk")]
MOVES = [
    ("a flat near the river in Riverside", "Riverside"),
    ("a small house in Oak Hill", "Oak Hill"),
    ("an apartment downtown by the station", "downtown"),
    ("a cottage outside town", "the countryside"),
]
CARS = [
    ("used Subaru", "car"),
    ("electric scooter", "way to get around"),
    ("secondhand pickup truck", "vehicle"),
    ("cargo bike", "bicycle"),
]
BANDS = [
    "Arctic Monkeys",
    "Fleetwood Mac tribute band",
    "the city symphony",
    "Bon Iver",
    "a jazz quartet",
    "Coldplay",
]
COURSES = [
    ("data science", "statistics and programming"),
    ("French", "a foreign language"),
    ("graphic design", "visual design"),
    ("nutrition", "healthy eating"),
    ("creative writing", "writing fiction"),
]
RACES = [
    ("half marathon", "a running race"),
    ("triathlon", "an endurance event"),
    ("10k charity run", "a running race"),
    ("cycling tour", "a long bike ride"),
]
VOLUNTEER = [
    ("the animal shelter", "helping animals"),
    ("a food bank", "feeding people"),
    ("the community garden", "growing vegetables for neighbours"),
    ("a literacy program", "teaching kids to read"),
]
#: a question asked by one person, and the other's answer that only makes sense after it
EVENTS = [
    ("road trip", "we drove the coast and hiked to a waterfall", "hiking to a waterfall"),
    ("camping weekend", "we saw the northern lights from the tent", "seeing the aurora"),
    ("cousin's wedding", "I gave a toast and everyone cried", "giving a speech"),
    (
        "work conference",
        "I presented our project to about two hundred people",
        "presenting to a big audience",
    ),
    ("cooking class", "we made fresh pasta from scratch", "making noodles by hand"),
    ("beach holiday", "I finally learned to surf", "surfing"),
    ("museum visit", "the dinosaur skeletons were incredible", "the fossils"),
    ("job interview", "they offered me the position on the spot", "getting hired"),
]
WHEN_WORDS = [
    ("yesterday", 1),
    ("two days ago", 2),
    ("last week", 7),
    ("last weekend", None),
    ("three days ago", 3),
    ("last Saturday", None),
    ("a week ago", 7),
    ("two weeks ago", 14),
]
CHITCHAT = [
    "Haha, that's so true!",
    "How's work been this week?",
    "Work has been crazy lately.",
    "Any plans for the weekend?",
    "I really need a vacation.",
    "That sounds amazing!",
    "I'm so happy for you!",
    "Oh no, I'm sorry to hear that.",
    "Let's catch up soon.",
    "My neighbor's dog barks all night, it's driving me nuts.",
    "I watched a documentary about travel in Asia last night.",
    "Did you see the game on Sunday?",
    "The weather has been terrible.",
    "I've been trying to read more books this year.",
    "Coffee is the only thing keeping me going.",
    "We should plan a trip together sometime.",
    "My class ran late again today.",
    "I keep meaning to start a new hobby.",
    "Thanks for asking, I'm doing well!",
    "Family dinners are always chaotic at our place.",
    "I finally cleaned my whole apartment.",
    "The traffic downtown was awful this morning.",
    "Running errands all day, so tired.",
    "I tried a new recipe and it was a disaster, haha.",
    "Music always helps me relax.",
]


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


def _day(d: dt.date) -> str:
    return f"{d.day} {d.strftime('%B')} {d.year}"


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
        text = f"I'm training for a {race} in the autumn, up at six every day."
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


def _resolve(when: tuple[str, int | None], said: dt.date) -> dt.date:
    _, days = when
    if days is not None:
        return said - dt.timedelta(days=days)
    # "last weekend" and "last Saturday": the Saturday before the day it was said
    back = (said.weekday() - 5) % 7 or 7
    return said - dt.timedelta(days=back)


MULTI_ONE = {
    "travel": "Which countries has {p} planned trips to?",
    "hobby": "What activities has {p} picked up?",
    "pet": "What animals has {p} adopted?",
    "book": "Which novels has {p} recommended?",
    "course": "What classes has {p} taken online?",
}
MULTI_BOTH = {
    "pet": "What pets do {a} and {b} have?",
    "job": "What do {a} and {b} do for work?",
    "hobby": "What pastimes do {a} and {b} enjoy?",
    "move": "Where do {a} and {b} live?",
    "race": "What are {a} and {b} training for?",
}


def _questions(c: _Conversation) -> None:
    rng = c.rng
    by: dict[tuple[str, str], list[Fact]] = {}
    for f in c.facts:
        by.setdefault((f.person, f.topic), []).append(f)
        if f.topic == "event":  # each outing is its own question
            by[(f.person, f.topic)] = by[(f.person, f.topic)][-1:]
    for f in c.facts:
        p, x, ev = f.person, f.facts, [f.turn]
        when = c.sessions[f.session].when.date()
        single: dict[str, tuple[str, str]] = {
            "travel": (f"Which country is {p} planning to visit?", f.asked),
            "pet": (f"What kind of animal did {p} adopt?", x.get("kind", "")),
            "job": (f"What does {p} do for a living now?", x.get("job", "")),
            "hobby": (f"What has {p} been doing in their free time?", x.get("hobby", "")),
            "book": (f"Which novel did {p} suggest to {c.other(p)}?", x.get("title", "")),
            "injury": (f"What happened to {p}'s {f.asked}?", x.get("what", "")),
            "family": (f"What is new in {p}'s family?", f"{x.get('who')} {x.get('what')}"),
            "allergy": (f"What food must {p} avoid?", x.get("food", "")),
            "move": (f"Where does {p} live now?", x.get("place", "")),
            "car": (f"What did {p} purchase to get around?", x.get("car", "")),
            "concert": (f"Which musical performance did {p} go to?", x.get("band", "")),
            "course": (f"What subject is {p} studying?", x.get("course", "")),
            "race": (f"What event is {p} preparing for?", x.get("race", "")),
            "volunteer": (f"Where does {p} help out as a volunteer?", x.get("place", "")),
            "event": (f"What was the highlight of {p}'s {x.get('event')}?", f.turn.text),
        }
        question, answer = single[f.topic]
        # a topic a person raised more than once is asked about as multi-hop below
        if len(by[(p, f.topic)]) == 1:
            # open-domain: the question names only what the thing is ("seafood", "Canada")
            c.ask(3 if f.topic in ("travel", "allergy", "pet") else 4, question, answer, ev)
        if "when" in x:
            day = _resolve((x["when"], dict(WHEN_WORDS)[x["when"]]), when)
            verb = {
                "injury": f"get {x.get('verb')}",
                "concert": f"see {x.get('band')}",
                "volunteer": f"volunteer at {x.get('place')}",
            }[f.topic]
            c.ask(2, f"When did {p} {verb}?", _day(day), ev)
            if x["when"] not in ("last week", "last weekend"):  # those name no single day
                c.ask(2, f"What did {p} do on {_day(day)}?", f.turn.text, ev)
        if f.topic in ("travel", "job", "move") and rng.random() < 0.5:
            c.ask(2, f"In which month did {p} mention {f.asked}?", when.strftime("%B %Y"), ev)
    # multi-hop: the same topic twice for one person, or once for each of them
    for (p, topic), facts in by.items():
        if len(facts) >= 2:
            question = MULTI_ONE.get(topic, "What has {p} said about their {topic} over time?")
            c.ask(
                1,
                question.format(p=p, topic=topic),
                "; ".join(f.turn.text for f in facts),
                [f.turn for f in facts],
            )
    a_name, b_name = c.people
    for topic, question in MULTI_BOTH.items():
        a, b = (by.get((person, topic)) for person in c.people)
        if a and b and len(a) == len(b) == 1:
            c.ask(
                1,
                question.format(a=a_name, b=b_name),
                f"{a[0].turn.text} / {b[0].turn.text}",
                [a[0].turn, b[0].turn],
            )
    # adversarial: asked about the wrong person (skipped by default, as in LoCoMo)
    for f in rng.sample(c.facts, min(3, len(c.facts))):
        c.qa.append(
            {
                "question": f"Did {c.other(f.person)} mention {f.asked}?",
                "adversarial_answer": "no",
                "evidence": [f.turn.dia_id],
                "category": 5,
            }
        )


DECK = [
    "travel",
    "travel",
    "hobby",
    "hobby",
    "pet",
    "job",
    "book",
    "family",
    "allergy",
    "move",
    "car",
    "course",
    "race",
    "event",
    "event",
    "event",
    "injury",
    "concert",
    "volunteer",
]
GREETINGS = ["Hey! Long time no talk.", "Hi, how are you?", "Good morning!", "Hey, got a minute?"]
REACTIONS = [
    "Wow, really?",
    "That's great news!",
    "No way!",
    "Oh, tell me more.",
    "That sounds wonderful.",
]


def conversation(rng: random.Random, sample_id: str) -> dict[str, Any]:
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
    sessions: dict[str, Any] = {"speaker_a": a, "speaker_b": b}
    for n, session in enumerate(c.sessions, start=1):
        for i, turn in enumerate(session.turns, start=1):
            turn.dia_id = f"D{n}:{i}"
        sessions[f"session_{n}_date_time"] = _locomo_time(session.when)
        sessions[f"session_{n}"] = [
            {"speaker": t.speaker, "dia_id": t.dia_id, "text": t.text} for t in session.turns
        ]
    _questions(c)
    return {"sample_id": sample_id, "conversation": sessions, "qa": c.qa}


def generate(seed: int = 7, conversations: int = 24) -> list[dict[str, Any]]:
    """Half the conversations are the tuning split, half the held-out split."""
    rng = random.Random(seed)
    out = []
    for i in range(conversations):
        split = "tune" if i % 2 == 0 else "heldout"
        out.append(conversation(random.Random(rng.getrandbits(64)), f"gen-{split}-{i:02d}"))
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--conversations", type=int, default=24)
    parser.add_argument("--out", type=Path, default=OUT)
    args = parser.parse_args()
    samples = generate(args.seed, args.conversations)
    args.out.write_text(json.dumps(samples, indent=1) + "\n", encoding="utf-8")
    turns = sum(len(v) for s in samples for k, v in s["conversation"].items() if k[-1].isdigit())
    questions = sum(1 for s in samples for q in s["qa"] if q["category"] != 5)
    print(f"wrote {args.out}: {len(samples)} conversations, {turns} turns, {questions} questions")


if __name__ == "__main__":
    main()
