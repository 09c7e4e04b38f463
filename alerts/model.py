"""Alerts (预警): findings of the detectors, identified by a stable fingerprint.

A `Finding` is what a detector says holds for a case at a given clock. An
`Alert` is a finding as published: with the case's labels, a status and a
version that increases whenever what is published about it changes. As in
Alertmanager, an alert is identified by its labels (rule, case, node and, for
rules that judge one event, that event), so the same finding about the same
case always has the same `alert_id`, whatever order the events came in.
"""

from __future__ import annotations

import enum
import hashlib
from dataclasses import dataclass, field, replace
from datetime import datetime, timezone, tzinfo
from typing import Any, Mapping


class Rule(enum.StrEnum):
    DEADLINE_NEAR = "deadline_near"
    OVERDUE = "overdue"
    NODE_OVERDUE = "node_overdue"
    SKIPPED_NODE = "skipped_node"
    BACKFILL = "backfill"
    RETROACTIVE_SUSPENSION = "retroactive_suspension"
    DISCRETION_OUT_OF_RANGE = "discretion_out_of_range"
    DISCRETION_OUTLIER = "discretion_outlier"


class Severity(enum.StrEnum):
    YELLOW = "yellow"
    RED = "red"


class AlertStatus(enum.StrEnum):
    """`acknowledged` and `resolved` are reserved by the contract: how an alert is handled is
    recorded on its supervision ticket, never on the alert."""
    OPEN = "open"
    ACKNOWLEDGED = "acknowledged"
    RESOLVED = "resolved"
    WITHDRAWN = "withdrawn"


SEVERITY: Mapping[Rule, Severity] = {
    Rule.DEADLINE_NEAR: Severity.YELLOW,
    Rule.OVERDUE: Severity.RED,
    Rule.NODE_OVERDUE: Severity.YELLOW,
    Rule.SKIPPED_NODE: Severity.RED,
    Rule.BACKFILL: Severity.RED,
    Rule.RETROACTIVE_SUSPENSION: Severity.RED,
    Rule.DISCRETION_OUT_OF_RANGE: Severity.RED,
    Rule.DISCRETION_OUTLIER: Severity.YELLOW,
}

# Chinese labels for people who read alerts (dashboards, notices, tickets).
RULE_TITLE: Mapping[Rule, str] = {
    Rule.DEADLINE_NEAR: "临近办理时限",
    Rule.OVERDUE: "办理超时",  # open or closed late (was 超时办结, "closed late", on cases still open)
    Rule.NODE_OVERDUE: "环节超时",
    Rule.SKIPPED_NODE: "跳过环节",
    Rule.BACKFILL: "网下运行、网上登记",
    Rule.RETROACTIVE_SUSPENSION: "事后补挂起",
    Rule.DISCRETION_OUT_OF_RANGE: "超出自由裁量基准",
    Rule.DISCRETION_OUTLIER: "裁量畸轻畸重",
}
SEVERITY_TITLE: Mapping[Severity, str] = {Severity.YELLOW: "黄牌", Severity.RED: "红牌"}


def alert_id(rule: Rule, case_id: str, node: str | None = None, subject: str | None = None) -> str:
    """A stable fingerprint of the alert's identifying labels."""
    labels = "\x1f".join((rule.value, case_id, node or "", subject or ""))
    return hashlib.blake2b(labels.encode("utf-8"), digest_size=16).hexdigest()


def local_store_time(moment: datetime, tz: tzinfo) -> str:
    """A time as the store gives it back (to the millisecond), in zone `tz`."""
    moment = moment.astimezone(timezone.utc)
    return moment.replace(microsecond=moment.microsecond // 1000 * 1000).astimezone(tz).isoformat()


@dataclass(frozen=True, slots=True)
class Finding:
    rule: Rule
    case_id: str
    event_time: datetime
    evidence: Mapping[str, Any]
    node: str | None = None
    subject: str | None = None
    officer_id: str | None = None

    @property
    def alert_id(self) -> str:
        return alert_id(self.rule, self.case_id, self.node, self.subject)

    @property
    def severity(self) -> Severity:
        return SEVERITY[self.rule]


def store_time(moment: datetime) -> str:
    """A time as the store gives it back: UTC, to the millisecond. An alert's `raised_at` is
    published so, and an alert version published again from a restored state reads the same as
    the first time (it read 13:10:27.518886+00:00, then 21:10:27.518000+08:00)."""
    moment = moment.astimezone(timezone.utc)
    return moment.replace(microsecond=moment.microsecond // 1000 * 1000).isoformat()


@dataclass(frozen=True, slots=True)
class Alert:
    alert_id: str
    rule: Rule
    severity: Severity
    case_id: str
    item_code: str
    department: str
    region: str | None
    officer_id: str | None
    node: str | None
    raised_at: datetime
    event_time: datetime
    evidence: Mapping[str, Any] = field(default_factory=dict)
    status: AlertStatus = AlertStatus.OPEN
    version: int = 1
    # For a withdrawn alert: what showed that it never held (Chinese, for inspectors).
    withdrawn_reason: str | None = None
    # The alert's stored form, once encoded (see streams.codec).
    stored: bytes | None = field(default=None, compare=False, repr=False)

    def same_content(self, other: "Alert") -> bool:
        """True when what is published (all but raised_at, status and version) is the same."""
        return (self.rule, self.severity, self.item_code, self.department, self.region,
                self.officer_id, self.node, self.event_time, dict(self.evidence)) == (
                other.rule, other.severity, other.item_code, other.department, other.region,
                other.officer_id, other.node, other.event_time, dict(other.evidence))

    def bump(self, **changes: Any) -> "Alert":
        return replace(self, version=self.version + 1, stored=None, **changes)

    def to_json(self, tz: tzinfo | None = None) -> dict[str, Any]:
        """The contract's alert format (section 3), plus `version`, `title` and, for a withdrawn
        alert, `withdrawn_reason`. With `tz` (the catalog's: the alerts topic), both times are in
        that zone, as precisely as the store keeps them: as `alerts export` gives them, and
        the same however often a version is published (a state read back from the store held its
        times in UTC, a fresh one in the offset an event stated)."""
        if tz is None:
            raised_at, event_time = store_time(self.raised_at), self.event_time.isoformat()
        else:
            # (the store keeps event_time to the microsecond: migration 0003)
            raised_at, event_time = local_store_time(self.raised_at, tz), self.event_time.astimezone(tz).isoformat()
        out = {
            "alert_id": self.alert_id, "rule": self.rule.value, "severity": self.severity.value,
            "case_id": self.case_id, "item_code": self.item_code, "department": self.department,
            "region": self.region, "officer_id": self.officer_id, "node": self.node,
            "raised_at": raised_at, "event_time": event_time,
            "evidence": dict(self.evidence), "status": self.status.value, "version": self.version,
            "title": f"{SEVERITY_TITLE[self.severity]}·{RULE_TITLE[self.rule]}",
        }
        if self.withdrawn_reason is not None:
            out["withdrawn_reason"] = self.withdrawn_reason
        return out

    @classmethod
    def from_json(cls, obj: Mapping[str, Any]) -> "Alert":
        return cls(
            alert_id=obj["alert_id"], rule=Rule(obj["rule"]), severity=Severity(obj["severity"]),
            case_id=obj["case_id"], item_code=obj["item_code"], department=obj["department"],
            region=obj.get("region"), officer_id=obj.get("officer_id"), node=obj.get("node"),
            raised_at=datetime.fromisoformat(obj["raised_at"]),
            event_time=datetime.fromisoformat(obj["event_time"]),
            evidence=obj.get("evidence") or {}, status=AlertStatus(obj["status"]),
            version=int(obj.get("version", 1)), withdrawn_reason=obj.get("withdrawn_reason"),
        )
