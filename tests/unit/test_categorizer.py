"""categorizer: label mapping, loaders, normalisation, scorer and request schemas."""

import math

import numpy as np
import pandas as pd
import pytest
from pydantic import TypeAdapter, ValidationError

from finbento.categorizer import (
    ALTERNATIVES,
    MAX_DESCRIPTION_CHARS,
    CategoryClassifier,
    assign_categories,
    features,
    load_mapping,
    load_taxonomy,
    normalise,
)
from finbento.datasets import (
    CATEGORY_SOURCES,
    load_category_sources,
    load_household_transactions,
    load_za_bank_transactions,
)
from finbento.settings import Settings
from services.category_schemas import CategoryBatch, CategoryTransaction
from services.schemas import MAX_BATCH, BatchSizeError

FOLDER = Settings().categories_data_path


@pytest.fixture(scope="module")
def sources() -> pd.DataFrame:
    return load_category_sources(FOLDER)


@pytest.fixture(scope="module")
def mapping() -> pd.DataFrame:
    return load_mapping(FOLDER)


def test_taxonomy_has_12_to_16_described_categories():
    taxonomy = load_taxonomy(FOLDER)
    assert 12 <= len(taxonomy) <= 16
    assert {"Income", "Transfers", "Groceries", "Food & Dining", "Other"} <= set(taxonomy)


def test_every_source_label_maps_to_a_taxonomy_category(sources, mapping):
    categories = assign_categories(sources, mapping)
    unmapped = sources[categories.isna()][["source", "source_label"]].drop_duplicates()
    assert unmapped.empty, unmapped.to_dict("records")
    assert set(categories) <= set(load_taxonomy(FOLDER))
    assert set(sources["source"]) == set(CATEGORY_SOURCES)


def test_every_mapping_row_is_used(sources, mapping):
    keys = set(zip(sources["source"], sources["source_label"], strict=True))
    keys |= {
        (s, f"{label}/{sub}")
        for s, label, sub in zip(
            sources["source"], sources["source_label"], sources["subcategory"], strict=True
        )
    }
    stale = [k for k in zip(mapping["source"], mapping["source_label"], strict=True)
             if k not in keys]  # fmt: skip
    assert not stale


def test_household_types_and_subcategories_decide_the_category(sources, mapping):
    household = sources[sources["source"] == "household_transactions"]
    category = assign_categories(household, mapping)
    assert (category[household["source_label"] == "Income"] == "Income").all()
    assert (category[household["source_label"] == "Transfer-Out"] == "Transfers").all()
    food = household["source_label"] == "Food"
    assert (category[food & (household["subcategory"] == "Milk")] == "Groceries").all()
    assert (category[food & (household["subcategory"] == "Dinner")] == "Food & Dining").all()
    assert (household.loc[household["source_label"] == "Income", "amount"] > 0).all()
    assert (household.loc[household["source_label"] != "Income", "amount"] < 0).all()


def test_household_loader_drops_exact_duplicates_and_parses_mixed_dates(tmp_path):
    path = tmp_path / "h.csv"
    path.write_text(
        "Date,Mode,Category,Subcategory,Note,Amount,Income/Expense,Currency\n"
        "2018-03-09,Cash,Food,Milk,,26.0,Expense,INR\n"
        "2018-03-09,Cash,Food,Milk,,26.0,Expense,INR\n"
        "31/03/2018 21:39:12,Cash,Food,Tea,masala,10.0,Expense,INR\n"
        "05/01/2018,Bank,Salary,,From workplace,50000,Income,INR\n"
    )
    df = load_household_transactions(path)
    assert len(df) == 3
    assert df["description"].tolist() == ["Milk", "Tea masala", "From workplace"]
    assert df["amount"].tolist() == [-26.0, -10.0, 50000.0]
    assert df["date"].dt.strftime("%Y-%m-%d").tolist() == ["2018-03-09", "2018-03-31", "2018-01-05"]


def test_za_amounts_with_spaces_and_a_branch_code_parse(tmp_path):
    path = tmp_path / "z.csv"
    path.write_text(
        "description,amount,label,balance,date\n"
        "Loan,-1 175.56,General Loan Repayment,1,2023-10-10 00:00:00\n"
        "SMS Notification Fee Branch: ,470010 -0.80,Bank Charges and Fees,84.08,"
        "2021-10-03T00:00:00\n"
    )
    assert load_za_bank_transactions(path)["amount"].tolist() == [-1175.56, -0.8]


@pytest.mark.parametrize(
    "variant",
    ["POS Purchase WOOLWORTHS Sandton", "  pos   purchase woolworths\tsandton ",
     "Pos Purchase Woolworths\nSandton", "ＰＯＳ Purchase Woolworths Sandton"],
)  # fmt: skip
def test_normalisation_ignores_casing_whitespace_and_width(variant):
    assert normalise(variant) == "pos purchase woolworths sandton"


def test_normalisation_caps_length_and_blanks_become_empty():
    assert len(normalise("a" * 10_000)) == MAX_DESCRIPTION_CHARS
    assert normalise(" \t\n ") == ""


def test_features_shape_and_amount_encoding():
    x = features(["A", "b", "c"], [-99.0, 0.0, 999.0])
    assert list(x.columns) == ["text", "money_out", "money_in", "log_amount"]
    assert x["money_out"].tolist() == [1.0, 0.0, 0.0]
    assert x["money_in"].tolist() == [0.0, 0.0, 1.0]
    np.testing.assert_allclose(x["log_amount"], [2.0, 0.0, 3.0])
    with pytest.raises(ValueError, match="finite"):
        features(["a"], [math.nan])
    with pytest.raises(ValueError, match="amounts"):
        features(["a", "b"], [1.0])


@pytest.fixture(scope="module")
def small_classifier(sources, mapping) -> CategoryClassifier:
    from trainers.categorizer import build_pipeline

    rows = sources[sources["description"] != ""].assign(
        category=assign_categories(sources, mapping)
    )
    rows = rows.groupby("category", group_keys=False).head(40)
    pipeline = build_pipeline(char=True, amount=True, solver="saga", seed=0)
    pipeline.fit(features(rows["description"].tolist(), rows["amount"]), rows["category"])
    return CategoryClassifier(pipeline, load_taxonomy(FOLDER))


def test_predictions_do_not_depend_on_casing_or_whitespace(small_classifier):
    a = small_classifier.probabilities(["Grocery Store", "Monthly Account Fee"], [-40.0, -5.0])
    b = small_classifier.probabilities(["  GROCERY   store", "monthly\taccount FEE "], [-40, -5])
    np.testing.assert_array_equal(a, b)


def test_prediction_has_a_category_a_confidence_and_the_top_three(small_classifier):
    (p,) = small_classifier.predict(["Netflix.com subscription"], [-139.0])
    assert p.category in small_classifier.taxonomy
    names = [c for c, _ in p.alternatives]
    assert len(set(names)) == ALTERNATIVES == 3
    assert p.alternatives[0] == (p.category, p.confidence)  # the first is the answer
    confidences = [q for _, q in p.alternatives]
    assert confidences == sorted(confidences, reverse=True) and sum(confidences) <= 1 + 1e-9
    assert small_classifier.predict([], []) == []


def test_save_and_load_round_trip_without_pickle(small_classifier, tmp_path):
    small_classifier.save(tmp_path)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["categorizer.json", "model.skops"]
    loaded = CategoryClassifier.load(tmp_path)
    assert loaded.taxonomy == small_classifier.taxonomy
    args = (["Shell fuel", "Salary from workplace"], [-30.0, 50000.0])
    np.testing.assert_allclose(loaded.probabilities(*args), small_classifier.probabilities(*args))


transaction = TypeAdapter(CategoryTransaction)
batch = TypeAdapter(CategoryBatch)


@pytest.mark.parametrize(
    ("body", "loc", "error"),
    [
        ({"description": "   ", "amount": -1.0}, ("description",), "string_too_short"),
        ({"description": "x" * 10_000, "amount": -1.0}, ("description",), "string_too_long"),
        ({"description": "Shell", "amount": math.nan}, ("amount",), "finite_number"),
        ({"description": "Shell", "amount": math.inf}, ("amount",), "finite_number"),
        ({"description": "Shell", "amount": "12"}, ("amount",), "float_type"),
        ({"description": "Shell", "amount": 2e9}, ("amount",), "less_than_equal"),
        ({"description": "Shell"}, ("amount",), "missing"),
        ({"description": "Shell", "amount": 1.0, "date": "x"}, ("date",), "extra_forbidden"),
    ],
)
def test_bad_transactions_are_refused_naming_field_and_rule(body, loc, error):
    with pytest.raises(ValidationError) as exc:
        transaction.validate_python(body)
    assert (exc.value.errors()[0]["loc"], exc.value.errors()[0]["type"]) == (loc, error)


def test_json_nan_and_infinity_are_refused():
    for raw in ('{"description": "a", "amount": NaN}', '{"description": "a", "amount": Infinity}'):
        with pytest.raises(ValidationError):
            transaction.validate_json(raw)


def test_valid_transaction_is_trimmed_and_integers_are_amounts():
    t = transaction.validate_python({"description": "  Shell  ", "amount": -30})
    assert (t.description, t.amount) == ("Shell", -30.0)


def test_batch_size_limits_and_bad_row_location():
    ok = {"description": "Shell", "amount": -30.0}
    assert len(batch.validate_python([ok] * MAX_BATCH)) == MAX_BATCH
    for n, rule in ((0, "at least 1 item"), (MAX_BATCH + 1, "at most 1000 items")):
        with pytest.raises(BatchSizeError, match=rule):  # 422
            batch.validate_python([ok] * n)
    with pytest.raises(ValidationError) as exc:
        batch.validate_python([ok, {**ok, "description": ""}])
    assert exc.value.errors()[0]["loc"] == (1, "description")
