"""Online feature store for card transactions, in Redis.

Keys (``<prefix>:<feature set>:...``, e.g. ``finbento:transactions:v1:c:596``):

| key | type | holds | kept |
|---|---|---|---|
| ``c:<customer>`` | sorted set, score = time | ``<tx id>|<amount>|<terminal>`` | 31 days |
| ``t:<terminal>`` | sorted set, score = time | transaction ids | 38 days |
| ``tf:<terminal>`` | sorted set, score = time | ids confirmed fraudulent | 38 days |
| ``x:<transaction>`` | hash | ``c``, ``t``, ``ts``: idempotency, feedback | 38 days |

When Redis cannot be reached, :class:`IngestSpool` keeps the transactions a scoring route should
have stored in a local JSON-lines spool and replays them into the store once Redis answers again.

Each write trims a sorted set to the history the features need (30 days per customer, 37 per
terminal, before the newest transaction) and refreshes its TTL. Reads and writes of a batch go in
one pipeline each. The feature-set name is versioned: a change in what is stored gets a new name
and both can live side by side. Nothing here ever runs ``FLUSHDB``; :meth:`clear` deletes the
feature set's own keys only.
"""

from __future__ import annotations

import json
import logging
import threading
import time
from collections.abc import Iterable, Sequence
from pathlib import Path

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
from finbento.spool import JsonlSpool
from monitoring.metrics import FEATURE_STORE_SPOOLED

log = logging.getLogger(__name__)

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


class IngestSpool:
    """Transactions whose feature-store write failed, kept on local disk and replayed later.

    :meth:`add` appends one JSON line per transaction to ``<folder>/<name>.jsonl`` (the
    shared :class:`finbento.spool.JsonlSpool`, as the prediction log's fallback: bounded,
    rotated past ``max_bytes``, ``flock``-ed so worker processes may share ``folder``). A daemon
    thread then replays the spool into the store, oldest line first, as soon as Redis answers
    (tried every ``retry_s``, doubling), and deletes what it replayed. :meth:`replay_soon`, called
    after any successful feature-store call, also picks up files that other or earlier processes
    left, at most every ``check_interval_s``. Ingest is idempotent by transaction id, so a replay
    repeated after a failure half-way (delivery is at least once) stores nothing twice.

    A line is ``{"id", "ts", "c", "t", "a"}`` (transaction id, epoch seconds UTC, customer,
    terminal, amount) plus ``"f": true`` for a transaction known to be fraudulent.

    The spool's name is the store's prefix and feature set (``finbento_transactions_v1``), so a
    spool is only replayed into the feature set it was written for.

    Counted in ``ml_feature_store_spooled_total{result}``: ``spooled``, ``replayed``, ``dropped``.

    Args:
        store: the feature store replayed into.
        folder: the spool's folder, e.g. ``<state_dir>/feature-spool`` (created when needed).
        max_bytes: size past which the spool file is rotated; the spool keeps at most twice this
            (bytes; 64 MiB holds about 600,000 transactions).
        retry_s: first and longest wait between replay attempts while Redis is down (s).
        check_interval_s: how often :meth:`replay_soon` looks for files on disk (s).
        chunk: transactions per :meth:`TransactionStore.ingest` call of a replay.
    """

    def __init__(
        self,
        store: TransactionStore,
        folder: str | Path,
        max_bytes: int = 64 * 2**20,
        *,
        retry_s: tuple[float, float] = (0.5, 10.0),
        check_interval_s: float = 30.0,
        chunk: int = 1_000,
    ) -> None:
        self.store = store
        self.spool = JsonlSpool(folder, max_bytes)
        #: The spool's name (made file-safe in file names): ``<prefix>:<feature set>``.
        self.name = store.base
        self.retry_s = retry_s
        self.check_interval_s = check_interval_s
        self.chunk = chunk
        #: Transactions spooled, replayed into the store (``replayed_new`` of them new), dropped.
        self.spooled = self.replayed = self.replayed_new = self.dropped = 0
        self._lock = threading.Lock()
        self._pending = False  # spooled here since the replay thread last claimed the files
        self._thread: threading.Thread | None = None
        self._next_check = 0.0

    def add(self, transactions: Sequence[Transaction], labels: Iterable[bool] = ()) -> int:
        """Spool transactions whose write failed and wake the replay thread; never raises.

        One local file append (no network): meant for the request path (in a worker thread).

        Args:
            transactions: in the order they arrived.
            labels: per transaction, True if confirmed fraudulent; empty = unknown.

        Returns:
            how many were spooled (0 if the file could not be written: they are dropped).
        """
        labels = list(labels)
        lines = []
        for i, tx in enumerate(transactions):
            rec = {"id": tx.transaction_id, "ts": tx.ts, "c": tx.customer_id,
                   "t": tx.terminal_id, "a": tx.amount}  # fmt: skip
            if labels and labels[i]:
                rec["f"] = True
            lines.append(json.dumps(rec, separators=(",", ":")))
        if not lines:
            return 0
        try:
            lost = self.spool.append(self.name, lines)
        except OSError:
            log.exception("feature spool: cannot write %s", self.spool.path(self.name))
            self._drop(len(lines))
            return 0
        if lost:
            log.warning("feature spool: full, %d older transactions lost", lost)
            self._drop(lost)
        self.spooled += len(lines)
        FEATURE_STORE_SPOOLED.labels("spooled").inc(len(lines))
        with self._lock:
            self._pending = True
            self._start()
        return len(lines)

    def replay_soon(self) -> None:
        """Start a replay if this process spooled something, or files wait on disk.

        Cheap (a flag; a directory listing at most every ``check_interval_s``): call it after
        every successful feature-store call.
        """
        now = time.monotonic()
        with self._lock:
            if self._thread is not None:
                return
            if not self._pending:
                if now < self._next_check:
                    return
                self._next_check = now + self.check_interval_s
                if not self.spool.files(self.name) and not self.spool.claimed(self.name):
                    return
            self._pending = True
            self._start()

    def _start(self) -> None:  # holds self._lock
        if self._thread is None:
            self._thread = threading.Thread(target=self._run, name="feature-spool", daemon=True)
            self._thread.start()

    def _run(self) -> None:
        wait = self.retry_s[0]
        while True:
            with self._lock:
                if not self._pending:
                    self._thread = None
                    return
                self._pending = False
            try:
                self.replay()
            except (redis.exceptions.RedisError, OSError) as exc:
                with self._lock:
                    self._pending = True
                log.info("feature spool: replay failed (%s); again in %.1f s", exc, wait)
                time.sleep(wait)
                wait = min(wait * 2, self.retry_s[1])
            else:
                wait = self.retry_s[0]

    def replay(self) -> int:
        """Move the spooled transactions into the store, oldest first, and delete the files.

        Run by the replay thread; safe to call from elsewhere. Appends are never blocked by a
        replay: the files are claimed (renamed) first and read without the lock. Files are
        claimed only once Redis answers a ``PING``, so while it is down the spool stays within
        its bound (only a replay that fails half-way leaves a claimed file beyond it).

        Returns:
            how many transactions were replayed (duplicates of stored ones included).

        Raises:
            redis.exceptions.RedisError: Redis failed; the claimed files stay for the next replay.
            BlockingIOError: another process is replaying (it holds the replay lock): retry later.
        """
        if not self.spool.files(self.name) and not self.spool.claimed(self.name):
            return 0
        self.store.r.ping()  # claim nothing while Redis is down: the spool stays bounded
        total = 0
        with self.spool.replay_lock(self.name):
            for path in self.spool.claim(self.name):
                total += self._replay_file(path)
                path.unlink(missing_ok=True)
        if total:
            log.info("feature spool: replayed %d transactions into the feature store", total)
        return total

    def _replay_file(self, path: Path) -> int:
        count = 0
        txs: list[Transaction] = []
        labels: list[bool] = []
        with open(path, encoding="utf-8", errors="replace") as f:
            for raw in f:
                if not raw.strip():
                    continue
                try:
                    rec = json.loads(raw)
                    txs.append(Transaction(str(rec["id"]), float(rec["ts"]), str(rec["c"]),
                                           str(rec["t"]), float(rec["a"])))  # fmt: skip
                    labels.append(bool(rec.get("f", False)))
                except (ValueError, KeyError, TypeError):
                    self._drop(1)  # a line torn by a crash
                    continue
                if len(txs) == self.chunk:
                    count += self._ingest(txs, labels)
                    txs, labels = [], []
        if txs:
            count += self._ingest(txs, labels)
        return count

    def _ingest(self, txs: list[Transaction], labels: list[bool]) -> int:
        self.replayed_new += self.store.ingest(txs, labels if any(labels) else ())
        self.replayed += len(txs)
        FEATURE_STORE_SPOOLED.labels("replayed").inc(len(txs))
        return len(txs)

    def _drop(self, n: int) -> None:
        self.dropped += n
        FEATURE_STORE_SPOOLED.labels("dropped").inc(n)

    def wait(self, timeout: float = 10.0) -> bool:
        """Wait until the replay thread has nothing left to do (tests, shutdown).

        Returns:
            True if it finished within ``timeout`` seconds.
        """
        end = time.monotonic() + timeout
        while time.monotonic() < end:
            with self._lock:
                thread = self._thread
            if thread is None:
                return True
            thread.join(min(0.05, max(end - time.monotonic(), 0)))
        with self._lock:
            return self._thread is None
