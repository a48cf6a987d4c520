"""MONEY and DATE normalisation (finbento.entity_values), against a fixed reference date."""

import json
import random
from datetime import date

import pytest

from finbento.entity_values import normalise_date, normalise_money
from finbento.settings import Settings

REF = date(2022, 3, 15)  # a Tuesday; NLU++'s own reference date


@pytest.mark.parametrize(
    ("text", "value", "currency"),
    [
        ("₹500", 500, "INR"),
        ("₹ 2,50,000", 250_000, "INR"),
        ("Rs. 1,200", 1200, "INR"),
        ("Rs.500", 500, "INR"),
        ("rs 50", 50, "INR"),
        ("50rs", 50, "INR"),
        ("Rs 5,00,000", 500_000, "INR"),
        ("INR 2.5 lakh", 250_000, "INR"),
        ("INR5000", 5000, "INR"),
        ("1.2 crore", 12_000_000, "INR"),
        ("₹1.5cr", 15_000_000, "INR"),
        ("3 lakhs", 300_000, "INR"),
        ("1 crore 20 lakh", 12_000_000, "INR"),
        ("two lakh and fifty thousand rupees", 250_000, "INR"),
        ("a lakh rupees", 100_000, "INR"),
        ("500/-", 500, "INR"),
        ("5k", 5000, "INR"),
        ("5K", 5000, "INR"),
        ("$1,630", 1630, "USD"),
        ("9.56$", 9.56, "USD"),
        ("450 bucks", 450, "USD"),
        ("eight hundred dollars", 800, "USD"),
        ("one thousand three hundred and twenty bucks", 1320, "USD"),
        ("USD 12.5", 12.5, "USD"),
        ("£27", 27, "GBP"),
        ("700£", 700, "GBP"),
        ("56.79 pounds", 56.79, "GBP"),
        ("40€", 40, "EUR"),
        ("€1.234,56", 1234.56, "EUR"),
        ("999.43 euros", 999.43, "EUR"),
    ],
)
def test_money_formats(text, value, currency):
    assert normalise_money(text) == {"value": pytest.approx(value), "currency": currency}


def test_money_without_currency_takes_the_default():
    assert normalise_money("400") == {"value": 400.0, "currency": "INR"}
    assert normalise_money("400", default_currency="GBP")["currency"] == "GBP"
    assert normalise_money("$400", default_currency="GBP")["currency"] == "USD"
    assert Settings().ner_default_currency == "INR"


@pytest.mark.parametrize(
    "variant", ["RS. 500", "rs. 500", "Rs 500", "Rs.500", " Rs  500 ", "500 RS"]
)
def test_money_ignores_case_and_spacing(variant):
    assert normalise_money(variant) == {"value": 500.0, "currency": "INR"}


@pytest.mark.parametrize("text", ["", "Rs", "some money", "$", "lots of rupees", "9" * 100])
def test_unreadable_money_is_none(text):
    assert normalise_money(text) is None


def _r(start: str, end: str) -> dict:
    return {"start": start, "end": end}


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("yesterday", "2022-03-14"),
        ("today", "2022-03-15"),
        ("tomorrow", "2022-03-16"),
        ("day after tomorrow", "2022-03-17"),
        ("last night", "2022-03-14"),
        ("3 days ago", "2022-03-12"),
        ("8 weeks ago", "2022-01-18"),
        ("in 3 days", "2022-03-18"),
        ("last Friday", "2022-03-11"),
        ("next Friday", "2022-03-18"),  # dateparser: the coming Friday
        ("Friday", "2022-03-11"),  # ambiguous: past by default
        ("3rd of March", "2022-03-03"),
        ("16th of Apr", "2021-04-16"),
        ("on the 5th", "2022-03-05"),
        ("the 20th", "2022-02-20"),
        ("31st", "2022-01-31"),  # February has no 31st
        ("last 13th", "2022-03-13"),
        ("25th this month", "2022-03-25"),
        ("9/3/2019", "2019-03-09"),  # day first
        ("30th of Nov 1963", "1963-11-30"),
        ("last week monday", "2022-03-07"),
        ("saturday next week", "2022-03-26"),
        ("last month", _r("2022-02-01", "2022-02-28")),
        ("previous month", _r("2022-02-01", "2022-02-28")),
        ("this month", _r("2022-03-01", "2022-03-31")),
        ("next month", _r("2022-04-01", "2022-04-30")),
        ("last week", _r("2022-03-07", "2022-03-13")),
        ("this week", _r("2022-03-14", "2022-03-20")),
        ("next week", _r("2022-03-21", "2022-03-27")),
        ("this weekend", _r("2022-03-19", "2022-03-20")),
        ("this quarter", _r("2022-01-01", "2022-03-31")),
        ("last quarter", _r("2021-10-01", "2021-12-31")),
        ("last year", _r("2021-01-01", "2021-12-31")),
        ("current year", _r("2022-01-01", "2022-12-31")),
        ("last 3 days", _r("2022-03-12", "2022-03-15")),
        ("the last two weeks", _r("2022-03-01", "2022-03-15")),
        ("last few months", _r("2021-12-15", "2022-03-15")),
        ("next 2 months", _r("2022-03-15", "2022-05-15")),
        ("in May", _r("2021-05-01", "2021-05-31")),
        ("March", _r("2022-03-01", "2022-03-31")),
        ("october last year", _r("2021-10-01", "2021-10-31")),
        ("September 2023", _r("2023-09-01", "2023-09-30")),
        ("during 2017", _r("2017-01-01", "2017-12-31")),
    ],
)
def test_date_phrases(text, expected):
    assert normalise_date(text, REF) == expected


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("Friday", "2022-03-18"),
        ("3rd of March", "2023-03-03"),
        ("the 20th", "2022-03-20"),
        ("in May", _r("2022-05-01", "2022-05-31")),
        ("january", _r("2023-01-01", "2023-01-31")),
    ],
)
def test_ambiguous_dates_can_prefer_the_future(text, expected):
    assert normalise_date(text, REF, prefer="future") == expected


@pytest.mark.parametrize(
    ("ref", "text", "expected"),
    [
        (date(2022, 1, 10), "last month", _r("2021-12-01", "2021-12-31")),
        (date(2024, 3, 31), "last month", _r("2024-02-01", "2024-02-29")),
        (date(2022, 1, 2), "last week", _r("2021-12-20", "2021-12-26")),  # a Sunday
        (date(2022, 2, 10), "last quarter", _r("2021-10-01", "2021-12-31")),
        (date(2024, 2, 29), "yesterday", "2024-02-28"),
    ],
)
def test_dates_across_month_and_year_boundaries(ref, text, expected):
    assert normalise_date(text, ref) == expected


@pytest.mark.parametrize(
    "text",
    ["lately", "recently", "monthly", "each month", "4th of each month", "some days ago", "",
     "   ", "qwerty uiop", "the 45th", "x" * 500],
)  # fmt: skip
def test_vague_or_unparseable_dates_are_none(text):
    assert normalise_date(text, REF) is None


def test_normalisation_never_raises_on_random_text():
    rng = random.Random(0)
    alphabet = "0123456789 ,./-₹$£€abcdefghijklmnopqrstuvwxyz lakh crore last next week month"
    for _ in range(300):
        text = "".join(rng.choice(alphabet) for _ in range(rng.randint(0, 40)))
        normalise_money(text)
        normalise_date(text, REF)
    assert normalise_date("last month", date(1900, 1, 1)) == _r("1899-12-01", "1899-12-31")


def test_dates_agree_with_nlupp_gold_values():
    """NLU++ gives resolved values (reference 2022-03-15, future preference) for its date slots.

    Conventions differ on some phrases (NLU++ gives "last week" as a single day and "next 2
    months" from the first of next month), so the agreement is high but not total.
    """
    folder = Settings().language_data_path / "nlupp_banking"
    agree = total = 0
    for path in sorted(folder.glob("fold*.json")):
        for item in json.loads(path.read_text()):
            for slot, v in item.get("slots", {}).items():
                if not slot.startswith("date"):
                    continue
                gold = _nlupp_value(v)
                if gold is None:
                    continue
                total += 1
                agree += normalise_date(v["text"], REF, prefer="future") == gold
    assert total > 300
    assert agree / total >= 0.85, (agree, total)


def _nlupp_value(slot: dict) -> str | dict | None:
    def iso(d: dict) -> str:
        return date(d["year"], d["month"], d["day"]).isoformat()

    if isinstance(slot.get("value"), dict) and "day" in slot["value"]:
        return iso(slot["value"])
    values = slot.get("values", {})
    if values.get("type") == "absolute" and "day" in values["from"]:
        return _r(iso(values["from"]), iso(values["to"]))
    return None
