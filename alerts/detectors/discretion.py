"""Discretion benchmarks (自由裁量基准): discretion_out_of_range and discretion_outlier.

`detect` judges one case's penalty decisions against the catalog's tiers.
`outliers` judges a group of peer penalties (same item, same violation) and is
run by the stream over the whole group, so its verdict depends on the set of
peers and not on the order they arrived in.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from statistics import median
from typing import Mapping

from alerts.config import RuleConfig
from alerts.detectors import CaseView
from alerts.detectors.deadlines import local
from alerts.events import CaseEvent
from alerts.model import Finding, Rule


def penalty_of(event: CaseEvent) -> tuple[str, float] | None:
    """(violation_code, amount) of a decision that imposes a fine, else None."""
    amount = event.attrs.get("penalty_amount")
    violation = event.attrs.get("violation_code")
    if amount is None or not violation or event.attrs.get("decision") in ("no_penalty", "approve", "reject"):
        return None
    return str(violation), float(amount)


def detect(view: CaseView, now: datetime) -> list[Finding]:
    findings = []
    for event in view.timeline.decisions:
        penalty = penalty_of(event)
        if penalty is None:
            continue
        violation, amount = penalty
        tiers = view.item.discretion.get(violation)
        if not tiers:
            continue  # no benchmark for this violation: nothing to judge against
        claimed = event.attrs.get("discretion_tier")
        containing = [t.tier for t in tiers if t.contains(amount)]
        problem = None
        if not containing:
            problem = "outside every tier"
        elif claimed and claimed not in {t.tier for t in tiers}:
            problem = f"claims tier {claimed!r}, which the benchmark does not have"
        elif claimed and claimed not in containing:
            problem = f"outside the claimed tier {claimed!r}"
        if problem is None:
            continue
        findings.append(Finding(
            Rule.DISCRETION_OUT_OF_RANGE, event.case_id, event.occurred_at,
            {"violation_code": violation, "penalty_amount": amount, "claimed_tier": claimed,
             "tiers": [{"tier": t.tier, "min": t.min, "max": t.max} for t in tiers],
             "problem": problem, "decided_at": local(view, event.occurred_at), "event_id": event.event_id},
            subject=event.event_id, officer_id=event.officer_id))
    return findings


@dataclass(frozen=True, slots=True)
class Outlier:
    case_id: str
    amount: float
    median: float
    mad: float
    z: float
    peers: int


def outliers(amounts: Mapping[str, float], config: RuleConfig) -> dict[str, Outlier]:
    """Cases whose penalty is far from the peers' (robust z-score on median and MAD).

    With fewer than `outlier_min_peers` peers nothing is judged. When more than
    half the peers impose the same amount (MAD = 0), any other amount differing
    from the median by more than half of it is an outlier.
    """
    if len(amounts) < config.outlier_min_peers:
        return {}
    values = list(amounts.values())
    mid = median(values)
    mad = median(abs(v - mid) for v in values)
    out = {}
    for case_id, amount in amounts.items():
        if mad > 0:
            z = 0.6745 * (amount - mid) / mad
            flagged = abs(z) >= config.outlier_z
        else:
            z = float("inf") if amount != mid else 0.0
            flagged = mid > 0 and abs(amount - mid) > 0.5 * mid
        if flagged:
            out[case_id] = Outlier(case_id, amount, mid, mad, round(z, 3) if z != float("inf") else z,
                                   len(values))
    return out
