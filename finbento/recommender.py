"""The ``recommender``: which of the bank's 24 products to offer a customer next.

A hybrid of two models that :class:`Recommender` blends per request:

- collaborative filtering on customer x product ownership (Santander product recommendation data;
  finbento/collaborative.py). Its scores are mapped to the probability that a product is the
  customer's next one by Platt scaling (finbento/calibration.py), fitted on held-out customers.
- term-deposit propensity from the client's profile (UCI bank marketing;
  finbento/deposit_propensity.py), for the deposit products of the catalogue.

Where both apply (a deposit product, a request with a profile) the log-odds add, as in naive
Bayes with the holding and the profile independent given the outcome:
``logit(p) = logit(p_cf) + w * (logit(p_deposit) - logit(base_rate))``: a client of average
propensity keeps the collaborative score, a keen one moves up. A customer with no product gets
the products most customers hold. Held products are never recommended, and the eligibility
rules (``eligibility.yaml``, data packaged with each model version) remove products the
customer's age does not allow. Each recommendation carries a short reason.

The same :class:`Recommender` scores held-out customers in training, the champion in the
promotion gate and requests in the service.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from finbento.calibration import PlattCalibrator
from finbento.collaborative import CollaborativeScorer
from finbento.deposit_propensity import DepositPropensity

MODEL_NAME = "recommender"
META_FILE = "recommender.json"
CF_FILE = "collaborative.npz"
PROPENSITY_FILE = "propensity.skops"
ELIGIBILITY_FILE = "eligibility.yaml"
#: The Santander catalogue, in the data's column order (``ind_<product>_ult1`` ownership flags).
PRODUCT_CODES = (
    "ind_ahor_fin_ult1", "ind_aval_fin_ult1", "ind_cco_fin_ult1", "ind_cder_fin_ult1",
    "ind_cno_fin_ult1", "ind_ctju_fin_ult1", "ind_ctma_fin_ult1", "ind_ctop_fin_ult1",
    "ind_ctpp_fin_ult1", "ind_deco_fin_ult1", "ind_deme_fin_ult1", "ind_dela_fin_ult1",
    "ind_ecue_fin_ult1", "ind_fond_fin_ult1", "ind_hip_fin_ult1", "ind_plan_fin_ult1",
    "ind_pres_fin_ult1", "ind_reca_fin_ult1", "ind_tjcr_fin_ult1", "ind_valo_fin_ult1",
    "ind_viv_fin_ult1", "ind_nomina_ult1", "ind_nom_pens_ult1", "ind_recibo_ult1",
)  # fmt: skip
#: Most recommendations one request may ask for.
MAX_K = 10
#: Catalogue group whose products the deposit propensity speaks for.
DEPOSIT_GROUP = "deposit"
#: Propensity lift (vs the base rate) from which a deposit's reason is its propensity.
HIGH_PROPENSITY_LIFT = 1.5
REASON_POPULAR = "popular with customers"
REASON_PROPENSITY = "high deposit propensity"
_EPS = 1e-6


def load_catalogue(path: Path) -> pd.DataFrame:
    """``products.csv``: columns ``product, name, group``, one row per product of the catalogue.

    Raises:
        ValueError: if the products are not exactly :data:`PRODUCT_CODES` or a name repeats.
    """
    df = pd.read_csv(path, dtype=str, keep_default_na=False)
    if sorted(df["product"]) != sorted(PRODUCT_CODES) or df["name"].duplicated().any():
        raise ValueError(f"{path}: products must be the 24 Santander codes, each named once")
    return df.set_index("product").loc[list(PRODUCT_CODES)].reset_index()


@dataclass(frozen=True)
class EligibilityRules:
    """Who may be offered each product, by age (years, bounds inclusive).

    Attributes:
        rules: product code -> ``{"min_age"?, "max_age"?, "age_required"?}``. A product with
            ``age_required`` is offered only when the request gives an age; other bounds are
            checked when it does. Products without a rule are offered to everyone.
    """

    rules: dict[str, dict[str, Any]] = field(default_factory=dict)

    @classmethod
    def load(cls, path: Path) -> EligibilityRules:
        """Read ``eligibility.yaml`` (``products: {code: {min_age, max_age, age_required}}``).

        Raises:
            ValueError: for an unknown product code, an unknown key or min_age > max_age.
        """
        import yaml

        rules = (yaml.safe_load(Path(path).read_text()) or {}).get("products") or {}
        for code, rule in rules.items():
            unknown = set(rule) - {"min_age", "max_age", "age_required"}
            if code not in PRODUCT_CODES or unknown:
                raise ValueError(f"{path}: bad rule for {code!r} ({sorted(unknown)})")
            if rule.get("min_age", 0) > rule.get("max_age", 200):
                raise ValueError(f"{path}: {code}: min_age above max_age")
        return cls({c: dict(r) for c, r in rules.items()})

    def allowed(self, age: float | None) -> np.ndarray:
        """Which products a customer of ``age`` (None = not given) may be offered.

        Returns:
            bool array, shape (24,), in :data:`PRODUCT_CODES` order.
        """
        out = np.ones(len(PRODUCT_CODES), dtype=bool)
        for j, code in enumerate(PRODUCT_CODES):
            rule = self.rules.get(code)
            if not rule:
                continue
            if age is None:
                out[j] = not rule.get("age_required", False)
            else:
                out[j] = rule.get("min_age", -np.inf) <= age <= rule.get("max_age", np.inf)
        return out


def holding_matrix(holdings: Sequence[Sequence[str]]) -> np.ndarray:
    """0/1 matrix of holdings, shape (m, 24), columns in :data:`PRODUCT_CODES` order.

    Raises:
        ValueError: naming the codes that are not in the catalogue.
    """
    index = {c: j for j, c in enumerate(PRODUCT_CODES)}
    unknown = sorted({c for h in holdings for c in h} - set(index))
    if unknown:
        raise ValueError(f"unknown product codes: {unknown}")
    out = np.zeros((len(holdings), len(PRODUCT_CODES)))
    for i, held in enumerate(holdings):
        out[i, [index[c] for c in held]] = 1.0
    return out


def _logit(p: np.ndarray) -> np.ndarray:
    p = np.clip(p, _EPS, 1 - _EPS)
    return np.log(p / (1 - p))


@dataclass
class Recommendation:
    """One product to offer.

    Attributes:
        product: its code, e.g. ``ind_tjcr_fin_ult1``.
        name: its English name.
        score: probability-like score, 0-1 (the ranking's key).
        reason: why, in a few words.
    """

    product: str
    name: str
    score: float
    reason: str


@dataclass
class Recommender:
    """Collaborative filtering, deposit propensity and eligibility rules, blended per request.

    Attributes:
        cf: the collaborative-filtering model.
        calibrator: CF score -> probability that the product is the customer's next one.
        popularity: share of training customers holding each product, shape (24,).
        names: product code -> English name.
        deposits: codes of the deposit products (propensity applies).
        rules: the eligibility rules.
        propensity: the deposit-propensity model (None: collaborative only).
        propensity_weight: ``w`` of the module docstring (0 = ignore the profile).
        candidate: name of the CF candidate chosen in training.
    """

    cf: CollaborativeScorer
    calibrator: PlattCalibrator
    popularity: np.ndarray
    names: dict[str, str]
    deposits: tuple[str, ...]
    rules: EligibilityRules
    propensity: DepositPropensity | None = None
    propensity_weight: float = 1.0
    candidate: str = ""

    def scores(
        self, holdings: np.ndarray, profiles: Sequence[Mapping[str, Any] | None] | None = None
    ) -> tuple[np.ndarray, np.ndarray]:
        """Hybrid scores of every product, before held and ineligible products are removed.

        Args:
            holdings: 0/1 matrix, shape (m, 24).
            profiles: m profiles (bank-marketing fields) or None each; None = no profiles.

        Returns:
            (scores in [0, 1], shape (m, 24); deposit lift, shape (m,), NaN without a profile).
        """
        h = np.asarray(holdings, dtype=np.float64)
        p = self.calibrator.probability(self.cf.scores(h))
        empty = h.sum(axis=1) == 0
        p[empty] = self.popularity
        lift = np.full(len(h), np.nan)
        rows = [i for i, pr in enumerate(profiles or []) if pr is not None]
        if self.propensity is not None and rows and self.propensity_weight > 0:
            q = self.propensity.probability([profiles[i] for i in rows])
            lift[rows] = self.propensity.lift(q)
            shift = self.propensity_weight * (_logit(q) - _logit(self.propensity.base_rate))
            cols = [PRODUCT_CODES.index(c) for c in self.deposits]
            block = _logit(p[np.ix_(rows, cols)]) + shift[:, None]
            p[np.ix_(rows, cols)] = 1 / (1 + np.exp(-block))
        return p, lift

    def allowed(
        self, holdings: np.ndarray, profiles: Sequence[Mapping[str, Any] | None] | None = None
    ) -> np.ndarray:
        """Products that may be offered: not held and eligible; bool, shape (m, 24)."""
        ages = [None if not pr or pr.get("age") is None else float(pr["age"])
                for pr in (profiles or [None] * len(holdings))]  # fmt: skip
        eligible = np.stack([self.rules.allowed(a) for a in ages]) if ages else holdings > 0
        return (np.asarray(holdings) == 0) & eligible

    def rank(
        self, holdings: np.ndarray, profiles: Sequence[Mapping[str, Any] | None] | None = None
    ) -> np.ndarray:
        """Scores with held and ineligible products at -inf, shape (m, 24) (for evaluation)."""
        scores, _ = self.scores(holdings, profiles)
        return np.where(self.allowed(holdings, profiles), scores, -np.inf)

    def _reasons(self, holding: np.ndarray, products: list[int], lift: float) -> list[str]:
        """One reason per recommended product.

        The deposit propensity when it is high; else the held product that adds most to the
        score ("often held with your ..."); else popularity.
        """
        contributions = self.cf.contributions(holding) if holding.any() else None
        out = []
        for j in products:
            if PRODUCT_CODES[j] in self.deposits and lift >= HIGH_PROPENSITY_LIFT:
                out.append(REASON_PROPENSITY)
                continue
            if contributions is not None:
                column = np.where(holding > 0, contributions[:, j], -np.inf)
                best = int(np.argmax(column))
                if column[best] > 0:
                    out.append(f"often held with your {self.names[PRODUCT_CODES[best]].lower()}")
                    continue
            out.append(REASON_POPULAR)
        return out

    def recommend(
        self,
        holdings: Sequence[Sequence[str]],
        profiles: Sequence[Mapping[str, Any] | None] | None = None,
        k: Sequence[int] | int = 3,
    ) -> list[list[Recommendation]]:
        """The top products of each customer, best first.

        Args:
            holdings: m holdings, each a list of product codes (duplicates are ignored).
            profiles: m profiles (bank-marketing fields, any subset) or None each.
            k: recommendations per customer (1-:data:`MAX_K`), one for all or one each.

        Returns:
            m lists of at most k recommendations (fewer when fewer products may be offered).

        Raises:
            ValueError: naming unknown product codes, or for an unknown profile category.
        """
        h = holding_matrix(holdings)
        ks = [k] * len(h) if isinstance(k, int) else list(k)
        scores, lift = self.scores(h, profiles)
        scores = np.where(self.allowed(h, profiles), scores, -np.inf)
        order = np.argsort(-scores, axis=1, kind="stable")
        out = []
        for i, row in enumerate(order):
            top = [int(j) for j in row[: ks[i]] if np.isfinite(scores[i, j])]
            reasons = self._reasons(h[i], top, lift[i])
            out.append([
                Recommendation(PRODUCT_CODES[j], self.names[PRODUCT_CODES[j]],
                               float(scores[i, j]), reason)
                for j, reason in zip(top, reasons, strict=True)
            ])  # fmt: skip
        return out

    def predict_frame(self, frame: pd.DataFrame) -> pd.DataFrame:
        """Recommend for each row (MLflow pyfunc entry point).

        Args:
            frame: ``products_held`` (comma-separated codes, "" for none), optional ``k``
                (default 3) and any bank-marketing profile columns (NaN = not given).

        Returns:
            DataFrame with ``row, rank, product, name, score, reason``.
        """
        holdings = [[c for c in str(v).split(",") if c] for v in frame["products_held"]]
        columns = [c for c in frame.columns if c not in ("products_held", "k")]
        profiles = [{c: r[c] for c in columns if not pd.isna(r[c])} or None
                    for r in frame.to_dict("records")]  # fmt: skip
        ks = [int(v) for v in frame["k"]] if "k" in frame else 3
        rows = [(i, n + 1, r.product, r.name, r.score, r.reason)
                for i, recs in enumerate(self.recommend(holdings, profiles, ks))
                for n, r in enumerate(recs)]  # fmt: skip
        return pd.DataFrame(rows, columns=["row", "rank", "product", "name", "score", "reason"])

    def save(self, directory: Path) -> None:
        """Write the collaborative arrays, the propensity pipeline (skops), the rules and meta.

        Raises:
            ValueError: if the propensity pipeline holds types skops does not trust.
        """
        import yaml

        directory = Path(directory)
        directory.mkdir(parents=True, exist_ok=True)
        self.cf.save(directory / CF_FILE)
        (directory / ELIGIBILITY_FILE).write_text(yaml.safe_dump({"products": self.rules.rules}))
        meta: dict[str, Any] = {
            "model": MODEL_NAME, "products": list(PRODUCT_CODES), "names": self.names,
            "deposits": list(self.deposits), "popularity": [float(v) for v in self.popularity],
            "calibrator": self.calibrator.to_dict(), "propensity_weight": self.propensity_weight,
            "candidate": self.candidate, "propensity": None,
        }  # fmt: skip
        if self.propensity is not None:
            import skops.io as sio

            from finbento.deposit_propensity import FEATURE_COLUMNS, TRUSTED_TYPES

            sio.dump(self.propensity.pipeline, directory / PROPENSITY_FILE)
            untrusted = set(sio.get_untrusted_types(file=directory / PROPENSITY_FILE))
            if untrusted - set(TRUSTED_TYPES):
                raise ValueError(f"untrusted types in the pipeline: {sorted(untrusted)}")
            meta["propensity"] = {"base_rate": self.propensity.base_rate,
                                  "features": list(FEATURE_COLUMNS)}  # fmt: skip
        (directory / META_FILE).write_text(json.dumps(meta, indent=1))

    @classmethod
    def load(cls, directory: Path) -> Recommender:
        """Load what :meth:`save` wrote.

        Raises:
            ValueError: if the model has another catalogue or propensity features than this
                code defines.
        """
        directory = Path(directory)
        meta = json.loads((directory / META_FILE).read_text())
        if tuple(meta["products"]) != PRODUCT_CODES:
            raise ValueError("model was trained on another product catalogue")
        propensity = None
        if meta["propensity"] is not None:
            import skops.io as sio

            from finbento.deposit_propensity import FEATURE_COLUMNS, TRUSTED_TYPES

            if tuple(meta["propensity"]["features"]) != FEATURE_COLUMNS:
                raise ValueError("propensity model was trained on other features")
            pipeline = sio.load(directory / PROPENSITY_FILE, trusted=TRUSTED_TYPES)
            propensity = DepositPropensity(pipeline, float(meta["propensity"]["base_rate"]))
        return cls(
            cf=CollaborativeScorer.load(directory / CF_FILE),
            calibrator=PlattCalibrator.from_dict(meta["calibrator"]),
            popularity=np.asarray(meta["popularity"], dtype=np.float64),
            names=dict(meta["names"]), deposits=tuple(meta["deposits"]),
            rules=EligibilityRules.load(directory / ELIGIBILITY_FILE), propensity=propensity,
            propensity_weight=float(meta["propensity_weight"]), candidate=meta["candidate"],
        )  # fmt: skip
