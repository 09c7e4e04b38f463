"""Time limits: deadline_near, overdue, node_overdue, retroactive_suspension.

All four judge event time against working-day deadlines; `now` only says how
far the clock has run. A case open at a moment is one accepted before it and
not closed or withdrawn by it, so a replay of history gives a case its
deadline_near even when its closing comes later in the same file.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

from alerts.detectors import CaseView
from alerts.events import CaseEvent
from alerts.model import Finding, Rule
from alerts.timeline import Suspension, Timeline

_TINY = timedelta(microseconds=1)


def local(view: CaseView, moment: datetime | None) -> str | None:
    return view.calendar.local(moment).isoformat() if moment is not None else None


def _suspension_evidence(view: CaseView, start: datetime | None = None,
                         end: datetime | None = None) -> list[dict[str, Any]]:
    """The case's suspensions; with `start` and `end`, those that overlap that span (a node's
    clock: one suspended before the node's clock started, or after it ended, did not stop it)."""
    return [{"suspended_at": local(view, s.suspended.occurred_at), "resumed_at": local(view, s.end),
             "reason": s.suspended.attrs.get("reason")} for s in view.timeline.suspensions
            if (start is None or s.end is None or s.end > start)
            and (end is None or s.suspended.occurred_at < end)]


def near_moment(view: CaseView, deadline: datetime) -> datetime | None:
    """00:00 local time of the last working day before the deadline; None if that is not after
    acceptance. A computed deadline ends a working day; one the source states may fall on a day
    off, and its last working day is then the one before it."""
    accepted = view.timeline.clock_accepted  # the acceptance the deadline counts from
    if accepted is None:
        return None
    calendar = view.calendar
    last_day = calendar.local(deadline - _TINY).date()
    while True:
        moment = calendar.midnight(last_day)
        if moment <= accepted.occurred_at:
            return None
        if calendar.is_workday(last_day):
            return moment
        last_day -= timedelta(days=1)


def _node_name(view: CaseView, node_id: str | None) -> str | None:
    node = view.item.node(node_id or "")
    return node.name if node is not None else None


def _case_evidence(view: CaseView, deadline: datetime) -> dict[str, Any]:
    t = view.timeline
    counted = t.clock_accepted
    evidence: dict[str, Any] = {
        "accepted_at": local(view, counted.occurred_at if counted else None),
        "promised_days": None if t.stated_deadline else t.promised_days,
        "deadline": local(view, deadline),
        "deadline_source": "stated by the source system" if t.stated_deadline else "promised working days",
        "suspensions": _suspension_evidence(view),
    }
    if t.deadline_from is not None:  # several acceptances: counted from the one registered first
        evidence["earliest_acceptance_at"] = local(view, t.accepted.occurred_at)
    if t.reopenings:  # ended, then sent back to be redone
        evidence["reopened"] = [{"ended_at": local(view, r.ended.occurred_at), "ended_by": r.ended.type.value,
                                 "returned_at": local(view, r.returned.occurred_at),
                                 "returned_to_node": r.returned.node,
                                 "returned_to_node_name": _node_name(view, r.returned.node)} for r in t.reopenings]
    if t.end is not None:
        evidence["ended_at"] = local(view, t.end.occurred_at)
        evidence["ended_by"] = t.end.type.value
        evidence["working_days_used"] = view.calendar.working_days_between(
            counted.occurred_at, t.end.occurred_at, t.pauses, limit=deadline) \
            if counted and counted.occurred_at <= t.end.occurred_at else None  # none: ended first
    return evidence


def overdue_moment(t: Timeline, deadline: datetime) -> datetime:
    """When the open case is past its deadline: the deadline, or its acceptance (the one the deadline
    counts from, `Timeline.clock_accepted`) when the deadline it states had already passed then (a
    case accepted late is open past its deadline from the start)."""
    return max(deadline, t.clock_accepted.occurred_at)


def late_from(t: Timeline, deadline: datetime) -> datetime | None:
    """When the case is open past its deadline (the alert's moment), or None. From the deadline; from
    its acceptance when the deadline it states had passed by then (a case accepted late is open past
    it from the start), even when it ended at that very moment (registered online all at once: it
    was finished after the deadline; a second later it had a card, at the same second none), or
    ended after the deadline but before its acceptance was registered (registered online afterwards:
    receipt case-6147, five months late, had no card); or from the return that reopened a case ended
    by then."""
    passed = overdue_moment(t, deadline)
    if _finished_late_by_acceptance(t, deadline) is not None:
        return passed
    return t.open_from(passed)


def _finished_late_by_acceptance(t: Timeline, deadline: datetime) -> CaseEvent | None:
    """The end in force at the acceptance, if it came after the deadline: the case was finished
    late before (or as) its acceptance was registered."""
    end = t.end_by_acceptance()
    return end if end is not None and end.occurred_at > deadline else None


def case_moments(view: CaseView) -> tuple[datetime | None, datetime | None, datetime | None]:
    """(the case's deadline, its `near_moment`, `late_from` it), found once per timeline: detect and
    due both read them."""
    t = view.timeline
    memo = t._moments
    if memo is None or memo[0] is not view.calendar:
        deadline = t.deadline(view.calendar)
        near = late = None
        if deadline is not None:
            near, late = near_moment(view, deadline), late_from(t, deadline)
        memo = t._moments = (view.calendar, deadline, near, late)
    return memo[1], memo[2], memo[3]


def detect(view: CaseView, now: datetime) -> list[Finding]:
    t = view.timeline
    if t.accepted is None:
        return []
    findings: list[Finding] = []
    case_id = t.accepted.case_id
    deadline, near, late = case_moments(view)
    if deadline is not None:
        if near is not None and near <= now and t.open_at(near):
            findings.append(Finding(Rule.DEADLINE_NEAR, case_id, near,
                                    {**_case_evidence(view, deadline), "last_day_started_at": local(view, near)},
                                    officer_id=t.officer()))
        passed = overdue_moment(t, deadline)
        if late is not None and late <= now and deadline < now:  # in time at the deadline itself
            evidence = _case_evidence(view, deadline)
            if passed > deadline:
                evidence["accepted_after_deadline"] = True
            finished = _finished_late_by_acceptance(t, deadline)
            if finished is not None and finished.occurred_at < t.clock_accepted.occurred_at:
                # Late at that end, registered accepted after it: how and when it ended then (a case
                # reopened since may have ended otherwise later).
                evidence["ended_before_acceptance"] = {"ended_at": local(view, finished.occurred_at),
                                                       "ended_by": finished.type.value}
                evidence["working_days_used"] = None  # counted from the acceptance, it read as quick work
            if late > passed:
                evidence["open_again_from"] = local(view, late)
            findings.append(Finding(Rule.OVERDUE, case_id, late, evidence, officer_id=t.officer()))
    findings.extend(_node_overdue(view, now))
    findings.extend(_retroactive_suspensions(view, now))
    return findings


def _gone_ahead(t: Timeline) -> dict[str, datetime]:
    """Each skipped node: when the case first went ahead without it."""
    out: dict[str, datetime] = {}
    for skip in t.skips:
        moment = skip.went_ahead.occurred_at
        if skip.node not in out or moment < out[skip.node]:
            out[skip.node] = moment
    return out


def _running_at(t: Timeline, cycle, moment: datetime, needed: frozenset[str],
                gone_ahead: dict[str, datetime]) -> bool:
    """Whether a run of a node was still going at `moment`, the case waiting for it: completed
    after it; or not completed, a node the case needs (`ProcessPlan.needed`), the case open, the
    run not stopped by a return before then, and nothing gone ahead without it (`_gone_ahead`).
    Only then can the node be late at that moment."""
    if cycle.completed is not None:
        return cycle.completed.occurred_at > moment
    return (cycle.node in needed and t.open_at(moment)
            and (cycle.stopped_at is None or moment < cycle.stopped_at)
            and (cycle.node not in gone_ahead or moment < gone_ahead[cycle.node]))


def _node_overdue(view: CaseView, now: datetime) -> list[Finding]:
    t = view.timeline
    out: dict[str, Finding] = {}
    gone_ahead = _gone_ahead(t)
    index, needed = view.item.plan.index, view.item.plan.needed
    for cycle in t.cycles:
        node = index.get(cycle.node)
        if node is None or node.days is None or cycle.node in out:
            continue
        limit = t.node_limit(cycle, node.days, view.calendar)
        if limit is None:
            continue
        # Completed after its limit; or still running: late once its limit passed while the case
        # was open and waited for it (before anything went ahead without it: a case withdrawn or
        # closed after that leaves it late; a case that went ahead of it before its limit skipped
        # it, no more; a run stopped by a return to a node it requires, late if its limit passed
        # before that). Either way only once the clock has passed the limit, as a case is overdue
        # (a completion stated after the clock raised a card dated after it, while the case's own
        # overdue waited: found by a black-box test replaying with an earlier --now).
        late = limit < now and _running_at(t, cycle, limit, needed, gone_ahead)
        if not late:
            continue
        evidence = {
            "node_name": node.name, "node_days": node.days,
            "clock_started_at": local(view, cycle.clock_start), "node_deadline": local(view, limit),
            "completed_at": local(view, cycle.completed.occurred_at) if cycle.completed else None,
            **({"stopped_at": local(view, cycle.stopped_at)} if cycle.stopped_at is not None else {}),
            "suspensions": _suspension_evidence(
                view, cycle.clock_start, cycle.completed.occurred_at if cycle.completed else limit),
        }
        if cycle.completed is not None:
            evidence["working_days_used"] = view.calendar.working_days_between(
                cycle.clock_start, cycle.completed.occurred_at, t.pauses, limit=limit)
            evidence["completed_event_id"] = cycle.completed.event_id
        officer = cycle.completed.officer_id if cycle.completed else t.officer()
        out[cycle.node] = Finding(Rule.NODE_OVERDUE, t.accepted.case_id, limit, evidence,
                                  node=cycle.node, officer_id=officer)
    return list(out.values())


def _retroactive_suspensions(view: CaseView, now: datetime) -> list[Finding]:
    """A suspension registered after the deadline it would extend had already passed; or one
    back-dated to cover an overrun: registered well after the moment it states, with the case
    (or else one of its nodes with a limit of its own) still running when the limit it would have
    had, had the suspension begun when it was registered, passed, a limit the stated time pushed later."""
    t = view.timeline
    findings = []
    # A self-built system's push registers a month at once: when it was registered says nothing of
    # when the department recorded it, so the time it states is the only one known (a push after its
    # deadline is backfill, and judged as registered).
    pushed_in_time = [view.pushed_in_time(s.suspended) for s in t.suspensions]
    registered_at = [s.suspended.occurred_at if pushed else s.suspended.recorded_at
                     for s, pushed in zip(t.suspensions, pushed_in_time)]
    for index, suspension in enumerate(t.suspensions):
        event = suspension.suspended
        pushed, registered = pushed_in_time[index], registered_at[index]
        # The deadline as it stood when it was registered: with the suspensions registered before it,
        # whenever they state they began. Before, with those stated before it: a suspension stated
        # earlier but registered a day late was judged against a deadline that one registered in time
        # had moved already (a false red card), and one registered in time after the deadline against
        # a deadline that a later back-dating moved (a true one missed; both found by a black-box test).
        before = t.deadline(view.calendar, [s.pause for s, at in zip(t.suspensions, registered_at) if at < registered])
        if before is None:
            continue
        evidence = {"deadline_without_suspension": local(view, before),
                    "suspension_occurred_at": local(view, event.occurred_at),
                    "suspension_recorded_at": local(view, event.recorded_at),
                    "backdated_hours": round((event.recorded_at - event.occurred_at).total_seconds() / 3600, 2),
                    "reason": event.attrs.get("reason"), "event_id": event.event_id}
        if pushed:  # its registration is the push: no back-dating to tell
            evidence["pushed"] = True
            del evidence["backdated_hours"]
        if registered > before:
            findings.append(Finding(Rule.RETROACTIVE_SUSPENSION, event.case_id, registered, evidence,
                                    subject=event.event_id, officer_id=event.officer_id))
            continue
        if pushed or not _backdated(view, suspension):
            continue
        covered = _overrun_covered(view, index, now)
        if covered is not None:
            as_registered, as_stated = covered
            findings.append(Finding(
                Rule.RETROACTIVE_SUSPENSION, event.case_id, as_registered,
                {**evidence, "deadline_as_registered": local(view, as_registered),
                 "deadline_as_stated": local(view, as_stated),
                 "ended_at": local(view, t.end.occurred_at) if t.end is not None else None},
                subject=event.event_id, officer_id=event.officer_id))
            continue
        node_covered = _node_overrun_covered(view, index, now)
        if node_covered is not None:
            cycle, node, as_registered, as_stated = node_covered
            findings.append(Finding(
                Rule.RETROACTIVE_SUSPENSION, event.case_id, as_registered,
                {**evidence, "covered_node": node.id, "covered_node_name": node.name, "node_days": node.days,
                 "node_clock_started_at": local(view, cycle.clock_start),
                 "node_deadline_as_registered": local(view, as_registered),
                 "node_deadline_as_stated": local(view, as_stated),
                 "node_completed_at": local(view, cycle.completed.occurred_at) if cycle.completed else None},
                subject=event.event_id, officer_id=event.officer_id))
    return findings


def _backdated(view: CaseView, suspension: Suspension) -> bool:
    """Registered longer after the moment it states than a registration delay (the config's)."""
    event = suspension.suspended
    return event.recorded_at - event.occurred_at > timedelta(minutes=view.config.suspension_backdating_minutes)


def _pauses_as_registered(view: CaseView, index: int) -> list:
    """The case's suspensions, suspension `index` begun when it was registered (not before)."""
    t = view.timeline
    pauses = [s.pause for s in t.suspensions]
    end = pauses[index][1]
    registered = t.suspensions[index].suspended.recorded_at
    if end is not None and end <= registered:
        del pauses[index]  # over before it was registered: nothing of it would remain
    else:
        pauses[index] = (registered, end)
    return pauses


def _deadline_as_registered(view: CaseView, index: int) -> datetime | None:
    """The case's deadline had suspension `index` begun when it was registered (not before)."""
    return view.timeline.deadline(view.calendar, _pauses_as_registered(view, index))


def _node_limits_as_registered(view: CaseView, index: int):
    """(cycle, node, its limit had suspension `index` begun when it was registered, its limit as
    stated) for each run of a node with its own limit that the back-dating moved later. The limit
    as stated is None while the case stays suspended (no limit runs out): later than any, so an
    overrun the back-dating covers is found while the suspension lasts (it was found only once
    the case resumed, maybe months later: a black-box test)."""
    t = view.timeline
    pauses = None
    for cycle in t.cycles:
        node = view.item.plan.index.get(cycle.node)
        if node is None or node.days is None:
            continue
        as_stated = t.node_limit(cycle, node.days, view.calendar)
        if pauses is None:
            pauses = _pauses_as_registered(view, index)
        as_registered = view.calendar.deadline(cycle.clock_start, node.days, pauses)
        if as_registered is not None and (as_stated is None or as_registered < as_stated):
            yield cycle, node, as_registered, as_stated


def _node_overrun_covered(view: CaseView, index: int, now: datetime):
    """The first node whose overrun the back-dating of suspension `index` covered: the node still
    running (by `now`) when the limit it would have had, had the suspension begun when it was
    registered, passed, and that limit earlier than the one as stated; else None. As for the case's
    deadline, once it held it holds."""
    t = view.timeline
    gone_ahead = _gone_ahead(t)
    for cycle, node, as_registered, as_stated in _node_limits_as_registered(view, index):
        if as_registered < now and _running_at(t, cycle, as_registered, view.item.plan.needed, gone_ahead):
            return cycle, node, as_registered, as_stated
    return None


def _overrun_covered(view: CaseView, index: int, now: datetime) -> tuple[datetime, datetime] | None:
    """(the deadline had suspension `index` begun when it was registered, the deadline as stated)
    when the back-dating covered an overrun: the case was still open when that deadline passed (by
    `now`), which the stated time pushed later; else None. Once it held it holds, whatever the
    clock does after: the case then also overdue as stated does not undo the back-dating."""
    t = view.timeline
    as_registered = _deadline_as_registered(view, index)
    as_stated = t.deadline(view.calendar)
    if as_registered is None or as_stated is None:
        return None
    if as_registered < as_stated and as_registered < now and t.open_at(as_registered):
        return as_registered, as_stated
    return None


def due(view: CaseView, now: datetime) -> list[datetime]:
    """Future moments at which a verdict of this module could change without a new event: those
    at which the case is open. A case whose closing (or withdrawal) is stated after the clock was
    still open at the moments before it, so its deadline may yet pass while it was open."""
    t: Timeline = view.timeline
    if t.accepted is None:
        return []
    moments, at = [], []  # due once the clock is past them; due at them
    deadline, near, late = case_moments(view)  # the case need not be open at `late` (`late_from`)
    if deadline is not None and late is not None:
        (moments if late == deadline else at).append(late)  # late after it: from an acceptance, a return
    gone_ahead = _gone_ahead(t)
    index, needed = view.item.plan.index, view.item.plan.needed
    for cycle in t.cycles:
        node = index.get(cycle.node)
        # A run completed after the clock's now (a completion stated ahead of it) may still be late.
        if node is not None and node.days is not None and (cycle.completed is None
                                                            or cycle.completed.occurred_at > now):
            limit = t.node_limit(cycle, node.days, view.calendar)
            if limit is not None and _running_at(t, cycle, limit, needed, gone_ahead):
                moments.append(limit)
    for index, suspension in enumerate(t.suspensions):  # when a back-dating starts to cover an overrun
        if _backdated(view, suspension) and not view.pushed_in_time(suspension.suspended):
            moment = _deadline_as_registered(view, index)
            if moment is not None:
                moments.append(moment)
            moments.extend(limit for cycle, _, limit, _ in _node_limits_as_registered(view, index)
                           if _running_at(t, cycle, limit, needed, gone_ahead))
    # A case finished late before, or as, its acceptance was registered is not open at the moment
    # it is late from, its acceptance: that moment is due all the same (live, an acceptance stated a
    # moment ahead of the clock never got its card: found by review).
    # A limit passes once the clock is past it (work done at the limit is in time: a card raised at
    # the limit itself was withdrawn by a closing stated then, found by a black-box test): due a
    # microsecond after it, the card dated at it. The last day's start is near at that moment.
    if near is not None:
        at.append(near)
    return ([m + PASSED for m in moments if m >= now and (t.open_at(m) or m == late)]
            + [m for m in at if m > now and (t.open_at(m) or m == late)])


# How long after a limit the clock has passed it: the smallest step of a time (Python's datetime).
# The card is dated at the limit itself, so a store that keeps milliseconds loses nothing.
PASSED = timedelta(microseconds=1)
