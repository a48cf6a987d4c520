"""Scoring for the ``intent`` model: a fine-tuned MiniLM run with ONNX Runtime, no torch.

The model maps a customer query to one of Banking77's 77 intents (Casanueva et al. 2020). It is a
BERT encoder (all-MiniLM-L6-v2, fine-tuned, see trainers/intent.py) with mean pooling, L2
normalisation and a linear head, exported as one ONNX graph ``(input_ids, attention_mask) ->
logits``. Tokenisation uses the ``tokenizers`` library on the model's own ``tokenizer.json``, the
same code at training and serving time (:func:`tokenize`).

A query is out of scope when its top softmax probability is below ``threshold``, chosen on
CLINC150's out-of-scope and non-banking queries (Larson et al. 2019) against Banking77 validation
queries (trainers/intent.py).
"""

from __future__ import annotations

import json
import unicodedata
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import pandas as pd

MODEL_NAME = "intent"
TOKENIZER_FILE = "tokenizer.json"
CONFIG_FILE = "intent.json"
TOP_K = 3
#: Smallest run of queries scored by the ``batch_threads`` session of :class:`IntentClassifier`.
BATCH_THREADS_FROM = 4


def normalise(text: str) -> str:
    """Unicode NFKC, whitespace runs collapsed, stripped (casing is left to the tokenizer)."""
    return " ".join(unicodedata.normalize("NFKC", text).split())


def load_tokenizer(path: Path, max_length: int):
    """The model's tokenizer, truncating to ``max_length`` tokens and padding to the longest."""
    from tokenizers import Tokenizer

    tok = Tokenizer.from_file(str(path))
    tok.enable_truncation(max_length)
    tok.enable_padding()
    return tok


def onnx_session(path: Path, threads: int):
    """A CPU ``onnxruntime.InferenceSession`` for serving next to other busy processes.

    Args:
        path: the ``.onnx`` file.
        threads: intra-op threads (one inter-op thread: the graphs here are sequential).

    Idle intra-op threads do not spin: ONNX Runtime's default busy-waits between operators, which
    on two cores shared with the API workers took the CPU those workers needed.
    """
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    options.add_session_config_entry("session.intra_op.allow_spinning", "0")
    return ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])


def tokenize(tokenizer, texts: Sequence[str]) -> tuple[np.ndarray, np.ndarray]:
    """``input_ids`` and ``attention_mask``, int64 arrays (n, longest sequence in ``texts``)."""
    encodings = tokenizer.encode_batch([normalise(t) for t in texts])
    ids = np.array([e.ids for e in encodings], dtype=np.int64)
    mask = np.array([e.attention_mask for e in encodings], dtype=np.int64)
    return ids, mask


def softmax(logits: np.ndarray) -> np.ndarray:
    """Row-wise softmax of (n, k) logits."""
    z = np.exp(logits - logits.max(axis=1, keepdims=True))
    return z / z.sum(axis=1, keepdims=True)


@dataclass(frozen=True)
class IntentResult:
    """One query's answer: best intent, its probability, top-3 alternatives, out-of-scope flag."""

    intent: str
    confidence: float
    alternatives: list[tuple[str, float]]
    out_of_scope: bool


@dataclass(frozen=True)
class IntentConfig:
    """What turns probabilities into answers, stored as ``intent.json`` beside the model.

    Attributes:
        labels: intent names in logit order.
        threshold: top probability below which a query is out of scope.
        max_length: tokens kept per query.
        onnx_file: the ONNX file served (``model.onnx`` or ``model.int8.onnx``).
    """

    labels: tuple[str, ...]
    threshold: float
    max_length: int
    onnx_file: str

    @classmethod
    def load(cls, directory: Path) -> IntentConfig:
        """Read ``intent.json`` from a model directory."""
        c = json.loads((Path(directory) / CONFIG_FILE).read_text())
        return cls(tuple(c["labels"]), float(c["threshold"]), int(c["max_length"]), c["onnx_file"])

    def save(self, directory: Path) -> None:
        """Write ``intent.json`` into ``directory``."""
        (Path(directory) / CONFIG_FILE).write_text(json.dumps(asdict(self), indent=1))

    def decide(self, probabilities: np.ndarray) -> list[IntentResult]:
        """Best intent, top-3 alternatives and out-of-scope flag from (n, k) probabilities."""
        top = np.argsort(-probabilities, axis=1)[:, :TOP_K]
        return [
            IntentResult(
                intent=self.labels[row[0]],
                confidence=float(p[row[0]]),
                alternatives=[(self.labels[j], float(p[j])) for j in row],
                out_of_scope=bool(p[row[0]] < self.threshold),
            )
            for p, row in zip(probabilities, top, strict=True)
        ]


class IntentClassifier:
    """The ONNX intent model with its tokenizer and :class:`IntentConfig`.

    Args:
        directory: folder with the ONNX file, ``tokenizer.json`` and ``intent.json``.
        threads: intra-op threads of the ONNX Runtime session that runs small batches.
        batch_threads: intra-op threads for batches of at least :data:`BATCH_THREADS_FROM`
            queries, in a second session of the same model (None: one session for all). A batched
            matrix product splits well over two cores, a single query's does not: on 2 cores,
            int8 MiniLM took 1.1 ms for one query with 1 thread and 1.2 ms with 2, but 0.83 vs
            0.59 ms a query in batches of 64 (bench/serving.py, README "Performance").
    """

    def __init__(self, directory: Path, threads: int = 1, batch_threads: int | None = None) -> None:
        self.directory = Path(directory)
        self.config = IntentConfig.load(self.directory)
        self.tokenizer = load_tokenizer(self.directory / TOKENIZER_FILE, self.config.max_length)
        model = self.directory / self.config.onnx_file
        self.session = onnx_session(model, threads)
        self.batch_session = (
            onnx_session(model, batch_threads)
            if batch_threads is not None and batch_threads != threads
            else self.session
        )

    @property
    def threshold(self) -> float:
        """The out-of-scope threshold."""
        return self.config.threshold

    def probabilities(self, queries: Sequence[str], batch_size: int = 64) -> np.ndarray:
        """Softmax over the intents, float32 (n, len(labels)).

        Queries are sorted by length and run ``batch_size`` at a time, so padding stays short;
        runs of :data:`BATCH_THREADS_FROM` queries or more go to the ``batch_threads`` session.
        """
        out = np.empty((len(queries), len(self.config.labels)), dtype=np.float32)
        order = np.argsort([len(q) for q in queries], kind="stable")
        for start in range(0, len(order), batch_size):
            rows = order[start : start + batch_size]
            ids, mask = tokenize(self.tokenizer, [queries[i] for i in rows])
            session = self.batch_session if len(rows) >= BATCH_THREADS_FROM else self.session
            (logits,) = session.run(["logits"], {"input_ids": ids, "attention_mask": mask})
            out[rows] = softmax(logits)
        return out

    def predict(self, queries: Sequence[str]) -> list[IntentResult]:
        """Answers for ``queries`` in input order."""
        return self.config.decide(self.probabilities(queries))

    def predict_frame(self, frame: pd.DataFrame) -> pd.DataFrame:
        """MLflow pyfunc entry: column ``query`` -> ``intent``, ``confidence``, ``out_of_scope``."""
        results = self.predict(frame["query"].astype(str).tolist())
        return pd.DataFrame(
            {"intent": [r.intent for r in results], "confidence": [r.confidence for r in results],
             "out_of_scope": [r.out_of_scope for r in results]}
        )  # fmt: skip
