"""ner trained through its trainer on a small real sample: held-out quality, MLflow and export.

The sample is drawn within each part of the fixed split, so its test texts are held-out NLU++
folds and SGD dialogues; the full-data figures are in the trainer's MLflow runs (see the issue).
"""

import json
from datetime import date

import mlflow
import pandas as pd
import pytest

from finbento.ner import EntityExtractor
from finbento.settings import GatePolicy, Settings
from trainers import ner, registry

pytestmark = pytest.mark.model

SAMPLE = 1500  # utterances in all; about 1,000 train
REF = date(2024, 1, 10)
TEXTS = [
    "I paid Rs. 2,500 to my landlord yesterday",
    "transfer 5k from my savings account",
    "how much did I spend last month",
]


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    gate = GatePolicy(floors={"micro_f1": 0.75}, compare_metric="micro_f1")
    s = Settings(state_dir=tmp_path_factory.mktemp("ner"), ner_gate=gate)
    result = ner.train(s, sample=SAMPLE)
    client = registry.configure(s)
    return s, client, result


def test_held_out_micro_f1_clears_the_floor(trained):
    _, _, result = trained
    m = result.metrics
    assert m["n_texts"] >= 250  # held-out folds and dialogues of the sample
    assert m["micro_f1"] >= 0.80, m
    assert m["f1_ACCOUNT"] >= 0.90 and m["f1_MONEY"] >= 0.85, m
    assert result.decision.promote, result.decision.reasons


def test_metrics_and_report_are_in_the_run(trained):
    _, client, result = trained
    run = client.get_run(result.run_id)
    for key in (
        "test_micro_f1",
        "test_micro_precision",
        "test_f1_MONEY",
        "test_precision_DATE",
        "test_recall_ACCOUNT",
        "validation_micro_f1",
        "validation_micro_f1_ruler_before",
    ):
        assert key in run.data.metrics, key
    assert run.data.params["ruler_position"] in {"before", "after"}
    assert run.data.metrics["test_micro_f1"] == pytest.approx(result.metrics["micro_f1"])
    report = mlflow.artifacts.load_dict(f"{run.info.artifact_uri}/evaluation/ner_report.json")
    assert report["test"]["micro_f1"] == pytest.approx(result.metrics["micro_f1"])
    assert str(registry.get_alias(client, ner.MODEL_NAME).version) == result.version


def test_pyfunc_and_exported_pipeline_give_the_same_entities(trained, tmp_path):
    _, _, result = trained
    pyfunc = mlflow.pyfunc.load_model(f"models:/{ner.MODEL_NAME}/{result.version}")
    rows = pd.DataFrame({"text": TEXTS, "reference_date": [REF.isoformat()] * len(TEXTS)})
    via_mlflow = [json.loads(x) for x in pyfunc.predict(rows)["entities"]]
    ner.export(result.version, tmp_path / "pipeline")
    exported = EntityExtractor.load(tmp_path / "pipeline")
    assert exported.extract(TEXTS, REF) == via_mlflow
    money = [e for e in via_mlflow[0] if e["label"] == "MONEY"]
    assert money == [{"text": "Rs. 2,500", "label": "MONEY", "start": 7, "end": 16,
                      "value": {"value": 2500.0, "currency": "INR"}}]  # fmt: skip
    assert {"text": "savings", "label": "ACCOUNT", "start": 20, "end": 27} in via_mlflow[1]


def test_the_gate_is_rerun_against_the_champion_on_the_same_test_texts(trained):
    s, client, result = trained
    split = ner.load_split(s, sample=SAMPLE)
    decision = ner.gate(client, s, result.version, split)
    assert decision.candidate["micro_f1"] == pytest.approx(result.metrics["micro_f1"])
