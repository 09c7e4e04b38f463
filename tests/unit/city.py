"""A whole generated city judged in the domain alone: cases, peer groups, verdicts back to the
cases, ticks at the end. What the stream does, without Kafka, for fast tests of the rules."""

from __future__ import annotations

import heapq
from datetime import datetime, timezone

from alerts.calendar import WorkCalendar
from alerts.catalog import load_catalog
from alerts.detectors.discretion import penalty_of
from alerts.evaluate import Judge, judge_case, judge_verdict, step
from alerts.events import EventType, parse_event
from alerts.model import AlertStatus
from alerts.peers import add_decision, fact_of

RAISED = datetime(2026, 1, 1, tzinfo=timezone.utc)


def judge_city(catalog_raw, events, now, history=None):
    """Feed events in the order given, on an event-time clock (the latest event time seen, at most
    `now`), with ticks when something falls due, then move the clock to `now`; returns
    {case_id: state}. `history` collects every published alert version."""
    judge = Judge(load_catalog(catalog_raw), WorkCalendar(on_missing_year=lambda year: None))
    states, groups, due = {}, {}, []
    clock = datetime(1970, 1, 1, tzinfo=timezone.utc)  # the watermark: the latest event time seen

    def publish(outcome):
        states[outcome.state.case_id] = outcome.state
        if outcome.state.next_due is not None:
            heapq.heappush(due, (outcome.state.next_due, outcome.state.case_id))
        if history is not None:
            history.extend(outcome.changed)

    def fire(moment, hold=True):
        while due and due[0][0] <= moment:
            when, case_id = heapq.heappop(due)
            if states[case_id].next_due == when:
                publish(judge_case(states[case_id], judge, moment, RAISED, hold))

    for raw in events:
        event = parse_event(raw)
        clock = min(max(clock, event.occurred_at), now)
        outcome = step(states.get(event.case_id), event, judge, clock, RAISED, hold_withdrawals=True)
        publish(outcome)
        now_at = clock
        penalty = penalty_of(event) if event.type is EventType.DECIDED else None
        if penalty and outcome.is_new:
            tiers = judge.item(event.item_code).discretion.get(penalty[0], ())
            within = not tiers or any(t.contains(penalty[1]) for t in tiers)
            fact = fact_of(event, penalty[0], penalty[1], within)
            groups[fact.group], verdicts = add_decision(groups.get(fact.group), fact, judge.config)
            for verdict in verdicts:
                publish(judge_verdict(states[verdict.case_id], verdict, judge, now_at, RAISED, hold_withdrawals=True))
        fire(clock)
    # The input is complete: what is due by `now` fires, and the held withdrawals are made.
    fire(now, hold=False)
    for case_id, state in list(states.items()):
        if state.held_withdrawals:
            publish(judge_case(state, judge, now, RAISED))
    return states


def open_rules(states):
    return {case: {a.rule.value for a in s.alerts.values() if a.status is not AlertStatus.WITHDRAWN}
            for case, s in states.items()}
