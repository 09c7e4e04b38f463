"""The generated city judged in the domain: every injected violation found, clean cases clean,
and the same alerts whatever the order: judged as they come in file order with none withdrawn, as
a replay shuffled with none raised that is withdrawn, and as they come shuffled."""

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
    in_order = judge_city(scenario.catalog, scenario.events, NOW, history, as_they_come=True)
    found = open_rules(in_order)
    missed = {c: r.value for c, r in scenario.truth.items() if r is not None and r.value not in found.get(c, ())}
    noisy = {c: found[c] for c in scenario.clean_cases if found.get(c)}
    assert (missed, noisy) == ({}, {})
    # In file order, judged as each event comes at the clock it sets, nothing is ever withdrawn.
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
    # A replay raises nothing that its later events take away: no alert is withdrawn (so none
    # withdrawn and reopened either).
    assert [a.alert_id for a in shuffled_history if a.status is not AlertStatus.OPEN] == []
    # Judged as they come out of order, a case raises findings its later events take away, and
    # withdraws them; once every event is in, the same alerts stand.
    assert published(judge_city(scenario.catalog, events, NOW, as_they_come=True)) == published(in_order)
    assert Counter(r for rules in found.values() for r in rules).keys() == {r.value for r in Rule}
