"""Discretion benchmarks (自由裁量基准): discretion_out_of_range and discretion_outlier.

`detect` judges one case's penalty decisions against the catalog's tiers, and
turns the verdicts of the decisions' peer groups (alerts/peers.py, judged by the
stream over each group) into discretion_outlier findings.
"""

from __future__ import annotations

import math
from datetime import datetime

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


def tier_key(name: str) -> str:
    """A tier's name as a source may write it: spaces around it or doubled inside, and capitals
    (`"normal "`, `"Normal"` for `normal`), are the same tier, as spaces around a violation code are
    the same code (`Item.tiers`). Compared character for character, a fine inside the tier it
    claimed was a red card "outside the claimed tier" (found by a black-box test)."""
    return " ".join(name.split()).casefold()


def detect(view: CaseView, now: datetime) -> list[Finding]:
    return _out_of_range(view) + outlier_findings(view)


def _out_of_range(view: CaseView) -> list[Finding]:
    findings = []
    for event in view.timeline.decisions:
        penalty = penalty_of(event)
        if penalty is None:
            continue
        violation, amount = penalty
        tiers = view.item.tiers(violation)
        if not tiers:
            continue  # no benchmark for this violation: nothing to judge against
        claimed = event.attrs.get("discretion_tier")
        named = tier_key(claimed) if claimed else ""
        containing = {tier_key(t.tier) for t in tiers if t.contains(amount)}
        problem = None
        if not containing:
            problem = "outside every tier"
        elif named and named not in {tier_key(t.tier) for t in tiers}:
            problem = f"claims tier {claimed!r}, which the benchmark does not have"
        elif named and named not in containing:
            problem = f"outside the claimed tier {claimed!r}"
        if problem is None:
            continue
        findings.append(Finding(
            Rule.DISCRETION_OUT_OF_RANGE, event.case_id, event.occurred_at,
            {"violation_code": violation, "penalty_amount": amount, "claimed_tier": claimed,
             "tiers": [{"tier": t.tier, "min": _bound(t.min), "max": _bound(t.max)} for t in tiers],
             "problem": problem, "decided_at": local(view, event.occurred_at), "event_id": event.event_id},
            subject=event.event_id, officer_id=event.officer_id))
    return findings


def outlier_findings(view: CaseView) -> list[Finding]:
    """discretion_outlier for each of the case's decisions its peer group judged an outlier
    (alerts/peers.py judges; the verdicts reach the case as facts, `view.verdicts`)."""
    findings = []
    for event in view.timeline.decisions:
        evidence = view.verdicts.get(event.event_id)
        if evidence is None or penalty_of(event) is None:
            continue
        times = {k: local(view, datetime.fromisoformat(evidence[k]))
                 for k in ("peers_decided_from", "peers_decided_to") if evidence.get(k)}
        findings.append(Finding(
            Rule.DISCRETION_OUTLIER, event.case_id, event.occurred_at,
            {**evidence, **times, "decided_at": local(view, event.occurred_at)},
            subject=event.event_id, officer_id=event.officer_id))
    return findings


def _bound(value: float) -> float | None:
    """A tier's bound as evidence: none for an open end (JSON has no infinity: written as null, it
    read back otherwise than judged, and every decode raised the card's version again; found by review)."""
    return None if math.isinf(value) else value
