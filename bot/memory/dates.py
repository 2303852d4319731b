"""Dates in what people say: relative ones ("yesterday", "two weeks ago", "last Saturday")
resolved against when it was said, and dates named in questions written the way the index
writes them, so "What did Maria do on May 7th?" matches "Maria: ... yesterday (7 May 2023)".

Dates are written "7 May 2023": the index's tokenizer splits that into words a question in
any common spelling ("May 7, 2023", "2023-05-07", "7th of May") is rewritten to.
"""

from __future__ import annotations

import datetime as dt
import re

_MONTHS = [
    "january", "february", "march", "april", "may", "june", "july", "august", "september",
    "october", "november", "december",
]  # fmt: skip
_MONTH_ABBR = {m[:3]: i + 1 for i, m in enumerate(_MONTHS)} | {"sept": 9}
_WEEKDAYS = ["monday", "tuesday", "wednesday", "thursday", "friday", "saturday", "sunday"]
_NUMBERS = {
    "a": 1, "an": 1, "one": 1, "two": 2, "three": 3, "four": 4, "five": 5, "six": 6, "seven": 7,
    "eight": 8, "nine": 9, "ten": 10, "a couple of": 2, "couple of": 2, "a few": 3, "few": 3,
}  # fmt: skip
_NUM = r"(\d{1,2}|" + "|".join(sorted(map(re.escape, _NUMBERS), key=len, reverse=True)) + ")"
_RELATIVE = re.compile(
    r"\b(?:(?P<simple>the day before yesterday|yesterday|today|tonight|this morning|"
    r"this afternoon|this evening|tomorrow|last night|last weekend|last week|last month|"
    r"last year|next week|next month|next year)"
    r"|(?P<n>" + _NUM + r")\s+(?P<unit>days?|weeks?|months?|years?)\s+ago"
    r"|(?P<dir>last|this past|next|this coming)\s+(?P<wd>" + "|".join(_WEEKDAYS) + r"))\b",
    re.IGNORECASE,
)
_MONTH_RE = "|".join(_MONTHS + sorted(_MONTH_ABBR, key=len, reverse=True))
_ABSOLUTE = re.compile(
    r"\b(?:(?P<iso>(?P<iy>\d{4})-(?P<im>\d{1,2})-(?P<id>\d{1,2}))"
    r"|(?P<d1>\d{1,2})(?:st|nd|rd|th)?(?:\s+of)?\s+(?P<m1>"
    + _MONTH_RE
    + r")\.?(?:,?\s+(?P<y1>\d{4}))?"
    r"|(?P<m2>" + _MONTH_RE + r")\.?\s+(?P<d2>\d{1,2})(?:st|nd|rd|th)?\b(?:,?\s+(?P<y2>\d{4}))?)\b",
    re.IGNORECASE,
)


def day_words(day: dt.date) -> str:
    return f"{day.day} {_MONTHS[day.month - 1].capitalize()} {day.year}"


def month_words(day: dt.date) -> str:
    return f"{_MONTHS[day.month - 1].capitalize()} {day.year}"


def _shift_months(day: dt.date, months: int) -> dt.date:
    index = day.year * 12 + day.month - 1 + months
    return dt.date(index // 12, index % 12 + 1, 1)


def _week_of(day: dt.date) -> str:
    return f"the week of {day_words(day - dt.timedelta(days=day.weekday()))}"


def _count(text: str) -> int:
    text = text.lower()
    return int(text) if text.isdigit() else _NUMBERS[text]


def _resolve(match: re.Match[str], said: dt.date) -> str | None:
    simple = (match.group("simple") or "").lower()
    one_day = dt.timedelta(days=1)
    fixed = {
        "the day before yesterday": lambda: day_words(said - 2 * one_day),
        "yesterday": lambda: day_words(said - one_day),
        "last night": lambda: day_words(said - one_day),
        "today": lambda: day_words(said),
        "tonight": lambda: day_words(said),
        "this morning": lambda: day_words(said),
        "this afternoon": lambda: day_words(said),
        "this evening": lambda: day_words(said),
        "tomorrow": lambda: day_words(said + one_day),
        "last weekend": lambda: (
            "the weekend of " + day_words(said - dt.timedelta(days=(said.weekday() - 5) % 7 or 7))
        ),
        "last week": lambda: _week_of(said - 7 * one_day),
        "next week": lambda: _week_of(said + 7 * one_day),
        "last month": lambda: month_words(_shift_months(said, -1)),
        "next month": lambda: month_words(_shift_months(said, 1)),
        "last year": lambda: str(said.year - 1),
        "next year": lambda: str(said.year + 1),
    }
    if simple:
        return fixed[simple]()
    if match.group("unit"):
        n, unit = _count(match.group("n")), match.group("unit").lower().rstrip("s")
        if unit == "day":
            return day_words(said - n * one_day)
        if unit == "week":
            return day_words(said - 7 * n * one_day)
        if unit == "month":
            return month_words(_shift_months(said, -n))
        return str(said.year - n)
    weekday = _WEEKDAYS.index(match.group("wd").lower())
    if match.group("dir").lower() in ("last", "this past"):
        return day_words(said - dt.timedelta(days=(said.weekday() - weekday) % 7 or 7))
    return day_words(said + dt.timedelta(days=(weekday - said.weekday()) % 7 or 7))


def resolve_relative(text: str, said: dt.date) -> str:
    """`text` with each relative date followed by the date it means, in parentheses:
    "I fell yesterday" said on 8 May 2023 -> "I fell yesterday (7 May 2023)"."""

    def add(match: re.Match[str]) -> str:
        resolved = _resolve(match, said)
        return f"{match.group(0)} ({resolved})" if resolved else match.group(0)

    return _RELATIVE.sub(add, text)


def _absolute(match: re.Match[str], today: dt.date) -> str | None:
    try:
        if match.group("iso"):
            year, month, day = (int(match.group(g)) for g in ("iy", "im", "id"))
        else:
            name = (match.group("m1") or match.group("m2")).lower().rstrip(".")
            month = _MONTH_ABBR.get(name[:4] if name == "sept" else name[:3], 0)
            day = int(match.group("d1") or match.group("d2"))
            year_text = match.group("y1") or match.group("y2")
            year = int(year_text) if year_text else today.year
            if not year_text:
                return f"{day} {_MONTHS[month - 1].capitalize()}"
        return day_words(dt.date(year, month, day))
    except (ValueError, IndexError):
        return None


#: "two days before", "a week after", "the Friday before": a day given from another one
_OFFSET = re.compile(
    r"\b(?:the\s+(?P<the>day|week|weekend|" + "|".join(_WEEKDAYS) + r")"
    r"|(?P<n>" + _NUM + r")\s+(?P<unit>days?|weeks?))\s+(?P<dir>before|after)\s+$",
    re.IGNORECASE,
)


def _offset(before: str, words: str) -> str:
    """The date `words` ("9 May 2023") moved by the offset `before` ends with ("two days
    before "), written as the index writes it; `words` itself when there is none."""
    match = _OFFSET.search(before[-40:])
    if match is None:
        return words
    the = (match.group("the") or "").lower()
    try:
        day = dt.datetime.strptime(words, "%d %B %Y").date()
    except ValueError:
        # no year: whole days still count back (in a leap year, so 29 February is a day),
        # but which weekday it was is unknown
        if the not in ("", "day"):
            return words
        try:
            day = dt.datetime.strptime(f"{words} 2000", "%d %B %Y").date()
        except ValueError:
            return words
        return " ".join(_offset(before, day_words(day)).split()[:2])
    sign = -1 if match.group("dir").lower() == "before" else 1
    if the == "week":
        return _week_of(day + sign * dt.timedelta(days=7))
    if the == "weekend":
        back = (day.weekday() - 5) % 7 or 7
        return "the weekend of " + day_words(day - dt.timedelta(days=back))
    if the in _WEEKDAYS:
        target = _WEEKDAYS.index(the)
        step = (day.weekday() - target) % 7 or 7 if sign < 0 else (target - day.weekday()) % 7 or 7
        return day_words(day + sign * dt.timedelta(days=step))
    n = 1 if the == "day" else _count(match.group("n"))
    days = n * (7 if (match.group("unit") or "day").lower().startswith("week") else 1)
    return day_words(day + sign * dt.timedelta(days=days))


def query_dates(text: str, today: dt.date) -> list[str]:
    """The dates a question names, written as the index writes them: explicit ones in any
    common spelling, moved by an offset in front of them ("two days before 9 May 2023" is
    7 May 2023), and relative ones resolved against `today`."""
    found: list[str] = []
    for match in _ABSOLUTE.finditer(text):
        if (words := _absolute(match, today)) is not None:
            found.append(_offset(text[: match.start()], words))
    for match in _RELATIVE.finditer(text):
        if (words := _resolve(match, today)) is not None:
            found.append(words)
    return list(dict.fromkeys(found))
