"""Retrieval for the ``advisor`` model: knowledge-base chunks nearest to a question (no torch).

The encoder is sentence-transformers/all-MiniLM-L6-v2 (Reimers & Gurevych 2019; BERT, 6 layers,
384 dimensions) exported as one ONNX graph ``(input_ids, attention_mask) -> embeddings`` with
mean pooling and L2 normalisation inside (trainers/advisor_index.py), tokenised with the
``tokenizers`` library by the same code as ``intent`` (:func:`finbento.intent.tokenize`). Chunk
embeddings are precomputed; a question's score against a chunk is their cosine similarity (a dot
product of unit vectors), in [-1, 1].

An index directory (the BentoML model) holds:

- ``encoder.onnx``: the encoder (int8 dynamic-quantised where recall holds, see ``retrieval.json``)
- ``tokenizer.json``: its tokenizer
- ``index.npy``: chunk embeddings, float32 (n chunks, 384), rows in ``chunks.json`` order
- ``chunks.json``: the chunks (:class:`finbento.advisor.knowledge.Chunk` fields)
- ``retrieval.json``: :class:`RetrievalConfig`
"""

from __future__ import annotations

import csv
import json
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from finbento.advisor.knowledge import DATA_DIR, Chunk
from finbento.intent import load_tokenizer, onnx_session, tokenize

MODEL_NAME = "advisor"
ENCODER_FILE = "encoder.onnx"
TOKENIZER_FILE = "tokenizer.json"
EMBEDDINGS_FILE = "index.npy"
CHUNKS_FILE = "chunks.json"
CONFIG_FILE = "retrieval.json"
#: The labelled retrieval questions shipped with the knowledge base.
QUESTIONS_PATH = DATA_DIR / "retrieval_questions.csv"

#: A search hit: the chunk and its cosine score.
Hit = tuple[Chunk, float]


@dataclass(frozen=True)
class RetrievalConfig:
    """How an index encodes and filters, stored as ``retrieval.json`` beside it.

    Attributes:
        max_length: tokens kept per text (MiniLM was trained on up to 256).
        min_score: cosine score below which a hit is dropped (how 0.35 was chosen:
            trainers/advisor_index.py, ``IndexBuildConfig``).
        top_k: hits returned by default.
        quantized: whether ``encoder.onnx`` is the int8 dynamic-quantised graph.
        dim: embedding dimension.
        encoder: name of the pretrained encoder.
    """

    max_length: int = 256
    min_score: float = 0.35
    top_k: int = 4
    quantized: bool = False
    dim: int = 384
    encoder: str = "sentence-transformers/all-MiniLM-L6-v2"

    @classmethod
    def load(cls, directory: Path) -> RetrievalConfig:
        """Read ``retrieval.json`` from an index directory."""
        return cls(**json.loads((Path(directory) / CONFIG_FILE).read_text()))

    def save(self, directory: Path) -> None:
        """Write ``retrieval.json`` into ``directory``."""
        (Path(directory) / CONFIG_FILE).write_text(json.dumps(asdict(self), indent=1))


class Encoder:
    """The ONNX sentence encoder and its tokenizer.

    Args:
        directory: folder with ``encoder.onnx`` (or ``onnx_file``) and ``tokenizer.json``.
        max_length: tokens kept per text.
        threads: intra-op threads of the ONNX Runtime session.
        onnx_file: the graph's file name inside ``directory``.
    """

    def __init__(
        self, directory: Path, max_length: int, threads: int = 1, onnx_file: str = ENCODER_FILE
    ) -> None:
        directory = Path(directory)
        self.tokenizer = load_tokenizer(directory / TOKENIZER_FILE, max_length)
        self.session = onnx_session(directory / onnx_file, threads)
        self.dim = int(self.session.get_outputs()[0].shape[-1])

    def encode(self, texts: Sequence[str], batch_size: int = 32) -> np.ndarray:
        """Unit-length embeddings, float32 (n, dim), rows in input order.

        Texts are sorted by length and run ``batch_size`` at a time, so padding stays short.
        """
        out = np.empty((len(texts), self.dim), dtype=np.float32)
        order = np.argsort([len(t) for t in texts], kind="stable")
        for start in range(0, len(order), batch_size):
            rows = order[start : start + batch_size]
            ids, mask = tokenize(self.tokenizer, [texts[i] for i in rows])
            (emb,) = self.session.run(["embeddings"], {"input_ids": ids, "attention_mask": mask})
            out[rows] = emb
        return out


class Index:
    """Chunks, their embeddings and the encoder: cosine search over the knowledge base.

    Args:
        encoder: encodes questions (and, in :meth:`build`, the chunks).
        embeddings: unit-length chunk embeddings, float32 (len(chunks), dim).
        chunks: the chunks, in embedding row order.
        config: the index's :class:`RetrievalConfig`.

    Raises:
        ValueError: if ``embeddings`` is not (len(chunks), encoder.dim).
    """

    def __init__(
        self,
        encoder: Encoder,
        embeddings: np.ndarray,
        chunks: Sequence[Chunk],
        config: RetrievalConfig,
    ) -> None:
        if embeddings.shape != (len(chunks), encoder.dim):
            raise ValueError(
                f"embeddings have shape {embeddings.shape}, expected ({len(chunks)}, {encoder.dim})"
            )
        self.encoder = encoder
        self.embeddings = np.ascontiguousarray(embeddings, dtype=np.float32)
        self.chunks = list(chunks)
        self.config = config

    @classmethod
    def build(
        cls, directory: Path, chunks: Sequence[Chunk], config: RetrievalConfig, threads: int = 2
    ) -> Index:
        """Embed ``chunks`` with the encoder already in ``directory`` and save the index there.

        Args:
            directory: holds ``encoder.onnx`` and ``tokenizer.json``; receives ``index.npy``,
                ``chunks.json`` and ``retrieval.json``.
            chunks: what to index (:meth:`Chunk.embedding_text` is embedded).
            config: written as ``retrieval.json``.
            threads: ONNX Runtime intra-op threads.
        """
        encoder = Encoder(directory, config.max_length, threads)
        embeddings = encoder.encode([c.embedding_text() for c in chunks])
        index = cls(encoder, embeddings, chunks, config)
        index.save(directory)
        return index

    @classmethod
    def load(cls, directory: Path, threads: int = 1) -> Index:
        """Read an index directory (see the module docstring).

        Raises:
            FileNotFoundError: if a file is missing.
            ValueError: if the embeddings do not match the chunks.
        """
        directory = Path(directory)
        config = RetrievalConfig.load(directory)
        chunks = [Chunk(**c) for c in json.loads((directory / CHUNKS_FILE).read_text())]
        embeddings = np.load(directory / EMBEDDINGS_FILE)
        return cls(Encoder(directory, config.max_length, threads), embeddings, chunks, config)

    def save(self, directory: Path) -> None:
        """Write ``index.npy``, ``chunks.json`` and ``retrieval.json`` (not the encoder)."""
        directory = Path(directory)
        np.save(directory / EMBEDDINGS_FILE, self.embeddings)
        chunks = [asdict(c) for c in self.chunks]
        (directory / CHUNKS_FILE).write_text(json.dumps(chunks, indent=1, ensure_ascii=False))
        self.config.save(directory)

    def scores(self, queries: Sequence[str]) -> np.ndarray:
        """Cosine scores of every query against every chunk, float32 (n queries, n chunks)."""
        return self.encoder.encode(queries) @ self.embeddings.T

    def search_many(
        self, queries: Sequence[str], k: int | None = None, min_score: float | None = None
    ) -> list[list[Hit]]:
        """The best ``k`` chunks of each query scoring at least ``min_score``, best first.

        Args:
            queries: questions, any length (truncated to ``max_length`` tokens).
            k: hits per query; default ``config.top_k``.
            min_score: lowest cosine score kept; default ``config.min_score`` (-1 keeps all).

        Returns:
            per query, up to ``k`` ``(chunk, score)`` pairs, scores decreasing.
        """
        k = self.config.top_k if k is None else k
        floor = self.config.min_score if min_score is None else min_score
        scores = self.scores(queries)
        top = np.argsort(-scores, axis=1, kind="stable")[:, :k]
        return [
            [(self.chunks[j], float(s[j])) for j in row if s[j] >= floor]
            for s, row in zip(scores, top, strict=True)
        ]

    def search(self, query: str, k: int | None = None, min_score: float | None = None) -> list[Hit]:
        """The best ``k`` chunks for one query, best first (see :meth:`search_many`)."""
        return self.search_many([query], k, min_score)[0]


@dataclass(frozen=True)
class Question:
    """A labelled retrieval question: the document that answers it."""

    question: str
    doc_id: str


def load_questions(path: Path = QUESTIONS_PATH) -> list[Question]:
    """The labelled questions of a CSV with columns ``question`` and ``doc_id``.

    Raises:
        ValueError: if a column is missing or a row has an empty field.
    """
    with Path(path).open(newline="", encoding="utf-8") as f:
        reader = csv.DictReader(f)
        if not {"question", "doc_id"} <= set(reader.fieldnames or ()):
            raise ValueError(f"{path}: needs columns 'question' and 'doc_id'")
        rows = [Question(r["question"].strip(), r["doc_id"].strip()) for r in reader]
    for i, q in enumerate(rows, start=2):
        if not q.question or not q.doc_id:
            raise ValueError(f"{path}: line {i} has an empty question or doc_id")
    return rows


def doc_ranks(index: Index, questions: Sequence[Question]) -> np.ndarray:
    """1-based rank of the first chunk of each question's document among all chunks, int (n,).

    Raises:
        ValueError: if a question's document has no chunk in the index.
    """
    scores = index.scores([q.question for q in questions])
    doc_of = np.array([c.doc_id for c in index.chunks])
    ranks = np.empty(len(questions), dtype=np.int64)
    for i, q in enumerate(questions):
        own = doc_of == q.doc_id
        if not own.any():
            raise ValueError(f"question {q.question!r}: no chunk of document {q.doc_id!r}")
        best = scores[i, own].max()
        ranks[i] = 1 + int((scores[i, ~own] > best).sum())
    return ranks


def recall_at_k(index: Index, questions: Sequence[Question], k: int = 3) -> float:
    """Share of questions whose document owns one of the top ``k`` chunks, in [0, 1]."""
    return float((doc_ranks(index, questions) <= k).mean())


def mean_reciprocal_rank(index: Index, questions: Sequence[Question]) -> float:
    """Mean of 1 / rank of the first chunk of each question's document, in (0, 1]."""
    return float((1.0 / doc_ranks(index, questions)).mean())


def evaluate(
    index: Index,
    questions: Sequence[Question],
    k: int = 3,
    out_of_scope: Sequence[str] = (),
) -> dict[str, float]:
    """Retrieval quality of an index on labelled questions (and, optionally, off-topic queries).

    Args:
        index: the index searched.
        questions: labelled questions.
        k: the k of recall@k.
        out_of_scope: queries the knowledge base does not answer (e.g. CLINC150's out-of-scope
            queries); none by default.

    Returns:
        ``recall_at_1``, ``recall_at_<k>``, ``mrr`` (ranks over all chunks, ``min_score``
        ignored), ``kept_at_<k>`` (recall@k counting only hits at or above ``min_score``) and,
        with ``out_of_scope``, ``out_of_scope_rejected``: the share of those queries with no hit
        at or above ``min_score``.
    """
    ranks = doc_ranks(index, questions)
    hits = index.search_many([q.question for q in questions], k)
    kept = [any(c.doc_id == q.doc_id for c, _ in h) for q, h in zip(questions, hits, strict=True)]
    out = {
        "recall_at_1": float((ranks <= 1).mean()),
        f"recall_at_{k}": float((ranks <= k).mean()),
        "mrr": float((1.0 / ranks).mean()),
        f"kept_at_{k}": float(np.mean(kept)),
    }
    if len(out_of_scope):
        best = index.scores(list(out_of_scope)).max(axis=1)
        out["out_of_scope_rejected"] = float((best < index.config.min_score).mean())
    return out
