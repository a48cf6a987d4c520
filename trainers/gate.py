"""The promotion gate: a candidate becomes champion only if it clears the floors and the champion.

Both models are scored on the same held-out data. The gate is a pure function of their metrics
and a :class:`~finbento.settings.GatePolicy`, shared by every model, so it is easy to test and to
explain.
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
        candidate: the candidate's metrics on held-out data, with every metric the policy names.
        champion: the champion's metrics on the same data, or None when there is no champion.
        policy: floors, ceilings and the champion comparison.

    Returns:
        the :class:`GateDecision`; ``promote`` is True only if every check passed.
    """
    checks: list[tuple[bool, str]] = []
    for key, floor in policy.floors.items():
        value = candidate.get(key)
        ok = value is not None and value >= floor
        checks.append((ok, f"{key} = {_fmt(value)} (floor {floor:.3f})"))
    for key, ceiling in policy.ceilings.items():
        value = candidate.get(key)
        ok = value is not None and value <= ceiling
        checks.append((ok, f"{key} = {_fmt(value)} (ceiling {ceiling:.3f})"))
    if champion is None:
        checks.append((True, "no other champion to compare with: the floors decide"))
    else:
        key = policy.compare_metric
        new, old = candidate.get(key), champion.get(key)
        ok = new is not None and (old is None or new >= old - policy.max_drop)
        checks.append(
            (ok, f"{key} vs champion: {_fmt(new)} vs {_fmt(old)} "
                 f"(may be at most {policy.max_drop:.3f} lower)")
        )  # fmt: skip
    promote = all(ok for ok, _ in checks)
    reasons = [f"{'PASS' if ok else 'FAIL'}: {text}" for ok, text in checks]
    reasons.sort(key=lambda r: not r.startswith("FAIL"))
    champion_copy = None if champion is None else dict(champion)
    return GateDecision(promote, reasons, dict(candidate), champion_copy)


def _fmt(value: float | None) -> str:
    return "missing" if value is None else f"{value:.4f}"
