"""Trainer for ``intent``: Banking77 intents with a fine-tuned MiniLM, served as ONNX.

Data: Banking77's official train set (10,003 queries, 77 intents; Casanueva et al. 2020), 10 %
held out (stratified) as the validation split on which accuracy and macro-F1 are reported, and
CLINC150 (Larson et al. 2019) for out-of-scope queries: its ``oos`` queries plus those of its
non-banking domains (travel, kitchen, small talk, ...). The ``oos_train`` + non-banking ``train``
queries choose the out-of-scope threshold; ``oos_val`` + non-banking ``val`` queries test it.

Steps: TF-IDF + logistic regression and frozen-embedding + logistic regression baselines; LP-FT
fine-tuning (trainers/transformer.py); ONNX export, checked against PyTorch on the validation
queries; dynamic int8 quantization, kept when validation accuracy drops by at most
``intent_max_int8_drop``; threshold; MLflow run (metrics, confusion matrix, per-intent report,
the served directory as a pyfunc, trainers/pyfunc.py), registered version, gate.
"""

from __future__ import annotations

import json
import logging
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import matplotlib.pyplot as plt
import mlflow
import numpy as np
import pandas as pd
from sklearn.feature_extraction.text import TfidfVectorizer
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import classification_report, confusion_matrix
from sklearn.pipeline import make_pipeline

from finbento.intent import MODEL_NAME, TOKENIZER_FILE, IntentClassifier, IntentConfig
from finbento.pretrained import resolve_base_model
from finbento.settings import Settings
from trainers import registry, tracking
from trainers.evaluation import classification_metrics
from trainers.gate import GateDecision
from trainers.pyfunc import ARTIFACT, export_directory, log_directory_model
from trainers.registry import TrainResult
from trainers.splits import stratified_sample
from trainers.transformer import FineTuneConfig, TextClassifierTrainer

log = logging.getLogger(__name__)

VALIDATION_SHARE = 0.1
#: CLINC150 domains that overlap Banking77; their queries are not used as out-of-scope examples.
IN_SCOPE_DOMAINS = ("banking", "credit_cards")
OUT_OF_SCOPE_PER_SET = 1000


@dataclass
class Prepared:
    """Texts and labels of one training run.

    Attributes:
        labels: intent names; label ``i`` is ``labels[i]``.
        train, validation: (texts, integer labels).
        oos_calibration, oos_test: out-of-scope texts for choosing and testing the threshold.
    """

    labels: list[str]
    train: tuple[list[str], np.ndarray]
    validation: tuple[list[str], np.ndarray]
    oos_calibration: list[str]
    oos_test: list[str]


def load_banking77(directory: Path) -> pd.DataFrame:
    """Banking77 train.csv (``text``, ``category``), 10,003 rows."""
    return pd.read_csv(directory / "banking77" / "train.csv")


def load_out_of_scope(directory: Path, seed: int) -> tuple[list[str], list[str]]:
    """CLINC150 out-of-scope queries: (calibration, test), up to 1,000 each.

    ``oos_train`` / ``oos_val`` plus a sample of the non-banking domains' ``train`` / ``val``.
    """
    root = directory / "clinc150"
    data = json.loads((root / "data_full_train_val.json").read_text())
    domains = json.loads((root / "domains.json").read_text())
    in_scope = {i for d in IN_SCOPE_DOMAINS for i in domains[d]}
    rng = np.random.default_rng(seed)
    out = []
    for oos, other in (("oos_train", "train"), ("oos_val", "val")):
        texts = [t for t, intent in data[other] if intent not in in_scope]
        n = OUT_OF_SCOPE_PER_SET - len(data[oos])
        picked = rng.choice(len(texts), size=min(n, len(texts)), replace=False)
        out.append([t for t, _ in data[oos]] + [texts[i] for i in sorted(picked)])
    return out[0], out[1]


def load_split(settings: Settings, sample: int | None = None) -> Prepared:
    """Banking77 train/validation (90/10 stratified) and the CLINC150 out-of-scope sets.

    Args:
        settings: ``language_data_path`` and ``seed``.
        sample: keep about this many Banking77 queries (stratified), for fast tests.
    """
    from sklearn.model_selection import train_test_split

    root = settings.language_data_path
    df = load_banking77(root)
    if sample is not None:
        df = stratified_sample(df, "category", sample, settings.seed)
    labels = sorted(df["category"].unique())
    y = df["category"].map({name: i for i, name in enumerate(labels)}).to_numpy()
    tr, va = train_test_split(
        np.arange(len(df)), test_size=VALIDATION_SHARE, stratify=y, random_state=settings.seed
    )
    texts = df["text"].astype(str).to_numpy()
    calibration, test = load_out_of_scope(root, settings.seed)
    if sample is not None:
        calibration, test = calibration[: sample // 4], test[: sample // 4]
    return Prepared(labels, (list(texts[tr]), y[tr]), (list(texts[va]), y[va]), calibration, test)


def choose_threshold(in_scope_confidence: np.ndarray, in_scope_correct: np.ndarray,
                     oos_confidence: np.ndarray) -> float:  # fmt: skip
    """Top-probability threshold maximising in-scope accuracy + out-of-scope recall.

    A query whose top probability is below the threshold is called out of scope: right for an
    out-of-scope query, wrong for an in-scope one. Candidates are the observed confidences.

    Args:
        in_scope_confidence: top probability of in-scope queries, shape (n,).
        in_scope_correct: whether their top intent is right, bool (n,).
        oos_confidence: top probability of out-of-scope queries, shape (m,).
    """
    candidates = np.unique(np.concatenate([in_scope_confidence, oos_confidence, [0.0]]))
    accepted = in_scope_confidence[None, :] >= candidates[:, None]
    accuracy = (accepted & in_scope_correct[None, :]).mean(axis=1)
    recall = (
        (oos_confidence[None, :] < candidates[:, None]).mean(axis=1) if len(oos_confidence) else 0.0
    )
    return float(candidates[int(np.argmax(accuracy + recall))])


def threshold_metrics(classifier: IntentClassifier, p: Prepared) -> dict[str, float]:
    """Held-out scores of a served classifier: accuracy, macro-F1 and the out-of-scope figures.

    ``in_scope_accuracy`` counts a validation query right when its intent is right and it is not
    called out of scope; ``out_of_scope_recall`` is the share of the out-of-scope test queries
    called out of scope.
    """
    texts, y = p.validation
    prob = classifier.probabilities(texts)
    predicted = prob.argmax(axis=1)
    accepted = prob.max(axis=1) >= classifier.threshold
    oos = classifier.probabilities(p.oos_test).max(axis=1) < classifier.threshold
    return {
        **classification_metrics(y, predicted),
        "in_scope_accuracy": float(((predicted == y) & accepted).mean()),
        "out_of_scope_recall": float(oos.mean()),
        "threshold": classifier.threshold,
    }


def baselines(p: Prepared, embeddings: tuple[np.ndarray, np.ndarray], c: float) -> dict[str, float]:
    """TF-IDF (word 1-2 grams) + logistic regression, and frozen embeddings + logistic regression.

    Returns:
        ``baseline_tfidf_accuracy``, ``baseline_tfidf_macro_f1``, ``baseline_frozen_accuracy``,
        ``baseline_frozen_macro_f1`` on the validation split.
    """
    (tr_texts, y_tr), (va_texts, y_va) = p.train, p.validation
    tfidf = make_pipeline(TfidfVectorizer(ngram_range=(1, 2), sublinear_tf=True, min_df=1),
                          LogisticRegression(C=20, max_iter=3000)).fit(tr_texts, y_tr)  # fmt: skip
    frozen = LogisticRegression(C=c, max_iter=3000).fit(embeddings[0], y_tr)
    out = {}
    for name, predicted in (("tfidf", tfidf.predict(va_texts)),
                            ("frozen", frozen.predict(embeddings[1]))):  # fmt: skip
        for k, v in classification_metrics(y_va, predicted).items():
            out[f"baseline_{name}_{k}"] = v
    return out


def log_confusion(y: np.ndarray, predicted: np.ndarray, labels: list[str]) -> None:
    """Confusion matrix (CSV and heat map) and the per-intent report into the active run."""
    cm = confusion_matrix(y, predicted, labels=range(len(labels)))
    mlflow.log_text(pd.DataFrame(cm, index=labels, columns=labels).to_csv(), "confusion_matrix.csv")
    report = classification_report(y, predicted, labels=range(len(labels)), target_names=labels,
                                   output_dict=True, zero_division=0)  # fmt: skip
    mlflow.log_dict(report, "classification_report.json")
    fig, ax = plt.subplots(figsize=(14, 14))
    ax.imshow(np.log1p(cm), cmap="Blues")
    ax.set_xticks(range(len(labels)), labels, rotation=90, fontsize=5)
    ax.set_yticks(range(len(labels)), labels, fontsize=5)
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    ax.set_title("intent: validation confusion matrix (log scale)")
    fig.tight_layout()
    mlflow.log_figure(fig, "plots/confusion_matrix.png")
    plt.close(fig)


def build_model_dir(
    trainer: TextClassifierTrainer, p: Prepared, settings: Settings, directory: Path
) -> tuple[IntentClassifier, dict[str, float]]:
    """Export ONNX (fp32, and int8 if it holds), pick the threshold, write the served directory.

    Returns:
        the served classifier and export metrics: ``onnx_max_abs_logit_diff`` (fp32 ONNX vs
        PyTorch on the validation queries), ``fp32_accuracy``, ``int8_accuracy``, ``int8_served``.
    """
    from onnxruntime.quantization import QuantType, quantize_dynamic

    texts, y = p.validation
    trainer.save_tokenizer(directory / TOKENIZER_FILE)
    trainer.export_onnx(directory / "model.onnx")
    torch_logits = trainer.logits(texts)
    metrics: dict[str, float] = {}
    candidates = {"model.onnx": None}
    if settings.intent_quantize:
        quantize_dynamic(directory / "model.onnx", directory / "model.int8.onnx",
                         weight_type=QuantType.QInt8)  # fmt: skip
        candidates["model.int8.onnx"] = None
    accuracy = {}
    for name in candidates:
        IntentConfig(tuple(p.labels), 0.0, settings.intent_max_length, name).save(directory)
        classifier = IntentClassifier(directory, threads=2)
        prob = classifier.probabilities(texts)
        accuracy[name] = float((prob.argmax(axis=1) == y).mean())
        if name == "model.onnx":
            onnx_logits = np.log(np.maximum(prob, 1e-30))
            ref = torch_logits - torch_logits.max(axis=1, keepdims=True)
            diff = onnx_logits - onnx_logits.max(axis=1, keepdims=True) - ref
            metrics["onnx_max_abs_logit_diff"] = float(np.abs(diff).max())
    metrics["fp32_accuracy"] = accuracy["model.onnx"]
    served = "model.onnx"
    if "model.int8.onnx" in accuracy:
        metrics["int8_accuracy"] = accuracy["model.int8.onnx"]
        if accuracy["model.onnx"] - accuracy["model.int8.onnx"] <= settings.intent_max_int8_drop:
            served = "model.int8.onnx"
            (directory / "model.onnx").unlink()
        else:
            (directory / "model.int8.onnx").unlink()
    metrics["int8_served"] = float(served == "model.int8.onnx")
    IntentConfig(tuple(p.labels), 0.0, settings.intent_max_length, served).save(directory)
    classifier = IntentClassifier(directory, threads=2)
    prob = classifier.probabilities(texts)
    threshold = choose_threshold(
        prob.max(axis=1),
        prob.argmax(axis=1) == y,
        classifier.probabilities(p.oos_calibration).max(axis=1),
    )
    IntentConfig(tuple(p.labels), threshold, settings.intent_max_length, served).save(directory)
    return IntentClassifier(directory, threads=2), metrics


def load_scorer(version: str) -> IntentClassifier:
    """A registered ``intent`` version, as served (downloaded into a temporary directory)."""
    directory = Path(tempfile.mkdtemp(prefix="finbento-intent-"))
    export(version, directory)
    return IntentClassifier(directory, threads=2)


def export(version: str, directory: Path) -> None:
    """Write a registered version's serving files (ONNX, tokenizer, intent.json) into a folder."""
    export_directory(MODEL_NAME, version, directory)


def gate(
    client: mlflow.MlflowClient,
    settings: Settings,
    version: str,
    p: Prepared,
    candidate_metrics: dict[str, float] | None = None,
    promote: bool = False,
) -> GateDecision:
    """Gate ``version`` against the champion on the same held-out data (registry.run_gate)."""
    return registry.run_gate(
        client, MODEL_NAME, version, settings.intent_gate,
        lambda v: threshold_metrics(load_scorer(v), p), candidate_metrics, promote=promote,
    )  # fmt: skip


def train(
    settings: Settings,
    sample: int | None = None,
    promote: bool = True,
    on_stage: tracking.Stage = lambda s: None,
    epochs: int | None = None,
) -> TrainResult:
    """Train, log, register and (if the gate agrees) promote a new ``intent`` version.

    Args:
        settings: data, schedule, MLflow and gate settings.
        sample: about this many Banking77 queries (stratified), for tests; None = all.
        promote: run the gate and move ``champion`` if it passes.
        on_stage: called with a short label as each stage starts.
        epochs: override ``settings.intent_epochs`` (the README's main job uses fewer).
    """
    client = registry.configure(settings)
    on_stage("loading Banking77 and CLINC150")
    p = load_split(settings, sample)
    base = resolve_base_model(settings.intent_base_model)
    config = FineTuneConfig(
        epochs=settings.intent_epochs if epochs is None else epochs,
        learning_rate=settings.intent_learning_rate, seed=settings.seed,
    )  # fmt: skip
    trainer = TextClassifierTrainer(base, len(p.labels), settings.intent_max_length)
    on_stage("embedding with the frozen encoder (linear probe and baselines)")
    t0 = time.perf_counter()
    embeddings = (trainer.embeddings(p.train[0]), trainer.embeddings(p.validation[0]))
    metrics = baselines(p, embeddings, config.probe_c)
    trainer.linear_probe(embeddings[0], p.train[1], config.probe_c)
    on_stage(f"fine-tuning {config.epochs} epochs on {len(p.train[0]):,} queries")
    seconds = trainer.fine_tune(
        p.train[0], p.train[1], config,
        on_epoch=lambda e, s: log.info("epoch %d done in %.0f s", e + 1, s),
    )  # fmt: skip
    on_stage("exporting to ONNX, quantizing, choosing the out-of-scope threshold")
    with tempfile.TemporaryDirectory() as tmp:
        directory = Path(tmp) / ARTIFACT
        directory.mkdir()
        classifier, export_metrics = build_model_dir(trainer, p, settings, directory)
        metrics |= export_metrics | threshold_metrics(classifier, p)
        metrics["fine_tune_seconds"] = seconds
        metrics["train_seconds"] = time.perf_counter() - t0
        on_stage("logging to MLflow")
        with mlflow.start_run(run_name=f"{MODEL_NAME}-train") as run:
            mlflow.set_tags({"model_name": MODEL_NAME, "data": "banking77+clinc150"})
            mlflow.log_params(
                {**{f"finetune_{k}": v for k, v in config.__dict__.items()},
                 "base_model": Path(base).name, "max_length": settings.intent_max_length,
                 "n_train": len(p.train[0]), "n_validation": len(p.validation[0]),
                 "n_oos_calibration": len(p.oos_calibration), "n_oos_test": len(p.oos_test)}
            )  # fmt: skip
            mlflow.log_metrics({f"test_{k}": v for k, v in metrics.items()})
            predicted = classifier.probabilities(p.validation[0]).argmax(axis=1)
            log_confusion(p.validation[1], predicted, p.labels)
            tracking.log_reference(pd.DataFrame({"query": p.train[0]}))
            example = pd.DataFrame({"query": p.validation[0][:3]})
            info = log_directory_model(
                directory, "finbento.intent:IntentClassifier", MODEL_NAME, example,
                ["onnxruntime", "tokenizers", "pandas"],
            )  # fmt: skip
    version = str(info.registered_model_version)
    on_stage("promotion gate")
    decision = registry.gate_and_promote(
        client, MODEL_NAME, version, metrics, settings.intent_gate,
        lambda v: threshold_metrics(load_scorer(v), p), promote=promote,
    )  # fmt: skip
    return TrainResult(run.info.run_id, version, metrics, decision)
