"""Peer groups of penalties (same item, same violation) and the discretion_outlier rule.

The stream sends every fining decision to its group as a `PenaltyFact`. A
group's state holds one fact per case (the case's latest decision in event
time), so its verdict depends on the set of decisions, not on their order.
The peers are the group's latest `outlier_window` decisions: a group's state
is one table record, and must stay within Kafka's record size however many
decisions a province makes. Which decisions are the latest is a function of
the set of decisions, so the verdict still does not depend on their order.
`judge_group` re-runs `alerts.detectors.discretion.outliers` over the group
and reconciles the group's published alerts.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from datetime import datetime
from typing import Any, Mapping

from alerts.config import RuleConfig
from alerts.detectors.discretion import outliers
from alerts.events import CaseEvent
from alerts.lifecycle import Labels, reconcile
from alerts.model import Alert, Finding, Rule


@dataclass(frozen=True, slots=True)
class PenaltyFact:
    case_id: str
    event_id: str
    item_code: str
    violation_code: str
    amount: float
    decided_at: datetime
    officer_id: str | None
    department: str
    region: str | None

    @property
    def group(self) -> str:
        return group_key(self.item_code, self.violation_code)

    @property
    def order_key(self) -> tuple[datetime, str]:
        return (self.decided_at, self.event_id)

    def to_json(self) -> dict[str, Any]:
        return {"case_id": self.case_id, "event_id": self.event_id, "item_code": self.item_code,
                "violation_code": self.violation_code, "amount": self.amount,
                "decided_at": self.decided_at.isoformat(), "officer_id": self.officer_id,
                "department": self.department, "region": self.region}

    @classmethod
    def from_json(cls, obj: Mapping[str, Any]) -> "PenaltyFact":
        return cls(obj["case_id"], obj["event_id"], obj["item_code"], obj["violation_code"], float(obj["amount"]),
                   datetime.fromisoformat(obj["decided_at"]), obj.get("officer_id"), obj["department"],
                   obj.get("region"))


def group_key(item_code: str, violation_code: str) -> str:
    return f"{item_code}\x1f{violation_code}"


def fact_of(event: CaseEvent, violation: str, amount: float, labels: Labels) -> PenaltyFact:
    return PenaltyFact(event.case_id, event.event_id, event.item_code, violation, amount, event.occurred_at,
                       event.officer_id, labels.department, labels.region)


@dataclass(frozen=True, slots=True)
class PeerGroup:
    key: str
    facts: Mapping[str, PenaltyFact] = field(default_factory=dict)  # case_id -> latest decision
    alerts: Mapping[str, Alert] = field(default_factory=dict)
    pending: bool = False  # decisions added since the group was last judged

    def to_json(self) -> dict[str, Any]:
        return {"key": self.key, "facts": {c: f.to_json() for c, f in self.facts.items()},
                "alerts": {k: a.to_json() for k, a in self.alerts.items()}, "pending": self.pending}

    @classmethod
    def from_json(cls, obj: Mapping[str, Any]) -> "PeerGroup":
        return cls(obj["key"], {c: PenaltyFact.from_json(f) for c, f in obj["facts"].items()},
                   {k: Alert.from_json(a) for k, a in obj["alerts"].items()}, bool(obj.get("pending")))


def add_fact(group: PeerGroup | None, fact: PenaltyFact, window: int = RuleConfig().outlier_window
             ) -> tuple[PeerGroup, bool]:
    """Record a decision in its group (the case's latest decision wins), keeping the latest
    `window` decisions. Returns (group, changed)."""
    group = group or PeerGroup(fact.group)
    known = group.facts.get(fact.case_id)
    if known is not None and known.order_key >= fact.order_key:
        return group, False
    facts = {**group.facts, fact.case_id: fact}
    if len(facts) > window:
        oldest = min(facts.values(), key=lambda f: f.order_key)
        if oldest is fact:
            return group, False  # older than every peer in the window: not one of them
        del facts[oldest.case_id]
        # Its alerts leave the group's state as they were last published (they stay in the store).
        alerts = {k: a for k, a in group.alerts.items() if a.case_id != oldest.case_id}
        return replace(group, facts=facts, alerts=alerts, pending=True), True
    return replace(group, facts=facts, pending=True), True


def judge_group(group: PeerGroup, config: RuleConfig, raised_at: datetime) -> tuple[PeerGroup, list[Alert]]:
    """Re-judge every decision of the group against its peers.

    The stream calls this at most once per group per tick, not once per decision: a group's
    statistics move with every new peer, and judging on a tick keeps the flagged alerts from
    being republished for each one.
    """
    facts = group.facts
    flagged = outliers({c: f.amount for c, f in facts.items()}, config)
    alerts = dict(group.alerts)
    changed: list[Alert] = []
    for case_id, peer in facts.items():
        previous = {k: a for k, a in alerts.items() if a.case_id == case_id}
        findings = []
        if case_id in flagged:
            o = flagged[case_id]
            findings.append(Finding(
                Rule.DISCRETION_OUTLIER, case_id, peer.decided_at,
                {"violation_code": peer.violation_code, "penalty_amount": peer.amount,
                 "peer_median": o.median, "peer_mad": o.mad, "robust_z": o.z if o.z != float("inf") else None,
                 "peers": o.peers, "threshold_z": config.outlier_z, "event_id": peer.event_id},
                officer_id=peer.officer_id))
        if not findings and not previous:
            continue
        current, delta = reconcile(previous, findings, Labels(peer.item_code, peer.department, peer.region),
                                   raised_at)
        alerts.update(current)
        changed.extend(delta)
    if not changed and not group.pending:
        return group, []
    return replace(group, alerts=alerts, pending=False), changed
