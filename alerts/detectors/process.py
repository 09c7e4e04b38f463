"""Process rules: skipped_node and backfill (网下运行、网上登记)."""

from __future__ import annotations

from datetime import datetime, timedelta

from alerts.detectors import CaseView
from alerts.detectors.deadlines import local
from alerts.events import EventType
from alerts.model import Finding, Rule


def detect(view: CaseView, now: datetime) -> list[Finding]:
    return _skipped(view) + _backfill(view)


def _skipped(view: CaseView) -> list[Finding]:
    findings = []
    for skip in view.timeline.skips:
        node = view.item.node(skip.node)
        event = skip.went_ahead
        ahead = view.item.node(event.node) if event.node else None
        findings.append(Finding(
            Rule.SKIPPED_NODE, event.case_id, event.occurred_at,
            {"skipped_node": skip.node, "skipped_node_name": node.name if node else None,
             "went_ahead": skip.what, "went_ahead_event": event.type.value,
             "went_ahead_node": event.node,
             "went_ahead_node_name": ahead.name if ahead else None,
             "went_ahead_event_id": event.event_id,
             "went_ahead_at": local(view, event.occurred_at),
             # Not `required` itself, but required by what went ahead (its `requires`): a
             # prerequisite, not a mandatory node (its card said 必经环节 against the catalog: found
             # by a black-box test). Only then, so a mandatory node's evidence is as before.
             **({"skipped_node_optional": True} if node is not None and not node.required else {}),
             **_undone_evidence(view, skip)},
            node=skip.node, officer_id=event.officer_id))
    return findings


def _undone_evidence(view: CaseView, skip) -> dict:
    """The return that undid a skipped node's earlier completion (it had to be done again)."""
    returned = skip.undone_by
    if returned is None:
        return {}
    to = view.item.node(returned.node) if returned.node else None
    return {"returned_event_id": returned.event_id, "returned_at": local(view, returned.occurred_at),
            "returned_to_node": returned.node, "returned_to_node_name": to.name if to else None}


def _backfill(view: CaseView) -> list[Finding]:
    t = view.timeline
    cfg = view.config
    handled = [e for e in t.events if e.type is not EventType.RATED]
    evidence: dict = {}
    event_time: datetime | None = None
    officer = None
    pushing = view.self_built or view.imported  # else none of its events is a push (`CaseView.pushed`)
    # A whole case registered in a burst while the times it states span days: from an acceptance
    # to a closing, the events stated between them and registered by then (the later of the two
    # registrations). Events registered after the closing, a return and a closing again, cannot show
    # that the case was handled online: before, one more step registered two hours later, or a
    # return and a second closing, withdrew the true red card (found by a black-box test).
    burst = _burst(view, handled, pushing)
    if burst is not None:
        span, closing = burst
        registered = max(e.recorded_at for e in span) - min(e.recorded_at for e in span)
        stated = max(e.occurred_at for e in span) - min(e.occurred_at for e in span)
        evidence["burst"] = {
            "events": len(span),
            "registered_from": local(view, min(e.recorded_at for e in span)),
            "registered_to": local(view, max(e.recorded_at for e in span)),
            "registered_within_minutes": round(registered.total_seconds() / 60, 2),
            "stated_from": local(view, min(e.occurred_at for e in span)),
            "stated_to": local(view, max(e.occurred_at for e in span)),
            "stated_span_hours": round(stated.total_seconds() / 3600, 2),
            "closed_event_id": closing.event_id,
        }
        event_time = closing.recorded_at
        officer = closing.officer_id
    # Events registered long after they happened; those of another item too, set aside (a case's
    # handling back-dated and registered a week late under a mistyped item code raised no card of
    # any kind: found by a black-box test).
    late = []
    lag_limit = timedelta(hours=cfg.registration_lag_hours)
    for event in (*handled, *view.others) if view.others else handled:
        if pushing and view.pushed(event):
            limit = view.push_limit(event)
            if event.recorded_at > limit:
                late.append((event, f"pushed after {local(view, limit)}"))
        elif event.recorded_at - event.occurred_at > lag_limit:
            late.append((event, f"registered more than {cfg.registration_lag_hours:g} hours after it happened"))
    if late:
        evidence["late_registrations"] = [
            {"event_id": e.event_id, "type": e.type.value, "node": e.node,
             "occurred_at": local(view, e.occurred_at), "recorded_at": local(view, e.recorded_at),
             "lag_hours": round((e.recorded_at - e.occurred_at).total_seconds() / 3600, 2), "why": why}
            for e, why in late[:10]]
        evidence["late_registration_count"] = len(late)
        first = min(late, key=lambda pair: pair[0].recorded_at)[0]
        if event_time is None or first.recorded_at < event_time:
            event_time = first.recorded_at
            officer = first.officer_id
    if event_time is None:
        return []
    case_id = (handled or view.others)[0].case_id
    return [Finding(Rule.BACKFILL, case_id, event_time, evidence, officer_id=officer)]


def _burst(view: CaseView, handled: list, pushing: bool):
    """(the events of the burst, its closing), or None: the first acceptance and closing, by
    registration, between which the case was registered within `burst_registration_minutes` while
    the times it states span at least `burst_stated_span_hours` (`_backfill`): any acceptance, so
    that a case accepted online, sent back to 受理 and then handled offline from its second
    acceptance is judged on that one (found by a black-box test). Pushed events are left out:
    self-built systems push a month's cases at once by design, their registration judged against
    the push deadline instead."""
    closings = [e for e in handled if e.type is EventType.CLOSED]
    acceptances = [e for e in handled if e.type is EventType.ACCEPTED] if closings else []
    if not acceptances:  # (most judgements: a case still open)
        return None
    closings.sort(key=_by_registration)
    acceptances.sort(key=_by_registration)
    cfg = view.config
    window = timedelta(minutes=cfg.burst_registration_minutes)
    span_hours = timedelta(hours=cfg.burst_stated_span_hours)
    for accepted in acceptances:
        for closing in closings:
            if closing.occurred_at < accepted.occurred_at:
                continue
            by = max(accepted.recorded_at, closing.recorded_at)
            span = [e for e in handled if accepted.occurred_at <= e.occurred_at <= closing.occurred_at
                    and e.recorded_at <= by and not (pushing and view.pushed(e))]
            if len(span) < cfg.burst_min_events:
                continue
            if (max(e.recorded_at for e in span) - min(e.recorded_at for e in span) <= window
                    and max(e.occurred_at for e in span) - min(e.occurred_at for e in span) >= span_hours):
                return span, closing
    return None


def _by_registration(event) -> tuple:
    return event.recorded_at, event.event_id
