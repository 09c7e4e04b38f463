"""Alert lifecycle: from this evaluation's findings to what must be published.

`reconcile` is a pure decision, in the spirit of Alertmanager's dedup stage:
given the alerts last published for a subject and the findings that hold now,
it returns the alerts to keep and the ones whose publication changed:

* a new finding is published as `open`, version 1;
* a finding already published with the same content changes nothing;
* a finding whose content changed (evidence, event time) is republished with
  the next version, keeping its status;
* a published alert no finding supports any more is `withdrawn` (facts that
  arrived later show it never held), never deleted;
* a withdrawn alert whose finding holds again is reopened.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Iterable, Mapping

from alerts.model import Alert, AlertStatus, Finding


@dataclass(frozen=True, slots=True)
class Labels:
    item_code: str
    department: str
    region: str | None


def to_alert(finding: Finding, labels: Labels, raised_at: datetime) -> Alert:
    return Alert(
        alert_id=finding.alert_id, rule=finding.rule, severity=finding.severity,
        case_id=finding.case_id, item_code=labels.item_code, department=labels.department,
        region=labels.region, officer_id=finding.officer_id, node=finding.node,
        raised_at=raised_at, event_time=finding.event_time, evidence=dict(finding.evidence),
    )


def reconcile(previous: Mapping[str, Alert], findings: Iterable[Finding], labels: Labels,
              raised_at: datetime, reasons: Mapping[str, str] | None = None,
              labels_of: Mapping[str, Labels] | None = None) -> tuple[dict[str, Alert], list[Alert]]:
    """`reasons`: why an alert that loses its finding is withdrawn, by alert_id. `labels_of`: the
    labels of findings judged under another item than `labels` names, by alert_id. `raised_at`:
    the moment of this judgement; a version keeps the moment its card was raised (the contract's
    "when the pipeline raised it"), which is this one for a card raised again after a withdrawal
    (before, a card withdrawn and raised again at a deadline a suspension had moved said it was
    raised three minutes before that deadline: found by a black-box test)."""
    reasons = reasons or {}
    labels_of = labels_of or {}
    current: dict[str, Alert] = dict(previous)
    changed: list[Alert] = []
    supported: set[str] = set()
    for finding in findings:
        candidate = to_alert(finding, labels_of.get(finding.alert_id, labels), raised_at)
        supported.add(candidate.alert_id)
        before = previous.get(candidate.alert_id)
        if before is None:
            update = candidate
        elif before.status is AlertStatus.WITHDRAWN:  # raised again, now
            update = before.bump(status=AlertStatus.OPEN, withdrawn_reason=None, raised_at=raised_at,
                                 **_content(candidate))
        elif not before.same_content(candidate):
            # Still the card raised then, unless what it now states happened after that: a card
            # cannot have been raised before its finding (a deadline moved past the first raising).
            again = {"raised_at": raised_at} if candidate.event_time > before.raised_at else {}
            update = before.bump(**_content(candidate), **again)
        else:
            continue
        current[update.alert_id] = update
        changed.append(update)
    for alert_id, before in previous.items():
        if alert_id not in supported and before.status is not AlertStatus.WITHDRAWN:
            update = before.bump(status=AlertStatus.WITHDRAWN, withdrawn_reason=reasons.get(alert_id))
            current[alert_id] = update
            changed.append(update)
    return current, changed


def _content(alert: Alert) -> dict:
    return {"severity": alert.severity, "item_code": alert.item_code, "department": alert.department,
            "region": alert.region, "officer_id": alert.officer_id, "node": alert.node,
            "event_time": alert.event_time, "evidence": alert.evidence}
