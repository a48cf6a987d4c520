"""A fraud challenger in shadow over real HTTP: packaged beside the champion, scoring every request
without changing the answers, logged under its version, then tested against the champion on the
labels that feedback brought (``finbento challenger compare``)."""

import contextlib
import os
import subprocess
import sys
import time
import uuid
from pathlib import Path

import httpx
import pytest
import redis

from finbento import bentos
from finbento.datasets import to_transactions
from finbento.feature_store import TransactionStore
from finbento.serving import free_port, start_bento_server, stop_bento_server
from monitoring.prediction_log import PredictionLog
from trainers import bento_import, fraud, registry

pytestmark = pytest.mark.integration
PREFIX = f"finbento-test-{uuid.uuid4().hex[:8]}"
REDIS = "redis://127.0.0.1:6379/0"
DAY = "2018-08-20"


@pytest.fixture(scope="module")
def shadow(trained, tmp_path_factory):
    try:
        redis.Redis.from_url(REDIS).ping()
    except redis.exceptions.RedisError as exc:
        pytest.skip(f"no Redis at 127.0.0.1:6379: {exc}")
    s = trained.settings
    # A different challenger: three weeks of training data instead of six, not promoted.
    challenger = fraud.train(s.model_copy(update={"fraud_train_days": 21}), sample=60000,
                             promote=False)  # fmt: skip
    client = registry.configure(s)
    assert str(registry.get_alias(client, "fraud", "challenger").version) == challenger.version
    model = bento_import.import_version(client, "fraud", challenger.version, fraud.export)
    risk = ("credit-risk", "fraud", "anomaly")
    tag = bentos.build("risk", {m: trained.tags[m] for m in risk},
                       {m: trained.versions[m] for m in risk},
                       {"fraud": (str(model.tag), challenger.version)})  # fmt: skip
    p = fraud.load_split(s, sample=60000)
    history = p.df[p.df.tx_datetime < DAY]
    store = TransactionStore.from_url(REDIS, PREFIX)
    store.ingest(to_transactions(history), history.tx_fraud.astype(bool))
    port = free_port()
    env = {"FINBENTO_REDIS_PREFIX": PREFIX, "FINBENTO_FRAUD_SHADOW_PERCENT": "100"}
    proc = start_bento_server(
        tag, port, env, log_file=tmp_path_factory.mktemp("logs") / "serve-shadow.log"
    )
    yield {"url": f"http://127.0.0.1:{port}", "tag": tag, "prepared": p, "settings": s,
           "champion": trained.versions["fraud"], "challenger": challenger.version}  # fmt: skip
    stop_bento_server(proc)
    with contextlib.suppress(redis.exceptions.RedisError):
        store.clear()
        PredictionLog(REDIS, PREFIX).clear()


def test_challenger_scores_in_shadow_and_is_tested_on_feedback_labels(shadow):
    import bentoml

    bento = bentoml.get(shadow["tag"])
    assert bento.info.labels["fraud.challenger"] == shadow["challenger"]
    assert f"fr{shadow['champion']}c{shadow['challenger']}-" in shadow["tag"]
    df = shadow["prepared"].df
    day = df[(df.tx_datetime >= DAY) & (df.tx_datetime < "2018-08-24")]
    assert day.tx_fraud.sum() >= 5
    batch = [{"transaction_id": r.transaction_id, "tx_datetime": r.tx_datetime.isoformat(),
              "customer_id": r.customer_id, "terminal_id": r.terminal_id,
              "tx_amount": float(r.tx_amount)} for r in day.itertuples()]  # fmt: skip
    answers = []
    for start in range(0, len(batch), 1000):
        r = httpx.post(shadow["url"] + "/predict/fraud/batch",
                       json={"transactions": batch[start : start + 1000]}, timeout=60)  # fmt: skip
        assert r.status_code == 200, r.text
        answers += r.json()["predictions"]
    assert {a["model_version"] for a in answers} == {shadow["champion"]}  # answers: champion
    frauds = [
        {"transaction_id": t, "is_fraud": True} for t in day[day.tx_fraud == 1].transaction_id
    ]
    r = httpx.post(shadow["url"] + "/feedback/fraud", json={"labels": frauds}, timeout=30)
    assert r.status_code == 200 and r.json()["recorded"] == len(frauds), r.text

    log = PredictionLog(REDIS, PREFIX)
    stream = redis.Redis.from_url(REDIS)
    for _ in range(80):  # champion and challenger rows, written off the request path
        if stream.xlen(log.key("fraud")) >= 2 * len(batch):
            break
        time.sleep(0.25)
    rows = log.read("fraud", 4 * len(batch))
    counts = rows["model_version"].astype(str).value_counts()
    assert counts[shadow["champion"]] == counts[shadow["challenger"]] == len(batch)

    env = {**os.environ, "FINBENTO_REDIS_PREFIX": PREFIX, "COLUMNS": "200",
           "FINBENTO_STATE_DIR": str(shadow["settings"].state_dir)}  # fmt: skip
    out = subprocess.run(
        [str(Path(sys.executable).parent / "finbento"), "challenger", "compare", "fraud",
         "--champion", shadow["champion"], "--challenger", shadow["challenger"]],
        env=env, capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert out.returncode == 0, out.stdout + out.stderr
    assert "p_value" in out.stdout and "average_precision" in out.stdout
    assert str(len(batch)) in out.stdout  # every scored transaction is known to the store
