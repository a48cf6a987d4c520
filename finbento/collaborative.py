"""Collaborative filtering at serving time: numpy only, for holdings the model has never seen.

Every request sends the customer's holding, so every request is a new user. Two forms of a fitted
model score a holding (a 0/1 vector over the product catalogue):

- ``item_weights``: ``score = h @ W + b`` with an item x item weight matrix ``W`` and a bias ``b``.
  Popularity (``W = 0``, ``b`` = share of customers holding each product), co-occurrence counts,
  item-item similarities (implicit's cosine and BM25) and EASE (Steck 2019, cornac) all take
  this form.
- ``factors``: ALS item factors ``Y`` (n_items x f). The user vector is the fold-in
  least-squares solution of implicit-feedback ALS (Hu, Koren & Volinsky 2008),
  ``x = (YᵀY + Yᵀ(C - I)Y + λI)⁻¹ YᵀCp`` with ``p`` the 0/1 holding and ``C`` the confidences of
  the held products; ``score = Y x``. The confidence is ``c = alpha * h``, the ``implicit``
  library's convention (the paper writes ``1 + alpha * r``), so this is exactly what implicit's
  ``recalculate_user`` computes, with numpy alone.

Both explain a score by the held product that contributes most (:meth:`contributions`), which is
where a recommendation's reason comes from.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

ITEM_WEIGHTS = "item_weights"
FACTORS = "factors"
KINDS = (ITEM_WEIGHTS, FACTORS)


def fold_in(factors: np.ndarray, holding: np.ndarray, regularization: float, alpha: float):
    """ALS user vector of one holding, with the item factors held fixed.

    Args:
        factors: item factors ``Y``, shape (n_items, f).
        holding: 0/1 (or counts) over items, shape (n_items,).
        regularization: λ of the ALS fit.
        alpha: confidence scale of the ALS fit (``c = alpha * holding`` for held products).

    Returns:
        (user vector, shape (f,); ``A⁻¹``, shape (f, f), the inverse of the normal matrix, used to
        explain scores). A zero holding gives the zero vector.
    """
    y = np.asarray(factors, dtype=np.float64)
    h = np.asarray(holding, dtype=np.float64)
    held = np.flatnonzero(h)
    confidence = alpha * h[held]
    a = y.T @ y + (y[held].T * (confidence - 1.0)) @ y[held] + regularization * np.eye(y.shape[1])
    a_inv = np.linalg.inv(a)
    return a_inv @ (y[held].T @ confidence), a_inv


@dataclass
class CollaborativeScorer:
    """A fitted collaborative-filtering model in one of the two forms of the module docstring.

    Attributes:
        kind: ``item_weights`` or ``factors``.
        weights: ``W``, shape (n_items, n_items) (``item_weights``).
        bias: ``b``, shape (n_items,) (``item_weights``; zeros otherwise).
        factors: ALS item factors, shape (n_items, f) (``factors``).
        regularization: ALS λ (``factors``).
        alpha: ALS confidence scale (``factors``).
    """

    kind: str
    weights: np.ndarray | None = None
    bias: np.ndarray | None = None
    factors: np.ndarray | None = None
    regularization: float = 0.0
    alpha: float = 1.0

    def __post_init__(self) -> None:
        """Check the form's arrays are there and agree in shape."""
        if self.kind not in KINDS:
            raise ValueError(f"unknown kind {self.kind!r}; known: {KINDS}")
        if self.kind == ITEM_WEIGHTS:
            if self.weights is None or self.weights.shape[0] != self.weights.shape[1]:
                raise ValueError("item_weights needs a square weight matrix")
            if self.bias is None:
                self.bias = np.zeros(self.weights.shape[0])
        elif self.factors is None:
            raise ValueError("factors needs item factors")

    @property
    def n_items(self) -> int:
        """Products in the catalogue the model scores."""
        return (self.weights if self.kind == ITEM_WEIGHTS else self.factors).shape[0]

    def scores(self, holdings: np.ndarray) -> np.ndarray:
        """Scores of every product for each holding (held products included; the caller masks).

        Args:
            holdings: 0/1 matrix, shape (m, n_items).

        Returns:
            float64 array, shape (m, n_items); higher = more likely the next product.

        Raises:
            ValueError: if the holdings have another number of products.
        """
        h = np.asarray(holdings, dtype=np.float64)
        if h.ndim != 2 or h.shape[1] != self.n_items:
            raise ValueError(f"holdings must have shape (m, {self.n_items}), got {h.shape}")
        if self.kind == ITEM_WEIGHTS:
            return h @ self.weights + self.bias
        y = np.asarray(self.factors, dtype=np.float64)
        users = np.stack([fold_in(y, row, self.regularization, self.alpha)[0] for row in h])
        return users @ y.T if len(h) else np.zeros((0, self.n_items))

    def contributions(self, holding: np.ndarray) -> np.ndarray:
        """How much each product contributes to each product's score (implicit's ``explain``).

        Args:
            holding: 0/1 vector, shape (n_items,).

        Returns:
            array, shape (n_items, n_items): row i, column j = what held product i adds to the
            score of product j (zero rows for products not held). For ``item_weights``:
            ``h_i W[i, j]``; for ``factors``: ``c_i y_jᵀ A⁻¹ y_i`` (``c_i = alpha * h_i``).
        """
        h = np.asarray(holding, dtype=np.float64)
        if self.kind == ITEM_WEIGHTS:
            return h[:, None] * self.weights
        y = np.asarray(self.factors, dtype=np.float64)
        _, a_inv = fold_in(y, h, self.regularization, self.alpha)
        confidence = self.alpha * h
        return confidence[:, None] * (y @ a_inv @ y.T)

    def save(self, path: Path) -> None:
        """Write the arrays and scalars to one ``.npz`` file (no pickle)."""
        arrays = {"kind": np.array(self.kind), "regularization": np.array(self.regularization),
                  "alpha": np.array(self.alpha)}  # fmt: skip
        for name in ("weights", "bias", "factors"):
            if getattr(self, name) is not None:
                arrays[name] = np.asarray(getattr(self, name), dtype=np.float64)
        np.savez(path, **arrays)

    @classmethod
    def load(cls, path: Path) -> CollaborativeScorer:
        """Read what :meth:`save` wrote (``allow_pickle=False``)."""
        with np.load(path, allow_pickle=False) as f:
            return cls(
                kind=str(f["kind"]), weights=f.get("weights"), bias=f.get("bias"),
                factors=f.get("factors"),
                regularization=float(f["regularization"]), alpha=float(f["alpha"]),
            )  # fmt: skip
