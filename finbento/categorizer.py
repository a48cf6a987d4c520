"""Scoring for the ``categorizer`` model: transaction description and amount -> spending category.

The app's taxonomy (``data/categories/taxonomy.csv``) is one list of 16 categories; every source
data set's labels map onto it through ``data/categories/mapping.csv`` (:func:`assign_categories`).
The model is a scikit-learn pipeline over the frame :func:`features` builds: the normalised
description (:func:`normalise`, the one place casing, Unicode forms and whitespace are handled) and
three amount features (money out, money in, log10 of 1 + |amount|). It is saved with skops (no
pickle) next to ``categorizer.json`` (model name, taxonomy, classes, feature columns).

The same :class:`CategoryClassifier` scores held-out rows in training, the champion in the
promotion gate and requests in the service, so the three cannot disagree.
"""

from __future__ import annotations

import json
import re
import unicodedata
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

MODEL_NAME = "categorizer"
MODEL_FILE = "model.skops"
META_FILE = "categorizer.json"
#: Characters of a description the model reads; the public schema refuses longer ones.
MAX_DESCRIPTION_CHARS = 1000
#: Columns of the frame the pipeline takes (see :func:`features`).
FEATURE_COLUMNS = ("text", "money_out", "money_in", "log_amount")
#: How many alternatives a prediction lists (its category first, as the intent model does).
ALTERNATIVES = 3
#: skops types the pipeline needs beyond skops' defaults (checked when saving).
TRUSTED_TYPES = [
    "collections.defaultdict",
    "sklearn.feature_extraction.text.TfidfTransformer",
    "sklearn.feature_extraction.text.TfidfVectorizer",
    "sklearn.compose._column_transformer._RemainderColsList",
    "numpy.float64",
]

_SPACE = re.compile(r"\s+")


def normalise(text: str) -> str:
    """The description as the model reads it: NFKC, case-folded, one space between words.

    Args:
        text: a raw description, any casing and whitespace.

    Returns:
        the normalised text, at most :data:`MAX_DESCRIPTION_CHARS` characters ("" if blank).
    """
    text = unicodedata.normalize("NFKC", text).casefold()
    return _SPACE.sub(" ", text).strip()[:MAX_DESCRIPTION_CHARS]


def features(descriptions: Sequence[str], amounts: Sequence[float]) -> pd.DataFrame:
    """The pipeline's input frame.

    Args:
        descriptions: n raw descriptions.
        amounts: n signed amounts in the account's currency (negative = money out).

    Returns:
        DataFrame of shape (n, 4), columns :data:`FEATURE_COLUMNS`: ``text`` (normalised),
        ``money_out`` and ``money_in`` (0/1 from the sign), ``log_amount`` (log10(1 + |amount|)).

    Raises:
        ValueError: if the lengths differ or an amount is not finite.
    """
    a = np.asarray(amounts, dtype=np.float64).reshape(-1)
    if len(a) != len(descriptions):
        raise ValueError(f"{len(descriptions)} descriptions but {len(a)} amounts")
    if not np.isfinite(a).all():
        raise ValueError("amounts must be finite")
    return pd.DataFrame({
        "text": [normalise(d) for d in descriptions],
        "money_out": (a < 0).astype(np.float64),
        "money_in": (a > 0).astype(np.float64),
        "log_amount": np.log10(1.0 + np.abs(a)),
    })  # fmt: skip


def load_taxonomy(folder: Path) -> list[str]:
    """The app's categories, in ``taxonomy.csv`` order.

    Raises:
        ValueError: if a category is listed twice or has no description.
    """
    df = pd.read_csv(Path(folder) / "taxonomy.csv", dtype=str, keep_default_na=False)
    if df["category"].duplicated().any() or (df["description"].str.strip() == "").any():
        raise ValueError("taxonomy.csv: categories must be unique and described")
    return df["category"].tolist()


def load_mapping(folder: Path) -> pd.DataFrame:
    """``mapping.csv``: columns ``source, source_label, category``.

    A household ``source_label`` may be ``Category/Subcategory``, which refines ``Category``.

    Raises:
        ValueError: if a (source, source_label) pair repeats or a category is not in the taxonomy.
    """
    df = pd.read_csv(Path(folder) / "mapping.csv", dtype=str, keep_default_na=False)
    if df.duplicated(["source", "source_label"]).any():
        raise ValueError("mapping.csv: a (source, source_label) pair is listed twice")
    unknown = sorted(set(df["category"]) - set(load_taxonomy(folder)))
    if unknown:
        raise ValueError(f"mapping.csv: categories not in taxonomy.csv: {unknown}")
    return df


def assign_categories(df: pd.DataFrame, mapping: pd.DataFrame) -> pd.Series:
    """The app category of each row of :func:`finbento.datasets.load_category_sources`.

    ``source_label/subcategory`` is looked up first, then ``source_label``.

    Returns:
        Series aligned with ``df``; NaN where neither key is in ``mapping`` (a test checks there
        is none).
    """
    keys = zip(mapping["source"], mapping["source_label"], strict=True)
    table = dict(zip(keys, mapping["category"], strict=True))
    out = [
        table.get((s, f"{label}/{sub}")) or table.get((s, label))
        for s, label, sub in zip(df["source"], df["source_label"], df["subcategory"], strict=True)
    ]
    return pd.Series(out, index=df.index, dtype=object)


@dataclass
class CategoryPrediction:
    """The category of one transaction.

    Attributes:
        category: the most likely category.
        confidence: its probability, 0-1.
        alternatives: the :data:`ALTERNATIVES` most likely (category, probability) pairs, most
            likely first (the first is ``category`` itself).
    """

    category: str
    confidence: float
    alternatives: list[tuple[str, float]]


@dataclass
class CategoryClassifier:
    """A fitted scikit-learn pipeline on :func:`features` and the taxonomy it predicts into.

    Attributes:
        pipeline: ``sklearn.pipeline.Pipeline`` with ``predict_proba``; ``classes_`` are
            category names.
        taxonomy: the app's categories (``classes_`` is a subset).
    """

    pipeline: object
    taxonomy: list[str]

    @property
    def classes(self) -> list[str]:
        """Categories in the column order of :meth:`probabilities`."""
        return [str(c) for c in self.pipeline.classes_]

    def probabilities(self, descriptions: Sequence[str], amounts: Sequence[float]) -> np.ndarray:
        """Class probabilities, shape (n, len(classes)), rows summing to 1.

        Raises:
            ValueError: as :func:`features`.
        """
        return self.pipeline.predict_proba(features(descriptions, amounts))

    def predict(
        self, descriptions: Sequence[str], amounts: Sequence[float]
    ) -> list[CategoryPrediction]:
        """Category, confidence and top :data:`ALTERNATIVES` categories of each transaction.

        Args:
            descriptions: n raw descriptions (normalised here).
            amounts: n signed amounts (negative = money out), any currency.

        Returns:
            n predictions, in input order.

        Raises:
            ValueError: as :func:`features`.
        """
        if len(descriptions) == 0:
            return []
        p = self.probabilities(descriptions, amounts)
        classes = self.classes
        order = np.argsort(-p, axis=1, kind="stable")[:, :ALTERNATIVES]
        return [
            CategoryPrediction(
                classes[row[0]], float(p[i, row[0]]), [(classes[j], float(p[i, j])) for j in row]
            )
            for i, row in enumerate(order)
        ]

    def save(self, directory: Path) -> None:
        """Write ``model.skops`` (skops: no pickle) and ``categorizer.json`` into ``directory``.

        Raises:
            ValueError: if the pipeline holds types beyond :data:`TRUSTED_TYPES`.
        """
        import skops.io as sio

        directory = Path(directory)
        directory.mkdir(parents=True, exist_ok=True)
        sio.dump(self.pipeline, directory / MODEL_FILE)
        untrusted = set(sio.get_untrusted_types(file=directory / MODEL_FILE)) - set(TRUSTED_TYPES)
        if untrusted:
            raise ValueError(f"pipeline holds types skops does not trust: {sorted(untrusted)}")
        (directory / META_FILE).write_text(json.dumps({
            "model": MODEL_NAME, "taxonomy": self.taxonomy, "classes": self.classes,
            "features": list(FEATURE_COLUMNS), "max_description_chars": MAX_DESCRIPTION_CHARS,
        }))  # fmt: skip

    @classmethod
    def load(cls, directory: Path) -> CategoryClassifier:
        """Load what :meth:`save` wrote.

        Raises:
            ValueError: if the model was trained on other features than this code defines, or
                predicts categories outside its taxonomy.
        """
        import skops.io as sio

        meta = json.loads((Path(directory) / META_FILE).read_text())
        if tuple(meta["features"]) != FEATURE_COLUMNS:
            raise ValueError("model was trained on other features than this code defines")
        pipeline = sio.load(Path(directory) / MODEL_FILE, trusted=TRUSTED_TYPES)
        classifier = cls(pipeline, list(meta["taxonomy"]))
        if not set(classifier.classes) <= set(classifier.taxonomy):
            raise ValueError("model predicts categories outside its taxonomy")
        return classifier
