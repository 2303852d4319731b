"""The second generated set: questions that name nobody and say things in other words,
answers spread over two sessions, and days given from other days; seeded and split by
conversation before anything is tuned."""

from __future__ import annotations

import datetime as dt
import re
from collections import Counter

from bench import memory_gen
from bench.memory_data import parse_locomo_time
from bench.memory_gen_hard import generate


def _said(sample: dict) -> dict[str, tuple[int, dict]]:
    conv = sample["conversation"]
    return {
        t["dia_id"]: (int(k.split("_")[1]), t)
        for k, v in conv.items()
        if re.fullmatch(r"session_\d+", k)
        for t in v
    }


def test_the_second_set_is_seeded_large_split_and_other_than_the_first() -> None:
    first, again = generate(seed=11), generate(seed=11)
    assert first == again and first != generate(seed=12)
    questions = [q for s in first for q in s["qa"]]
    assert len(questions) >= 1000
    assert Counter(s["sample_id"].split("-")[1] for s in first) == {"tune": 12, "heldout": 12}
    assert set(Counter(q["category"] for q in questions)) == {1, 2, 3, 4}
    older = {q["question"] for s in memory_gen.generate() for q in s["qa"]}
    assert not older & {q["question"] for q in questions}  # no question of the first set


def test_single_turn_questions_name_nobody() -> None:
    for sample in generate():
        conv = sample["conversation"]
        names = {conv["speaker_a"], conv["speaker_b"]}
        said = _said(sample)
        for q in (q for q in sample["qa"] if q["category"] in (3, 4)):
            assert not any(n in q["question"] for n in names), q
            assert all(e in said for e in q["evidence"]), q


def test_two_session_answers_need_both_sessions() -> None:
    count = 0
    for sample in generate():
        said = _said(sample)
        for q in (q for q in sample["qa"] if q["category"] == 1):
            (s1, plan), (s2, later) = (said[e] for e in q["evidence"])
            assert s1 < s2 and plan["speaker"] == later["speaker"], q
            assert q["answer"] == later["text"]
            count += 1
    assert count >= 100


def test_days_given_from_another_day_point_at_the_evidence() -> None:
    shift = {"the day": 1, "two days": 2, "three days": 3, "a week": 7}
    pattern = re.compile(r"share (.+) after (\d+ \w+ \d{4})\?")
    checked = 0
    for sample in generate():
        conv, said = sample["conversation"], _said(sample)
        for q in sample["qa"]:
            m = pattern.search(q["question"])
            if m is None:
                continue
            day = dt.datetime.strptime(m.group(2), "%d %B %Y").date()
            meant = day + dt.timedelta(days=shift[m.group(1)])
            for e in q["evidence"]:
                session = said[e][0]
                at = parse_locomo_time(conv[f"session_{session}_date_time"])
                assert at is not None
                assert dt.datetime.fromtimestamp(at, dt.UTC).date() == meant, q
                checked += 1
    assert checked >= 100
