"""The promotion gate: a candidate becomes champion only if it clears the floors and the champion.

Both models are scored on the same held-out test split. The gate is a pure function of their
metrics and the :class:`~finbento.settings.GatePolicy`, so it is easy to test and to explain.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field

from finbento.settings import GatePolicy


@dataclass
class GateDecision:
    """What the gate decided and why.

    Attributes:
        promote: True when the candidate may become champion.
        reasons: one line per check, failed checks first when refused.
        candidate: the candidate's test metrics.
        champion: the current champion's metrics on the same test split (None if there is none).

    """

    promote: bool
    reasons: list[str] = field(default_factory=list)
    candidate: dict[str, float] = field(default_factory=dict)
    champion: dict[str, float] | None = None

    def to_dict(self) -> dict:
        """JSON-ready form, logged to MLflow with every decision."""
        return asdict(self)


class PromotionRefused(Exception):
    """Raised when a promotion is asked for but the gate refused it; carries the decision."""

    def __init__(self, decision: GateDecision):
        super().__init__("; ".join(r for r in decision.reasons if r.startswith("FAIL")))
        self.decision = decision


def decide(
    candidate: dict[str, float], champion: dict[str, float] | None, policy: GatePolicy
) -> GateDecision:
    """Run every check of the gate.

    Args:
        candidate: the candidate's metrics on the test split: ``roc_auc``, ``average_precision``,
            ``brier_score`` and ``demographic_parity_ratio__<attr>`` /
            ``equalized_odds_difference__<attr>`` for each attribute the policy names.
        champion: the champion's metrics on the same split, or None when there is no champion.
        policy: floors and margin.

    Returns:
        the :class:`GateDecision`; ``promote`` is True only if every check passed.

    """
    checks: list[tuple[bool, str]] = []

    def at_least(value: float | None, floor: float, what: str) -> None:
        ok = value is not None and value >= floor
        checks.append((ok, f"{what} = {_fmt(value)} (floor {floor:.3f})"))

    def at_most(value: float | None, ceiling: float, what: str) -> None:
        ok = value is not None and value <= ceiling
        checks.append((ok, f"{what} = {_fmt(value)} (ceiling {ceiling:.3f})"))

    at_least(candidate.get("roc_auc"), policy.min_roc_auc, "roc_auc")
    at_least(candidate.get("average_precision"), policy.min_average_precision, "average_precision")
    at_most(candidate.get("brier_score"), policy.max_brier_score, "brier_score")
    for attr, floor in policy.min_demographic_parity_ratio.items():
        key = f"demographic_parity_ratio__{attr}"
        at_least(candidate.get(key), floor, key)
    for attr, ceiling in policy.max_equalized_odds_difference.items():
        key = f"equalized_odds_difference__{attr}"
        at_most(candidate.get(key), ceiling, key)

    if champion is None:
        checks.append((True, "no champion yet: the candidate only needs the floors"))
    else:
        floor = champion["roc_auc"] - policy.max_roc_auc_drop
        checks.append(
            (
                candidate["roc_auc"] >= floor,
                f"roc_auc vs champion: {candidate['roc_auc']:.4f} vs {champion['roc_auc']:.4f} "
                f"(may be at most {policy.max_roc_auc_drop:.3f} lower)",
            )
        )
    promote = all(ok for ok, _ in checks)
    reasons = [f"{'PASS' if ok else 'FAIL'}: {text}" for ok, text in checks]
    reasons.sort(key=lambda r: not r.startswith("FAIL"))
    return GateDecision(
        promote, reasons, dict(candidate), None if champion is None else dict(champion)
    )


def _fmt(value: float | None) -> str:
    return "missing" if value is None else f"{value:.4f}"
