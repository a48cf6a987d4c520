"""Intent: out-of-scope threshold, answers from probabilities, batching, schemas, weights check."""

import itertools

import numpy as np
import pytest
from pydantic import TypeAdapter, ValidationError

from finbento import pretrained
from finbento.intent import IntentConfig, normalise, softmax
from services.intent_schemas import MAX_QUERIES, MAX_QUERY_CHARS, Queries, Query
from services.schemas import BatchSizeError
from trainers.intent import choose_threshold
from trainers.transformer import length_batches

CONFIG = IntentConfig(("balance", "card_arrival", "top_up", "refund"), 0.5, 64, "model.onnx")


def test_decide_gives_top3_in_order_and_flags_low_confidence():
    p = np.array([[0.1, 0.6, 0.2, 0.1], [0.3, 0.25, 0.25, 0.2]])
    confident, unsure = CONFIG.decide(p)
    assert confident.intent == "card_arrival" and confident.confidence == pytest.approx(0.6)
    assert [a[0] for a in confident.alternatives] == ["card_arrival", "top_up", "balance"]
    assert not confident.out_of_scope
    assert unsure.intent == "balance" and unsure.out_of_scope


def test_config_round_trip(tmp_path):
    CONFIG.save(tmp_path)
    assert IntentConfig.load(tmp_path) == CONFIG


def test_softmax_rows_sum_to_one_and_survive_large_logits():
    p = softmax(np.array([[1000.0, 0.0], [1.0, 1.0]]))
    assert np.allclose(p.sum(axis=1), 1) and p[0, 0] == pytest.approx(1) and p[1, 0] == 0.5


def test_threshold_separates_in_scope_from_out_of_scope():
    in_conf = np.array([0.9, 0.8, 0.85, 0.4])
    correct = np.array([True, True, True, False])
    oos = np.array([0.3, 0.2, 0.45])
    t = choose_threshold(in_conf, correct, oos)
    assert 0.45 < t <= 0.8  # rejects every out-of-scope query, keeps every right answer
    assert choose_threshold(in_conf, correct, np.array([])) <= 0.8


def test_length_batches_cover_every_text_once():
    lengths = np.random.default_rng(0).integers(3, 60, 1000)
    for rng in (None, np.random.default_rng(1)):
        batches = length_batches(lengths, 32, rng)
        assert sorted(np.concatenate(batches).tolist()) == list(range(1000))
        assert all(len(b) <= 32 for b in batches)
    sorted_batches = length_batches(lengths, 32, None)
    assert all(lengths[b].max() <= lengths[c].min() for b, c in itertools.pairwise(sorted_batches))


def test_normalise_collapses_whitespace_and_unicode_forms():
    assert normalise("  What\u00a0is   my\tbalance? ") == "What is my balance?"
    assert normalise("ｔｏｐ ｕｐ") == "top up"


@pytest.mark.parametrize("bad", ["", "   ", "x" * (MAX_QUERY_CHARS + 1), 42, None])
def test_query_rules(bad):
    with pytest.raises(ValidationError):
        TypeAdapter(Query).validate_python(bad)


def test_batch_rules():
    assert TypeAdapter(Queries).validate_python([" a ", "b"]) == ["a", "b"]
    for bad, error in (([], BatchSizeError), (["ok"] * (MAX_QUERIES + 1), BatchSizeError),
                       (["ok", ""], ValidationError)):  # fmt: skip
        with pytest.raises(error):
            TypeAdapter(Queries).validate_python(bad)


def test_pretrained_weights_are_checked(tmp_path, monkeypatch):
    (tmp_path / "model.safetensors").write_bytes(b"not the published weights")
    assert pretrained.file_sha256(tmp_path / "model.safetensors") != pretrained.MINILM_SHA256
    monkeypatch.setattr(pretrained, "MINILM_SHA256", "0" * 64)
    with pytest.raises(pretrained.PretrainedModelError, match="sha256"):
        pretrained.minilm_dir()
    assert pretrained.resolve_base_model(str(tmp_path)) == str(tmp_path.resolve())
