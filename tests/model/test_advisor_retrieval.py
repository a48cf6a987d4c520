"""advisor retrieval on the shipped knowledge base: the whole index build, then the served files.

The build (ONNX export of all-MiniLM-L6-v2, int8 quantisation, ~150 chunks embedded twice) takes
about 15-30 s on 2 cores. Measured on the 79 shipped questions: recall@3 0.975 (fp32 and int8),
MRR 0.931 (fp32) / 0.927 (int8); 97 % of CLINC150's out-of-scope queries score below ``min_score``.
"""

import json
import shutil

import numpy as np
import pytest

from finbento.advisor.knowledge import load_chunks
from finbento.advisor.retrieval import (
    CHUNKS_FILE,
    CONFIG_FILE,
    EMBEDDINGS_FILE,
    ENCODER_FILE,
    TOKENIZER_FILE,
    Index,
    load_questions,
    mean_reciprocal_rank,
    recall_at_k,
)
from finbento.settings import Settings
from trainers.advisor_index import IndexBuildConfig, build_index_dir

pytestmark = pytest.mark.model

RECALL_AT_3_FLOOR = 0.93
MRR_FLOOR = 0.85


def clinc_out_of_scope() -> list[str]:
    data = json.loads((Settings().language_data_path / "clinc150" / "data_full_train_val.json")
                      .read_text())  # fmt: skip
    return [text for text, _ in data["oos_train"] + data["oos_val"]]


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    directory = tmp_path_factory.mktemp("advisor-index")
    index, metrics = build_index_dir(directory, out_of_scope=clinc_out_of_scope())
    return directory, index, metrics


@pytest.fixture(scope="module")
def served(built):
    return Index.load(built[0])


def test_served_directory_holds_exactly_the_model_files(built):
    directory, _, metrics = built
    names = {p.name for p in directory.iterdir()}
    assert names == {ENCODER_FILE, TOKENIZER_FILE, EMBEDDINGS_FILE, CHUNKS_FILE, CONFIG_FILE}
    embeddings = np.load(directory / EMBEDDINGS_FILE)
    assert embeddings.dtype == np.float32 and embeddings.shape == (metrics["n_chunks"], 384)
    assert np.allclose(np.linalg.norm(embeddings, axis=1), 1.0, atol=1e-4)


def test_recall_clears_the_floor_and_int8_is_served_only_if_it_holds(built):
    _, _, m = built
    assert m["recall_at_3"] >= RECALL_AT_3_FLOOR
    assert m["mrr"] >= MRR_FLOOR
    assert m["onnx_max_abs_diff"] < 1e-4
    drop = m["fp32_recall_at_3"] - m["int8_recall_at_3"]
    assert bool(m["int8_served"]) == (drop <= IndexBuildConfig().max_int8_recall_drop)


def test_served_index_answers_like_the_build_metrics(built, served):
    questions = load_questions()
    assert recall_at_k(served, questions, k=3) == pytest.approx(built[2]["recall_at_3"])
    assert mean_reciprocal_rank(served, questions) == pytest.approx(built[2]["mrr"])
    assert served.config.quantized == bool(built[2]["int8_served"])


def test_min_score_keeps_answers_and_drops_off_topic_queries(built):
    m = built[2]
    assert m["kept_at_3"] >= RECALL_AT_3_FLOOR
    assert m["out_of_scope_rejected"] >= 0.9


def test_hits_are_sorted_best_first_and_respect_k_and_min_score(served):
    hits = served.search("how much can I put in PPF every year", k=5, min_score=-1.0)
    scores = [s for _, s in hits]
    assert len(hits) == 5 and scores == sorted(scores, reverse=True)
    assert hits[0][0].doc_id == "ppf"
    assert all(-1.0 <= s <= 1.0 for s in scores)
    default = served.search("how much can I put in PPF every year")
    assert len(default) <= served.config.top_k
    assert all(s >= served.config.min_score for _, s in default)


def test_a_nonsense_query_gets_low_scores(served):
    for query in ("purple elephant banana keyboard", "recipe for paneer butter masala"):
        hits = served.search(query, k=3, min_score=-1.0)
        assert hits[0][1] < served.config.min_score
        assert served.search(query) == []


def test_scores_ignore_casing_and_whitespace_and_long_queries_are_truncated(served):
    a, b = served.scores(["Is ELSS lock-in 3 years", "  is elss   LOCK-IN 3 years\t"])
    assert np.allclose(a, b, atol=1e-5)
    assert len(served.search("what is the tax on PPF interest " * 300, k=2)) <= 2


def test_embeddings_must_match_the_chunks(served):
    with pytest.raises(ValueError, match="shape"):
        Index(served.encoder, served.embeddings[:-1], load_chunks(), served.config)


def test_an_index_can_be_rebuilt_from_the_served_encoder_without_torch(built, tmp_path):
    for name in (ENCODER_FILE, TOKENIZER_FILE):
        shutil.copy(built[0] / name, tmp_path / name)
    chunks = [c for c in load_chunks() if c.doc_id in ("ppf", "credit-score")]
    Index.build(tmp_path, chunks, built[1].config, threads=1)
    index = Index.load(tmp_path)
    assert len(index.chunks) == len(chunks)
    assert index.search("what is a good CIBIL score", k=1)[0][0].doc_id == "credit-score"
