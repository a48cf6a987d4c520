"""Trainer for ``recommender``: which financial product to offer a customer next.

Data (``settings.recommender_data_path``): what each Santander customer holds, the union of the
products flagged in any month of ``santander_products`` (a random sample of the Kaggle 2016
data) and the products first held in ``santander_interactions`` (customer ids are the same
``ncodpers``); and the UCI bank-marketing calls for the deposit propensity
(trainers/deposit_propensity.py).

Split: customers 60/20/20 into train, validation and test by a seeded permutation of their ids
(``settings.seed``), so no test customer's holding is ever trained on.

Protocol (leave one product out): for each validation or test customer holding two or more
products, one of them, drawn at random (seeded), is hidden; the model sees the rest and ranks
every product the customer does not hold. Reported: ``hit_at_3`` (the hidden product is in the
top 3), ``recall_at_3`` (equal to hit@3 with one hidden product) and ``map_at_7`` (the
competition's MAP@7; 1 / rank here). Also ``newest_*``: on test customers of
``santander_interactions`` who took products in more than one month, the products of their last
month are hidden (often several) and the earlier ones shown, closer to the competition's
"what will they add next" and where recall@3 differs from hit@3.

Candidates (:data:`CANDIDATES`): implicit's ALS and item-item (cosine, BM25) and cornac's EASE,
beside the popularity and co-occurrence baselines. All are fitted on train and scored on the
validation customers; the collaborative candidate with the best validation hit@3 (then MAP@7)
wins. Its score is mapped to a probability by Platt scaling on the validation cases, then it is
refitted on train + validation. The served model is the hybrid (finbento/recommender.py):
the winner, the deposit propensity and the eligibility rules. Offline, customers come without a
profile, so the hybrid ranks as collaborative filtering with the rules for an unknown age; that
is the ``hit_at_3`` the gate reads, next to the bare winner's and the baselines' figures on the
same test cases (``cf_*``, ``popularity_*``, ``co_occurrence_*``; ``<prefix>_newest_*`` for the
newest-month protocol) and every candidate's validation figures (``val_*__<candidate>``).
"""

from __future__ import annotations

import logging
import tempfile
import warnings
from dataclasses import dataclass
from pathlib import Path

import matplotlib.pyplot as plt
import mlflow
import numpy as np
import pandas as pd
from scipy import sparse
from sklearn.linear_model import LogisticRegression
from threadpoolctl import threadpool_limits

from finbento.calibration import PlattCalibrator
from finbento.collaborative import FACTORS, ITEM_WEIGHTS, CollaborativeScorer
from finbento.datasets import load_santander_interactions, load_santander_products
from finbento.deposit_propensity import LEFT_OUT
from finbento.recommender import (
    DEPOSIT_GROUP,
    MODEL_NAME,
    PRODUCT_CODES,
    EligibilityRules,
    Recommender,
    load_catalogue,
)
from finbento.settings import Settings
from trainers import deposit_propensity, registry, tracking
from trainers.evaluation import ranking_metrics
from trainers.gate import GateDecision
from trainers.pyfunc import ARTIFACT, export_directory, log_directory_model
from trainers.registry import TrainResult
from trainers.splits import Split

log = logging.getLogger(__name__)

PRODUCTS_FILE = "santander_products/products_sample.csv.gz"
INTERACTIONS_FILE = "santander_interactions/interactions.csv.gz"
SOURCES = ("santander_products", "santander_interactions")
BASELINES = ("popularity", "co_occurrence")
#: Candidates: name -> (kind, parameters) for :func:`fit_candidate`.
CANDIDATES: dict[str, tuple[str, dict[str, float]]] = {
    "popularity": ("popularity", {}),
    "co_occurrence": ("co_occurrence", {}),
    "implicit_cosine": ("implicit_cosine", {}),
    "implicit_bm25": ("implicit_bm25", {"K1": 1.2, "B": 0.75}),
    "implicit_als_f4": ("implicit_als", {"factors": 4, "regularization": 100.0, "alpha": 5.0}),
    "implicit_als_f8": ("implicit_als", {"factors": 8, "regularization": 100.0, "alpha": 5.0}),
    "cornac_ease_l100": ("cornac_ease", {"lamb": 100.0, "posB": False}),
    "cornac_ease_l500": ("cornac_ease", {"lamb": 500.0, "posB": False}),
    "cornac_ease_l500_pos": ("cornac_ease", {"lamb": 500.0, "posB": True}),
}
SHARES = {"train": 0.6, "validation": 0.2, "test": 0.2}
K, MAP_K = 3, 7


@dataclass
class Cases:
    """Evaluation cases: what a customer shows and what is hidden.

    Attributes:
        query: 0/1 holdings shown to the model, shape (m, 24).
        relevant: 0/1 hidden products, shape (m, 24), at least one per row.
        source: per case, the source(s) of the customer's holding (``santander_products``,
            ``santander_interactions`` or both joined by ``+``).
    """

    query: np.ndarray
    relevant: np.ndarray
    source: np.ndarray


@dataclass
class Prepared:
    """Holdings split by customer, the evaluation cases and the bank-marketing split."""

    holdings: dict[str, pd.DataFrame]
    validation: Cases
    test: Cases
    newest: Cases
    bank: Split


def load_holdings(settings: Settings) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Every customer's holding, and the interactions' first-ownership events.

    Returns:
        (DataFrame indexed by ``customer_id`` with the 24 products as 0/1 columns in
        :data:`PRODUCT_CODES` order and ``source``; the events of ``load_santander_interactions``).
    """
    folder = settings.recommender_data_path
    monthly = load_santander_products(folder / PRODUCTS_FILE)
    flags = monthly.groupby("customer_id")[list(PRODUCT_CODES)].max()
    events = load_santander_interactions(folder / INTERACTIONS_FILE)
    firsts = (pd.crosstab(events["customer_id"], events["product"]).clip(upper=1)
              .reindex(columns=list(PRODUCT_CODES), fill_value=0))  # fmt: skip
    holdings = flags.combine(firsts, np.maximum, fill_value=0).astype(int)
    source = pd.Series("", index=holdings.index)
    for name, part in zip(SOURCES, (flags, firsts), strict=True):
        inside = holdings.index.isin(part.index)
        source[inside] = np.where(source[inside] == "", name, source[inside] + "+" + name)
    return holdings.assign(source=source), events


def split_customers(ids: np.ndarray, seed: int) -> dict[str, np.ndarray]:
    """Customer ids into train/validation/test (60/20/20) by a seeded permutation."""
    order = np.random.default_rng(seed).permutation(np.sort(ids))
    cut = np.cumsum([round(SHARES[p] * len(order)) for p in ("train", "validation")])
    return dict(zip(SHARES, np.split(order, cut), strict=True))


def leave_one_out(holdings: pd.DataFrame, seed: int) -> Cases:
    """One product hidden at random from each customer holding two or more (seeded)."""
    x = holdings[list(PRODUCT_CODES)].to_numpy()
    keep = x.sum(axis=1) >= 2
    x, source = x[keep], holdings["source"].to_numpy()[keep]
    rng = np.random.default_rng(seed)
    hidden = np.array([rng.choice(np.flatnonzero(row)) for row in x], dtype=int)
    relevant = np.zeros_like(x)
    relevant[np.arange(len(x)), hidden] = 1
    return Cases(x - relevant, relevant, source)


def newest_products(events: pd.DataFrame, customers: np.ndarray) -> Cases:
    """The products of each customer's last month hidden, the earlier ones shown.

    Only customers of ``customers`` whose first-ownership events span two months or more.
    """
    ev = events[events["customer_id"].isin(customers)]
    months = ev.groupby("customer_id")["month"]
    last, first = months.transform("max"), months.transform("min")
    ev, last = ev[last > first], last[last > first]
    ids = np.sort(ev["customer_id"].unique())

    def table(rows: pd.DataFrame) -> np.ndarray:
        counts = pd.crosstab(rows["customer_id"], rows["product"]).clip(upper=1)
        return counts.reindex(index=ids, columns=list(PRODUCT_CODES), fill_value=0).to_numpy()

    newest = ev["month"] == last
    relevant, query = table(ev[newest]), table(ev[~newest])
    return Cases(np.where(relevant > 0, 0, query), relevant,
                 np.full(len(ids), "santander_interactions"))  # fmt: skip


def load_split(settings: Settings, sample: int | None = None) -> Prepared:
    """Load, split by customer and build the evaluation cases (module docstring).

    Args:
        settings: ``recommender_data_path`` and seed.
        sample: about this many customers in all, and as many bank-marketing rows (tests);
            sampled within each part, so a sampled test part lies inside the full one.
    """
    holdings, events = load_holdings(settings)
    parts = split_customers(holdings.index.to_numpy(), settings.seed)
    if sample is not None and sample < len(holdings):
        rng = np.random.default_rng(settings.seed)
        parts = {p: np.sort(rng.choice(ids, round(sample * SHARES[p]), replace=False))
                 for p, ids in parts.items()}  # fmt: skip
    rows = {p: holdings.loc[ids] for p, ids in parts.items()}
    return Prepared(
        holdings=rows, validation=leave_one_out(rows["validation"], settings.seed),
        test=leave_one_out(rows["test"], settings.seed + 1),
        newest=newest_products(events, parts["test"]),
        bank=deposit_propensity.load_split(settings, sample),
    )  # fmt: skip


def _matrix(rows: pd.DataFrame) -> np.ndarray:
    return rows[list(PRODUCT_CODES)].to_numpy(np.float64)


def _ease(x: np.ndarray, lamb: float, posB: bool, seed: int) -> np.ndarray:
    """EASE (cornac) item weights, reordered into :data:`PRODUCT_CODES` order."""
    import cornac

    users, items = np.nonzero(x)
    triplets = [(str(u), PRODUCT_CODES[i], 1.0) for u, i in zip(users, items, strict=True)]
    data = cornac.data.Dataset.from_uir(triplets, seed=seed)
    model = cornac.models.EASE(lamb=lamb, posB=posB, verbose=False, seed=seed).fit(data)
    ours = [j for j, c in enumerate(PRODUCT_CODES) if c in data.iid_map]
    theirs = [data.iid_map[PRODUCT_CODES[j]] for j in ours]
    weights = np.zeros((len(PRODUCT_CODES),) * 2)
    weights[np.ix_(ours, ours)] = np.asarray(model.B)[np.ix_(theirs, theirs)]
    return weights


def fit_candidate(name: str, x: np.ndarray, seed: int) -> CollaborativeScorer:
    """Fit candidate ``name`` of :data:`CANDIDATES` on holdings ``x`` (customers x 24, 0/1)."""
    kind, params = CANDIDATES[name]
    n = x.shape[1]
    if kind == "popularity":
        return CollaborativeScorer(ITEM_WEIGHTS, np.zeros((n, n)), x.mean(axis=0))
    if kind == "co_occurrence":
        weights = x.T @ x
        np.fill_diagonal(weights, 0)
        return CollaborativeScorer(ITEM_WEIGHTS, weights)
    if kind == "cornac_ease":
        return CollaborativeScorer(ITEM_WEIGHTS, _ease(x, params["lamb"], params["posB"], seed))
    from implicit.als import AlternatingLeastSquares
    from implicit.nearest_neighbours import BM25Recommender, CosineRecommender

    user_items = sparse.csr_matrix(x)
    with threadpool_limits(1, "blas"):  # implicit warns (and slows) with threaded BLAS
        if kind == "implicit_als":
            model = AlternatingLeastSquares(
                factors=int(params["factors"]), regularization=params["regularization"],
                alpha=params["alpha"], iterations=30, random_state=seed,
            )  # fmt: skip
            model.fit(user_items, show_progress=False)
            return CollaborativeScorer(FACTORS, factors=np.asarray(model.item_factors),
                                       regularization=params["regularization"],
                                       alpha=params["alpha"])  # fmt: skip
        model = (BM25Recommender(K=n, **params) if kind == "implicit_bm25"
                 else CosineRecommender(K=n))  # fmt: skip
        with warnings.catch_warnings():  # implicit's BM25 weighting hands itself a COO matrix
            warnings.filterwarnings("ignore", message="Method expects CSR input")
            model.fit(user_items, show_progress=False)
    weights = model.similarity.toarray()
    np.fill_diagonal(weights, 0)
    return CollaborativeScorer(ITEM_WEIGHTS, weights)


def _masked(scores: np.ndarray, query: np.ndarray) -> np.ndarray:
    return np.where(query > 0, -np.inf, scores)


def cf_metrics(scorer: CollaborativeScorer, cases: Cases) -> dict[str, float]:
    """:func:`ranking_metrics` of a bare collaborative model (held products excluded)."""
    return ranking_metrics(_masked(scorer.scores(cases.query), cases.query), cases.relevant,
                           K, MAP_K)  # fmt: skip


def select(p: Prepared, seed: int) -> tuple[str, dict[str, dict[str, float]]]:
    """Fit every candidate on train and score it on the validation cases.

    Returns:
        (the collaborative candidate with the best validation hit@3, then MAP@7; every
        candidate's validation metrics).
    """
    x = _matrix(p.holdings["train"])
    scores = {name: cf_metrics(fit_candidate(name, x, seed), p.validation) for name in CANDIDATES}
    collaborative = [n for n in CANDIDATES if n not in BASELINES]
    winner = max(
        collaborative, key=lambda n: (scores[n][f"hit_at_{K}"], scores[n][f"map_at_{MAP_K}"])
    )
    return winner, scores


def fit_calibrator(scorer: CollaborativeScorer, cases: Cases) -> PlattCalibrator:
    """Platt scaling of CF scores to P(product is the hidden one), on products not shown."""
    scores = scorer.scores(cases.query)
    shown = cases.query > 0
    lr = LogisticRegression(C=1e4).fit(scores[~shown].reshape(-1, 1), cases.relevant[~shown])
    return PlattCalibrator(a=float(lr.coef_[0, 0]), b=float(lr.intercept_[0]))


def evaluate(recommender: Recommender, p: Prepared) -> dict[str, float]:
    """The served model's test metrics, overall, per source and on the newest products.

    Returns:
        ``hit_at_3``, ``recall_at_3``, ``map_at_7`` and ``n`` of the hybrid (no profiles, so
        age-bound rules for an unknown age apply); the same per source (``<key>__<source>``) and
        with the newest-month protocol (``newest_<key>``); ``hit_at_3_over_popularity`` (hybrid
        minus the popularity of train + validation customers on the same cases); and the deposit
        propensity's ``deposit_*`` metrics on the bank-marketing test part.
    """
    metrics = ranking_metrics(recommender.rank(p.test.query), p.test.relevant, K, MAP_K)
    for source in SOURCES:
        mask = np.char.find(p.test.source.astype(str), source) >= 0
        if mask.any():
            part = ranking_metrics(recommender.rank(p.test.query[mask]), p.test.relevant[mask],
                                   K, MAP_K)  # fmt: skip
            metrics.update({f"{k}__{source}": v for k, v in part.items()})
    if len(p.newest.query):
        newest = ranking_metrics(recommender.rank(p.newest.query), p.newest.relevant, K, MAP_K)
        metrics.update({f"newest_{k}": v for k, v in newest.items()})
    popularity = fit_candidate("popularity", _train_validation(p), 0)
    metrics["hit_at_3_over_popularity"] = (
        metrics[f"hit_at_{K}"] - cf_metrics(popularity, p.test)[f"hit_at_{K}"]
    )
    if recommender.propensity is not None:
        metrics.update(deposit_propensity.evaluate(recommender.propensity, p.bank.test))
    return metrics


def _train_validation(p: Prepared) -> np.ndarray:
    return _matrix(pd.concat([p.holdings["train"], p.holdings["validation"]]))


def build(settings: Settings, p: Prepared, winner: str) -> Recommender:
    """The served hybrid: ``winner`` calibrated on validation, refitted on train + validation."""
    folder = settings.recommender_data_path
    calibrator = fit_calibrator(fit_candidate(winner, _matrix(p.holdings["train"]),
                                              settings.seed), p.validation)  # fmt: skip
    x = _train_validation(p)
    catalogue = load_catalogue(folder / "products.csv")
    bank = pd.concat([p.bank.train, p.bank.validation])
    return Recommender(
        cf=fit_candidate(winner, x, settings.seed), calibrator=calibrator,
        popularity=x.mean(axis=0), names=dict(zip(catalogue["product"], catalogue["name"],
                                                  strict=True)),
        deposits=tuple(catalogue.loc[catalogue["group"] == DEPOSIT_GROUP, "product"]),
        rules=EligibilityRules.load(folder / "eligibility.yaml"),
        propensity=deposit_propensity.fit(bank, settings.seed), candidate=winner,
    )  # fmt: skip


def load_scorer(version: str) -> Recommender:
    """A registered ``recommender`` version, as served (downloaded into a temporary folder)."""
    directory = Path(tempfile.mkdtemp(prefix="finbento-recommender-"))
    export(version, directory)
    return Recommender.load(directory)


def export(version: str, directory: Path) -> None:
    """Write a registered version's serving files into a folder (model store import)."""
    export_directory(MODEL_NAME, version, directory)


def gate(
    client: mlflow.MlflowClient,
    settings: Settings,
    version: str,
    p: Prepared,
    candidate_metrics: dict[str, float] | None = None,
    promote: bool = False,
) -> GateDecision:
    """Gate ``version`` against the champion on the same held-out customers (registry.run_gate)."""
    return registry.run_gate(
        client, MODEL_NAME, version, settings.recommender_gate,
        lambda v: evaluate(load_scorer(v), p), candidate_metrics, promote=promote,
    )  # fmt: skip


def plot_candidates(validation: dict[str, dict[str, float]], test: dict[str, float]) -> plt.Figure:
    """Bar chart: every candidate's validation hit@3 and MAP@7, and the served model's test ones."""
    names = [*validation, "served (test)"]
    rows = [*validation.values(), {k: test[k] for k in (f"hit_at_{K}", f"map_at_{MAP_K}")}]
    fig, ax = plt.subplots(figsize=(9, 4.5))
    y = np.arange(len(names))
    for offset, key in ((-0.2, f"hit_at_{K}"), (0.2, f"map_at_{MAP_K}")):
        ax.barh(y + offset, [r[key] for r in rows], height=0.4, label=key)
    ax.set_yticks(y, names)
    ax.set_xlim(0, 1)
    ax.set_title("recommender: leave one product out (validation customers; served on test)")
    ax.legend(loc="lower right")
    fig.tight_layout()
    return fig


def _example() -> pd.DataFrame:
    return pd.DataFrame([
        {"products_held": "ind_cco_fin_ult1", "k": 3, "age": 35, "job": "admin.",
         "marital": "married", "education": "university.degree"},
        {"products_held": "ind_cco_fin_ult1,ind_recibo_ult1", "k": 3, "age": 61, "job": "retired",
         "marital": "married", "education": "basic.9y"},
    ])  # fmt: skip


def train(
    settings: Settings,
    sample: int | None = None,
    promote: bool = True,
    on_stage: tracking.Stage = lambda s: None,
) -> TrainResult:
    """Choose, fit, log, register and (if the gate agrees) promote a new ``recommender`` version.

    Args:
        settings: data, MLflow and gate settings.
        sample: about this many customers and bank-marketing rows (tests); None = all (about
            48,000 customers, 32,775 calls).
        promote: run the gate and move ``champion`` if it passes.
        on_stage: called with a short label as each stage starts.

    Returns:
        the run id, the registered version, the test metrics and the gate's decision.
    """
    client = registry.configure(settings)
    on_stage("loading holdings and splitting customers")
    p = load_split(settings, sample)
    on_stage(f"scoring {len(CANDIDATES)} candidates on the validation customers")
    winner, val_scores = select(p, settings.seed)
    on_stage(f"refitting {winner} and the deposit propensity")
    recommender = build(settings, p, winner)
    on_stage("evaluating on the test customers")
    metrics = evaluate(recommender, p)
    x = _train_validation(p)
    for name in (*BASELINES, winner):
        scorer, prefix = fit_candidate(name, x, settings.seed), "cf" if name == winner else name
        for protocol, cases in (("", p.test), ("newest_", p.newest)):
            scored = cf_metrics(scorer, cases) if len(cases.query) else {}
            metrics.update({f"{prefix}_{protocol}{k}": v for k, v in scored.items() if k != "n"})
    on_stage("logging to MLflow")
    with (
        tempfile.TemporaryDirectory() as tmp,
        mlflow.start_run(run_name=f"{MODEL_NAME}-train") as run,
    ):
        directory = Path(tmp) / ARTIFACT
        recommender.save(directory)
        mlflow.set_tags({
            "model_name": MODEL_NAME, "data": ",".join([*SOURCES, "uci_bank_marketing"]),
            "split": "by customer 60/20/20 (seeded); leave one product out",
        })  # fmt: skip
        mlflow.log_params({
            "candidate": winner, **{f"candidate_{k}": v for k, v in CANDIDATES[winner][1].items()},
            "candidates": ",".join(CANDIDATES), "seed": settings.seed,
            **{f"n_{part}_customers": len(rows) for part, rows in p.holdings.items()},
            "n_validation_cases": len(p.validation.query), "n_test_cases": len(p.test.query),
            "n_newest_cases": len(p.newest.query), "n_bank_train": len(p.bank.train),
            "n_bank_test": len(p.bank.test), "calibrator_a": recommender.calibrator.a,
            "calibrator_b": recommender.calibrator.b,
            "propensity_weight": recommender.propensity_weight,
            "deposit_features_left_out": ",".join(LEFT_OUT),
        })  # fmt: skip
        mlflow.log_metrics({
            **metrics,
            **{f"val_{k}__{name}": v for name, m in val_scores.items() for k, v in m.items()
               if k != "n"},
        })  # fmt: skip
        fig = plot_candidates(val_scores, metrics)
        mlflow.log_figure(fig, "plots/candidates.png")
        plt.close(fig)
        bank_test = p.bank.test
        tracking.log_evaluation_plots(
            bank_test["y"].to_numpy(),
            recommender.propensity.pipeline.predict_proba(
                deposit_propensity.from_bank_marketing(bank_test))[:, 1],
        )  # fmt: skip
        for name in ("products.csv", "eligibility.yaml"):
            mlflow.log_artifact(str(settings.recommender_data_path / name), artifact_path="data")
        train_rows = p.holdings["train"]
        held = train_rows[list(PRODUCT_CODES)].to_numpy()
        tracking.log_reference(pd.DataFrame({
            "n_products_held": held.sum(axis=1),
            "products_held": [",".join(np.asarray(PRODUCT_CODES)[r > 0]) for r in held],
        }))  # fmt: skip
        info = log_directory_model(
            directory, "finbento.recommender:Recommender", MODEL_NAME, _example(),
            ["numpy", "pandas", "scikit-learn", "skops", "pyyaml"],
            metadata={"candidate": winner},
        )  # fmt: skip
    version = str(info.registered_model_version)
    on_stage("promotion gate")
    decision = registry.gate_and_promote(
        client, MODEL_NAME, version, metrics, settings.recommender_gate,
        lambda v: evaluate(load_scorer(v), p), promote=promote,
    )  # fmt: skip
    return TrainResult(run.info.run_id, version, metrics, decision)
