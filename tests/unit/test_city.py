"""The generated city judged in the domain: every injected violation found, clean cases clean,
and the same open alerts whatever the order, with no alert withdrawn and reopened."""

import random
from collections import Counter
from datetime import datetime, timezone

import pytest

from alerts.model import AlertStatus, Rule
from alerts.scenario import generate
from tests.unit.city import judge_city, open_rules

NOW = datetime(2026, 6, 1, 12, tzinfo=timezone.utc)


@pytest.mark.parametrize("seed, cases", [(7, 600), (21, 300), (3, 1000)])
def test_the_generated_city_in_file_order_and_shuffled(seed, cases):
    scenario = generate(cases=cases, violation_rate=0.03, seed=seed, now=NOW)
    history = []
    in_order = judge_city(scenario.catalog, scenario.events, NOW, history)
    found = open_rules(in_order)
    missed = {c: r.value for c, r in scenario.truth.items() if r is not None and r.value not in found.get(c, ())}
    noisy = {c: found[c] for c in scenario.clean_cases if found.get(c)}
    assert (missed, noisy) == ({}, {})
    # In file order nothing is ever withdrawn.
    assert [a for a in history if a.status is AlertStatus.WITHDRAWN] == []
    events = list(scenario.events)
    random.Random(seed).shuffle(events)
    shuffled_history = []
    shuffled = judge_city(scenario.catalog, events, NOW, shuffled_history)
    assert open_rules(shuffled) == found

    def published(states):
        return {a.alert_id: (a.rule, dict(a.evidence)) for s in states.values() for a in s.alerts.values()
                if a.status is not AlertStatus.WITHDRAWN}

    assert published(shuffled) == published(in_order)
    # No alert is withdrawn and then reopened.
    statuses = {}
    for alert in shuffled_history:
        statuses.setdefault(alert.alert_id, []).append(alert.status)
    reopened = [k for k, seq in statuses.items() if AlertStatus.WITHDRAWN in seq[:-1]
                and seq[seq.index(AlertStatus.WITHDRAWN) + 1:].count(AlertStatus.OPEN)]
    assert reopened == []
    assert Counter(r for rules in found.values() for r in rules).keys() == {r.value for r in Rule}
