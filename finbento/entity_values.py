"""Normalised values of ``ner`` entities: MONEY amounts and DATE phrases (pure functions).

MONEY -> ``{"value": float, "currency": ISO 4217 code}``:

- currency from a symbol or word anywhere in the span: ``₹ Rs Rs. INR rupee(s) /-`` -> INR,
  ``$ USD dollar(s) buck(s)`` -> USD, ``£ GBP pound(s) quid`` -> GBP, ``€ EUR euro(s)`` -> EUR;
  a span without one takes the default currency (``settings.ner_default_currency``, INR: the
  app's users are in India and write rupee amounts bare, e.g. "paid 500 for lunch").
- the number by price-parser (``1,630``, Indian grouping ``5,00,000``, ``1.234,56``) or, when the
  span has no digits, by text2num (``eight hundred`` -> 800);
- multipliers ``k``/``thousand`` = 1e3, ``lakh``/``lac`` = 1e5, ``million``/``mn`` = 1e6,
  ``crore``/``cr`` = 1e7, ``billion``/``bn`` = 1e9 (``2.5 lakh`` = 250000, ``5k`` = 5000).

DATE -> an ISO date ``"2022-03-14"`` or a range ``{"start": ISO date, "end": ISO date}``
(both ends inclusive), relative to a reference date (the request's, default today):

- calendar periods: ``this/last/next week|month|quarter|year`` (weeks run Monday to Sunday,
  quarters are calendar quarters), ``this/last/next weekend``, ``last N days|weeks|months|years``
  (reference minus N units .. reference), ``next N ...`` (reference .. reference plus N units),
  a month name (``in May``, ``october last year``, ``September 2023``), a year (``during 2017``);
- a weekday in a named week (``last week monday``, ``saturday next week``);
- a bare day of the month (``the 5th``, ``last 13th``);
- everything else by dateparser (``yesterday``, ``next Friday``, ``3rd of March``, ``in 3 days``,
  ``9/3/2019`` read day first).

Ambiguous phrases (a bare weekday, a day and month without a year, a month name) resolve to the
nearest matching date in the past (``prefer="past"``, default: a finance app is mostly asked about
what happened) or in the future (``prefer="future"``, NLU++'s convention), the reference day
included. Vague or periodic phrases (``lately``, ``monthly``, ``4th of each month``) and anything
unparseable give None: never an exception.
"""

from __future__ import annotations

import calendar
import re
from datetime import date, datetime, time, timedelta
from decimal import Decimal, InvalidOperation
from typing import Literal

Prefer = Literal["past", "future"]
DateValue = str | dict[str, str]

#: Currency symbols and words (lower case) -> ISO 4217 code. Longest alternatives match first.
CURRENCIES: dict[str, str] = {
    "₹": "INR", "rs.": "INR", "rs": "INR", "inr": "INR", "rupee": "INR", "rupees": "INR",
    "/-": "INR", "$": "USD", "usd": "USD", "dollar": "USD", "dollars": "USD", "buck": "USD",
    "bucks": "USD", "£": "GBP", "gbp": "GBP", "pound": "GBP", "pounds": "GBP", "quid": "GBP",
    "€": "EUR", "eur": "EUR", "euro": "EUR", "euros": "EUR",
}  # fmt: skip
#: Multiplier words and suffixes (lower case) -> factor.
MULTIPLIERS: dict[str, int] = {
    "k": 10**3, "thousand": 10**3, "lakh": 10**5, "lakhs": 10**5, "lac": 10**5, "lacs": 10**5,
    "million": 10**6, "mn": 10**6, "crore": 10**7, "crores": 10**7, "cr": 10**7,
    "billion": 10**9, "bn": 10**9,
}  # fmt: skip
MAX_PHRASE_CHARS = 80  # longer DATE/MONEY spans are not parsed (value None)


def _alternation(words: object) -> str:
    return "|".join(re.escape(w) for w in sorted(words, key=len, reverse=True))


_CURRENCY_RE = re.compile(rf"(?<![a-z])(?:{_alternation(CURRENCIES)})(?![a-z])")
_SCALED_RE = re.compile(rf"(\d[\d,]*(?:\.\d+)?)\s*({_alternation(MULTIPLIERS)})(?![a-z])")


def currency_of(text: str) -> str | None:
    """ISO 4217 code of the first currency symbol or word in ``text`` (any case), else None."""
    m = _CURRENCY_RE.search(text.lower())
    return CURRENCIES[m.group(0)] if m else None


def _words_to_digits(text: str) -> str:
    """Number words -> digits (``eight hundred`` -> ``800``); text without them is unchanged."""
    from text_to_num import alpha2digit

    try:
        text = alpha2digit(text, "en", threshold=0)
    except Exception:  # a parser's failure must not fail the request
        return text
    text = re.sub(r"\ban?\s+(?=\d)", "", text)  # "a 1000" -> "1000"
    return re.sub(r"\ban?\s+(?=(lakhs?|lacs?|crores?)\b)", "1 ", text)  # "a lakh" -> "1 lakh"


def normalise_money(text: str, default_currency: str = "INR") -> dict[str, float | str] | None:
    """Amount and currency of a MONEY span.

    Args:
        text: the entity's text, e.g. ``"Rs. 2.5 lakh"``, ``"$1,630"``, ``"eight hundred bucks"``.
        default_currency: ISO 4217 code for spans without a currency symbol or word.

    Returns:
        ``{"value": float, "currency": "INR"}`` (value in the currency's main unit), or None if
        no number can be read.
    """
    if not text or len(text) > MAX_PHRASE_CHARS:
        return None
    lower = text.lower()
    currency = currency_of(lower) or default_currency
    if not re.search(r"\d", lower):
        lower = _words_to_digits(lower)
    lower = _CURRENCY_RE.sub(" ", lower)
    try:
        total, found = Decimal(0), False
        for m in _SCALED_RE.finditer(lower):  # "2 lakh 50 thousand", "1.5cr", "5k"
            total += _amount(m.group(1)) * MULTIPLIERS[m.group(2)]
            found = True
        rest = _amount(_SCALED_RE.sub(" ", lower))
        if rest is None and not found:
            return None
        value = float(total + (rest or 0))
    except (InvalidOperation, ValueError, OverflowError, TypeError):
        return None
    return {"value": value, "currency": currency}


def _amount(text: str) -> Decimal | None:
    """The number in ``text`` (price-parser: ``1,630``, ``5,00,000``, ``1.234,56``), or None."""
    from price_parser import Price

    amount = Price.fromstring(text).amount
    return None if amount is None else Decimal(amount)


# --- dates -----------------------------------------------------------------------------------

_UNITS = ("day", "week", "fortnight", "month", "quarter", "year")
_MONTHS = {m.lower(): i for i, m in enumerate(calendar.month_name) if m} | {
    m.lower(): i for i, m in enumerate(calendar.month_abbr) if m
} | {"sept": 9}  # fmt: skip
_WEEKDAYS = {d.lower(): i for i, d in enumerate(calendar.day_name)} | {
    d.lower(): i for i, d in enumerate(calendar.day_abbr)
} | {"tues": 1, "thur": 3, "thurs": 3}  # fmt: skip
_VAGUE = re.compile(
    r"(lately|recently|these days|for days|some (days|weeks|months|years)( ago)?|"
    r"(daily|weekly|monthly|yearly|annually|quarterly)|(each|every) \w+|.* of (each|every) \w+)"
)
_LEAD = re.compile(r"^(on|the|from|since|until|till|by|before|after|during|for|over|of)\s+")
_THIS, _LAST, _NEXT = r"(this|current|the current)", r"(last|previous|past)", r"(next|coming)"
_MONTH_RE = _alternation(_MONTHS)
_WEEKDAY_RE = _alternation(_WEEKDAYS)


def _iso(d: date) -> str:
    return d.isoformat()


def _range(start: date, end: date) -> dict[str, str]:
    return {"start": _iso(start), "end": _iso(end)}


def _add_months(d: date, months: int) -> date:
    """``d`` moved by whole months, the day clipped to the month's length."""
    y, m = divmod(d.year * 12 + d.month - 1 + months, 12)
    return date(y, m + 1, min(d.day, calendar.monthrange(y, m + 1)[1]))


def _month_range(year: int, month: int) -> dict[str, str]:
    return _range(date(year, month, 1), date(year, month, calendar.monthrange(year, month)[1]))


def _period(unit: str, ref: date, offset: int) -> dict[str, str]:
    """The calendar week/month/quarter/year ``offset`` periods from the one holding ``ref``."""
    if unit == "week":
        start = ref - timedelta(days=ref.weekday()) + timedelta(weeks=offset)
        return _range(start, start + timedelta(days=6))
    if unit == "month":
        first = _add_months(ref.replace(day=1), offset)
        return _month_range(first.year, first.month)
    if unit == "quarter":
        first = _add_months(date(ref.year, 3 * ((ref.month - 1) // 3) + 1, 1), 3 * offset)
        last = _add_months(first, 2)
        return _range(first, last.replace(day=calendar.monthrange(last.year, last.month)[1]))
    return _range(date(ref.year + offset, 1, 1), date(ref.year + offset, 12, 31))


def _shift(ref: date, unit: str, n: int) -> date:
    if unit in ("day", "week", "fortnight"):
        return ref + timedelta(days=n * {"day": 1, "week": 7, "fortnight": 14}[unit])
    return _add_months(ref, n * {"month": 1, "quarter": 3, "year": 12}[unit])


def _count(word: str) -> int | None:
    if word.isdigit():
        return int(word)
    if word in ("a", "an", "one"):
        return 1
    if word in ("few", "a few", "couple", "a couple of", "couple of"):
        return 3 if "few" in word else 2
    digits = _words_to_digits(word)
    return int(digits) if digits.isdigit() else None


def _nearest_month(month: int, ref: date, prefer: Prefer) -> dict[str, str]:
    year = ref.year
    if prefer == "past" and month > ref.month:
        year -= 1
    elif prefer == "future" and month < ref.month:
        year += 1
    return _month_range(year, month)


def _nearest_day_of_month(day: int, ref: date, prefer: Prefer) -> str | None:
    step = -1 if prefer == "past" else 1
    first = ref.replace(day=1)
    if (prefer == "past" and day > ref.day) or (prefer == "future" and day < ref.day):
        first = _add_months(first, step)
    for _ in range(12):  # the 31st: look for the nearest month that has one
        if day <= calendar.monthrange(first.year, first.month)[1]:
            return _iso(first.replace(day=day))
        first = _add_months(first, step)
    return None


def _rules(t: str, ref: date, prefer: Prefer) -> DateValue | None:
    """Calendar phrases dateparser reads as a single day or not at all; None if none matches."""
    units = "|".join(_UNITS)
    if m := re.fullmatch(rf"(?:{_THIS}|{_LAST}|{_NEXT}) ({units})s?", t):
        offset = 0 if m.group(1) else -1 if m.group(2) else 1
        unit = m.group(4)
        if unit == "fortnight":
            return _range(ref - timedelta(days=14), ref) if offset < 0 else None
        if unit != "day":
            return _period(unit, ref, offset)
    if m := re.fullmatch(rf"(?:{_THIS}|{_LAST}|{_NEXT}|the) weekend", t):
        offset = -1 if m.group(2) else 1 if m.group(3) else 0
        saturday = ref - timedelta(days=ref.weekday()) + timedelta(days=5, weeks=offset)
        return _range(saturday, saturday + timedelta(days=1))
    if m := re.fullmatch(rf"(?:(?:the )?{_LAST}|(?:the )?{_NEXT}) (\w+(?: \w+)??) ({units})s?", t):
        n = _count(m.group(3))
        if n is not None and n > 0:
            unit = m.group(4)
            if m.group(1):
                return _range(_shift(ref, unit, -n), ref)
            return _range(ref, _shift(ref, unit, n))
    if m := re.fullmatch(
        rf"(?:in )?({_MONTH_RE})(?:,? (\d{{4}}|this year|last year|next year))?", t
    ):
        month = _MONTHS[m.group(1)]
        year = m.group(2)
        if year is None:
            return _nearest_month(month, ref, prefer)
        if year.isdigit():
            return _month_range(int(year), month)
        return _month_range(ref.year + {"this": 0, "last": -1, "next": 1}[year.split()[0]], month)
    if m := re.fullmatch(r"(?:in |the year )?(\d{4})", t):
        year = int(m.group(1))
        return _range(date(year, 1, 1), date(year, 12, 31)) if 1900 <= year <= 2100 else None
    weekday_in_week = (
        rf"({_WEEKDAY_RE})(?: of)? (this|last|next) week|(this|last|next) week'?s? ({_WEEKDAY_RE})"
    )
    if m := re.fullmatch(weekday_in_week, t):
        day, which = (m.group(1), m.group(2)) if m.group(1) else (m.group(4), m.group(3))
        offset = {"this": 0, "last": -1, "next": 1}[which]
        monday = ref - timedelta(days=ref.weekday()) + timedelta(weeks=offset)
        return _iso(monday + timedelta(days=_WEEKDAYS[day]))
    if m := re.fullmatch(
        r"(last |this |next )?(\d{1,2})(?:st|nd|rd|th)(?: of (?:this|the) month)?", t
    ):
        day = int(m.group(2))
        if not 1 <= day <= 31:
            raise ValueError(f"no month has a day {day}")  # normalise_date answers None
        which = (m.group(1) or "").strip()
        if which == "this":
            if day > calendar.monthrange(ref.year, ref.month)[1]:
                return None
            return _iso(ref.replace(day=day))
        return _nearest_day_of_month(
            day, ref, {"last": "past", "next": "future"}.get(which, prefer)
        )
    return None


def normalise_date(text: str, reference: date, prefer: Prefer = "past") -> DateValue | None:
    """Calendar value of a DATE span, relative to ``reference``.

    Args:
        text: the entity's text, e.g. ``"yesterday"``, ``"last month"``, ``"3rd of March"``.
        reference: the day the text was written (the request's ``reference_date``).
        prefer: where ambiguous phrases (bare weekday, day and month, month) resolve.

    Returns:
        an ISO date (``"2022-03-14"``), a range ``{"start": ..., "end": ...}`` (inclusive ISO
        dates), or None for vague, periodic or unparseable text (never raises).
    """
    t = re.sub(r"\s+", " ", (text or "").lower()).strip(" .,;:!?")
    if not t or len(t) > MAX_PHRASE_CHARS or _VAGUE.fullmatch(t):
        return None
    t = _LEAD.sub("", t)
    try:
        ruled = _rules(t, reference, prefer)
        if ruled is not None:
            return ruled
        return _dateparser(t, reference, prefer)
    except (ValueError, OverflowError, ArithmeticError):
        return None


def _dateparser(t: str, reference: date, prefer: Prefer) -> str | None:
    import dateparser

    settings = {
        "RELATIVE_BASE": datetime.combine(reference, time(12)),
        "PREFER_DATES_FROM": prefer,
        "DATE_ORDER": "DMY",
        "RETURN_AS_TIMEZONE_AWARE": False,
    }
    try:
        parsed = dateparser.parse(t, languages=["en"], settings=settings)
    except Exception:  # dateparser raises assorted errors on odd input
        return None
    return None if parsed is None else _iso(parsed.date())
