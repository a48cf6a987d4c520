"""The prediction log: what every public route scored, written off the request path.

:meth:`PredictionLog.record` only puts a tuple on a bounded in-memory queue (about a microsecond;
when the queue is full the record is dropped and counted in
``ml_prediction_log_dropped_total{model_name}``). A daemon thread drains the queue in batches and
writes each batch in one Redis pipeline.

Storage:

- ``<prefix>:predlog:v1:<model>``: a Redis stream, one entry per prediction, field ``r`` = the
  record as JSON; ``XADD MAXLEN ~ maxlen`` keeps about the newest ``maxlen`` entries.
- ``<fallback_dir>/<model>.jsonl``: JSON lines, the same records, while Redis is down; rotated to
  ``<model>.jsonl.1`` past ``fallback_max_bytes`` (the older ``.1`` is dropped and counted), so a
  model's files hold at most twice that.

A record is ``{"id", "model", "version", "inputs": {feature: scalar}, "prediction": {key: scalar},
"latency_ms", "ts"}`` with ``ts`` in seconds since the epoch (UTC) at :meth:`~PredictionLog.record`.

Recovery is by **replay**: once a write to Redis succeeds again (and every ``replay_interval_s``
while it is up, which also picks up files left by processes that have since exited), the drain
thread of any process sharing ``fallback_dir`` moves the files' records into the stream and
deletes the files. Replayed entries get new stream ids, so the stream is in arrival order, not
``ts`` order. Until the replay has run, :meth:`~PredictionLog.read` also reads the files and merges
them (deduplicated by record id), so nothing written during an outage is missing from a read.
Delivery is at least once: a pipeline that fails half-way is written to the file whole, and a
replay that fails half-way is repeated; :meth:`~PredictionLog.read` drops such duplicates.

Several worker processes may share ``fallback_dir``: appends, rotation and replay of one model's
files hold an exclusive ``flock`` on ``<model>.lock``. The log is fork-aware: a child process gets
an empty queue and starts its own drain thread on its first record.
"""

from __future__ import annotations

import atexit
import contextlib
import itertools
import json
import logging
import os
import queue
import threading
import time
import weakref
from collections import deque
from collections.abc import Iterator, Mapping
from datetime import date, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd
import redis

from finbento.feature_store import clear_prefix, connect
from finbento.spool import JsonlSpool, safe_name
from monitoring.metrics import PREDICTION_LOG_DROPPED, PREDICTION_LOG_FALLBACK

if TYPE_CHECKING:
    from finbento.settings import Settings

log = logging.getLogger(__name__)

STREAM = "predlog:v1"
DEFAULT_MAXLEN = 100_000
#: Columns of :meth:`PredictionLog.read` besides the inputs and ``prediction.*``.
META_COLUMNS = ("model_version", "latency_ms", "ts")
PREDICTION_PREFIX = "prediction."
_READ_PAGE = 2_000
_REPLAY_CHUNK = 1_000

_WAKE: Any = object()  # put on the queue by close() to wake the drain thread
_LIVE: weakref.WeakSet[PredictionLog] = weakref.WeakSet()


class PredictionLog:
    """A per-model prediction log in Redis streams, with a local file fallback.

    Args:
        url: Redis URL, e.g. ``redis://127.0.0.1:6379/0``.
        prefix: key prefix shared by finbento's keys (streams are ``<prefix>:predlog:v1:<model>``).
        fallback_dir: folder of the JSON-lines fallback files (created when first needed).
        maxlen: approximate number of records kept per model stream (``XADD MAXLEN ~``).
        queue_size: records buffered in memory before :meth:`record` drops.
        batch_size: most records written per pipeline.
        linger_s: how long the drain thread waits for a batch to fill once it has a record (s).
        fallback_max_bytes: size past which a fallback file is rotated (bytes).
        replay_interval_s: how often the drain thread looks for fallback files to replay (s).
        retry_s: first and longest wait before trying a Redis that failed again (s; doubles).
        timeout_s: Redis socket and connect timeout of the drain thread's writes (s).

    Nothing here raises into the caller of :meth:`record`; failures are logged and counted.
    """

    def __init__(
        self,
        url: str,
        prefix: str = "finbento",
        fallback_dir: str | Path = Path(".finbento") / "predlog",
        maxlen: int = DEFAULT_MAXLEN,
        *,
        queue_size: int = 10_000,
        batch_size: int = 500,
        linger_s: float = 0.05,
        fallback_max_bytes: int = 64 * 2**20,
        replay_interval_s: float = 30.0,
        retry_s: tuple[float, float] = (1.0, 30.0),
        timeout_s: float = 0.5,
    ) -> None:
        self.url = url
        self.prefix = prefix
        self.fallback_dir = Path(fallback_dir).resolve()
        self.maxlen = int(maxlen)
        self.queue_size = queue_size
        self.batch_size = batch_size
        self.linger_s = linger_s
        self.fallback_max_bytes = fallback_max_bytes
        self._spool = JsonlSpool(self.fallback_dir, fallback_max_bytes)
        self.replay_interval_s = replay_interval_s
        self.retry_s = retry_s
        self.timeout_s = timeout_s
        #: Records written to Redis, to the fallback file, and replayed from it (drain thread).
        self.written = self.fallback = self.replayed = 0
        self._r = connect(url, timeout_s)
        self._reader = connect(url, max(timeout_s, 5.0))
        self._init_runtime()
        _LIVE.add(self)

    def _init_runtime(self) -> None:
        """Queue, thread and Redis health state; also rebuilt in a forked child."""
        self._queue: queue.Queue[tuple] = queue.Queue(self.queue_size)
        self._thread: threading.Thread | None = None
        self._start_lock = threading.Lock()
        self._stop = threading.Event()
        self._closed = False
        self._ids = itertools.count()
        self._run_id = os.urandom(6).hex()
        self._down_until = 0.0
        self._backoff = self.retry_s[0]
        self._was_down = False
        self._next_replay = 0.0

    def key(self, model: str) -> str:
        """The Redis stream of ``model``."""
        return f"{self.prefix}:{STREAM}:{model}"

    # -- request path ---------------------------------------------------------------------------

    def record(
        self,
        model: str,
        version: str | int | None,
        inputs: Mapping[str, Any] | str,
        prediction: Mapping[str, Any] | Any,
        latency_ms: float,
    ) -> None:
        """Enqueue one prediction; never raises, never blocks.

        The dicts are serialized later by the drain thread: do not mutate them after the call.

        Args:
            model: model name (``credit-risk``, ``intent``, ...).
            version: the model version that scored.
            inputs: flat ``{feature: scalar}`` the model saw; a text model's text as a ``str``
                (stored as ``{"text": ...}``). Nested dicts are flattened with ``.``.
            prediction: flat ``{key: scalar}``; a scalar is stored as ``{"value": ...}``.
            latency_ms: time to answer, milliseconds.
        """
        try:
            if self._thread is None or self._closed:
                self._start()
            self._queue.put_nowait((model, version, inputs, prediction, latency_ms, time.time()))
        except Exception:  # queue.Full, closed log, anything: logging must not fail a request
            PREDICTION_LOG_DROPPED.labels(model).inc()

    def _start(self) -> None:
        with self._start_lock:
            if self._closed:
                raise RuntimeError("prediction log closed")
            if self._thread is None:
                thread = threading.Thread(target=self._run, name="prediction-log", daemon=True)
                thread.start()
                self._thread = thread

    # -- control --------------------------------------------------------------------------------

    def flush(self, timeout: float = 5.0) -> bool:
        """Wait until every record enqueued so far is written (to Redis or the file).

        Args:
            timeout: longest wait, seconds.

        Returns:
            True if everything was written, False on timeout.
        """
        q = self._queue
        end = time.monotonic() + timeout
        with q.all_tasks_done:
            while q.unfinished_tasks:
                left = end - time.monotonic()
                if left <= 0:
                    return False
                q.all_tasks_done.wait(left)
        return True

    def close(self, timeout: float = 5.0) -> bool:
        """Flush, then stop the drain thread; later records are dropped and counted.

        Returns:
            True if everything enqueued was written within ``timeout`` seconds.
        """
        done = self.flush(timeout)
        with self._start_lock:
            self._closed = True
        self._stop.set()
        with contextlib.suppress(queue.Full):
            self._queue.put_nowait(_WAKE)  # type: ignore[arg-type]
        if self._thread is not None:
            self._thread.join(timeout)
        return done

    def clear(self, model: str | None = None) -> int:
        """Delete the stream(s) and fallback files of ``model`` (all models if None).

        Only this log's own keys (``<prefix>:predlog:v1:*``) are touched, never ``FLUSHDB``.

        Returns:
            how many Redis keys were deleted.

        Raises:
            redis.exceptions.RedisError: Redis cannot be reached.
        """
        deleted = clear_prefix(self._reader, self.key(model or "*"))
        pattern = f"{_safe(model)}.jsonl*" if model else "*.jsonl*"
        if self.fallback_dir.is_dir():
            for path in self.fallback_dir.glob(pattern):
                path.unlink(missing_ok=True)
        return deleted

    # -- drain thread ---------------------------------------------------------------------------

    def _run(self) -> None:
        q = self._queue
        while True:
            batch: list[tuple] = []
            with contextlib.suppress(queue.Empty):
                first = q.get(timeout=0.5)
                if first is _WAKE:
                    q.task_done()
                else:
                    batch.append(first)
            if not batch and self._stop.is_set():
                return
            if batch:
                self._take(batch)
                if len(batch) < self.batch_size and self.linger_s > 0:
                    time.sleep(self.linger_s)
                    self._take(batch)
            try:
                if batch:
                    self._write(batch)
                self._maintain()
            except Exception:
                log.exception("prediction log: drain failed")
                for item in batch:
                    PREDICTION_LOG_DROPPED.labels(item[0]).inc()
            finally:
                for _ in batch:
                    q.task_done()

    def _take(self, batch: list[tuple]) -> None:
        q = self._queue
        with contextlib.suppress(queue.Empty):
            while len(batch) < self.batch_size:
                item = q.get_nowait()
                if item is _WAKE:
                    q.task_done()
                else:
                    batch.append(item)

    def _write(self, batch: list[tuple]) -> None:
        lines: dict[str, list[str]] = {}
        for model, version, inputs, prediction, latency_ms, ts in batch:
            try:
                line = json.dumps(
                    {
                        "id": f"{self._run_id}-{next(self._ids):x}",
                        "model": model,
                        "version": None if version is None else str(version),
                        "inputs": {"text": inputs} if isinstance(inputs, str) else dict(inputs),
                        "prediction": (
                            dict(prediction)
                            if isinstance(prediction, Mapping)
                            else {"value": prediction}
                        ),
                        "latency_ms": float(latency_ms),
                        "ts": ts,
                    },
                    default=_jsonable,
                    separators=(",", ":"),
                )
            except Exception:
                log.warning("prediction log: unserializable record of %s dropped", model)
                PREDICTION_LOG_DROPPED.labels(model).inc()
                continue
            lines.setdefault(model, []).append(line)
        if not lines:
            return
        if time.monotonic() >= self._down_until:
            try:
                self._xadd(lines)
            except redis.exceptions.RedisError as exc:
                self._mark_down(exc)
            else:
                self.written += sum(map(len, lines.values()))
                if self._was_down:  # back up: replay the fallback files now
                    self._was_down, self._backoff, self._next_replay = False, self.retry_s[0], 0.0
                    log.info("prediction log: Redis is back")
                return
        for model, model_lines in lines.items():
            self._append(model, model_lines)

    def _xadd(self, lines: Mapping[str, list[str]]) -> None:
        pipe = self._r.pipeline(transaction=False)
        for model, model_lines in lines.items():
            key = self.key(model)
            for line in model_lines:
                pipe.xadd(key, {"r": line}, maxlen=self.maxlen, approximate=True)
        pipe.execute()

    def _mark_down(self, exc: Exception) -> None:
        wait = self._backoff
        self._was_down = True
        self._down_until = time.monotonic() + wait
        self._backoff = min(wait * 2, self.retry_s[1])
        log.warning("prediction log: Redis unavailable (%s); fallback file for %.0f s", exc, wait)

    def _maintain(self) -> None:
        now = time.monotonic()
        if now < self._down_until or now < self._next_replay:
            return
        self._next_replay = now + self.replay_interval_s
        try:
            self.replay()
        except redis.exceptions.RedisError as exc:
            self._mark_down(exc)

    # -- fallback files -------------------------------------------------------------------------

    def _path(self, model: str) -> Path:
        return self._spool.path(model)

    def _locked(self, model: str, exclusive: bool = True) -> contextlib.AbstractContextManager:
        return self._spool.locked(model, exclusive)

    def _append(self, model: str, lines: list[str]) -> None:
        try:
            lost = self._spool.append(model, lines)
        except OSError:
            log.exception("prediction log: cannot write %s", self._path(model))
            PREDICTION_LOG_DROPPED.labels(model).inc(len(lines))
            return
        if lost:
            PREDICTION_LOG_DROPPED.labels(model).inc(lost)
            log.warning("prediction log: fallback full, %d of %s lost", lost, model)
        self.fallback += len(lines)
        PREDICTION_LOG_FALLBACK.labels(model).inc(len(lines))

    def _files(self, model: str) -> list[Path]:
        """A model's fallback files, oldest first."""
        return self._spool.files(model)

    def replay(self) -> int:
        """Move every fallback file's records into the Redis streams, then delete the files.

        Run by the drain thread; safe to call from elsewhere (holds the model's file lock).

        Returns:
            how many records were replayed.

        Raises:
            redis.exceptions.RedisError: Redis failed; the files stay for the next replay.
        """
        if not self.fallback_dir.is_dir():
            return 0
        models = {p.name.split(".jsonl", 1)[0] for p in self.fallback_dir.glob("*.jsonl*")}
        total = 0
        for model in sorted(models):
            with self._locked(model):
                for path in self._files(model):
                    total += self._replay_file(path)
                    path.unlink()
        self.replayed += total
        if total:
            log.info("prediction log: replayed %d records into Redis", total)
        return total

    def _replay_file(self, path: Path) -> int:
        count = 0
        chunk: dict[str, list[str]] = {}
        with open(path, encoding="utf-8", errors="replace") as f:
            for raw in f:
                line = raw.strip()
                if not line:
                    continue
                try:
                    model = json.loads(line)["model"]
                except (ValueError, KeyError, TypeError):
                    continue  # a line torn by a crash
                chunk.setdefault(model, []).append(line)
                count += 1
                if count % _REPLAY_CHUNK == 0:
                    self._xadd(chunk)
                    chunk = {}
        if chunk:
            self._xadd(chunk)
        return count

    def _read_files(self, model: str, window: int) -> list[dict]:
        tail: deque[str] = deque(maxlen=window)
        try:
            if not self._files(model):
                return []
            with self._locked(model, exclusive=False):
                for path in self._files(model):
                    with open(path, encoding="utf-8", errors="replace") as f:
                        tail.extend(line for line in f if line.strip())
        except OSError:
            log.exception("prediction log: cannot read fallback of %s", model)
        return [rec for rec in map(_loads, tail) if rec is not None]

    # -- reading --------------------------------------------------------------------------------

    def read(self, model: str, window: int) -> pd.DataFrame:
        """The newest ``window`` records of ``model`` as a DataFrame, one row per prediction.

        Reads the Redis stream (newest ``window`` entries by arrival) and merges the records still
        in fallback files (all of them if Redis is down), deduplicated by record id; keeps the
        newest ``window`` by ``ts``.

        Args:
            model: model name.
            window: most rows returned (> 0).

        Returns:
            rows in time order, **oldest first** (the last row is the newest); columns: each
            input feature (one named like a meta column or ``prediction.*`` is renamed
            ``input.<name>``), ``prediction.<key>`` per prediction key, ``model_version`` (str),
            ``latency_ms`` (float, ms) and ``ts`` (``datetime64[ns, UTC]``). Empty, with the meta
            columns, if there are no records.

        Raises:
            ValueError: ``window`` is not positive.
        """
        if window <= 0:
            raise ValueError(f"window must be positive, got {window}")
        records: list[dict] = []
        try:
            records = self._read_stream(model, window)
        except redis.exceptions.RedisError as exc:
            log.warning("prediction log: Redis unavailable for read (%s); files only", exc)
        records += self._read_files(model, window)
        unique = {rec.get("id"): rec for rec in records}
        newest = sorted(unique.values(), key=lambda rec: rec.get("ts", 0.0))[-window:]
        return _frame(newest)

    def _read_stream(self, model: str, window: int) -> list[dict]:
        out: list[dict] = []
        key, high = self.key(model), "+"
        while len(out) < window:
            count = min(_READ_PAGE, window - len(out))
            entries = self._reader.xrevrange(key, max=high, min="-", count=count)
            if not entries:
                break
            out.extend(rec for rec in (_loads(f.get("r", "")) for _, f in entries) if rec)
            high = f"({entries[-1][0]}"
            if len(entries) < count:
                break
        return out


# -- helpers ------------------------------------------------------------------------------------


_safe = safe_name


def _jsonable(value: Any) -> Any:
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, np.ndarray):
        return value.tolist()
    if isinstance(value, datetime | date):
        return value.isoformat()
    if hasattr(value, "model_dump"):
        return value.model_dump()
    return str(value)


def _loads(line: str) -> dict | None:
    try:
        rec = json.loads(line)
    except ValueError:
        return None
    return rec if isinstance(rec, dict) else None


def _flatten(values: Mapping[str, Any], prefix: str = "") -> Iterator[tuple[str, Any]]:
    for key, value in values.items():
        name = f"{prefix}{key}"
        if isinstance(value, Mapping):
            yield from _flatten(value, name + ".")
        else:
            yield name, value


def _frame(records: list[dict]) -> pd.DataFrame:
    rows = []
    for rec in records:
        row: dict[str, Any] = {}
        for name, value in _flatten(rec.get("inputs") or {}):
            clash = name in META_COLUMNS or name.startswith(PREDICTION_PREFIX)
            row[f"input.{name}" if clash else name] = value
        for name, value in _flatten(rec.get("prediction") or {}):
            row[PREDICTION_PREFIX + name] = value
        row["model_version"] = rec.get("version")
        row["latency_ms"] = rec.get("latency_ms")
        row["ts"] = rec.get("ts")
        rows.append(row)
    if not rows:
        frame = pd.DataFrame({c: pd.Series(dtype=object) for c in META_COLUMNS})
        frame["latency_ms"] = frame["latency_ms"].astype(float)
    else:
        frame = pd.DataFrame.from_records(rows)
        preds = [c for c in frame.columns if c.startswith(PREDICTION_PREFIX)]
        inputs = [c for c in frame.columns if c not in META_COLUMNS and c not in preds]
        frame = frame[[*inputs, *preds, *META_COLUMNS]]
        frame["latency_ms"] = frame["latency_ms"].astype(float)
    frame["ts"] = pd.to_datetime(frame["ts"].astype(float), unit="s", utc=True)
    return frame


# -- process-wide instance ----------------------------------------------------------------------

_SINGLETON: PredictionLog | None = None
_SINGLETON_LOCK = threading.Lock()


def get_prediction_log(settings: Settings | None = None) -> PredictionLog:
    """The process-wide prediction log, created on first use.

    Uses ``settings.redis_url``, ``settings.redis_prefix`` and ``<settings.state_dir>/predlog``
    (and ``prediction_log_maxlen``, ``prediction_log_queue_size``,
    ``prediction_log_fallback_mb`` where the settings have them). Later calls return the same
    instance whatever settings they pass.

    Args:
        settings: finbento settings; :func:`finbento.settings.get_settings` if None.
    """
    global _SINGLETON
    if _SINGLETON is None:
        with _SINGLETON_LOCK:
            if _SINGLETON is None:
                if settings is None:
                    from finbento.settings import get_settings

                    settings = get_settings()
                s = settings
                _SINGLETON = PredictionLog(
                    s.redis_url,
                    s.redis_prefix,
                    s.state_dir / "predlog",
                    getattr(s, "prediction_log_maxlen", DEFAULT_MAXLEN),
                    queue_size=getattr(s, "prediction_log_queue_size", 10_000),
                    fallback_max_bytes=int(getattr(s, "prediction_log_fallback_mb", 64) * 2**20),
                )
    return _SINGLETON


def reset_prediction_log() -> None:
    """Close and forget the process-wide log (tests)."""
    global _SINGLETON
    with _SINGLETON_LOCK:
        if _SINGLETON is not None:
            _SINGLETON.close(timeout=2.0)
        _SINGLETON = None


def _after_fork_in_child() -> None:
    for plog in list(_LIVE):
        plog._init_runtime()


def _flush_all_at_exit() -> None:
    for plog in list(_LIVE):
        if plog._thread is not None and plog._thread.is_alive():
            plog.flush(timeout=2.0)


os.register_at_fork(after_in_child=_after_fork_in_child)
atexit.register(_flush_all_at_exit)
