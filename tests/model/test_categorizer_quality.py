"""categorizer quality on a sample of the shipped data: test descriptions are never trained on."""

import mlflow
import pytest

from finbento.categorizer import CategoryClassifier
from finbento.datasets import CATEGORY_SOURCES
from finbento.settings import Settings
from trainers import categorizer

pytestmark = pytest.mark.model

SAMPLE = 1200
#: Floors for a 1,200-row sample (about 240 test rows); over 8 split seeds: macro-F1 0.67-0.78,
#: accuracy 0.82-0.86 (seed 42: 0.73 / 0.82).
MACRO_F1_FLOOR = 0.55
ACCURACY_FLOOR = 0.65


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    settings = Settings(state_dir=tmp_path_factory.mktemp("categorizer"))
    return settings, categorizer.train(settings, sample=SAMPLE)


def test_split_keeps_every_description_in_one_part():
    split = categorizer.load_split(Settings(), sample=SAMPLE)
    groups = [set(part["group"]) for part in split]
    assert not (groups[0] & groups[1] or groups[0] & groups[2] or groups[1] & groups[2])
    full_test = categorizer.load_split(Settings()).test
    assert set(split.test.index) <= set(full_test.index)  # sampled test within the full test
    assert abs(sum(len(p) for p in split) - SAMPLE) < 30


def test_held_out_macro_f1_and_accuracy_clear_their_floors(trained):
    _, result = trained
    m = result.metrics
    assert 200 <= m["n"] <= 300
    assert m["macro_f1"] >= MACRO_F1_FLOOR, m
    assert m["accuracy"] >= ACCURACY_FLOOR, m
    for source in CATEGORY_SOURCES:  # reported per source, on that source's test rows
        assert m[f"n__{source}"] > 0 and 0 <= m[f"macro_f1__{source}"] <= 1
    assert result.decision.promote, result.decision.reasons


def test_run_logs_the_baseline_and_the_validation_scores_beside_the_winner(trained):
    _, result = trained
    run = mlflow.get_run(result.run_id)
    metrics, params = run.data.metrics, run.data.params
    assert params["candidate"] in categorizer.CANDIDATES
    assert metrics["test_macro_f1"] == pytest.approx(result.metrics["macro_f1"])
    assert 0 < metrics["baseline_macro_f1"] <= 1
    for name in categorizer.CANDIDATES:
        assert 0 < metrics[f"val_macro_f1__{name}"] <= 1
    winner = params["candidate"]
    assert all(metrics[f"val_macro_f1__{winner}"] >= metrics[f"val_macro_f1__{n}"]
               for n in categorizer.CANDIDATES)  # fmt: skip


def test_exported_model_scores_the_test_part_as_in_training(trained, tmp_path):
    settings, result = trained
    categorizer.export(result.version, tmp_path)
    loaded = CategoryClassifier.load(tmp_path)
    split = categorizer.load_split(settings, sample=SAMPLE)
    again = categorizer.evaluate(loaded, split.test)
    assert again["macro_f1"] == pytest.approx(result.metrics["macro_f1"])
    salary, fee = loaded.predict(["Salary from workplace", "Monthly account fee"], [52000, -5])
    assert (salary.category, fee.category) == ("Income", "Fees & Charges")
    assert salary.confidence > 0.5 and salary.alternatives[0] == ("Income", salary.confidence)
