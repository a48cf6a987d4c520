"""Online feature store for card transactions, in Redis.

Keys (``<prefix>:<feature set>:...``, e.g. ``finbento:transactions:v1:c:596``):

| key | type | holds | kept |
|---|---|---|---|
| ``c:<customer>`` | sorted set, score = time | ``<tx id>|<amount>|<terminal>`` | 31 days |
| ``t:<terminal>`` | sorted set, score = time | transaction ids | 38 days |
| ``tf:<terminal>`` | sorted set, score = time | ids confirmed fraudulent | 38 days |
| ``x:<transaction>`` | hash | ``c``, ``t``, ``ts``: idempotency, feedback | 38 days |

Each write trims a sorted set to the history the features need (30 days per customer, 37 per
terminal, before the newest transaction) and refreshes its TTL. Reads and writes of a batch go in
one pipeline each. The feature-set name is versioned: a change in what is stored gets a new name
and both can live side by side. Nothing here ever runs ``FLUSHDB``; :meth:`clear` deletes the
feature set's own keys only.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

import numpy as np
import redis

from finbento.features.transactions import (
    CUSTOMER_HISTORY_S,
    DAY,
    TERMINAL_HISTORY_S,
    CustomerHistory,
    TerminalHistory,
    Transaction,
)

FEATURE_SET = "transactions:v1"
CUSTOMER_TTL_S = int(CUSTOMER_HISTORY_S + DAY)
TERMINAL_TTL_S = int(TERMINAL_HISTORY_S + DAY)


def connect(url: str, timeout_s: float = 0.5) -> redis.Redis:
    """A lazy Redis client with short timeouts, so a dead Redis cannot stall a request."""
    return redis.Redis.from_url(
        url, decode_responses=True, socket_timeout=timeout_s, socket_connect_timeout=timeout_s
    )


def clear_prefix(client: redis.Redis, pattern: str) -> int:
    """Delete the keys matching ``pattern``, 1,000 at a time (never FLUSHDB). Returns how many."""
    deleted = 0
    batch: list[str] = []
    for key in client.scan_iter(match=pattern, count=1000):
        batch.append(key)
        if len(batch) == 1000:
            deleted += client.unlink(*batch)
            batch.clear()
    if batch:
        deleted += client.unlink(*batch)
    return deleted


class TransactionStore:
    """Customer and terminal histories in Redis.

    Args:
        client: a ``redis.Redis`` client (``decode_responses=True``).
        prefix: key prefix shared by finbento's keys.
        feature_set: versioned feature-set name.

    Every method raises ``redis.exceptions.RedisError`` when Redis cannot be reached; the
    services turn that into a degraded answer.
    """

    def __init__(self, client: redis.Redis, prefix: str = "finbento",
                 feature_set: str = FEATURE_SET) -> None:  # fmt: skip
        self.r = client
        self.base = f"{prefix}:{feature_set}"

    @classmethod
    def from_url(
        cls, url: str, prefix: str = "finbento", timeout_s: float = 0.5
    ) -> TransactionStore:
        """Connect lazily to ``url`` with short timeouts (:func:`connect`)."""
        return cls(connect(url, timeout_s), prefix)

    def _key(self, kind: str, ident: str) -> str:
        return f"{self.base}:{kind}:{ident}"

    def histories(
        self, transactions: Sequence[Transaction]
    ) -> tuple[dict[str, CustomerHistory], dict[str, TerminalHistory]]:
        """The stored histories the features of ``transactions`` need, in one round trip.

        The transactions themselves are left out of the histories even if they were stored
        before (ingested, then scored), so that no transaction counts twice.
        """
        if not transactions:
            return {}, {}
        own = {tx.transaction_id for tx in transactions}
        start = min(tx.ts for tx in transactions)
        customers = sorted({tx.customer_id for tx in transactions})
        terminals = sorted({tx.terminal_id for tx in transactions})
        pipe = self.r.pipeline(transaction=False)
        for c in customers:
            pipe.zrangebyscore(
                self._key("c", c), start - CUSTOMER_HISTORY_S, "+inf", withscores=True
            )
        for t in terminals:
            pipe.zrangebyscore(
                self._key("t", t), start - TERMINAL_HISTORY_S, "+inf", withscores=True
            )
            pipe.zrangebyscore(self._key("tf", t), start - TERMINAL_HISTORY_S, "+inf",
                               withscores=True)  # fmt: skip
        replies = pipe.execute()
        out_c: dict[str, CustomerHistory] = {}
        for c, rows in zip(customers, replies[: len(customers)], strict=True):
            rows = [(m, ts) for m, ts in rows if m.split("|", 1)[0] not in own]
            parts = [member.split("|", 2) for member, _ in rows]
            out_c[c] = CustomerHistory(
                np.array([s for _, s in rows], dtype=float),
                np.array([float(p[1]) for p in parts], dtype=float),
                np.array([p[2] for p in parts], dtype=object),
            )
        rest = replies[len(customers) :]

        def times(rows: list[tuple[str, float]]) -> np.ndarray:
            return np.array([ts for m, ts in rows if m not in own], dtype=float)

        out_t = {
            t: TerminalHistory(times(rest[2 * i]), times(rest[2 * i + 1]))
            for i, t in enumerate(terminals)
        }
        return out_c, out_t

    def known(self, transaction_ids: Sequence[str]) -> set[str]:
        """Which of these transactions are stored already."""
        pipe = self.r.pipeline(transaction=False)
        for txid in transaction_ids:
            pipe.exists(self._key("x", txid))
        return {txid for txid, n in zip(transaction_ids, pipe.execute(), strict=True) if n}

    def ingest(self, transactions: Sequence[Transaction], labels: Iterable[bool] = ()) -> int:
        """Store new transactions (idempotent by transaction id), optionally with fraud labels.

        Args:
            transactions: any order; those already stored are skipped.
            labels: per transaction, True if confirmed fraudulent (history loads); empty = unknown.

        Returns:
            how many transactions were new.
        """
        labels = list(labels)
        seen = self.known([tx.transaction_id for tx in transactions])
        pipe = self.r.pipeline(transaction=False)
        newest_c: dict[str, float] = {}
        newest_t: dict[str, float] = {}
        written = 0
        for i, tx in enumerate(transactions):
            if tx.transaction_id in seen:
                continue
            seen.add(tx.transaction_id)
            written += 1
            c, t, x = (self._key("c", tx.customer_id), self._key("t", tx.terminal_id),
                       self._key("x", tx.transaction_id))  # fmt: skip
            pipe.zadd(c, {f"{tx.transaction_id}|{tx.amount!r}|{tx.terminal_id}": tx.ts})
            pipe.zadd(t, {tx.transaction_id: tx.ts})
            pipe.hset(x, mapping={"c": tx.customer_id, "t": tx.terminal_id, "ts": repr(tx.ts)})
            pipe.expire(x, TERMINAL_TTL_S)
            if labels and labels[i]:
                pipe.zadd(self._key("tf", tx.terminal_id), {tx.transaction_id: tx.ts})
            newest_c[tx.customer_id] = max(tx.ts, newest_c.get(tx.customer_id, tx.ts))
            newest_t[tx.terminal_id] = max(tx.ts, newest_t.get(tx.terminal_id, tx.ts))
        for cid, ts in newest_c.items():
            self._trim(pipe, self._key("c", cid), ts - CUSTOMER_TTL_S, CUSTOMER_TTL_S)
        for tid, ts in newest_t.items():
            for kind in ("t", "tf"):
                self._trim(pipe, self._key(kind, tid), ts - TERMINAL_TTL_S, TERMINAL_TTL_S)
        pipe.execute()
        return written

    @staticmethod
    def _trim(pipe: redis.client.Pipeline, key: str, before: float, ttl_s: int) -> None:
        pipe.zremrangebyscore(key, "-inf", f"({before}")
        pipe.expire(key, ttl_s)

    def add_labels(self, labels: Sequence[tuple[str, bool]]) -> int:
        """Record confirmed labels (feedback) for stored transactions.

        A fraudulent transaction joins its terminal's fraud set, where it counts towards terminal
        risk once it is 7 days old; a transaction confirmed genuine leaves it (corrections).

        Returns:
            how many of the transactions were found in the store.
        """
        pipe = self.r.pipeline(transaction=False)
        for txid, _ in labels:
            pipe.hmget(self._key("x", txid), "t", "ts")
        found = 0
        pipe_w = self.r.pipeline(transaction=False)
        for (txid, is_fraud), (terminal, ts) in zip(labels, pipe.execute(), strict=True):
            if terminal is None:
                continue
            found += 1
            key = self._key("tf", terminal)
            if is_fraud:
                pipe_w.zadd(key, {txid: float(ts)})
                pipe_w.expire(key, TERMINAL_TTL_S)
            else:
                pipe_w.zrem(key, txid)
        pipe_w.execute()
        return found

    def labels(self, transaction_ids: Sequence[str]) -> dict[str, bool | None]:
        """The fraud label the store holds for each transaction, e.g. to evaluate a shadow run.

        A transaction is fraudulent (True) if it is in its terminal's ``tf:<terminal>`` set (the
        terminal read from its ``x:<id>`` hash), from :meth:`ingest` labels or feedback
        (:meth:`add_labels`). A stored transaction that is not in that set is counted as genuine
        (False): feedback only reports frauds (the handbook's convention), so False means "no
        fraud confirmed", not "confirmed genuine". Read the labels only once the feedback delay
        has passed (7 days in the handbook), or recent frauds count as genuine; and within the
        38 days the keys are kept, after which a transaction is unknown (None).

        Args:
            transaction_ids: ids, any order; duplicates are answered once.

        Returns:
            ``{id: True | False | None}`` for every distinct id; None if the id is not stored.
            Two round trips: one pipeline of ``HGET``s, one of ``ZSCORE``s.

        Raises:
            redis.exceptions.RedisError: Redis cannot be reached.
        """
        ids = list(dict.fromkeys(transaction_ids))
        out: dict[str, bool | None] = dict.fromkeys(ids)
        if not ids:
            return out
        pipe = self.r.pipeline(transaction=False)
        for txid in ids:
            pipe.hget(self._key("x", txid), "t")
        known = [(txid, t) for txid, t in zip(ids, pipe.execute(), strict=True) if t is not None]
        if not known:
            return out
        pipe = self.r.pipeline(transaction=False)
        for txid, terminal in known:
            pipe.zscore(self._key("tf", terminal), txid)
        for (txid, _), score in zip(known, pipe.execute(), strict=True):
            out[txid] = score is not None
        return out

    def clear(self) -> int:
        """Delete this feature set's keys (never other keys, never FLUSHDB). Returns how many."""
        return clear_prefix(self.r, f"{self.base}:*")
