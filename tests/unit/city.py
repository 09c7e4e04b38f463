"""A whole generated city judged in the domain alone: cases, peer groups, verdicts back to the
cases, ticks at the end. What the stream does, without Kafka, for fast tests of the rules."""

from __future__ import annotations

import heapq
from datetime import datetime, timezone

from alerts.calendar import WorkCalendar
from alerts.catalog import load_catalog
from alerts.detectors.discretion import penalty_of
from alerts.evaluate import Judge, judge_case, judge_verdict, step, step_many
from alerts.events import EventType, parse_event
from alerts.model import AlertStatus
from alerts.peers import add_decision, add_decisions, fact_of

RAISED = datetime(2026, 1, 1, tzinfo=timezone.utc)


def judge_city(catalog_raw, events, now, history=None, as_they_come=False):
    """Feed events in the order given on an event-time clock (the latest event time seen, at most
    `now`), then move the clock to `now`; returns {case_id: state}. `history` collects every
    published alert version.

    By default as a replay does (`streams.clock.EventTimeClock.input_incomplete`): each case takes
    its facts and is judged only once the input is complete (`alerts.evaluate.awaiting_judgement`);
    then the peer groups take their decisions, in decision order, and send their verdicts, and each
    case is judged at `now`, with ticks for what falls due by then. `as_they_come`: each event and
    verdict is judged at once, with a tick whenever something falls due on the clock, as a live
    worker judges them (and `streams.clock.EachUnitJudgedClock`)."""
    judge = Judge(load_catalog(catalog_raw), WorkCalendar(on_missing_year=lambda year: None))
    states, groups, due, decisions = {}, {}, [], {}
    clock = datetime(1970, 1, 1, tzinfo=timezone.utc)  # the watermark: the latest event time seen

    def publish(outcome):
        states[outcome.state.case_id] = outcome.state
        if outcome.state.next_due is not None:
            heapq.heappush(due, (outcome.state.next_due, outcome.state.case_id))
        if history is not None:
            history.extend(outcome.changed)

    def fire(moment):
        while due and due[0][0] <= moment:
            when, case_id = heapq.heappop(due)
            if states[case_id].next_due == when:
                publish(judge_case(states[case_id], judge, moment, RAISED))

    for raw in events:
        event = parse_event(raw)
        clock = min(max(clock, event.occurred_at), now)
        outcome = step(states.get(event.case_id), event, judge, clock, RAISED, judging=as_they_come)
        publish(outcome)
        penalty = penalty_of(event) if event.type is EventType.DECIDED else None
        if penalty and outcome.is_new:
            tiers = judge.item(event.item_code).discretion.get(penalty[0], ())
            within = not tiers or any(t.contains(penalty[1]) for t in tiers)
            fact = fact_of(event, penalty[0], penalty[1], within)
            if not as_they_come:  # held until the input is complete (`PeerSteps.judge_held_decisions`)
                decisions.setdefault(fact.group, []).append(fact)
                continue
            groups[fact.group], verdicts = add_decision(groups.get(fact.group), fact, judge.config)
            for verdict in verdicts:
                publish(judge_verdict(states[verdict.case_id], verdict, judge, clock, RAISED))
        if as_they_come:
            fire(clock)
    # The input is complete: the held decisions join their groups, their verdicts go to their
    # cases (taken, not judged: the cases are judged next), and what is due by `now` fires.
    for key, facts in decisions.items():
        groups[key], verdicts = add_decisions(groups.get(key), facts, judge.config)
        for verdict in verdicts:
            batch = step_many(states[verdict.case_id], [], [verdict], judge, now, RAISED, judging=False)
            if batch.outcome is not None:
                publish(batch.outcome)
    fire(now)
    return states


def open_rules(states):
    return {case: {a.rule.value for a in s.alerts.values() if a.status is not AlertStatus.WITHDRAWN}
            for case, s in states.items()}
