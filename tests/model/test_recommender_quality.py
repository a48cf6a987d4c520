"""recommender quality on the shipped data: held-out customers, leave one product out.

Trained once on all shipped customers (about 30 s). Measured (seed 42): hit@3 0.795 on 3,348 test
customers, popularity 0.670, co-occurrence 0.753; deposit propensity ROC AUC 0.69.
"""

import mlflow
import numpy as np
import pytest

from finbento.recommender import PRODUCT_CODES, Recommender
from finbento.settings import Settings
from trainers import recommender

pytestmark = pytest.mark.model

#: The issue's target; popularity alone reaches ~0.67 here.
HIT_AT_3_FLOOR = 0.75
DEPOSIT_ROC_AUC_FLOOR = 0.65


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    settings = Settings(state_dir=tmp_path_factory.mktemp("recommender"))
    return settings, recommender.train(settings)


def test_split_keeps_every_customer_in_one_part():
    p = recommender.load_split(Settings())
    ids = [set(rows.index) for rows in p.holdings.values()]
    assert not (ids[0] & ids[1] or ids[0] & ids[2] or ids[1] & ids[2])
    assert len(p.test.query) > 3000 and (p.test.query.sum(axis=1) >= 1).all()


def test_hit_at_3_clears_the_target_and_beats_both_baselines(trained):
    _, result = trained
    m = result.metrics
    assert m["hit_at_3"] >= HIT_AT_3_FLOOR, m
    assert m["hit_at_3"] > m["popularity_hit_at_3"] + 0.05, m
    assert m["hit_at_3"] > m["co_occurrence_hit_at_3"], m
    assert m["map_at_7"] > max(m["popularity_map_at_7"], m["co_occurrence_map_at_7"]), m
    assert m["newest_hit_at_3"] > m["newest_recall_at_3"] > 0.5  # several products hidden
    for source in recommender.SOURCES:
        assert m[f"hit_at_3__{source}"] >= 0.70, m
    assert result.decision.promote, result.decision.reasons


def test_deposit_propensity_ranks_and_is_calibrated(trained):
    _, result = trained
    m = result.metrics
    assert m["deposit_roc_auc"] >= DEPOSIT_ROC_AUC_FLOOR, m
    assert m["deposit_average_precision"] > 2 * m["deposit_positive_rate"], m
    assert m["deposit_brier_score"] < m["deposit_positive_rate"] * (1 - m["deposit_positive_rate"])


def test_run_logs_every_candidate_and_a_library_model_wins(trained):
    _, result = trained
    run = mlflow.get_run(result.run_id)
    winner = run.data.params["candidate"]
    assert winner in recommender.CANDIDATES and winner not in recommender.BASELINES
    metrics = run.data.metrics
    for name in recommender.CANDIDATES:
        assert 0 < metrics[f"val_hit_at_3__{name}"] <= 1
    assert all(metrics[f"val_hit_at_3__{winner}"] >= metrics[f"val_hit_at_3__{n}"]
               for n in recommender.CANDIDATES if n not in recommender.BASELINES)  # fmt: skip
    artifacts = {a.path for a in mlflow.MlflowClient().list_artifacts(result.run_id, "plots")}
    assert "plots/candidates.png" in artifacts and "plots/roc_curve.png" in artifacts


def test_exported_model_scores_the_test_customers_as_in_training(trained, tmp_path):
    settings, result = trained
    recommender.export(result.version, tmp_path)
    loaded = Recommender.load(tmp_path)
    again = recommender.evaluate(loaded, recommender.load_split(settings))
    assert again["hit_at_3"] == pytest.approx(result.metrics["hit_at_3"])
    (recs,) = loaded.recommend([["ind_cco_fin_ult1"]], k=3)
    assert len(recs) == 3 and "ind_cco_fin_ult1" not in {r.product for r in recs}
    assert recs[0].reason.startswith("often held with your")
    assert PRODUCT_CODES[int(np.argmax(loaded.popularity))] == "ind_cco_fin_ult1"
