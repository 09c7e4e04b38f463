"""discretion_outlier: a fine few or none of its peers impose, judged against the decisions made
before it, in a peer group that stays one bounded record and sends verdicts to the cases."""

from __future__ import annotations

import math
import random
from datetime import datetime, timedelta, timezone

import orjson
import pytest
from hypothesis import given, settings, strategies as st

from alerts.config import RuleConfig
from alerts.evaluate import judge_verdict
from alerts.model import AlertStatus, Rule
from alerts.peers import PenaltyFact, PeerGroup, add_decision, judge_amount, seed_group
from tests.unit.helpers import PENALTY, at, ev, judge, run

CONFIG = RuleConfig()
START = datetime(2026, 1, 5, 1, tzinfo=timezone.utc)


def fact(i, amount, minutes=None, case=None, violation="V1"):
    return PenaltyFact(case or f"C{i}", f"E{i}", PENALTY, violation, float(amount),
                       START + timedelta(minutes=i if minutes is None else minutes))


def feed(facts, config=CONFIG):
    group, sent = None, []
    for f in facts:
        group, verdicts = add_decision(group, f, config)
        sent.extend(verdicts)
    return group, sent


def latest(sent):
    out = {}
    for verdict in sent:
        out[verdict.event_id] = verdict.outlier
    return out


TIERS = [(5000, 20000), (20000, 60000), (60000, 100000)]  # the example's light, normal, heavy


def tiered_amounts(rng, n):
    """Fines drawn across the three tiers, log-uniform inside each: clean data."""
    out = []
    for _ in range(n):
        low, high = rng.choice(TIERS)
        out.append(round(low * (high / low) ** rng.random(), -1))
    return out


def test_a_heavy_tier_fine_among_many_heavy_tier_peers_stays_quiet():
    rng = random.Random(1)
    peers = tiered_amounts(rng, 200)
    for amount in (40656, 46656, 60500, 95000, 99000, 5200):
        assert judge_amount(amount, peers, CONFIG) is None, amount


@pytest.mark.parametrize("factor", [2, 10, 0.1])
def test_a_fine_far_outside_what_peers_impose_is_flagged(factor):
    rng = random.Random(2)
    peers = [round(rng.uniform(25000, 55000), -2) for _ in range(60)]  # the generator's clean fines
    middle = sorted(peers)[30]
    evidence = judge_amount(middle * factor, peers, CONFIG)
    assert evidence is not None
    assert evidence["direction"] == ("below" if factor < 1 else "above")
    assert evidence["peers"] == 60 and evidence["usual_range"][0] < middle < evidence["usual_range"][1]


def test_the_generators_injected_outlier_is_above_every_peer_and_flagged():
    rng = random.Random(3)
    peers = [round(rng.uniform(28000, 42000), -2) for _ in range(CONFIG.outlier_min_peers)]
    assert judge_amount(97000, peers, CONFIG) is not None
    assert judge_amount(max(peers) * 1.2, peers, CONFIG) is None  # above every peer, but not by much


def test_few_peers_judge_nothing_and_a_fixed_fine_is_judged_on_a_clear_departure():
    assert judge_amount(99000, [1000] * (CONFIG.outlier_min_peers - 1), CONFIG) is None
    assert judge_amount(1200, [1000] * 30, CONFIG) is None
    assert judge_amount(2000, [1000] * 30, CONFIG) is not None


def test_a_verdict_does_not_flap_as_later_unrelated_peers_arrive():
    rng = random.Random(4)
    amounts = tiered_amounts(rng, 300)
    amounts[150] = 400000  # one far above everyone
    group, sent = feed([fact(i, a) for i, a in enumerate(amounts)])
    per_decision = {}
    for verdict in sent:
        per_decision.setdefault(verdict.event_id, []).append(verdict)
    # In decision order, every decision is judged once, never again.
    assert all(len(v) == 1 for v in per_decision.values())
    assert set(per_decision) == {f"E{i}" for i in range(300)}
    assert {e for e, v in per_decision.items() if v[0].outlier} == {"E150"}


def test_the_verdicts_are_a_function_of_the_decisions_not_of_their_arrival():
    rng = random.Random(5)
    amounts = [round(rng.uniform(28000, 42000), -2) for _ in range(120)]
    for index in (3, 40, 99):
        amounts[index] = 98000
    facts = [fact(i, a) for i, a in enumerate(amounts)]
    _, in_order = feed(facts)
    shuffled = facts[:]
    rng.shuffle(shuffled)
    _, any_order = feed(shuffled + facts[:30])  # and some again
    assert latest(any_order) == latest(in_order)
    assert {e for e, outlier in latest(in_order).items() if outlier} == {"E3", "E40", "E99"}


def test_a_group_stays_one_bounded_record_and_never_refuses_a_decision():
    # A fixed-fine group where most decisions are flagged, with ids as long as the contract allows.
    config = RuleConfig(outlier_group_size=5000)
    facts = [PenaltyFact("C" * 100 + str(i), "E" * 100 + str(i), PENALTY, "V1",
                         200.0 if i % 3 else 5000.0, START + timedelta(minutes=i)) for i in range(3000)]
    group, _ = feed(facts, config)
    assert len(orjson.dumps(group.to_json())) <= config.peer_group_max_bytes
    assert group.trimmed and len(group.decisions) < 3000
    # A decision older than everything kept is still judged, and sent to its case.
    old = PenaltyFact("OLD", "E-OLD", PENALTY, "V1", 90000.0, START - timedelta(days=30))
    _, verdicts = add_decision(group, old, config)
    assert [(v.event_id, v.outlier) for v in verdicts if v.event_id == "E-OLD"] == [("E-OLD", True)]
    assert PeerGroup.from_json(orjson.loads(orjson.dumps(group.to_json()))) == group


def test_a_redelivered_decision_changes_nothing_but_sends_its_verdict_again():
    n = CONFIG.outlier_min_peers
    facts = [fact(i, 30000 + 100 * i) for i in range(n)] + [fact(n, 300000)]
    group, _ = feed(facts)
    again, verdicts = add_decision(group, facts[-1])
    assert again == group
    assert [(v.event_id, v.outlier) for v in verdicts] == [(f"E{n}", True)]


def test_a_restored_group_sends_nothing_for_the_decisions_it_was_rebuilt_from():
    n = 2 * CONFIG.outlier_min_peers
    facts = [fact(i, 30000 + 100 * i) for i in range(n)]
    group = seed_group(facts)
    _, verdicts = add_decision(group, fact(n, 31000))
    assert [v.event_id for v in verdicts] == [f"E{n}"]


def test_outlier_alerts_of_one_case_under_two_violations_have_distinct_ids():
    j = judge()
    events = [ev("accepted", at(2026, 3, 2), case="P1", item=PENALTY),
              ev("decided", at(2026, 3, 3), case="P1", item=PENALTY, event_id="d1", decision="penalize",
                 violation_code="V-FOOD-124", penalty_amount=95000),
              ev("decided", at(2026, 3, 4), case="P1", item=PENALTY, event_id="d2", decision="penalize",
                 violation_code="V-OTHER", penalty_amount=9000)]
    state = run(events, at(2026, 3, 5), j)
    for decision in ("d1", "d2"):
        group, verdicts = feed([fact(i, 30000 if decision == "d1" else 1000, case=f"Q{i}")
                                for i in range(CONFIG.outlier_min_peers)]
                               + [PenaltyFact("P1", decision, PENALTY, "X", 95000 if decision == "d1" else 9000,
                                              START + timedelta(days=1))])
        (verdict,) = [v for v in verdicts if v.event_id == decision]
        state = judge_verdict(state, verdict, j, at(2026, 3, 5), at(2026, 3, 5)).state
    outliers = [a for a in state.alerts.values() if a.rule is Rule.DISCRETION_OUTLIER]
    assert len({a.alert_id for a in outliers}) == 2
    assert {a.evidence["event_id"] for a in outliers} == {"d1", "d2"}
    # A verdict that changes to "not an outlier" withdraws that decision's alert only.
    cleared = judge_verdict(state, type(verdict)("P1", "d2", PENALTY, "X", None), j, at(2026, 3, 5), at(2026, 3, 5))
    statuses = {a.evidence["event_id"]: a.status for a in cleared.state.alerts.values()
                if a.rule is Rule.DISCRETION_OUTLIER}
    assert statuses == {"d1": AlertStatus.OPEN, "d2": AlertStatus.WITHDRAWN}


def test_an_outlier_alert_keeps_its_versions_with_its_case_whatever_the_group_forgets():
    """The alert lives with the case: a group that trims a decision, or sends its verdict again with
    other evidence, never restarts the alert at version 1 nor leaves it open without a basis."""
    from alerts.peers import Verdict

    j = judge()
    events = [ev("accepted", at(2026, 3, 2), case="P9", item=PENALTY),
              ev("decided", at(2026, 3, 3), case="P9", item=PENALTY, event_id="d9", decision="penalize",
                 violation_code="V-FOOD-124", penalty_amount=95000)]
    state = run(events, at(2026, 3, 5), j)
    first = Verdict("P9", "d9", PENALTY, "V-FOOD-124", {"penalty_amount": 95000, "peers": 30, "event_id": "d9"})
    state = judge_verdict(state, first, j, at(2026, 3, 5), at(2026, 3, 5)).state
    again = Verdict("P9", "d9", PENALTY, "V-FOOD-124", {"penalty_amount": 95000, "peers": 31, "event_id": "d9"})
    outcome = judge_verdict(state, again, j, at(2026, 3, 6), at(2026, 3, 6))
    (alert,) = [a for a in outcome.state.alerts.values() if a.rule is Rule.DISCRETION_OUTLIER]
    assert (alert.version, alert.status, alert.evidence["peers"]) == (2, AlertStatus.OPEN, 31)
    # The same verdict sent again (a redelivery) changes nothing.
    assert judge_verdict(outcome.state, again, j, at(2026, 3, 7), at(2026, 3, 7)).changed == []


def test_a_units_decisions_added_at_once_give_the_verdicts_of_adding_them_one_by_one():
    from alerts.peers import add_decisions

    rng = random.Random(8)
    amounts = [round(rng.uniform(28000, 42000), -2) for _ in range(200)]
    for index in rng.sample(range(30, 200), 6):
        amounts[index] = 98000
    facts = [fact(i, a) for i, a in enumerate(amounts)]
    rng.shuffle(facts)
    one_by_one, sent_one = feed(facts)
    group, sent_batched = None, []
    for start in range(0, len(facts), 37):  # units of 37 facts, out of order
        group, verdicts = add_decisions(group, facts[start:start + 37])
        sent_batched.extend(verdicts)
    assert group == one_by_one
    assert latest(sent_batched) == latest(sent_one)
    assert len(sent_batched) < len(sent_one)  # fewer intermediate verdicts


def _first_at_least_by_logs(values, bound, strict=False):
    """The bisection on the logs that `peers._first_at_least` replaced, as the reference."""
    from alerts.peers import _log

    low, high = 0, len(values)
    while low < high:
        middle = (low + high) // 2
        x = _log(values[middle])
        if x > bound if strict else x >= bound:
            high = middle
        else:
            low = middle + 1
    return low


@settings(max_examples=2000, deadline=None)
@given(st.lists(st.sampled_from([0.0, 0.5, 1.0, 50.0, 200.0, 1e-300, 1e12]) | st.floats(0, 1e13), max_size=40),
       st.sampled_from([-math.inf, math.inf, math.nan, 0.0, math.log(50.0), math.log(200.0), -690.0, 700.0, 750.0])
       | st.floats(-50, 50), st.booleans(), st.integers(0, 39))
def test_the_usual_ranges_bisection_on_amounts_gives_the_index_the_logs_give(values, bound, strict, pick):
    from alerts.peers import _first_at_least, _log

    values = sorted(values)
    if values and pick < len(values) and values[pick] > 0:
        bound = _log(values[pick])  # exactly at a value's log, the edge where rounding could differ
    assert _first_at_least(values, bound, strict) == _first_at_least_by_logs(values, bound, strict)


def _seed_one_by_one(facts, config):
    """What seeding was: each stored decision added alone, in decision order (the reference)."""
    group = None
    for f in sorted(facts, key=lambda f: (f.decided_at, f.event_id)):
        group, _ = add_decision(group, f, config)
    return group


SMALL = RuleConfig(outlier_min_peers=4, outlier_window=12, outlier_group_size=40)


@settings(max_examples=300, deadline=None)
@given(st.lists(st.tuples(st.integers(0, 400), st.sampled_from([1000.0, 3000.0, 3100.0, 2900.0, 90000.0])
                          | st.floats(100, 1e6), st.integers(0, 30)), max_size=150),
       st.sampled_from([SMALL, RuleConfig(outlier_min_peers=3, outlier_window=5, outlier_group_size=9), CONFIG]))
def test_a_seeded_group_is_the_group_of_its_decisions_added_one_by_one(rows, config):
    """Seeding in units gives the very group adding each decision alone gives (trimmed to its
    bound, with the same verdicts taken as sent), whatever the order, duplicates and sizes."""
    facts = [fact(i, amount, minutes=minute, case=f"C{i % 17}") for i, (minute, amount, _) in enumerate(rows)]
    facts += [facts[i % len(facts)] for _, _, i in rows[:5]] if facts else []  # stored twice
    assert seed_group(facts, config) == _seed_one_by_one(facts, config)


def test_seeding_a_large_group_adds_its_decisions_in_units_not_one_at_a_time(monkeypatch):
    """Each addition rebuilds the group (its cost grows with it): one per stored decision made
    seeding quadratic, hours for a year of a city's fines. Now one per unit of `outlier_window`."""
    import alerts.peers as peers

    calls = []
    real = peers.add_decisions
    monkeypatch.setattr(peers, "add_decisions", lambda group, facts, config: calls.append(len(facts))
                        or real(group, facts, config))
    facts = [fact(i, 30000 + 7 * (i % 50)) for i in range(5 * CONFIG.outlier_window + 3)]
    group = seed_group(facts)
    assert len(calls) == 6 and sum(calls) == len(facts)
    assert len(group.decisions) == CONFIG.outlier_group_size


def test_held_decisions_are_released_once_and_a_revoked_partition_keeps_none_of_its_own():
    from streams.store import HeldDecisions

    facts = [PenaltyFact(f"C{n}", f"E{n}", "ITEM", "V", 100.0 + n, datetime(2026, 1, 1, tzinfo=timezone.utc)
                         + timedelta(hours=n)) for n in range(4)]
    acked: list[str] = []
    held = HeldDecisions()
    held.hold(0, {facts[0].group: facts[:2]})
    held.hold_ack(0, lambda: acked.append("unit of 0"))
    held.hold(1, {facts[0].group: facts[2:3]})
    held.hold_ack(1, lambda: acked.append("unit of 1"))
    held.hold(0, {facts[0].group: facts[3:]})
    held.hold_ack(0, lambda: acked.append("second unit of 0"))
    held.drop_partitions({1})  # revoked: its unit was not acknowledged, its next owner has it again
    released = held.release()
    assert released.count == 3 and held.released and held.count == 0
    assert released.groups == {0: {facts[0].group: [facts[0], facts[1], facts[3]]}}
    for acknowledge in released.acks:
        acknowledge()
    assert acked == ["unit of 0", "second unit of 0"]


def test_a_case_read_back_has_the_verdicts_the_store_kept_not_those_of_its_alerts():
    """A case that waits for a refused event takes its group's outlier verdict without raising
    an alert for it. Read back from its alerts, the verdict was lost, and the true outlier was never
    raised once the corrected event came (found by a black-box test): the store keeps the case's
    verdicts (migration 0013), read back as they were; a row written before gives them from the
    alerts as before."""
    from alerts.peers import Verdict
    from alerts.state import refuse, restored
    from sinks.rows import case_row

    j = judge()
    events = [ev("accepted", at(2026, 3, 2), case="P8", item=PENALTY),
              ev("decided", at(2026, 3, 3), case="P8", item=PENALTY, event_id="d8", decision="penalize",
                 violation_code="V-FOOD-124", penalty_amount=95000)]
    held, _ = refuse(run(events, at(2026, 3, 5), j), "P8", "r1", "schema")
    outlier = Verdict("P8", "d8", PENALTY, "V-FOOD-124", {"penalty_amount": 95000, "peers": 30, "event_id": "d8"})
    waiting = judge_verdict(held, outlier, j, at(2026, 3, 5), at(2026, 3, 5)).state
    alerts = list(waiting.alerts.values())
    assert Rule.DISCRETION_OUTLIER not in {a.rule for a in alerts}  # not raised while it waits
    row = case_row(waiting, PENALTY, "SCJG", None, None, at(2026, 3, 6))
    back = restored("P8", list(waiting.events), alerts, verdicts=orjson.loads(row["verdicts"]))
    assert set(back.verdicts) == {"d8"}
    assert dict(restored("P8", list(waiting.events), alerts).verdicts) == {}  # before: from the alerts, lost


def test_a_group_rejudged_under_other_tiers_is_the_group_fed_under_them():
    """A reloaded catalog's tiers: the group's decisions flagged anew and judged again send the
    verdicts that make each case hold what a group fed under the new tiers sent last."""
    from dataclasses import replace

    from alerts.peers import rejudged

    facts = [fact(i, 1000 + 10 * (i % 5)) for i in range(20)] + [fact(20 + i, 100) for i in range(8)]
    facts.append(fact(40, 300))
    old, new = (lambda amount: amount >= 100), (lambda amount: amount >= 200)
    under_old, sent_old = feed([replace(f, within_benchmark=old(f.amount)) for f in facts])
    under_new, sent_new = feed([replace(f, within_benchmark=new(f.amount)) for f in facts])
    assert latest(sent_old) != latest(sent_new), "the change must change some verdict"
    group, verdicts = rejudged(under_old, new, CONFIG)
    assert {**latest(sent_old), **latest(verdicts)} == latest(sent_new)
    assert [(d.within_benchmark, d.sent) for d in group.decisions] == \
        [(d.within_benchmark, d.sent) for d in under_new.decisions]
    assert rejudged(group, new, CONFIG)[1] == []  # judged under them already: nothing to send


def test_an_outlier_whose_peers_leave_the_benchmark_is_sent_as_none():
    """Too few peers within the new tiers to judge it: its outlier card is not left standing."""
    from alerts.peers import NOT_OUTLIER, rejudged

    facts = [fact(i, 1000 + 10 * (i % 5)) for i in range(20)] + [fact(30, 100)]
    group, sent = feed(facts)
    assert latest(sent)["E30"] is True
    group, verdicts = rejudged(group, lambda amount: amount < 1000, CONFIG)
    assert [(v.event_id, v.outlier) for v in verdicts] == [("E30", False)]
    assert group.decisions[-1].sent == NOT_OUTLIER


def test_fines_of_one_violation_written_two_ways_are_one_another_s_peers():
    """Review: benchmarks matched `7` and `7.0` as one code, but the peer groups kept them apart,
    so a fine's outlier card depended on how its source wrote the code."""
    from dataclasses import replace

    facts = [fact(i, 1000 + 10 * (i % 5), violation="7.0" if i % 2 else "7") for i in range(20)]
    facts.append(replace(fact(30, 100), violation_code=" 7 "))
    assert {f.group for f in facts} == {f"{PENALTY}\x1f7"}
    group, sent = feed(facts)
    assert latest(sent)["E30"] is True and len(group.decisions) == 21


def test_decisions_of_two_cases_under_one_event_id_are_two_peers():
    """Found by review: an event id is its case's (a log numbering its rows 1..n within each case
    gives every case's decision the id "3"); keyed by the id alone, a group kept one decision of
    thirty, the others taken for its redeliveries, and their outlier cards were never judged."""
    from alerts.peers import seed_group_with_verdicts

    same_id = [PenaltyFact(f"C{i}", "3", PENALTY, "V1", 10_000.0, START + timedelta(minutes=i)) for i in range(30)]
    same_id.append(PenaltyFact("C30", "3", PENALTY, "V1", 500_000.0, START + timedelta(minutes=30)))
    group, sent = feed(same_id)
    assert len(group.decisions) == 31
    assert [(v.case_id, v.outlier) for v in sent if v.outlier] == [("C30", True)]
    seeded, final = seed_group_with_verdicts(same_id)
    assert len(seeded.decisions) == 31 and final[("C30", "3")].outlier
    # One decision sent again is still one decision.
    again, _ = add_decision(group, same_id[5])
    assert len(again.decisions) == 31
