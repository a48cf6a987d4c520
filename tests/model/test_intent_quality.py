"""intent on a small real sample of Banking77: the whole trainer, then the served files from MLflow.

One short fine-tune (1,500 queries, 1 epoch) keeps this near a minute; the full-data figures
(validation accuracy, out-of-scope recall) come from `finbento train intent` (README, Intent).
"""

import numpy as np
import pytest

from finbento.intent import BATCH_THREADS_FROM, IntentClassifier
from finbento.settings import GatePolicy, Settings
from trainers import intent

pytestmark = pytest.mark.model


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    s = Settings(state_dir=tmp_path_factory.mktemp("intent"), intent_gate=GatePolicy())
    result = intent.train(s, sample=1500, epochs=1)
    directory = tmp_path_factory.mktemp("served")
    intent.export(result.version, directory)
    return s, result, IntentClassifier(directory)


def test_fine_tuned_model_beats_tfidf_and_knows_out_of_scope(trained):
    _, result, _ = trained
    m = result.metrics
    assert m["accuracy"] >= 0.70
    assert m["accuracy"] >= m["baseline_tfidf_accuracy"]
    assert m["out_of_scope_recall"] >= 0.5
    assert m["in_scope_accuracy"] <= m["accuracy"]
    assert result.decision.promote


def test_onnx_matches_pytorch_and_int8_is_kept_only_if_accuracy_holds(trained):
    s, result, _ = trained
    m = result.metrics
    assert m["onnx_max_abs_logit_diff"] < 1e-3
    if m["int8_served"]:
        assert m["fp32_accuracy"] - m["int8_accuracy"] <= s.intent_max_int8_drop
    else:
        assert m["fp32_accuracy"] - m["int8_accuracy"] > s.intent_max_int8_drop


def test_served_files_answer_like_the_registered_metrics(trained):
    s, result, classifier = trained
    p = intent.load_split(s, sample=1500)
    assert intent.threshold_metrics(classifier, p)["accuracy"] == pytest.approx(
        result.metrics["accuracy"]
    )


def test_answers_ignore_casing_and_whitespace(trained):
    classifier = trained[2]
    a, b = classifier.probabilities(
        ["My card has not arrived yet", "  MY CARD   has not\tarrived YET "]
    )
    assert np.allclose(a, b, atol=1e-6)
    (long,) = classifier.predict(["where is my card " * 700])  # 10,000+ characters: truncated
    assert long.intent in classifier.config.labels


def test_batch_session_answers_like_the_single_query_session(trained):
    """Runs of 4+ queries go to a second session with 2 threads; the answers must not change."""
    one_session = trained[2]
    two_sessions = IntentClassifier(one_session.directory, threads=1, batch_threads=2)
    assert two_sessions.batch_session is not two_sessions.session
    same = IntentClassifier(one_session.directory, threads=2, batch_threads=2)
    assert same.batch_session is same.session
    runs = {"single": 0, "batch": 0}

    def counted(session, name):
        def run(*args, **kwargs):
            runs[name] += 1
            return session.run(*args, **kwargs)

        return type("Counted", (), {"run": staticmethod(run)})()

    two_sessions.session = counted(two_sessions.session, "single")
    two_sessions.batch_session = counted(two_sessions.batch_session, "batch")
    queries = ["My card has not arrived yet", "how do I top up by bank transfer?",
               "I was charged twice for one purchase", "what is the exchange rate?",
               "cancel my transfer", "my PIN is blocked"]  # fmt: skip
    assert len(queries) >= BATCH_THREADS_FROM
    assert np.allclose(
        two_sessions.probabilities(queries), one_session.probabilities(queries), atol=1e-5
    )
    two_sessions.probabilities(queries[:1])
    assert runs == {"single": 1, "batch": 1}
