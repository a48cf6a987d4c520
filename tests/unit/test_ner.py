"""The ner pipeline's rule parts, its training data and evaluation code, and its route schemas."""

import json
from collections import Counter
from datetime import date

import pytest
from pydantic import TypeAdapter, ValidationError

from finbento.ner import LABELS, EntityExtractor, add_money_ruler, blank_pipeline
from finbento.settings import Settings
from services.ner_schemas import MAX_BATCH, MAX_BATCH_CHARS, MAX_TEXT_CHARS, Entity, NerPrediction
from services.schemas import BatchSizeError
from trainers import ner as trainer

REF = date(2022, 3, 15)


@pytest.fixture(scope="module")
def ruler_only() -> EntityExtractor:
    """The money ruler on a blank pipeline, plus a DATE rule to exercise date values."""
    nlp = blank_pipeline()
    add_money_ruler(nlp, "before")
    nlp.add_pipe("entity_ruler", name="dates").add_patterns(
        [{"label": "DATE", "pattern": [{"LOWER": "yesterday"}]},
         {"label": "DATE", "pattern": [{"LOWER": "last"}, {"LOWER": "month"}]}]
    )  # fmt: skip
    return EntityExtractor(nlp)


def _money(extractor: EntityExtractor, text: str) -> list[tuple[str, object]]:
    (entities,) = extractor.extract([text], REF)
    return [(e["text"], e["value"]) for e in entities if e["label"] == "MONEY"]


@pytest.mark.parametrize(
    ("text", "span", "value", "currency"),
    [
        ("I paid ₹500 for lunch", "₹500", 500, "INR"),
        ("Rs.500 to Amit", "Rs.500", 500, "INR"),
        ("sent Rs. 1,200 on food", "Rs. 1,200", 1200, "INR"),
        ("INR 2.5 lakh loan", "INR 2.5 lakh", 250_000, "INR"),
        ("INR5000 for rent", "INR5000", 5000, "INR"),
        ("a flat for 1.2 crore", "1.2 crore", 12_000_000, "INR"),
        ("₹1.5cr house", "₹1.5cr", 15_000_000, "INR"),
        ("pay 500/- now", "500/-", 500, "INR"),
        ("50rs for chai", "50rs", 50, "INR"),
        ("spent 5k on groceries", "5k", 5000, "INR"),
        ("two lakh rupees to mom", "two lakh rupees", 200_000, "INR"),
        ("send $1,630.", "$1,630", 1630, "USD"),
        ("a 9.56$ fee", "9.56$", 9.56, "USD"),
        ("one thousand three hundred and twenty bucks", "one thousand three hundred and twenty "
         "bucks", 1320, "USD"),
        ("£27 please", "£27", 27, "GBP"),
        ("40€ at lidl", "40€", 40, "EUR"),
    ],
)  # fmt: skip
def test_ruler_finds_currency_formats(ruler_only, text, span, value, currency):
    assert _money(ruler_only, text) == [
        (span, {"value": pytest.approx(value), "currency": currency})
    ]


@pytest.mark.parametrize(
    "text",
    ["paid RS. 500", "paid rs. 500", "paid Rs 500", "paid Rs.500", "paid  Rs   500 ",
     "PAID INR 500", "paid 500 rupees"],
)  # fmt: skip
def test_ruler_ignores_case_and_spacing(ruler_only, text):
    ((_, value),) = _money(ruler_only, text)
    assert value == {"value": 500.0, "currency": "INR"}


@pytest.mark.parametrize(
    "text", ["my pin is 1234", "I walked 5 km", "page 5 of 10", "call me at 5", "3 items"]
)
def test_ruler_leaves_other_numbers_alone(ruler_only, text):
    assert _money(ruler_only, text) == []


def test_extract_gives_offsets_labels_and_values_per_text(ruler_only):
    texts = ["Rs. 200 yesterday", "nothing here", "last month I spent $5"]
    out = ruler_only.extract(texts, [REF, REF, date(2024, 1, 10)])
    assert [len(entities) for entities in out] == [2, 0, 2]
    money, day = out[0]
    assert texts[0][money["start"] : money["end"]] == money["text"] == "Rs. 200"
    assert day == {"text": "yesterday", "label": "DATE", "start": 8, "end": 17,
                   "value": "2022-03-14"}  # fmt: skip
    assert out[2][0]["value"] == {"start": "2023-12-01", "end": "2023-12-31"}  # its own date
    with pytest.raises(ValueError, match="reference dates"):
        ruler_only.extract(texts, [REF])


def test_saved_pipeline_keeps_its_tokenizer_and_ruler(tmp_path):
    nlp = blank_pipeline()
    ner = nlp.add_pipe("ner")
    for label in LABELS:
        ner.add_label(label)
    nlp.initialize()
    add_money_ruler(nlp, "before")
    EntityExtractor(nlp).save(tmp_path / "pipe")
    loaded = EntityExtractor.load(tmp_path / "pipe", default_currency="GBP")
    assert loaded.nlp.pipe_names == ["money_ruler", "ner"]
    assert [t.text for t in loaded.nlp.make_doc("Rs.500 INR5000 5k 1.5cr")] == [
        "Rs.", "500", "INR", "5000", "5", "k", "1.5", "cr"]  # fmt: skip
    assert _money(loaded, "paid 5k") == [("5k", {"value": 5000.0, "currency": "GBP"})]


def test_load_refuses_a_pipeline_without_ner(tmp_path):
    blank_pipeline().to_disk(tmp_path / "blank")
    with pytest.raises(ValueError, match="no ner"):
        EntityExtractor.load(tmp_path / "blank")


# --- training data --------------------------------------------------------------------------


@pytest.fixture(scope="module")
def split() -> trainer.NerSplit:
    return trainer.load_split(Settings())


def test_label_mapping_covers_every_slot_in_the_data():
    root = Settings().language_data_path
    mapping = trainer.load_label_map(root / trainer.LABEL_MAP_FILE)
    slots = {
        (trainer.NLUPP, slot)
        for path in (root / trainer.NLUPP).glob("fold*.json")
        for item in json.loads(path.read_text())
        for slot in item.get("slots", {})
    }
    with open(root / trainer.SGD / "banks_user_turns.jsonl") as f:
        for line in f:
            row = json.loads(line)
            slots |= {(trainer.SGD, s["slot"]) for s in row["spans"]}
            slots |= {(trainer.SGD, s) for s in row["state_slot_values"]}  # fmt: skip
    assert slots == set(mapping)  # every slot decided (mapped or ignored), none invented
    assert {label for label in mapping.values() if label} == set(LABELS)


def test_an_unmapped_slot_is_refused(tmp_path):
    (tmp_path / "nlupp_banking").mkdir()
    (tmp_path / "nlupp_banking" / "fold0.json").write_text(json.dumps(
        [{"text": "pay at 5", "slots": {"time": {"text": "5", "span": [7, 8]}}}]))  # fmt: skip
    (tmp_path / "ner_labels.csv").write_text("source,slot,label\nnlupp_banking,date,DATE\n")
    with pytest.raises(KeyError, match="time"):
        trainer.load_nlupp(tmp_path / "nlupp_banking", trainer.load_label_map(
            tmp_path / "ner_labels.csv"), Counter())  # fmt: skip


def test_spans_match_their_text_and_each_source_has_its_labels(split):
    for part in split.parts().values():
        for u in part:
            for start, end, label in u.spans:
                assert u.text[start:end].strip() == u.text[start:end] != ""
                assert label in split.labels_by_source[u.source]
    sgd = [u for u in split.train if u.source == trainer.SGD]
    accounts = Counter(
        u.text[s:e].lower() for u in sgd for s, e, lab in u.spans if lab == "ACCOUNT"
    )
    assert set(accounts) == {"checking", "savings"}
    assert split.labels_by_source == {
        trainer.NLUPP: {"MONEY", "DATE", "MERCHANT", "CATEGORY"},
        trainer.SGD: {"MONEY", "ACCOUNT"},
    }


def test_split_keeps_folds_and_dialogues_apart(split):
    groups = {k: {(u.source, u.group) for u in part} for k, part in split.parts().items()}
    assert not groups["train"] & groups["test"]
    assert not groups["train"] & groups["validation"]
    assert not groups["validation"] & groups["test"]
    assert {g for s, g in groups["test"] if s == trainer.NLUPP} == {"fold12", "fold13", "fold14",
                                                                    "fold15"}  # fmt: skip
    sampled = trainer.load_split(Settings(), sample=500)
    assert set(sampled.test) <= set(split.test)
    assert 450 <= sum(len(p) for p in sampled.parts().values()) <= 550


def test_unannotated_account_words_are_missing_not_outside():
    nlp = blank_pipeline()
    u = trainer._utterance("move 40 pounds to my savings account", [(5, 14, "MONEY")],
                           trainer.NLUPP, "fold0", {"MONEY", "DATE"}, Counter())  # fmt: skip
    assert u.unannotated == ((21, 28),)
    (example,), misaligned = trainer.to_examples(nlp, [u])
    iob = {t.text: t.ent_iob_ for t in example.reference}
    assert misaligned == 0
    assert (iob["40"], iob["pounds"], iob["savings"], iob["move"]) == ("B", "I", "", "O")


def test_misaligned_and_overlapping_spans_are_dropped_and_counted():
    counts = Counter()
    u = trainer._utterance("pay 5 dollars", [(4, 13, "MONEY"), (4, 5, "DATE"), (7, 9, "DATE")],
                           trainer.SGD, "d1", {"MONEY"}, counts)  # fmt: skip
    assert u.spans == ((4, 13, "MONEY"),) and counts["overlapping"] == 2
    v = trainer.Utterance("pay 5 dollars", ((4, 13, "MONEY"), (0, 2, "DATE")), trainer.SGD, "d1")
    (example,), misaligned = trainer.to_examples(blank_pipeline(), [v])
    assert misaligned == 1 and [e.text for e in example.reference.ents] == ["5 dollars"]


def test_score_spans_counts_exact_matches_on_annotated_labels_only():
    gold = [{(0, 3, "MONEY"), (4, 9, "DATE")}, {(0, 7, "ACCOUNT")}]
    pred = [{(0, 3, "MONEY"), (4, 8, "DATE"), (10, 12, "ACCOUNT")}, {(0, 7, "ACCOUNT")}]
    scored = [{"MONEY", "DATE"}, {"ACCOUNT"}]  # the first text's source has no ACCOUNT labels
    m = trainer.score_spans(gold, pred, scored)
    assert (m["precision_DATE"], m["recall_DATE"], m["f1_MONEY"]) == (0.0, 0.0, 1.0)
    assert m["precision_ACCOUNT"] == 1.0  # the unannotated ACCOUNT guess is not a false positive
    assert m["micro_precision"] == m["micro_recall"] == pytest.approx(2 / 3)
    assert m["macro_f1"] == pytest.approx(2 / 3)
    assert "f1_CATEGORY" not in m


# --- route schemas --------------------------------------------------------------------------


def _errors(method, body: dict) -> list[tuple[str, tuple]]:
    with pytest.raises(ValidationError) as exc:
        method.input_spec.model_validate(body)
    return [(e["type"], e["loc"]) for e in exc.value.errors()]


@pytest.fixture(scope="module")
def routes():
    from services.ner_routes import NerRoutes

    return NerRoutes


@pytest.mark.parametrize(
    ("body", "expected"),
    [
        ({}, ("missing", ("text",))),
        ({"text": ""}, ("string_too_short", ("text",))),
        ({"text": " \n\t "}, ("value_error", ("text",))),
        ({"text": "x" * 10_000}, ("string_too_long", ("text",))),
        ({"text": 5}, ("string_type", ("text",))),
        ({"text": "hi", "reference_date": "2024-02-30"}, ("date_from_datetime_parsing",
                                                          ("reference_date",))),
        ({"text": "hi", "reference_date": "2024-01-10T10:00:00"}, ("value_error",
                                                                   ("reference_date",))),
        ({"text": "hi", "reference_date": 1704844800}, ("value_error", ("reference_date",))),
        ({"text": "hi", "reference_date": "1800-01-01"}, ("greater_than_equal",
                                                          ("reference_date",))),
    ],
)  # fmt: skip
def test_single_route_refuses_bad_input_naming_field_and_rule(routes, body, expected):
    assert _errors(routes.predict_ner, body) == [expected]


def test_single_route_accepts_text_with_or_without_a_date(routes):
    spec = routes.predict_ner.input_spec
    assert spec.model_validate({"text": "x" * MAX_TEXT_CHARS}).reference_date is None
    ok = spec.model_validate({"text": " Rs. 500 ", "reference_date": "2024-01-10"})
    assert (ok.text, ok.reference_date) == (" Rs. 500 ", date(2024, 1, 10))  # offsets unchanged


def test_batch_route_limits(routes):
    method = routes.predict_ner_batch
    n = MAX_BATCH_CHARS // MAX_TEXT_CHARS + 1
    for texts, message in (([], "texts: at least 1 item, got 0"),
                           (["a"] * (MAX_BATCH + 1), "texts: at most 1000 items, got 1001"),
                           (["x" * MAX_TEXT_CHARS] * n,
                            "texts: at most 100000 characters in all, got 102000")):  # fmt: skip
        with pytest.raises(BatchSizeError) as exc:  # 422
            method.input_spec.model_validate({"texts": texts})
        assert str(exc.value) == message
    assert _errors(method, {"texts": ["ok", " "]}) == [("value_error", ("texts", 1))]
    assert len(method.input_spec.model_validate({"texts": ["a"] * MAX_BATCH}).texts) == MAX_BATCH


def test_entity_schema_takes_each_kind_of_value():
    entities = TypeAdapter(list[Entity]).validate_python([
        {"text": "Rs. 5", "label": "MONEY", "start": 0, "end": 5,
         "value": {"value": 5.0, "currency": "INR"}},
        {"text": "last month", "label": "DATE", "start": 6, "end": 16,
         "value": {"start": "2022-02-01", "end": "2022-02-28"}},
        {"text": "today", "label": "DATE", "start": 17, "end": 22, "value": "2022-03-15"},
        {"text": "Amazon", "label": "MERCHANT", "start": 23, "end": 29},
    ])  # fmt: skip
    assert [type(e.value).__name__ for e in entities] == ["MoneyValue", "DateRange", "date",
                                                          "NoneType"]  # fmt: skip
    out = NerPrediction(entities=entities, model_version="3").model_dump(mode="json")
    assert out["model"] == "ner" and out["entities"][2]["value"] == "2022-03-15"
    with pytest.raises(ValidationError):
        Entity(text="x", label="PERSON", start=0, end=1)
