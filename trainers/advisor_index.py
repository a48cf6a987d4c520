"""Builds the ``advisor`` retrieval index directory (training only: uses torch to export).

Steps: export the pretrained all-MiniLM-L6-v2 (no fine-tuning) as an embedding-only ONNX graph
with mean pooling and L2 normalisation inside (trainers/transformer.py), checked against PyTorch
on chunk texts; dynamic int8 quantisation of its weights; embed every knowledge-base chunk with
each encoder and measure recall@k and MRR on the labelled questions
(``data/advisor/retrieval_questions.csv``); keep int8 when its recall@k drops by at most
``max_int8_recall_drop``; write the directory that :meth:`finbento.advisor.retrieval.Index.load`
serves (its files are listed in finbento/advisor/retrieval.py).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from finbento.advisor.knowledge import KNOWLEDGE_DIR, load_chunks, load_documents
from finbento.advisor.retrieval import (
    ENCODER_FILE,
    QUESTIONS_PATH,
    TOKENIZER_FILE,
    Encoder,
    Index,
    RetrievalConfig,
    evaluate,
    load_questions,
)
from finbento.pretrained import resolve_base_model

log = logging.getLogger(__name__)

FP32_FILE = "encoder.fp32.onnx"
INT8_FILE = "encoder.int8.onnx"
#: Chunks compared between the ONNX graph and PyTorch after export.
CHECK_CHUNKS = 32


@dataclass(frozen=True)
class IndexBuildConfig:
    """What the index build does.

    Attributes:
        base_model: encoder directory or hub name; None for the packaged all-MiniLM-L6-v2.
        max_length: tokens kept per text.
        min_score: cosine score below which the served index drops a hit. 0.35: every labelled
            question's document scored at least 0.37, while 97 % of CLINC150's out-of-scope
            queries scored below 0.35 (all-MiniLM-L6-v2, int8).
        top_k: hits returned by default.
        k: the k of the recall@k that decides int8 and is reported.
        quantize: try the int8 dynamic-quantised encoder.
        max_int8_recall_drop: largest recall@k loss (absolute) for which int8 is served; 0.02
            lets it lose one of the 79 shipped questions.
        threads: torch and ONNX Runtime threads.
    """

    base_model: str | None = None
    max_length: int = 256
    min_score: float = 0.35
    top_k: int = 4
    k: int = 3
    quantize: bool = True
    max_int8_recall_drop: float = 0.02
    threads: int = 2


def export_encoder(directory: Path, config: IndexBuildConfig, check_texts: list[str]) -> float:
    """Write the fp32 encoder (``encoder.fp32.onnx``) and ``tokenizer.json`` into ``directory``.

    Args:
        directory: output folder.
        config: ``base_model``, ``max_length`` and ``threads``.
        check_texts: texts embedded by both PyTorch and the exported graph.

    Returns:
        the largest absolute difference between the two embeddings (unit vectors, (n, 384)).
    """
    from trainers.transformer import TextClassifierTrainer

    base = resolve_base_model(config.base_model)
    # The head (1 class) is never used: only the embedding part is exported.
    trainer = TextClassifierTrainer(base, 1, config.max_length, threads=config.threads)
    trainer.save_tokenizer(directory / TOKENIZER_FILE)
    trainer.export_embedding_onnx(directory / FP32_FILE)
    reference = trainer.embeddings(check_texts)
    exported = Encoder(directory, config.max_length, config.threads, FP32_FILE).encode(check_texts)
    return float(np.abs(reference - exported).max())


def build_index_dir(
    directory: Path,
    config: IndexBuildConfig | None = None,
    knowledge_dir: Path = KNOWLEDGE_DIR,
    questions_path: Path = QUESTIONS_PATH,
    out_of_scope: Sequence[str] = (),
) -> tuple[Index, dict[str, float]]:
    """Export the encoder, embed the knowledge base and write the served index directory.

    Args:
        directory: an existing, empty folder; receives ``encoder.onnx``, ``tokenizer.json``,
            ``index.npy``, ``chunks.json`` and ``retrieval.json``.
        config: the build settings (defaults: :class:`IndexBuildConfig`).
        knowledge_dir: the markdown knowledge base.
        questions_path: the labelled questions (``question``, ``doc_id``).
        out_of_scope: queries the knowledge base does not answer (e.g. CLINC150's out-of-scope
            queries, :func:`trainers.intent.load_out_of_scope`), to measure ``min_score``.

    Returns:
        the served index (loaded back from ``directory``) and metrics: ``n_documents``,
        ``n_chunks``, ``onnx_max_abs_diff`` (fp32 graph vs PyTorch), ``fp32_recall_at_<k>``,
        ``fp32_mrr`` (and ``int8_`` ones when quantising), ``int8_served``, the served index's
        figures of :func:`finbento.advisor.retrieval.evaluate` (``recall_at_1``,
        ``recall_at_<k>``, ``mrr``, ``kept_at_<k>``, ``out_of_scope_rejected`` when
        ``out_of_scope`` is given), ``index_bytes`` (the directory) and ``build_seconds``.

    Raises:
        ValueError: from the knowledge base or the questions (a bad document, a question whose
            document does not exist).
    """
    from onnxruntime.quantization import QuantType, quantize_dynamic

    config = config or IndexBuildConfig()
    directory = Path(directory)
    start = time.perf_counter()
    docs = load_documents(knowledge_dir)
    chunks = load_chunks(knowledge_dir)
    questions = load_questions(questions_path)
    texts = [c.embedding_text() for c in chunks]
    metrics: dict[str, float] = {"n_documents": len(docs), "n_chunks": len(chunks)}
    metrics["onnx_max_abs_diff"] = export_encoder(directory, config, texts[:CHECK_CHUNKS])
    candidates = {"fp32": FP32_FILE}
    if config.quantize:
        quantize_dynamic(directory / FP32_FILE, directory / INT8_FILE, weight_type=QuantType.QInt8)
        candidates["int8"] = INT8_FILE
    built: dict[str, Index] = {}
    quality: dict[str, dict[str, float]] = {}
    for name, file in candidates.items():
        retrieval = RetrievalConfig(
            max_length=config.max_length, min_score=config.min_score, top_k=config.top_k,
            quantized=name == "int8",
        )  # fmt: skip
        encoder = Encoder(directory, config.max_length, config.threads, file)
        built[name] = Index(encoder, encoder.encode(texts), chunks, retrieval)
        quality[name] = evaluate(built[name], questions, config.k, out_of_scope)
        metrics.update({f"{name}_{key}": value for key, value in quality[name].items()})
    recall = f"recall_at_{config.k}"
    drop = quality["fp32"][recall] - quality["int8"][recall] if "int8" in quality else 1.0
    served = "int8" if drop <= config.max_int8_recall_drop else "fp32"
    metrics["int8_served"] = float(served == "int8")
    (directory / candidates[served]).rename(directory / ENCODER_FILE)
    for name, file in candidates.items():
        if name != served:
            (directory / file).unlink()
    built[served].save(directory)
    metrics.update(quality[served])
    metrics["index_bytes"] = float(sum(p.stat().st_size for p in directory.iterdir()))
    metrics["build_seconds"] = time.perf_counter() - start
    log.info("advisor index: %s", metrics)
    return Index.load(directory, threads=config.threads), metrics
