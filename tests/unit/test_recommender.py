"""recommender: ranking metrics, ALS fold-in, eligibility, the hybrid ranking, reasons, schemas."""

import numpy as np
import pandas as pd
import pytest
from pydantic import ValidationError
from scipy import sparse
from threadpoolctl import threadpool_limits

from finbento.calibration import PlattCalibrator
from finbento.collaborative import FACTORS, ITEM_WEIGHTS, CollaborativeScorer, fold_in
from finbento.deposit_propensity import FEATURE_COLUMNS, features, from_bank_marketing
from finbento.recommender import (
    PRODUCT_CODES,
    REASON_POPULAR,
    REASON_PROPENSITY,
    EligibilityRules,
    Recommender,
    holding_matrix,
    load_catalogue,
)
from finbento.settings import Settings
from services.recommend_routes import unknown_products
from services.recommend_schemas import RecommendRequest
from trainers import recommender as trainer
from trainers.evaluation import ranking_metrics

FOLDER = Settings().recommender_data_path
J = {c: j for j, c in enumerate(PRODUCT_CODES)}
CURRENT, PARTICULAR, JUNIOR, PENSIONS = (
    "ind_cco_fin_ult1", "ind_ctop_fin_ult1", "ind_ctju_fin_ult1", "ind_nom_pens_ult1",
)  # fmt: skip
LONG_DEPOSIT = "ind_dela_fin_ult1"


def test_ranking_metrics_on_hand_numbers():
    scores = np.array([
        [0.1, 0.9, 0.5, 0.2, -np.inf],  # relevant item 2 at rank 2
        [0.5, 0.6, 0.1, 0.0, 0.9],  # relevant 0 and 4 at ranks 3 and 1
        [0.9, 0.8, 0.7, 0.6, 0.5],  # relevant 4 at rank 5
    ])  # fmt: skip
    relevant = np.array([[0, 0, 1, 0, 0], [1, 0, 0, 0, 1], [0, 0, 0, 0, 1]])
    m = ranking_metrics(scores, relevant, k=3, map_k=7)
    assert m["hit_at_3"] == pytest.approx(2 / 3)
    assert m["recall_at_3"] == pytest.approx((1 + 1 + 0) / 3)
    assert m["map_at_7"] == pytest.approx((1 / 2 + (1 + 2 / 3) / 2 + 1 / 5) / 3)
    assert m["n"] == 3
    one = ranking_metrics(scores[1:2], relevant[1:2], k=1)  # one of two relevant in the top 1
    assert (one["hit_at_1"], one["recall_at_1"]) == (1.0, 0.5)


def test_ranking_metrics_never_counts_excluded_items_and_needs_a_relevant_item():
    scores = np.array([[-np.inf, 0.2, 0.1]])
    assert ranking_metrics(scores, np.array([[1, 0, 0]]), k=3)["hit_at_3"] == 0.0
    with pytest.raises(ValueError, match="held-out"):
        ranking_metrics(scores, np.array([[0, 0, 0]]))


def test_fold_in_matches_implicit_recalculate_user():
    from implicit.als import AlternatingLeastSquares

    rng = np.random.default_rng(0)
    x = (rng.random((300, 24)) < 0.15).astype(np.float32)
    with threadpool_limits(1, "blas"):  # implicit warns under threaded BLAS
        model = AlternatingLeastSquares(factors=6, regularization=2.0, alpha=5.0, iterations=5,
                                        random_state=0, use_cg=False)  # fmt: skip
        model.fit(sparse.csr_matrix(x), show_progress=False)
    y = np.asarray(model.item_factors)
    new = (rng.random((5, 24)) < 0.2).astype(np.float32)
    reference = model.recalculate_user(np.arange(5), sparse.csr_matrix(new))
    ours = np.stack([fold_in(y, h, 2.0, 5.0)[0] for h in new])
    np.testing.assert_allclose(ours, reference, rtol=1e-3, atol=1e-4)
    scorer = CollaborativeScorer(FACTORS, factors=y, regularization=2.0, alpha=5.0)
    np.testing.assert_allclose(scorer.scores(new), reference @ y.T, rtol=1e-3, atol=1e-4)


@pytest.mark.parametrize("kind", [ITEM_WEIGHTS, FACTORS])
def test_contributions_add_up_to_the_score(kind):
    rng = np.random.default_rng(1)
    scorer = (CollaborativeScorer(ITEM_WEIGHTS, rng.normal(size=(24, 24)), np.zeros(24))
              if kind == ITEM_WEIGHTS
              else CollaborativeScorer(FACTORS, factors=rng.normal(size=(24, 4)),
                                       regularization=1.0, alpha=3.0))  # fmt: skip
    h = np.zeros(24)
    h[[2, 7, 20]] = 1
    contributions = scorer.contributions(h)
    assert not contributions[h == 0].any()
    np.testing.assert_allclose(contributions.sum(axis=0), scorer.scores(h[None])[0], atol=1e-9)


def test_scorer_round_trips_through_npz(tmp_path):
    scorer = CollaborativeScorer(FACTORS, factors=np.eye(24)[:, :3], regularization=0.5, alpha=2)
    scorer.save(tmp_path / "cf.npz")
    again = CollaborativeScorer.load(tmp_path / "cf.npz")
    assert (again.kind, again.regularization, again.alpha) == (FACTORS, 0.5, 2.0)
    np.testing.assert_array_equal(again.factors, scorer.factors)
    with pytest.raises(ValueError, match="shape"):
        scorer.scores(np.zeros((1, 5)))


def test_shipped_eligibility_rules():
    rules = EligibilityRules.load(FOLDER / "eligibility.yaml")
    unknown, child, adult, retired = (rules.allowed(a) for a in (None, 10, 35, 70))
    assert not unknown[J[JUNIOR]] and child[J[JUNIOR]] and not adult[J[JUNIOR]]
    assert unknown[J[PENSIONS]] and not adult[J[PENSIONS]] and retired[J[PENSIONS]]
    assert not child[J["ind_tjcr_fin_ult1"]] and adult[J["ind_tjcr_fin_ult1"]]
    assert unknown[J[CURRENT]] and child[J[CURRENT]] and retired[J[CURRENT]]


@pytest.mark.parametrize(
    "text", ["products: {ind_nope_ult1: {min_age: 18}}",
             "products: {ind_cco_fin_ult1: {min_income: 1}}",
             "products: {ind_cco_fin_ult1: {min_age: 30, max_age: 20}}"],
)  # fmt: skip
def test_bad_eligibility_rules_are_refused(tmp_path, text):
    (tmp_path / "rules.yaml").write_text(text)
    with pytest.raises(ValueError):
        EligibilityRules.load(tmp_path / "rules.yaml")


def test_catalogue_names_every_product_once():
    catalogue = load_catalogue(FOLDER / "products.csv")
    assert tuple(catalogue["product"]) == PRODUCT_CODES
    assert set(catalogue.loc[catalogue["group"] == "deposit", "product"]) == {
        "ind_deco_fin_ult1", "ind_deme_fin_ult1", "ind_dela_fin_ult1"}  # fmt: skip


class FixedPropensity:
    """A propensity model's stand-in: every profile gets ``p``."""

    def __init__(self, p: float) -> None:
        self.p = p

    def predict_proba(self, frame: pd.DataFrame) -> np.ndarray:
        return np.tile([1 - self.p, self.p], (len(frame), 1))


def toy_recommender(propensity: float | None = None) -> Recommender:
    from finbento.deposit_propensity import DepositPropensity

    weights = np.zeros((24, 24))
    weights[J[CURRENT], J[PARTICULAR]] = 2.0  # current account -> particular account
    weights[J[CURRENT], J[LONG_DEPOSIT]] = 1.0
    popularity = np.linspace(0.01, 0.3, 24)
    popularity[J[CURRENT]], popularity[J[JUNIOR]] = 0.65, 0.5
    catalogue = load_catalogue(FOLDER / "products.csv")
    return Recommender(
        cf=CollaborativeScorer(ITEM_WEIGHTS, weights), calibrator=PlattCalibrator(a=1.0, b=-2.0),
        popularity=popularity, names=dict(zip(catalogue["product"], catalogue["name"],
                                              strict=True)),
        deposits=("ind_deco_fin_ult1", "ind_deme_fin_ult1", LONG_DEPOSIT),
        rules=EligibilityRules.load(FOLDER / "eligibility.yaml"),
        propensity=None if propensity is None else DepositPropensity(
            FixedPropensity(propensity), base_rate=0.11),
    )  # fmt: skip


def test_never_recommends_what_is_held_and_reasons_name_the_held_product():
    model = toy_recommender()
    rng = np.random.default_rng(3)
    holdings = [list(rng.choice(PRODUCT_CODES, size=rng.integers(1, 20), replace=False))
                for _ in range(50)]  # fmt: skip
    for held, recs in zip(holdings, model.recommend(holdings, k=10), strict=True):
        offerable = 24 - len(set(held) | {JUNIOR})  # no age: no junior account
        assert len(recs) == min(10, offerable) and not {r.product for r in recs} & set(held)
        assert all(0 <= r.score <= 1 for r in recs)
        assert [r.score for r in recs] == sorted((r.score for r in recs), reverse=True)
    (recs,) = model.recommend([[CURRENT]], k=2)
    assert [r.product for r in recs] == [PARTICULAR, LONG_DEPOSIT]
    assert recs[0].reason == "often held with your current account"
    assert recs[0].name == "Particular account"


def test_empty_holding_gets_popular_eligible_products():
    model = toy_recommender()
    (recs,) = model.recommend([[]], k=3)
    assert recs[0].product == CURRENT and all(r.reason == REASON_POPULAR for r in recs)
    assert JUNIOR not in {r.product for r in recs}  # popular, but needs a known age under 18
    (child,) = model.recommend([[]], [{"age": 12}], k=3)
    assert child[1].product == JUNIOR
    assert "ind_tjcr_fin_ult1" not in {r.product for r in model.recommend([[]], [{"age": 12}],
                                                                         k=10)[0]}  # fmt: skip


def test_deposit_propensity_lifts_deposits_only_for_a_profile():
    keen = toy_recommender(propensity=0.5)
    (plain,) = keen.recommend([[CURRENT]], [None], k=3)
    (profiled,) = keen.recommend([[CURRENT]], [{"age": 40}], k=3)
    assert plain[0].product == PARTICULAR
    assert profiled[0].product == LONG_DEPOSIT and profiled[0].reason == REASON_PROPENSITY
    average = toy_recommender(propensity=0.11)  # propensity = base rate: the CF score stands
    held = holding_matrix([[CURRENT]])
    np.testing.assert_allclose(average.scores(held, [{"age": 40}])[0], average.scores(held)[0],
                               atol=1e-9)  # fmt: skip


def test_unknown_codes_are_named():
    with pytest.raises(ValueError, match="ind_nope_ult1"):
        holding_matrix([[CURRENT, "ind_nope_ult1"]])
    assert unknown_products(["b_x", CURRENT, "a_x", "b_x"]) == ["a_x", "b_x"]


def test_saved_model_loads_and_recommends_the_same(tmp_path):
    from trainers import deposit_propensity

    bank = deposit_propensity.load_split(Settings(), sample=2000)
    model = toy_recommender()
    model.propensity = deposit_propensity.fit(bank.train, seed=0)
    model.save(tmp_path)
    again = Recommender.load(tmp_path)
    profiles = [{"age": 30, "job": "student", "poutcome": "success"}, None]
    expected = model.recommend([[CURRENT], []], profiles, 5)
    assert again.recommend([[CURRENT], []], profiles, 5) == expected
    assert again.rules == model.rules


def test_profile_features_match_the_training_frame():
    from finbento.datasets import load_bank_marketing

    rows = load_bank_marketing(FOLDER / "uci_bank_marketing/bank-additional-full.csv.gz").head(20)
    served = features(rows[list(FEATURE_COLUMNS)].to_dict("records"))
    pd.testing.assert_frame_equal(served, from_bank_marketing(rows).reset_index(drop=True))
    missing = features([{"age": None}])
    assert missing.loc[0, "job"] == "unknown" and missing.loc[0, "pdays"] == 999
    assert np.isnan(missing.loc[0, "age"])
    with pytest.raises(ValueError, match="astronaut"):
        features([{"job": "astronaut"}])


def test_leave_one_out_hides_one_product_of_customers_with_two_or_more():
    holdings = pd.DataFrame(np.eye(24, dtype=int)[[2, 2, 7]], columns=list(PRODUCT_CODES))
    holdings.iloc[0, J["ind_recibo_ult1"]] = 1
    holdings.iloc[1, [J[PARTICULAR], J[LONG_DEPOSIT]]] = 1
    cases = trainer.leave_one_out(holdings.assign(source="santander_products"), seed=0)
    assert len(cases.query) == 2  # the one-product customer is left out
    assert (cases.relevant.sum(axis=1) == 1).all()
    np.testing.assert_array_equal(cases.query + cases.relevant, holdings.iloc[:2].to_numpy())


def test_customer_split_is_disjoint_and_seeded():
    parts = trainer.split_customers(np.arange(1000), seed=7)
    assert [len(p) for p in parts.values()] == [600, 200, 200]
    assert len(set(np.concatenate(list(parts.values())))) == 1000
    assert (trainer.split_customers(np.arange(1000), 7)["test"] == parts["test"]).all()


def test_newest_products_hides_the_last_month():
    months = pd.to_datetime(["2015-01-28", "2015-01-28", "2015-05-28", "2015-05-28",
                             "2015-01-28", "2015-01-28"])  # fmt: skip
    events = pd.DataFrame({"customer_id": [1, 1, 1, 1, 2, 2], "month": months,
                           "product": [CURRENT, PARTICULAR, LONG_DEPOSIT, PENSIONS, CURRENT,
                                       PARTICULAR]})  # fmt: skip
    cases = trainer.newest_products(events, np.array([1, 2]))
    assert len(cases.query) == 1  # customer 2 took everything in one month
    assert {PRODUCT_CODES[j] for j in np.flatnonzero(cases.relevant[0])} == {LONG_DEPOSIT,
                                                                             PENSIONS}  # fmt: skip
    assert {PRODUCT_CODES[j] for j in np.flatnonzero(cases.query[0])} == {CURRENT, PARTICULAR}


@pytest.mark.parametrize(
    ("body", "field"),
    [({"products_held": [], "k": 0}, "k"), ({"products_held": [], "k": 11}, "k"),
     ({"products_held": ["Bad code!"]}, "products_held"),
     ({"products_held": [CURRENT] * 25}, "products_held"),
     ({"products_held": [], "profile": {"job": "astronaut"}}, "job"),
     ({"products_held": [], "profile": {"age": -1}}, "age"),
     ({"products_held": [], "colour": "red"}, "colour"), ({}, "products_held")],
)  # fmt: skip
def test_request_schema_names_the_bad_field(body, field):
    with pytest.raises(ValidationError, match=field):
        RecommendRequest(**body)


def test_predict_frame_is_the_pyfunc_view_of_recommend():
    model = toy_recommender()
    frame = pd.DataFrame({"products_held": [CURRENT, ""], "k": [2, 3], "age": [np.nan, 12.0]})
    out = model.predict_frame(frame)
    assert list(out.columns) == ["row", "rank", "product", "name", "score", "reason"]
    assert out.groupby("row").size().to_dict() == {0: 2, 1: 3}
    assert out.loc[out["row"] == 0, "product"].tolist() == [PARTICULAR, LONG_DEPOSIT]
    assert JUNIOR in set(out.loc[out["row"] == 1, "product"])  # age 12: a junior account
