"""Trainer for ``advisor``: the retrieval index, safety rules and prompt, registered and gated.

Nothing is fitted: "training" exports the packaged all-MiniLM-L6-v2 encoder to ONNX, embeds the
knowledge base (``data/advisor/knowledge``) into an index (trainers/advisor_index.py), adds the
safety rules (``data/advisor/safety_rules.yaml``) and the prompt (:class:`AdvisorConfig`), and
scores retrieval on the labelled questions (``data/advisor/retrieval_questions.csv``: question ->
the document that answers it): recall@1, recall@3, MRR, and the share of CLINC150's out-of-scope
queries (Larson et al. 2019) whose best score stays under ``min_score``. The directory is logged
as a pyfunc (trainers/pyfunc.py, the offline advisor), registered and gated on recall@3 and MRR.
The questions were written by the team after the documents, so the figures are optimistic for
real traffic.
"""

from __future__ import annotations

import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path

import mlflow
import pandas as pd

from finbento.advisor.advisor import RULES_FILE, Advisor, AdvisorConfig
from finbento.advisor.knowledge import KNOWLEDGE_DIR
from finbento.advisor.retrieval import (
    MODEL_NAME,
    QUESTIONS_PATH,
    Question,
    evaluate,
    load_questions,
)
from finbento.advisor.safety import DEFAULT_RULES_PATH, SafetyRules
from finbento.settings import Settings
from trainers import registry, tracking
from trainers.advisor_index import IndexBuildConfig, build_index_dir
from trainers.gate import GateDecision
from trainers.intent import load_out_of_scope
from trainers.pyfunc import ARTIFACT, export_directory, log_directory_model
from trainers.registry import TrainResult

#: The k of the reported recall@k (and of ``retrieval/hits.csv``).
K = 3


@dataclass
class Prepared:
    """What an advisor version is scored on: the labelled questions and out-of-scope queries."""

    questions: list[Question]
    out_of_scope: list[str]


def load_split(settings: Settings, sample: int | None = None) -> Prepared:
    """The labelled questions and CLINC150's held-out out-of-scope queries.

    Args:
        settings: ``language_data_path`` (CLINC150).
        sample: keep this many out-of-scope queries (tests); None = all (1,000).
    """
    _, out_of_scope = load_out_of_scope(settings.language_data_path, seed=settings.seed)
    return Prepared(load_questions(QUESTIONS_PATH), out_of_scope[:sample])


def metrics_of(advisor: Advisor, p: Prepared) -> dict[str, float]:
    """Retrieval figures of an advisor's index (:func:`finbento.advisor.retrieval.evaluate`)."""
    return evaluate(advisor.index, p.questions, K, p.out_of_scope)


def hits_table(advisor: Advisor, p: Prepared) -> pd.DataFrame:
    """Per labelled question: expected document, the top 3 retrieved and their scores."""
    found = advisor.index.search_many([q.question for q in p.questions], K, -1.0)
    rows = []
    for q, hits in zip(p.questions, found, strict=True):
        row = {"question": q.question, "expected": q.doc_id,
               "hit": q.doc_id in [c.doc_id for c, _ in hits]}  # fmt: skip
        for i, (chunk, score) in enumerate(hits, 1):
            row |= {f"doc_{i}": chunk.doc_id, f"score_{i}": round(score, 4)}
        rows.append(row)
    return pd.DataFrame(rows)


def build_model_dir(directory: Path, settings: Settings, p: Prepared) -> dict[str, float]:
    """Write the served directory (index, rules, prompt) and return the build's metrics.

    Raises:
        ValueError: a bad knowledge-base document, question or rules file.
    """
    config = IndexBuildConfig(min_score=settings.advisor_min_score, top_k=settings.advisor_top_k)
    _, metrics = build_index_dir(directory, config, KNOWLEDGE_DIR, QUESTIONS_PATH, p.out_of_scope)
    rules_path = settings.advisor_rules or DEFAULT_RULES_PATH
    SafetyRules.load(rules_path)  # validate before it is packaged
    shutil.copy(rules_path, directory / RULES_FILE)
    AdvisorConfig().save(directory)
    return metrics


def load_scorer(version: str) -> Advisor:
    """A registered ``advisor`` version, offline, as served (in a temporary directory)."""
    directory = Path(tempfile.mkdtemp(prefix="finbento-advisor-"))
    export(version, directory)
    return Advisor.load(directory, threads=2)


def export(version: str, directory: Path) -> None:
    """Write a registered version's serving files into a folder."""
    export_directory(MODEL_NAME, version, directory)


def gate(
    client: mlflow.MlflowClient,
    settings: Settings,
    version: str,
    p: Prepared,
    candidate_metrics: dict[str, float] | None = None,
    promote: bool = False,
) -> GateDecision:
    """Gate ``version`` against the champion on the same questions (registry.run_gate)."""
    return registry.run_gate(
        client, MODEL_NAME, version, settings.advisor_gate,
        lambda v: metrics_of(load_scorer(v), p), candidate_metrics, promote=promote,
    )  # fmt: skip


def train(
    settings: Settings,
    sample: int | None = None,
    promote: bool = True,
    on_stage: tracking.Stage = lambda s: None,
) -> TrainResult:
    """Build, log, register and (if the gate agrees) promote a new ``advisor`` version.

    Args:
        settings: retrieval, MLflow and gate settings.
        sample: out-of-scope queries scored (tests); None = all.
        promote: run the gate and move ``champion`` if it passes.
        on_stage: called with a short label as each stage starts.

    Returns:
        the run id, the registered version, the retrieval metrics and the gate's decision.
    """
    client = registry.configure(settings)
    on_stage("loading the knowledge base and questions")
    p = load_split(settings, sample)
    with (
        tempfile.TemporaryDirectory() as tmp,
        mlflow.start_run(run_name=f"{MODEL_NAME}-train") as run,
    ):
        directory = Path(tmp) / ARTIFACT
        directory.mkdir()
        on_stage("exporting the encoder and embedding the knowledge base")
        build = build_model_dir(directory, settings, p)
        advisor = Advisor.load(directory, threads=2)
        on_stage("scoring retrieval")
        metrics = metrics_of(advisor, p)
        on_stage("logging to MLflow")
        mlflow.set_tags({"model_name": MODEL_NAME, "data": "data/advisor/knowledge",
                         "evaluation": f"{len(p.questions)} labelled questions, "
                                       f"{len(p.out_of_scope)} CLINC150 out-of-scope"})  # fmt: skip
        mlflow.log_params({"encoder": advisor.index.config.encoder,
                           "quantized": advisor.index.config.quantized,
                           "min_score": advisor.index.config.min_score,
                           "top_k": advisor.index.config.top_k,
                           "n_documents": int(build["n_documents"]),
                           "n_chunks": int(build["n_chunks"]),
                           "safety_rules": len(advisor.rules.rule_ids)})  # fmt: skip
        mlflow.log_metrics({**{f"build_{k}": v for k, v in build.items()}, **metrics})
        mlflow.log_text(hits_table(advisor, p).to_csv(index=False), "retrieval/hits.csv")
        # Drift reference: message lengths of the questions it was built for (the route logs them).
        tracking.log_reference(pd.DataFrame({"message_chars": [len(q.question)
                                                               for q in p.questions]}))  # fmt: skip
        example = pd.DataFrame({"message": ["How much can I invest in PPF every year?"]})
        info = log_directory_model(
            directory, "finbento.advisor.advisor:Advisor", MODEL_NAME, example,
            ["onnxruntime", "tokenizers", "pyyaml", "pandas"],
        )  # fmt: skip
    version = str(info.registered_model_version)
    on_stage("promotion gate")
    decision = registry.gate_and_promote(
        client, MODEL_NAME, version, metrics, settings.advisor_gate,
        lambda v: metrics_of(load_scorer(v), p), promote=promote,
    )  # fmt: skip
    return TrainResult(run.info.run_id, version, metrics, decision)
