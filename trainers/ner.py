"""Trainer for ``ner``: spaCy entity recogniser from ``spacy.blank("en")`` plus a money ruler.

Data (``settings.language_data_path``), slot -> label mapping in ``ner_labels.csv`` (an empty
label means the slot is not an entity):

- NLU++ banking (``nlupp_banking/fold0..15.json``): character spans of slots.
- SGD Banks user turns (``sgd_banks/banks_user_turns.jsonl``): ``amount`` spans, and the account
  types of the dialogue state (``checking``, ``savings``) where they occur in the turn's text.

Each source annotates only some labels (NLU++ has no ACCOUNT, SGD no DATE, MERCHANT or CATEGORY).
So that the model is not taught that an unannotated "savings account" is no entity, tokens that
look like an unannotated label (:data:`UNANNOTATED_HINTS`) are marked missing in the reference
docs, and each label is scored only on the sources that annotate it.

Split (fixed, before any sampling, so a sampled test part is a subset of the full one): NLU++
folds 0-9 train, 10-11 validation, 12-15 test; SGD dialogues 70/10/20 by dialogue id (seeded).
Validation picks the epoch (early stopping on micro F1) and the ruler's place (before or after
``ner``); the test part gives the reported metrics and the gate's (exact character spans; micro F1
over the five labels, and F1 of MONEY and DATE, see ``NER_GATE``). NLU++'s ``date_from`` and
``date_to`` slots are dates too and map to DATE: left out, the same words ("May", "Monday") would
be taught as DATE in one sentence and as no entity in the next.
"""

from __future__ import annotations

import csv
import json
import logging
import random
import re
import tempfile
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import mlflow
import pandas as pd

from finbento.ner import LABELS, MODEL_NAME, EntityExtractor, add_money_ruler, blank_pipeline
from finbento.settings import Settings
from trainers import registry, tracking
from trainers.gate import GateDecision
from trainers.pyfunc import ARTIFACT, export_directory, log_directory_model
from trainers.registry import TrainResult

log = logging.getLogger(__name__)

NLUPP, SGD = "nlupp_banking", "sgd_banks"
LABEL_MAP_FILE = "ner_labels.csv"
NLUPP_VALIDATION_FOLDS = (10, 11)
NLUPP_TEST_FOLDS = (12, 13, 14, 15)
SGD_VALIDATION_SHARE, SGD_TEST_SHARE = 0.1, 0.2
#: Training schedule, chosen on the validation part.
PARAMS: dict[str, Any] = {
    "max_epochs": 30,
    "sample_max_epochs": 12,  # sampled runs (tests): bounded time, about 30 s on 2 cores
    "patience": 4,
    "dropout": 0.2,
    "batch_start": 16,
    "batch_stop": 64,
    "batch_compound": 1.01,
}
_MONTHS = "january|february|march|april|june|july|august|september|october|november|december"
_DAYS = "monday|tuesday|wednesday|thursday|friday|saturday|sunday"
#: Text that looks like a label a source does not annotate: marked missing, never "outside".
UNANNOTATED_HINTS: dict[str, re.Pattern[str]] = {
    "ACCOUNT": re.compile(
        r"\b(checking|savings?|current(?= accounts?\b)|joint(?= accounts?\b))\b", re.IGNORECASE
    ),
    "DATE": re.compile(rf"\b(today|tonight|tomorrow|yesterday|{_DAYS}|{_MONTHS})\b", re.IGNORECASE),
}

Span = tuple[int, int, str]


@dataclass(frozen=True)
class Utterance:
    """One annotated text.

    Attributes:
        text: the user's words.
        spans: gold entities as character spans ``(start, end, label)``, end exclusive.
        source: ``nlupp_banking`` or ``sgd_banks``.
        group: NLU++ fold (``fold3``) or SGD dialogue id: the unit the split keeps together.
        unannotated: character ranges that look like a label the source does not annotate.
    """

    text: str
    spans: tuple[Span, ...]
    source: str
    group: str
    unannotated: tuple[tuple[int, int], ...] = ()


@dataclass
class NerSplit:
    """Train, validation and test utterances, and what loading dropped."""

    train: list[Utterance]
    validation: list[Utterance]
    test: list[Utterance]
    labels_by_source: dict[str, set[str]]
    dropped: dict[str, int] = field(default_factory=dict)

    def parts(self) -> dict[str, list[Utterance]]:
        """``{"train": ..., "validation": ..., "test": ...}``."""
        return {"train": self.train, "validation": self.validation, "test": self.test}


def load_label_map(path: Path) -> dict[tuple[str, str], str | None]:
    """``ner_labels.csv`` (columns source, slot, label) -> ``{(source, slot): label or None}``.

    Raises:
        ValueError: if a label is not one of :data:`finbento.ner.LABELS`.
    """
    out: dict[tuple[str, str], str | None] = {}
    with open(path, newline="") as f:
        for row in csv.DictReader(f):
            label = row["label"].strip() or None
            if label is not None and label not in LABELS:
                raise ValueError(f"{path}: unknown label {label!r} for {row['slot']}")
            out[(row["source"].strip(), row["slot"].strip())] = label
    return out


def _label(label_map: dict[tuple[str, str], str | None], source: str, slot: str) -> str | None:
    if (source, slot) not in label_map:
        raise KeyError(f"slot {slot!r} of {source} is not in {LABEL_MAP_FILE}: map it or ignore it")
    return label_map[(source, slot)]


def _strip(text: str, start: int, end: int) -> tuple[int, int]:
    while start < end and text[start].isspace():
        start += 1
    while end > start and text[end - 1].isspace():
        end -= 1
    return start, end


def _utterance(
    text: str, spans: list[Span], source: str, group: str, annotated: set[str], counts: Counter
) -> Utterance:
    """Dedupe and de-overlap spans (counted in ``counts``) and find unannotated hints."""
    kept: list[Span] = []
    for start, end, label in sorted(set(spans), key=lambda s: (s[0], -(s[1] - s[0]))):
        start, end = _strip(text, start, end)
        if start >= end:
            counts["empty"] += 1
        elif any(start < e and s < end for s, e, _ in kept):
            counts["overlapping"] += 1
        else:
            kept.append((start, end, label))
    missing = [(m.start(), m.end())
               for label, pattern in UNANNOTATED_HINTS.items() if label not in annotated
               for m in pattern.finditer(text)
               if not any(m.start() < e and s < m.end() for s, e, _ in kept)]  # fmt: skip
    return Utterance(text, tuple(kept), source, group, tuple(sorted(set(missing))))


def load_nlupp(folder: Path, label_map: dict, counts: Counter) -> list[Utterance]:
    """NLU++ banking folds (``fold<i>.json``, ``{"text", "slots": {slot: {"text", "span"}}}``).

    Raises:
        KeyError: for a slot missing from the label map.
    """
    annotated = {lab for (src, _), lab in label_map.items() if src == NLUPP and lab}
    out = []
    for path in sorted(folder.glob("fold*.json"), key=lambda p: int(p.stem[4:])):
        for item in json.loads(path.read_text()):
            text, spans = item["text"], []
            for slot, value in item.get("slots", {}).items():
                label = _label(label_map, NLUPP, slot)
                start, end = value["span"]
                if label is None:
                    continue
                if text[start:end] != value["text"]:
                    counts["source_mismatch"] += 1
                    continue
                spans.append((start, end, label))
            out.append(_utterance(text, spans, NLUPP, path.stem, annotated, counts))
    return out


def load_sgd(path: Path, label_map: dict, counts: Counter) -> list[Utterance]:
    """SGD Banks user turns (JSON lines: ``utterance``, ``spans``, ``state_slot_values``).

    Spans come from ``spans`` and, for every mapped slot, from its dialogue-state values found in
    the text (whole words, any case): that is how account types (never spans in SGD) are labelled.

    Raises:
        KeyError: for a slot missing from the label map.
    """
    annotated = {lab for (src, _), lab in label_map.items() if src == SGD and lab}
    out = []
    with open(path) as f:
        for line in f:
            row = json.loads(line)
            text, spans = row["utterance"], []
            for s in row["spans"]:
                label = _label(label_map, SGD, s["slot"])
                if label is None:
                    continue
                if text[s["start"] : s["end"]] != s["text"]:
                    counts["source_mismatch"] += 1
                    continue
                spans.append((s["start"], s["end"], label))
            for slot, values in row["state_slot_values"].items():
                label = _label(label_map, SGD, slot)
                for value in values if label else ():
                    pattern = rf"(?<!\w){re.escape(value)}(?!\w)"
                    spans += [(m.start(), m.end(), label)
                              for m in re.finditer(pattern, text, re.IGNORECASE)]  # fmt: skip
            out.append(_utterance(text, spans, SGD, row["dialogue_id"], annotated, counts))
    return out


def _sample(part: list[Utterance], n: int, seed: int) -> list[Utterance]:
    if n >= len(part):
        return part
    return random.Random(seed).sample(part, n)


def load_split(settings: Settings, sample: int | None = None) -> NerSplit:
    """Load both sources and split them (module docstring); optionally sample within each part.

    Args:
        settings: ``language_data_path`` and ``seed``.
        sample: if set, keep about this many utterances in all, sampled within each part.

    Raises:
        KeyError: if the data has a slot that ``ner_labels.csv`` does not list.
    """
    root = settings.language_data_path
    label_map = load_label_map(root / LABEL_MAP_FILE)
    counts: Counter = Counter()
    nlupp = load_nlupp(root / NLUPP, label_map, counts)
    sgd = load_sgd(root / SGD / "banks_user_turns.jsonl", label_map, counts)
    parts: dict[str, list[Utterance]] = {"train": [], "validation": [], "test": []}
    for u in nlupp:
        fold = int(u.group[4:])
        key = ("test" if fold in NLUPP_TEST_FOLDS else
               "validation" if fold in NLUPP_VALIDATION_FOLDS else "train")  # fmt: skip
        parts[key].append(u)
    dialogues = sorted({u.group for u in sgd})
    random.Random(settings.seed).shuffle(dialogues)
    n_test = round(SGD_TEST_SHARE * len(dialogues))
    n_val = round(SGD_VALIDATION_SHARE * len(dialogues))
    where = {d: "test" for d in dialogues[:n_test]}
    where |= {d: "validation" for d in dialogues[n_test : n_test + n_val]}
    for u in sgd:
        parts[where.get(u.group, "train")].append(u)
    if sample is not None:
        total = sum(len(p) for p in parts.values())
        parts = {k: _sample(p, round(sample * len(p) / total), settings.seed)
                 for k, p in parts.items()}  # fmt: skip
    labels_by_source: dict[str, set[str]] = {}
    for (src, _), lab in label_map.items():
        labels_by_source.setdefault(src, set()).update({lab} if lab else set())
    return NerSplit(**parts, labels_by_source=labels_by_source, dropped=dict(counts))


# --- training ---------------------------------------------------------------------------------


def to_examples(nlp: Any, utterances: list[Utterance]) -> tuple[list[Any], int]:
    """Training examples for spaCy; spans that do not fall on token boundaries are dropped.

    Returns:
        (examples, number of misaligned spans dropped).
    """
    from spacy.training import Example

    examples, misaligned = [], 0
    for u in utterances:
        ref = nlp.make_doc(u.text)
        ents = []
        for start, end, label in u.spans:
            span = ref.char_span(start, end, label=label)
            if span is None:
                misaligned += 1
            else:
                ents.append(span)
        taken = {i for span in ents for i in range(span.start, span.end)}
        missing = [span for s, e in u.unannotated
                   if (span := ref.char_span(s, e, alignment_mode="expand")) is not None
                   and not taken.intersection(range(span.start, span.end))]  # fmt: skip
        ref.set_ents(ents, missing=missing, default="outside")
        examples.append(Example(nlp.make_doc(u.text), ref))
    return examples, misaligned


def score_spans(
    gold: list[set[Span]], predicted: list[set[Span]], scored: list[set[str]]
) -> dict[str, float]:
    """Exact-match span scores.

    Args:
        gold: per text, the gold ``(start, end, label)`` character spans.
        predicted: per text, the predicted spans.
        scored: per text, the labels its source annotates (only those are counted).

    Returns:
        ``precision_<L>``, ``recall_<L>``, ``f1_<L>``, ``support_<L>`` (gold spans) for each
        label with gold or predicted spans, and ``micro_precision``, ``micro_recall``,
        ``micro_f1``, ``macro_f1`` (mean F1 over labels with gold spans), ``n_texts``.
    """
    tp: Counter = Counter()
    fp: Counter = Counter()
    fn: Counter = Counter()
    for g, p, labels in zip(gold, predicted, scored, strict=True):
        g = {s for s in g if s[2] in labels}
        p = {s for s in p if s[2] in labels}
        for s in g & p:
            tp[s[2]] += 1
        for s in p - g:
            fp[s[2]] += 1
        for s in g - p:
            fn[s[2]] += 1
    out: dict[str, float] = {}
    f1s = []
    for label in LABELS:
        if tp[label] + fp[label] + fn[label] == 0:
            continue
        p_, r_, f_ = _prf(tp[label], fp[label], fn[label])
        out |= {f"precision_{label}": p_, f"recall_{label}": r_, f"f1_{label}": f_,
                f"support_{label}": float(tp[label] + fn[label])}  # fmt: skip
        if tp[label] + fn[label]:
            f1s.append(f_)
    p_, r_, f_ = _prf(sum(tp.values()), sum(fp.values()), sum(fn.values()))
    macro = sum(f1s) / len(f1s) if f1s else 0.0
    out |= {"micro_precision": p_, "micro_recall": r_, "micro_f1": f_, "macro_f1": macro,
            "n_texts": float(len(gold))}  # fmt: skip
    return out


def _prf(tp: int, fp: int, fn: int) -> tuple[float, float, float]:
    p = tp / (tp + fp) if tp + fp else 0.0
    r = tp / (tp + fn) if tp + fn else 0.0
    return p, r, (2 * p * r / (p + r) if p + r else 0.0)


def predicted_spans(extractor: EntityExtractor, utterances: list[Utterance]) -> list[set[Span]]:
    """The model's entities of each utterance as ``(start, end, label)`` character spans."""
    docs = extractor.nlp.pipe([u.text for u in utterances], batch_size=256)
    return [{(e.start_char, e.end_char, e.label_) for e in doc.ents} for doc in docs]


def evaluate(
    extractor: EntityExtractor, utterances: list[Utterance], labels_by_source: dict[str, set[str]]
) -> dict[str, float]:
    """:func:`score_spans` of ``extractor`` on ``utterances``, and per-source micro F1.

    Every gold span counts, aligned to tokens or not. Adds ``micro_f1_<source>`` per source.
    """
    pred = predicted_spans(extractor, utterances)
    gold = [set(u.spans) for u in utterances]
    scored = [labels_by_source[u.source] for u in utterances]
    out = score_spans(gold, pred, scored)
    for source in sorted({u.source for u in utterances}):
        idx = [i for i, u in enumerate(utterances) if u.source == source]
        part = score_spans([gold[i] for i in idx], [pred[i] for i in idx], [scored[i] for i in idx])
        out[f"micro_f1_{source}"] = part["micro_f1"]
    return out


@dataclass
class Fitted:
    """A trained extractor and how training went."""

    extractor: EntityExtractor
    info: dict[str, Any]


def fit(
    split: NerSplit,
    seed: int,
    max_epochs: int = PARAMS["max_epochs"],
    on_epoch: Any = None,
) -> Fitted:
    """Train ``ner`` on ``split.train``, keep the epoch best on validation, then place the ruler.

    Args:
        split: from :func:`load_split`.
        seed: random seed (spaCy, numpy and the shuffling).
        max_epochs: upper bound on epochs (early stopping after ``patience`` without gain).
        on_epoch: called with (epoch, validation micro F1) after each epoch, if given.

    Returns:
        :class:`Fitted`; ``info`` holds epochs, best epoch, validation micro F1 of ``ner``
        alone and with the ruler before / after it, the place chosen, misaligned spans dropped
        and seconds taken.
    """
    import spacy
    from spacy.util import compounding, minibatch

    started = time.monotonic()
    spacy.util.fix_random_seed(seed)
    nlp = blank_pipeline()
    ner = nlp.add_pipe("ner")
    for label in LABELS:
        ner.add_label(label)
    train, misaligned = to_examples(nlp, split.train)
    optimizer = nlp.initialize(lambda: train)
    rng = random.Random(seed)
    best, best_bytes, best_epoch, epoch = -1.0, b"", 0, 0
    for epoch in range(1, max_epochs + 1):
        rng.shuffle(train)
        sizes = compounding(PARAMS["batch_start"], PARAMS["batch_stop"], PARAMS["batch_compound"])
        for batch in minibatch(train, size=sizes):
            nlp.update(batch, drop=PARAMS["dropout"], sgd=optimizer, losses={})
        score = evaluate(EntityExtractor(nlp), split.validation, split.labels_by_source)["micro_f1"]
        if on_epoch is not None:
            on_epoch(epoch, score)
        if score > best:
            best, best_bytes, best_epoch = score, nlp.to_bytes(), epoch
        elif epoch - best_epoch >= PARAMS["patience"]:
            break
    nlp.from_bytes(best_bytes)
    ruler_scores = {}
    for position in ("before", "after"):
        candidate = blank_pipeline()
        candidate.add_pipe("ner")
        candidate.from_bytes(best_bytes)
        add_money_ruler(candidate, position)
        ruler_scores[position] = evaluate(
            EntityExtractor(candidate), split.validation, split.labels_by_source
        )["micro_f1"]
    position = max(("before", "after"), key=lambda p: ruler_scores[p])  # ties: before
    add_money_ruler(nlp, position)
    info = {
        "epochs": epoch,
        "best_epoch": best_epoch,
        "ruler_position": position,
        "validation_micro_f1_ner_only": best,
        **{f"validation_micro_f1_ruler_{p}": s for p, s in ruler_scores.items()},
        "misaligned_spans_dropped": misaligned,
        "train_seconds": time.monotonic() - started,
    }
    return Fitted(EntityExtractor(nlp), info)


# --- MLflow -----------------------------------------------------------------------------------


def load_extractor(version: str) -> EntityExtractor:
    """A registered ``ner`` version, as served (downloaded into a temporary directory)."""
    directory = Path(tempfile.mkdtemp(prefix="finbento-ner-"))
    export(version, directory)
    return EntityExtractor.load(directory)


def export(version: str, directory: Path) -> None:
    """Write a registered version's spaCy pipeline directory into ``directory``."""
    export_directory(MODEL_NAME, version, directory)


def gate(
    client: mlflow.MlflowClient,
    settings: Settings,
    version: str,
    split: NerSplit,
    candidate_metrics: dict[str, float] | None = None,
    promote: bool = False,
) -> GateDecision:
    """Gate ``version`` against the champion on the same held-out data (registry.run_gate)."""
    return registry.run_gate(
        client, MODEL_NAME, version, settings.ner_gate,
        lambda v: evaluate(load_extractor(v), split.test, split.labels_by_source),
        candidate_metrics, promote=promote,
    )  # fmt: skip


def _frame(utterances: list[Utterance]) -> pd.DataFrame:
    """One row per utterance: text, source, group, length and entity counts per label."""
    rows = []
    for u in utterances:
        counts = Counter(label for _, _, label in u.spans)
        rows.append({"text": u.text, "source": u.source, "group": u.group, "chars": len(u.text),
                     **{f"n_{label}": counts[label] for label in LABELS}})  # fmt: skip
    return pd.DataFrame(rows)


def _pip_requirements() -> list[str]:
    from importlib.metadata import version

    return [f"{p}=={version(p)}" for p in
            ("mlflow", "spacy", "dateparser", "price-parser", "text2num", "pandas")]  # fmt: skip


def train(
    settings: Settings,
    sample: int | None = None,
    promote: bool = True,
    on_stage: tracking.Stage = lambda s: None,
) -> TrainResult:
    """Train, log, register and (if the gate agrees) promote a new ``ner`` version.

    Args:
        settings: data, MLflow and gate settings.
        sample: about this many utterances in all (within each part), for tests; None = all.
        promote: run the gate and move ``champion`` if it passes.
        on_stage: called with a short label as each stage starts.
    """
    client = registry.configure(settings)
    on_stage("loading NLU++ and SGD")
    split = load_split(settings, sample)
    on_stage("training the spaCy pipeline")
    epochs = PARAMS["max_epochs"] if sample is None else PARAMS["sample_max_epochs"]
    fitted = fit(split, settings.seed, max_epochs=epochs)
    on_stage("evaluating on the held-out folds and dialogues")
    metrics = evaluate(fitted.extractor, split.test, split.labels_by_source)
    validation = evaluate(fitted.extractor, split.validation, split.labels_by_source)
    misaligned = {f"misaligned_spans_{k}": to_examples(blank_pipeline(), part)[1]
                  for k, part in split.parts().items()}  # fmt: skip
    log.info("ner: test micro F1 %.4f; spans off token boundaries: %s", metrics["micro_f1"],
             misaligned)  # fmt: skip
    on_stage("logging to MLflow")
    with (
        mlflow.start_run(run_name=f"{MODEL_NAME}-train") as run,
        tempfile.TemporaryDirectory() as tmp,
    ):
        mlflow.set_tags({"model_name": MODEL_NAME, "data": f"{NLUPP},{SGD}"})
        mlflow.log_params(
            {**PARAMS, "seed": settings.seed, "sample": sample, "labels": ",".join(LABELS),
             "nlupp_validation_folds": NLUPP_VALIDATION_FOLDS, "nlupp_test_folds": NLUPP_TEST_FOLDS,
             **{k: v for k, v in fitted.info.items() if not k.startswith("validation_")},
             **{f"dropped_{k}": v for k, v in split.dropped.items()}, **misaligned,
             **{f"n_{k}": len(p) for k, p in split.parts().items()}}
        )  # fmt: skip
        mlflow.log_metrics({f"test_{k}": v for k, v in metrics.items()})
        mlflow.log_metrics({f"validation_{k}": v for k, v in validation.items()})
        mlflow.log_metrics({k: v for k, v in fitted.info.items() if k.startswith("validation_")})
        mlflow.log_dict({"test": metrics, "validation": validation, "training": fitted.info},
                        "evaluation/ner_report.json")  # fmt: skip
        train_df = _frame(split.train)
        mlflow.log_input(
            mlflow.data.from_pandas(train_df, source=str(settings.language_data_path),
                                    name="nlupp_banking+sgd_banks"),
            context="training",
        )  # fmt: skip
        tracking.log_reference(train_df)
        pipeline_dir = Path(tmp) / ARTIFACT
        fitted.extractor.save(pipeline_dir)
        example = pd.DataFrame({"text": ["paid Rs. 2.5 lakh to Amazon yesterday"],
                                "reference_date": ["2024-01-10"]})  # fmt: skip
        info = log_directory_model(
            pipeline_dir, "finbento.ner:EntityExtractor", MODEL_NAME, example,
            _pip_requirements(),
            metadata={"labels": list(LABELS), "ruler_position": fitted.info["ruler_position"]},
        )  # fmt: skip
    version = str(info.registered_model_version)
    on_stage("promotion gate")
    decision = registry.gate_and_promote(
        client, MODEL_NAME, version, metrics, settings.ner_gate,
        lambda v: evaluate(load_extractor(v), split.test, split.labels_by_source), promote=promote,
    )  # fmt: skip
    return TrainResult(run.info.run_id, version, metrics, decision)
