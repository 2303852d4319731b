"""The questions of the first generated set (bench/memory_gen.py), and the day helpers both
generated sets use."""

from __future__ import annotations

import datetime as dt
from typing import TYPE_CHECKING

from bench.memory_gen_words import MULTI_BOTH, MULTI_ONE, WHEN_WORDS

if TYPE_CHECKING:
    from bench.memory_gen import Fact
    from bench.memory_gen import _Conversation as Conversation


def day_text(d: dt.date) -> str:
    return f"{d.day} {d.strftime('%B')} {d.year}"


def resolve(when: tuple[str, int | None], said: dt.date) -> dt.date:
    _, days = when
    if days is not None:
        return said - dt.timedelta(days=days)
    # "last weekend" and "last Saturday": the Saturday before the day it was said
    back = (said.weekday() - 5) % 7 or 7
    return said - dt.timedelta(days=back)


def first_questions(c: Conversation) -> None:
    """The first set's questions about what `c`'s people said (see bench/memory_gen.py)."""
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
            day = resolve((x["when"], dict(WHEN_WORDS)[x["when"]]), when)
            verb = {
                "injury": f"get {x.get('verb')}",
                "concert": f"see {x.get('band')}",
                "volunteer": f"volunteer at {x.get('place')}",
            }[f.topic]
            c.ask(2, f"When did {p} {verb}?", day_text(day), ev)
            if x["when"] not in ("last week", "last weekend"):  # those name no single day
                c.ask(2, f"What did {p} do on {day_text(day)}?", f.turn.text, ev)
        if f.topic in ("travel", "job", "move") and rng.random() < 0.5:
            c.ask(2, f"In which month did {p} mention {f.asked}?", when.strftime("%B %Y"), ev)
    # multi-hop: the same topic twice for one person, or once for each of them
    # ... only when every turn says something the others do not: a sentence said twice
    # would let one turn stand for both
    for (p, topic), facts in by.items():
        if len(facts) >= 2 and len({f.turn.text for f in facts}) == len(facts):
            question = MULTI_ONE.get(topic, "What has {p} said about their {topic} over time?")
            c.ask(
                1,
                question.format(p=p, topic=topic),
                "; ".join(f.turn.text for f in facts),
                [f.turn for f in facts],
            )
    for question, answer, evidence in c.bridges:
        c.ask(1, question, answer, evidence)
    a_name, b_name = c.people
    for topic, question in MULTI_BOTH.items():
        a, b = (by.get((person, topic)) for person in c.people)
        if a and b and len(a) == len(b) == 1 and a[0].turn.text != b[0].turn.text:
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
