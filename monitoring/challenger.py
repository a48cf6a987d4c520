"""Is the challenger better than the champion? A paired bootstrap test on a shadow run.

A challenger that ran in shadow next to the champion scored the same transactions. Once their
fraud labels are known (:meth:`finbento.feature_store.TransactionStore.labels`, read after the
feedback delay), :func:`compare` tests the difference of a ranking metric between the two models
on those same transactions::

    pairs = paired_predictions(log.read("fraud", 100_000), champion_version="3",
                               challenger_version="4")
    labels = store.labels(pairs.index)
    known = pairs[[labels[i] is not None for i in pairs.index]]
    result = compare([labels[i] for i in known.index], known.champion, known.challenger)
    promote = result.significant

The test (Efron & Tibshirani 1993, *An Introduction to the Bootstrap*, Chapman & Hall):

- **Paired**: every bootstrap resample draws transactions, and both models' scores of a drawn
  transaction come with it, so the resampled difference keeps the correlation between the two
  models (which share most of their errors) and the test is much more sensitive than comparing
  two separate intervals.
- **Stratified**: positives and negatives are resampled separately (``n_positive`` from the
  positives, ``n - n_positive`` from the negatives), so every resample has both classes, the
  same base rate as the data, and a defined metric (as E&T's two-sample bootstrap, ch. 8).
- **Interval**: the percentile interval of the ``n_boot`` resampled differences (E&T ch. 13).
- **p-value**: two-sided, by inverting the percentile interval (E&T §15.4, on the relationship
  of hypothesis tests to confidence intervals): the share of resampled differences on the other
  side of 0 from the observed difference (resampled differences of exactly 0 count in it),
  doubled and capped at 1, with the ``(count + 1) / (n_boot + 1)`` correction so that a finite
  bootstrap never reports p = 0 (Davison & Hinkley 1997, *Bootstrap Methods and their
  Application*, ch. 4). This is *not* the shifted-null bootstrap of E&T ch. 16 (resampling
  from data moved onto the null); its advantage is that ``p < alpha`` and "the ``1 - alpha``
  interval excludes 0" agree, up to one resample at the boundary.

The metrics are sklearn's ``average_precision`` (``average_precision_score``: the area under the
precision-recall curve as a step function; the handbook's AUC-PR) and ``roc_auc``
(``roc_auc_score``). A resample's metric is computed without re-sorting: the positives are ranked
once per model, each negative is reduced to how many positives score above it, and a resample's
metric is then a sum over its positives of cumulative histograms of its negatives, ties grouped
as sklearn does (equal to sklearn on the resampled data, to 1e-15). The resamples run in chunks
of ``(chunk, n)`` integer arrays: 2,000 resamples of 20,000 transactions take well under a second
per metric.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any, Literal

import numpy as np
import pandas as pd
from numpy.typing import ArrayLike
from sklearn.metrics import average_precision_score, roc_auc_score

Metric = Literal["average_precision", "roc_auc"]
Better = Literal["challenger", "champion", "no difference"]
METRICS: dict[str, Any] = {
    "average_precision": average_precision_score,
    "roc_auc": roc_auc_score,
}
#: Cells (resamples x transactions) of one chunk of the bootstrap: bounds its memory (~100 MB).
_CHUNK_CELLS = 2_000_000


@dataclass(frozen=True)
class ChallengerComparison:
    """The result of :func:`compare`; ``difference`` and the interval are challenger - champion.

    Attributes:
        metric: ``average_precision`` or ``roc_auc``.
        n: transactions compared (both models scored them and their label is known).
        n_positive: how many of them are fraudulent.
        champion: the champion's metric on them.
        challenger: the challenger's metric on them.
        difference: ``challenger - champion``.
        ci_low: lower end of the ``1 - alpha`` percentile bootstrap interval of the difference.
        ci_high: its upper end.
        p_value: two-sided paired bootstrap p-value of "no difference" (see the module).
        significant: the challenger is significantly better: ``p_value < alpha`` and
            ``difference > 0``; the promotion rule.
        better: ``challenger`` (significant), ``champion`` (``p_value < alpha`` and
            ``difference < 0``) or ``no difference``.
        alpha: the significance level.
        n_boot: bootstrap resamples.
    """

    metric: str
    n: int
    n_positive: int
    champion: float
    challenger: float
    difference: float
    ci_low: float
    ci_high: float
    p_value: float
    significant: bool
    better: Better
    alpha: float = 0.05
    n_boot: int = 2000

    def to_dict(self) -> dict[str, Any]:
        """The fields as JSON-serializable builtins (``json.dumps`` takes the result as is)."""
        out = asdict(self)
        for key, value in out.items():
            if isinstance(value, np.generic):
                out[key] = value.item()
        return out


def paired_predictions(
    log_df: pd.DataFrame,
    champion_version: str | int,
    challenger_version: str | int,
    id_column: str = "prediction.transaction_id",
    score_column: str = "prediction.fraud_probability",
) -> pd.DataFrame:
    """Pair the champion's and the challenger's scores of the same transactions.

    Args:
        log_df: prediction-log rows (:meth:`monitoring.prediction_log.PredictionLog.read`), with
            ``id_column``, ``score_column`` and ``model_version``; other columns are ignored.
        champion_version: the champion's model version (compared as a string).
        challenger_version: the challenger's model version.
        id_column: the transaction id column.
        score_column: the score column (higher = more likely fraudulent).

    Returns:
        DataFrame of shape ``(m, 2)``, index ``transaction_id`` (str), float columns
        ``champion`` and ``challenger``: one row per transaction scored by both versions, in the
        order the champion first scored them. A transaction scored more than once by a version
        (a retry) keeps its last score, by ``ts`` when the frame has it, else by row order.
        Rows with no id or no score are ignored.

    Raises:
        ValueError: a column is missing, or the two versions are the same.
    """
    champion_version, challenger_version = str(champion_version), str(challenger_version)
    if champion_version == challenger_version:
        raise ValueError(f"champion and challenger are the same version {champion_version!r}")
    missing = [c for c in (id_column, score_column, "model_version") if c not in log_df.columns]
    if missing:
        raise ValueError(
            f"prediction log has no column(s) {missing}: the service must log the transaction "
            "id and the score with every prediction"
        )
    columns = [id_column, score_column, "model_version", *(["ts"] if "ts" in log_df else [])]
    df = log_df[columns].dropna(subset=[id_column, score_column])
    if "ts" in df:
        df = df.sort_values("ts", kind="stable")
    versions = df["model_version"].astype(str).to_numpy()
    ids = df[id_column].astype(str).to_numpy()
    values = df[score_column].to_numpy(dtype=float)

    def scores(version: str) -> pd.Series:
        mine = versions == version
        series = pd.Series(values[mine], index=ids[mine])
        last = series[~series.index.duplicated(keep="last")]
        return last.reindex(pd.unique(ids[mine]))  # in the order first scored

    out = pd.concat(
        {"champion": scores(champion_version), "challenger": scores(challenger_version)},
        axis=1,
        join="inner",
    )
    out.index.name = "transaction_id"
    return out


def compare(
    y_true: ArrayLike,
    champion_scores: ArrayLike,
    challenger_scores: ArrayLike,
    metric: Metric = "average_precision",
    n_boot: int = 2000,
    seed: int = 0,
    alpha: float = 0.05,
) -> ChallengerComparison:
    """Test whether the challenger's metric beats the champion's on the same transactions.

    A stratified, paired percentile bootstrap of ``metric(challenger) - metric(champion)``; see
    the module docstring for the method and its sources.

    Args:
        y_true: shape ``(n,)``, 1/True = fraudulent, 0/False = genuine.
        champion_scores: shape ``(n,)``, the champion's scores (higher = more likely fraud).
        challenger_scores: shape ``(n,)``, the challenger's scores of the same transactions.
        metric: ``average_precision`` (sklearn's ``average_precision_score``) or ``roc_auc``
            (``roc_auc_score``).
        n_boot: bootstrap resamples; the smallest p-value is ``2 / (n_boot + 1)`` (2,000: about
            0.001), so fewer than ``2 / alpha`` can never be significant.
        seed: seed of the resampling (``numpy.random.default_rng``); same inputs and seed, same
            result.
        alpha: significance level; the interval is ``1 - alpha``.

    Returns:
        The :class:`ChallengerComparison`.

    Raises:
        ValueError: the lengths differ, a label is not 0/1, a score is not finite, there are
            fewer than 2 positives or 2 negatives, or ``metric``, ``n_boot`` or ``alpha`` is
            invalid.
    """
    if metric not in METRICS:
        raise ValueError(f"metric must be one of {sorted(METRICS)}, got {metric!r}")
    if n_boot < 1:
        raise ValueError(f"n_boot must be at least 1, got {n_boot}")
    if not 0 < alpha < 1:
        raise ValueError(f"alpha must be in (0, 1), got {alpha}")
    y = _as_1d(y_true, "y_true")
    a = _as_1d(champion_scores, "champion_scores").astype(float)
    b = _as_1d(challenger_scores, "challenger_scores").astype(float)
    if not len(y) == len(a) == len(b):
        raise ValueError(
            f"lengths differ: y_true {len(y)}, champion_scores {len(a)}, challenger_scores {len(b)}"
        )
    if not np.isin(y, (0, 1)).all():
        raise ValueError("y_true must hold only 0/1 (or False/True) labels")
    y = y.astype(bool)
    if not (np.isfinite(a).all() and np.isfinite(b).all()):
        raise ValueError("scores must be finite (no NaN or inf)")
    n_pos = int(y.sum())
    n_neg = len(y) - n_pos
    if n_pos < 2 or n_neg < 2:
        raise ValueError(
            f"need at least 2 positives and 2 negatives to compare, got {n_pos} positive(s) and "
            f"{n_neg} negative(s) among {len(y)} labelled transactions"
        )

    score = METRICS[metric]
    champion, challenger = float(score(y, a)), float(score(y, b))
    difference = challenger - champion
    diffs = _bootstrap_differences(y, a, b, metric, n_boot, np.random.default_rng(seed))
    ci_low, ci_high = (float(q) for q in np.quantile(diffs, [alpha / 2, 1 - alpha / 2]))
    # the tail on the other side of 0 from the observed difference; ties at 0 count in it
    tail = int((diffs <= 0).sum()) if difference > 0 else int((diffs >= 0).sum())
    if difference == 0:
        tail = n_boot
    p_value = min(1.0, 2 * (tail + 1) / (n_boot + 1))
    significant = p_value < alpha and difference > 0
    better: Better = (
        "challenger"
        if significant
        else "champion"
        if p_value < alpha and difference < 0
        else "no difference"
    )
    return ChallengerComparison(
        metric=metric,
        n=len(y),
        n_positive=n_pos,
        champion=champion,
        challenger=challenger,
        difference=difference,
        ci_low=ci_low,
        ci_high=ci_high,
        p_value=p_value,
        significant=significant,
        better=better,
        alpha=alpha,
        n_boot=n_boot,
    )


def _as_1d(values: ArrayLike, name: str) -> np.ndarray:
    arr = np.asarray(values)
    if arr.ndim != 1:
        raise ValueError(f"{name} must be one-dimensional, got shape {arr.shape}")
    return arr


def _bootstrap_differences(
    y: np.ndarray,
    a: np.ndarray,
    b: np.ndarray,
    metric: str,
    n_boot: int,
    rng: np.random.Generator,
) -> np.ndarray:
    """``metric(b) - metric(a)`` on ``n_boot`` stratified resamples: shape ``(n_boot,)``.

    Each resample draws ``n_pos`` of the positives and ``n_neg`` of the negatives with
    replacement; the same draws score both models, which makes the bootstrap paired.
    """
    n_pos = int(y.sum())
    n_neg = len(y) - n_pos
    chunk = max(1, _CHUNK_CELLS // len(y))
    ranked_a, ranked_b = _Ranked(a, y), _Ranked(b, y)
    out = np.empty(n_boot)
    for start in range(0, n_boot, chunk):
        rows = min(chunk, n_boot - start)
        pos_counts = _row_counts(rng.integers(0, n_pos, size=(rows, n_pos)), n_pos)
        neg_draws = rng.integers(0, n_neg, size=(rows, n_neg))
        out[start : start + rows] = ranked_b.metric(pos_counts, neg_draws, metric)
        out[start : start + rows] -= ranked_a.metric(pos_counts, neg_draws, metric)
    return out


def _row_counts(values: np.ndarray, bins: int) -> np.ndarray:
    """Per row, how often each of ``0 .. bins - 1`` occurs: ``(rows, k)`` -> ``(rows, bins)``."""
    rows = values.shape[0]
    flat = (values + (np.arange(rows) * bins)[:, None]).ravel()
    return np.bincount(flat, minlength=rows * bins).reshape(rows, bins)


class _Ranked:
    """One model's scores, ranked once, for its metric on many resamples without re-sorting.

    The positives are sorted by descending score; each negative is summarised by how many
    positives score above it (strictly, and at or above). On a resample, the negatives drawn
    at or above the ``k``-th positive are then a cumulative histogram of those numbers, and
    both metrics are sums over the positives. Ties are grouped as sklearn does (one threshold
    per distinct score; a tied positive-negative pair counts 1/2 in the ROC AUC).

    Args:
        scores: shape ``(n,)``.
        y: shape ``(n,)``, bool.
    """

    def __init__(self, scores: np.ndarray, y: np.ndarray) -> None:
        positives, negatives = scores[y], scores[~y]
        self.n_pos = len(positives)
        #: positives in descending score order (indices into the positives)
        self.order = np.argsort(-positives, kind="stable")
        ascending = np.sort(positives)
        descending = ascending[::-1]
        #: per negative, how many positives score strictly above it / at or above it: it is at
        #: or above the k-th positive iff the first is <= k, strictly above iff the second is
        self.above = self.n_pos - np.searchsorted(ascending, negatives, side="right")
        self.at_or_above = self.n_pos - np.searchsorted(ascending, negatives, side="left")
        #: per sorted positive, the index of the last positive tied with it
        self.group_end = self.n_pos - 1 - np.searchsorted(ascending, descending, side="left")
        self.positive_ties = bool((self.group_end != np.arange(self.n_pos)).any())
        self.cross_ties = bool((self.above != self.at_or_above).any())

    def metric(self, pos_counts: np.ndarray, neg_draws: np.ndarray, metric: str) -> np.ndarray:
        """The metric per resample.

        Args:
            pos_counts: shape ``(rows, n_pos)``, how often each positive was drawn.
            neg_draws: shape ``(rows, m)``, the negatives drawn (indices into the negatives).
            metric: ``average_precision`` or ``roc_auc``.

        Returns:
            shape ``(rows,)``.
        """
        drawn_pos = pos_counts[:, self.order].astype(float)
        tps = np.cumsum(drawn_pos, axis=1)  # positives drawn at or above each positive
        if self.positive_ties:
            tps = tps[:, self.group_end]
        n_pos, n_neg = drawn_pos.sum(axis=1), neg_draws.shape[1]
        fps = self._negatives_before(neg_draws, self.above)  # negatives drawn at or above
        if metric == "average_precision":
            # sum over thresholds of (recall step) x precision, as average_precision_score
            drawn = tps + fps
            precision = np.divide(tps, drawn, out=np.zeros_like(tps), where=drawn > 0)
            return (drawn_pos * precision).sum(axis=1) / n_pos
        # P(positive > negative) + P(tie) / 2, as roc_auc_score
        strictly = self._negatives_before(neg_draws, self.at_or_above) if self.cross_ties else fps
        return (drawn_pos * (n_neg - (fps + strictly) / 2)).sum(axis=1) / (n_pos * n_neg)

    def _negatives_before(self, neg_draws: np.ndarray, rank: np.ndarray) -> np.ndarray:
        """``(rows, m)`` draws -> ``(rows, n_pos)``: per positive, draws with ``rank <= k``."""
        hist = _row_counts(rank[neg_draws], self.n_pos + 1)
        return np.cumsum(hist[:, :-1], axis=1).astype(float)
