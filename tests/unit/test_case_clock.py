"""Time never runs backwards for a case: a late tick, or a clock that starts again after a
restart, cannot withdraw a red card (found by evaluation: overdue alerts published, then
withdrawn when a tick due earlier was handled after the partition clock had moved on)."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

from hypothesis import given, settings, strategies as st

from alerts.detectors.deadlines import PASSED
from alerts.evaluate import evaluate, judge_case, step
from alerts.model import AlertStatus
from tests.unit.helpers import at, ev, judge

JUDGE = judge()
RAISED = datetime(2026, 1, 1, tzinfo=timezone.utc)
START = at(2026, 3, 2, 10)


def open_alerts(state):
    return {a.alert_id: (a.rule, a.node, a.event_time, dict(a.evidence))
            for a in state.alerts.values() if a.status is not AlertStatus.WITHDRAWN}


def test_a_stale_tick_does_not_withdraw_an_overdue_alert():
    # A 10-working-day licence accepted 2026-03-02; deadline 2026-03-17 00:00, closed 03-20.
    events = [ev("accepted", START, case="K"), ev("closed", at(2026, 3, 20, 10), case="K")]
    state = None
    for event in events:
        state = step(state, event, JUDGE, at(2026, 3, 25), RAISED).state
    assert {r for r, *_ in open_alerts(state).values()} >= {"overdue"}
    # A tick that was due at 03-16 (deadline_near) is handled only now.
    late = judge_case(state, JUDGE, at(2026, 3, 16, 0), RAISED)
    assert late.changed == []
    assert open_alerts(late.state) == open_alerts(state)


def case_events(draw_times, closed_after, suspended, reopened=None):
    names = ["undertake", "review", "approve"]
    events = [ev("accepted", START, case="P", event_id="a")]
    for name, offset in zip(names, draw_times):
        events.append(ev("node_completed", START + offset, case="P", node=name, event_id=name))
    if suspended is not None:
        begin, length = suspended
        events.append(ev("suspended", START + begin, case="P", event_id="s", reason="supplement"))
        events.append(ev("resumed", START + begin + length, case="P", event_id="r"))
    if closed_after is not None:
        events.append(ev("closed", START + closed_after, case="P", event_id="c"))
        if reopened is not None:  # sent back to be redone after it was closed, and maybe closed again
            returned, closed_again = reopened
            events.append(ev("returned", START + closed_after + returned, case="P", node="review", event_id="t"))
            if closed_again is not None:
                events.append(ev("closed", START + closed_after + returned + closed_again, case="P", event_id="c2"))
    return events


hours = st.integers(min_value=1, max_value=40 * 24).map(lambda h: timedelta(hours=h))
moments = st.integers(min_value=-5 * 24, max_value=60 * 24).map(lambda h: START + timedelta(hours=h))


@settings(max_examples=300, deadline=None)
@given(times=st.lists(hours, min_size=0, max_size=3), closed_after=st.none() | hours,
       suspended=st.none() | st.tuples(hours, hours), reopened=st.none() | st.tuples(hours, st.none() | hours),
       data=st.data())
def test_any_interleaving_of_events_and_ticks_ends_judged_at_the_latest_clock(times, closed_after, suspended,
                                                                             reopened, data):
    events = case_events(times, closed_after, suspended, reopened)
    order = data.draw(st.permutations(events))
    # Events arrive in any order, each with whatever clock its partition had (a restarted
    # clock may be behind); ticks come in between with any clock, stale ones included.
    operations = []
    for event in order:
        operations.extend(("tick", data.draw(moments)) for _ in range(data.draw(st.integers(0, 2))))
        operations.append(("event", event, data.draw(moments)))
    operations.append(("tick", data.draw(moments)))
    state, latest, seen = None, None, []
    for operation in operations:
        if operation[0] == "tick":
            if state is None:
                continue  # no case yet: the tick knows nothing of it
            now = operation[1]
            before = open_alerts(state)
            outcome = judge_case(state, JUDGE, now, RAISED)
            withdrawn = [a for a in outcome.changed if a.status is AlertStatus.WITHDRAWN]
            assert withdrawn == [], "a tick withdrew an alert"
            assert set(before) <= set(open_alerts(outcome.state))
        else:
            _, event, now = operation
            seen.append(event)
            outcome = step(state, event, JUDGE, now, RAISED)
            # An event withdraws only what the events known so far no longer support.
            clock = max(now, latest) if latest else now
            basis = {f.alert_id for f in evaluate(outcome.state, JUDGE, clock).findings}
            for alert in outcome.changed:
                if alert.status is AlertStatus.WITHDRAWN:
                    assert alert.alert_id not in basis
        latest = now if latest is None else max(latest, now)
        state = outcome.state
    final = {f.alert_id: (f.rule, f.node, f.event_time, dict(f.evidence))
             for f in evaluate(state, JUDGE, latest).findings}
    assert open_alerts(state) == final


def test_a_case_closed_after_the_clock_stays_due_at_its_deadline_and_has_not_settled():
    # Found by a black-box test: judged at a clock before its closing, a case closed a minute after
    # its deadline had nothing due and settled, so no later clock ever judged it overdue.
    from alerts.retention import settled_since

    # A 10-working-day licence accepted 2026-03-02: deadline 2026-03-17 00:00; closed at 00:01.
    events = [ev("accepted", START, case="Q"), ev("closed", at(2026, 3, 17, 0, 1), case="Q")]
    state = None
    for event in events:
        state = step(state, event, JUDGE, at(2026, 3, 16, 23, 59), RAISED).state
    assert "overdue" not in {r for r, *_ in open_alerts(state).values()}
    assert state.next_due == at(2026, 3, 17, 0) + PASSED and settled_since(state) is None
    later = judge_case(state, JUDGE, at(2026, 3, 17, 12), RAISED).state
    assert "overdue" in {r for r, *_ in open_alerts(later).values()}
    assert later.next_due is None and settled_since(later) is not None


def test_an_open_case_is_overdue_once_the_clock_is_past_its_deadline_not_at_it():
    """Found by a black-box test: judged at its deadline itself (`--now 2026-03-17T00:00:00+08:00`),
    an open case got a red overdue card, which a closing stated at that moment then withdrew: work
    done at the deadline is in time, so at the deadline nothing is late yet. The card comes a
    microsecond later, dated at the deadline."""
    deadline = at(2026, 3, 17, 0)  # 10 working days from 2026-03-02
    state = step(None, ev("accepted", START, case="E"), JUDGE, deadline, RAISED).state
    assert "overdue" not in {r for r, *_ in open_alerts(state).values()}
    assert state.next_due == deadline + PASSED
    closed = step(state, ev("closed", deadline, case="E"), JUDGE, deadline, RAISED).state
    a_day_on = judge_case(closed, JUDGE, deadline + timedelta(days=1), RAISED).state  # closed in time, for good
    assert not [a for a in a_day_on.alerts.values() if a.rule.value == "overdue"]  # (its nodes skipped: cards)
    later = judge_case(state, JUDGE, deadline + PASSED, RAISED).state
    (card,) = [a for a in later.alerts.values() if a.rule.value == "overdue"]
    assert card.status is AlertStatus.OPEN and card.event_time == deadline
