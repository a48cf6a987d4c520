"""Public card-transaction routes: ingest, fraud and anomaly scoring, label feedback.

Features come from the Redis feature store (finbento.feature_store) through the same code that
trained the models (finbento.features.transactions). Redis calls run in a worker thread so a slow
Redis never blocks the event loop. When Redis fails, scoring answers from the request alone
(neutral history features), marks the answer ``degraded`` and counts it, and the transactions it
should have stored go to a local spool (``<state_dir>/feature-spool``,
:class:`finbento.feature_store.IngestSpool`) that is replayed into the store once Redis answers.
``/transactions`` and ``/feedback/fraud``, whose callers are told, answer 503 with ``Retry-After``
and an ``error`` saying nothing was stored, so the caller retries and nothing is lost silently.
"""

from __future__ import annotations

import asyncio
import logging
import random
import time
from functools import cached_property
from typing import Annotated

import bentoml
import numpy as np
import redis

from finbento.anomaly import MODEL_NAME as ANOMALY
from finbento.anomaly import top_deviations
from finbento.feature_store import IngestSpool, TransactionStore
from finbento.features.transactions import (
    FEATURES,
    Transaction,
    neutral_features,
    online_features,
    to_seconds,
)
from finbento.fraud import MODEL_NAME as FRAUD
from finbento.settings import get_settings
from monitoring.metrics import DEGRADED_RESPONSES, FEATURE_STORE_REQUESTS
from services import dependency, prediction_logging
from services.args import ARGS, mlflow_version
from services.schemas import (
    MAX_BATCH,
    AnomalyBatchPrediction,
    AnomalyPrediction,
    AnomalyReason,
    FeedbackResult,
    FraudBatchPrediction,
    FraudLabel,
    FraudPrediction,
    IngestResult,
    ItemCount,
    TransactionBatch,
    TransactionIn,
)
from services.transaction_models import AnomalyModel, FraudChallengerModel, FraudModel

log = logging.getLogger(__name__)


def to_transactions(items: list[TransactionIn]) -> list[Transaction]:
    """Validated request items -> feature-code transactions (times in epoch seconds, UTC)."""
    ts = to_seconds([i.tx_datetime for i in items])
    return [Transaction(i.transaction_id, float(t), i.customer_id, i.terminal_id, i.tx_amount)
            for i, t in zip(items, ts, strict=True)]  # fmt: skip


class TransactionRoutes:
    """Mixin for a public ``@bentoml.service``: transaction routes and their model services."""

    fraud = bentoml.depends(FraudModel)
    anomaly = bentoml.depends(AnomalyModel)
    if FraudChallengerModel is not None:  # built with a challenger: it scores in shadow
        fraud_challenger = bentoml.depends(FraudChallengerModel)

    @cached_property
    def _shadow_tasks(self) -> set[asyncio.Task]:
        return set()  # strong references, so running shadow scorings are not collected

    def _shadow(self, features: np.ndarray, items: list[TransactionIn]) -> None:
        """Score a sampled share of requests with the challenger, off the request path.

        ``FINBENTO_FRAUD_SHADOW_PERCENT`` of requests; the challenger's answers are never
        returned, only logged under its version with the transaction ids, so
        ``finbento challenger compare fraud`` can test it against the champion on the labels
        that feedback brings (monitoring/challenger.py).
        """
        if FraudChallengerModel is None or random.random() * 100 >= (
            get_settings().fraud_shadow_percent
        ):
            return

        async def score() -> None:
            started = time.perf_counter()
            try:
                out = np.asarray(await self.fraud_challenger.to_async.score(features))
            except Exception as exc:  # the shadow never affects the answer
                log.warning("fraud challenger failed in shadow: %s", exc)
                return
            _log(FRAUD, mlflow_version(ARGS.fraud_challenger_model), features,
                 [{"transaction_id": i.transaction_id, "fraud_probability": float(p),
                   "shadow": True} for i, (p, _) in zip(items, out, strict=True)],
                 started)  # fmt: skip

        task = asyncio.get_running_loop().create_task(score())
        self._shadow_tasks.add(task)
        task.add_done_callback(self._shadow_tasks.discard)

    @cached_property
    def feature_store(self) -> TransactionStore:
        """The Redis feature store (connects lazily)."""
        s = get_settings()
        return TransactionStore.from_url(s.redis_url, s.redis_prefix)

    @cached_property
    def ingest_spool(self) -> IngestSpool:
        """Where scored transactions go while the feature store is down (replayed later)."""
        s = get_settings()
        max_bytes = int(s.feature_spool_mb * 2**20)
        return IngestSpool(self.feature_store, s.state_dir / "feature-spool", max_bytes)

    async def _features(
        self, txs: list[Transaction], ingest: bool, model: str
    ) -> tuple[np.ndarray, bool]:
        """Feature rows (n, 18) and whether they are degraded; stores ``txs`` if ``ingest``.

        If Redis fails, the rows are :func:`neutral_features` (degraded) and, if ``ingest``,
        ``txs`` are spooled locally (one file append) to be stored once Redis is back.
        """
        try:
            customers, terminals = await asyncio.to_thread(self.feature_store.histories, txs)
            hits = sum(len(customers[tx.customer_id].times) > 0 for tx in txs)
            features = online_features(txs, customers, terminals)
            if ingest:
                await asyncio.to_thread(self.feature_store.ingest, txs)
        except redis.exceptions.RedisError as exc:
            log.warning("feature store unavailable, scoring from the request alone: %s", exc)
            FEATURE_STORE_REQUESTS.labels("error").inc(len(txs))
            DEGRADED_RESPONSES.labels(model, "feature_store_unavailable").inc(len(txs))
            if ingest:
                await asyncio.to_thread(self.ingest_spool.add, txs)
            return neutral_features(txs), True
        self.ingest_spool.replay_soon()
        FEATURE_STORE_REQUESTS.labels("hit").inc(hits)
        FEATURE_STORE_REQUESTS.labels("miss").inc(len(txs) - hits)
        return features, False

    async def _fraud(self, items: list[TransactionIn], ingest: bool) -> list[FraudPrediction]:
        started = time.perf_counter()
        features, degraded = await self._features(to_transactions(items), ingest, FRAUD)
        out = np.asarray(await dependency.call(FRAUD, self.fraud.to_async.score, features))
        version = mlflow_version(ARGS.fraud_model)
        _log(FRAUD, version, features,
             [{"transaction_id": i.transaction_id, "fraud_probability": float(p),
               "degraded": degraded} for i, (p, _) in zip(items, out, strict=True)],
             started)  # fmt: skip
        self._shadow(features, items)
        return [
            FraudPrediction(transaction_id=i.transaction_id, fraud_probability=float(p),
                            is_fraud=bool(p >= t), threshold=float(t), degraded=degraded,
                            model=FRAUD, model_version=version)
            for i, (p, t) in zip(items, out, strict=True)
        ]  # fmt: skip

    async def _anomaly(self, items: list[TransactionIn], ingest: bool) -> list[AnomalyPrediction]:
        started = time.perf_counter()
        features, degraded = await self._features(to_transactions(items), ingest, ANOMALY)
        out = np.asarray(await dependency.call(ANOMALY, self.anomaly.to_async.score, features))
        version = mlflow_version(ARGS.anomaly_model)
        _log(ANOMALY, version, features, [{"anomaly_score": float(row[0]), "degraded": degraded}
                                          for row in out], started)  # fmt: skip
        return [
            AnomalyPrediction(
                transaction_id=i.transaction_id, anomaly_score=float(row[0]),
                is_anomaly=bool(row[0] >= row[1]), degraded=degraded, model=ANOMALY,
                model_version=version,
                reasons=[AnomalyReason(feature=f, robust_z=round(z, 4))
                         for f, z in top_deviations(row[2:])],
            )
            for i, row in zip(items, out, strict=True)
        ]  # fmt: skip

    @bentoml.api(route="/transactions")
    async def ingest_transactions(
        self, transactions: TransactionBatch, ctx: bentoml.Context
    ) -> IngestResult:
        """Store transactions in the feature store (idempotent by transaction_id)."""
        txs = to_transactions(transactions)
        try:
            new = await asyncio.to_thread(self.feature_store.ingest, txs)
        except redis.exceptions.RedisError as exc:
            return IngestResult(ingested=0, duplicates=0, error=_unavailable(ctx, exc))
        self.ingest_spool.replay_soon()
        return IngestResult(ingested=new, duplicates=len(txs) - new)

    @bentoml.api(route="/predict/fraud")
    async def predict_fraud(
        self, transaction: TransactionIn, ingest: bool = True
    ) -> FraudPrediction:
        """Fraud probability of one transaction (stored too, unless ``ingest`` is false)."""
        (prediction,) = await self._fraud([transaction], ingest)
        return prediction

    @bentoml.api(route="/predict/fraud/batch")
    async def predict_fraud_batch(
        self, transactions: TransactionBatch, ingest: bool = True
    ) -> FraudBatchPrediction:
        """Fraud probabilities of 1 to 1,000 transactions, scored in time order, in input order."""
        return FraudBatchPrediction(predictions=await self._fraud(transactions, ingest))

    @bentoml.api(route="/predict/anomaly")
    async def predict_anomaly(
        self, transaction: TransactionIn, ingest: bool = True
    ) -> AnomalyPrediction:
        """Anomaly score of one transaction and the features furthest from usual."""
        (prediction,) = await self._anomaly([transaction], ingest)
        return prediction

    @bentoml.api(route="/predict/anomaly/batch")
    async def predict_anomaly_batch(
        self, transactions: TransactionBatch, ingest: bool = True
    ) -> AnomalyBatchPrediction:
        """Anomaly scores of 1 to 1,000 transactions, in input order."""
        return AnomalyBatchPrediction(predictions=await self._anomaly(transactions, ingest))

    @bentoml.api(route="/feedback/fraud")
    async def feedback_fraud(
        self,
        labels: Annotated[list[FraudLabel], ItemCount(1, MAX_BATCH)],
        ctx: bentoml.Context,
    ) -> FeedbackResult:
        """Confirmed labels; fraudulent ones feed terminal risk once they are 7 days old."""
        pairs = [(label.transaction_id, label.is_fraud) for label in labels]
        try:
            known = await asyncio.to_thread(self.feature_store.known, [txid for txid, _ in pairs])
            await asyncio.to_thread(self.feature_store.add_labels, pairs)
        except redis.exceptions.RedisError as exc:
            return FeedbackResult(recorded=0, unknown=[], error=_unavailable(ctx, exc))
        return FeedbackResult(recorded=len(known),
                              unknown=[txid for txid, _ in pairs if txid not in known])  # fmt: skip


def _log(model: str, version: str, features: np.ndarray, predictions: list[dict],
         started: float) -> None:  # fmt: skip
    """Log the feature rows (n, 18) the model scored, by feature name, with the predictions."""
    rows = [dict(zip(FEATURES, row, strict=True)) for row in features.tolist()]
    prediction_logging.record(model, version, rows, predictions, started)


def _unavailable(ctx: bentoml.Context, exc: Exception) -> str:
    """Answer 503 with Retry-After: the caller keeps the data and retries, nothing is lost."""
    ctx.response.status_code = 503
    ctx.response.headers["Retry-After"] = "5"
    log.warning("feature store unavailable: %s", exc)
    return f"feature store unavailable, nothing was stored: retry later ({type(exc).__name__})"
