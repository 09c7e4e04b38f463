"""A case closed and then sent back to a node to be redone (退回) is open again (a withdrawal is final).

Found by a black-box test: every event after a case's first end was ignored, so a department
that registered 办结 early, inside the time limit, and then returned the case and finished it
weeks later had no overdue card, nor a skipped node for a step it never redid: closing early
stopped the clock for good. The time rules now judge the case open from the return until it
ends again (not between the end and the return); a return stated at the very moment of the
closing reopens nothing.
"""

from __future__ import annotations

import copy
import pickle
from datetime import datetime, timezone

from alerts.casefile import case_file, render
from alerts.describe import describe_evidence
from alerts.evaluate import judge_case
from alerts.events import end_in_force
from alerts.retention import settled_since
from alerts.state import CaseState
from sinks.rows import case_row
from streams.codec import encode_state, stored_case_status, stored_index_entry
from tests.unit.helpers import active, at, ev, judge, run

RAISED = datetime(2026, 1, 1, tzinfo=timezone.utc)


def handled(case: str) -> list:
    """A 10-working-day licence accepted 2026-03-02 (deadline 2026-03-17 00:00), every node done and
    closed on 03-05, well in time."""
    return [ev("accepted", at(2026, 3, 2), case=case),
            ev("node_completed", at(2026, 3, 3), case=case, node="undertake"),
            ev("node_completed", at(2026, 3, 4), case=case, node="review"),
            ev("node_completed", at(2026, 3, 5), case=case, node="approve"),
            ev("closed", at(2026, 3, 5, 12), case=case)]


def cards(state: CaseState) -> dict:
    return {(a.rule.value, a.node): a for a in state.alerts.values() if a.status.value != "withdrawn"}


def test_a_case_closed_in_time_then_returned_and_finished_after_its_deadline_is_overdue():
    events = handled("R1") + [ev("returned", at(2026, 3, 10), case="R1", node="review", reason="材料有误"),
                              ev("node_completed", at(2026, 3, 30), case="R1", node="review"),
                              ev("node_completed", at(2026, 3, 30, 11), case="R1", node="approve"),
                              ev("closed", at(2026, 3, 30, 12), case="R1")]
    state = run(events, at(2026, 4, 10))
    found = cards(state)
    assert set(found) == {("overdue", None), ("deadline_near", None), ("node_overdue", "review")}
    overdue = found[("overdue", None)]
    assert overdue.event_time == at(2026, 3, 17, 0)  # open at its deadline: the return came before
    assert overdue.evidence["reopened"] == [{
        "ended_at": "2026-03-05T12:00:00+08:00", "ended_by": "closed", "returned_at": "2026-03-10T10:00:00+08:00",
        "returned_to_node": "review", "returned_to_node_name": "审核"}]
    assert overdue.evidence["ended_at"] == "2026-03-30T12:00:00+08:00"
    text = describe_evidence("overdue", overdue.evidence)
    assert "时限届满时案件仍未办结" in text and "退回至“审核”重办" in text and "于 2026-03-30 12:00 办结" in text
    assert state.status == "closed"


def test_a_case_returned_after_its_deadline_is_overdue_from_the_return_not_before():
    events = handled("R2") + [ev("returned", at(2026, 3, 20), case="R2", node="review"),
                              ev("node_completed", at(2026, 3, 20, 15), case="R2", node="review"),
                              ev("closed", at(2026, 3, 20, 16), case="R2")]
    found = cards(run(events, at(2026, 4, 10)))
    assert set(found) == {("overdue", None)}  # closed on the last day's 00:00: no deadline_near
    overdue = found[("overdue", None)]
    assert overdue.event_time == at(2026, 3, 20)
    assert overdue.evidence["open_again_from"] == "2026-03-20T10:00:00+08:00"
    assert "时限届满后又退回重办" in describe_evidence("overdue", overdue.evidence)


def test_a_case_returned_after_its_deadline_redone_and_closed_at_the_return_s_moment_is_overdue():
    """Found by a black-box oracle (46 cases): the return, the redo and the closing stamped at one
    minute gave no card, while the closing a minute later gave the red one: the return comes first,
    so the case was open past its deadline then. A return and a closing alone at that moment too
    (its skipped node besides)."""
    redone = handled("R6") + [ev("returned", at(2026, 3, 20), case="R6", node="review"),
                              ev("node_completed", at(2026, 3, 20), case="R6", node="review"),
                              ev("node_completed", at(2026, 3, 20), case="R6", node="approve"),
                              ev("closed", at(2026, 3, 20), case="R6")]
    for events, expected in ((redone, {("overdue", None)}),
                             (handled("R7") + [ev("returned", at(2026, 3, 20), case="R7", node="review"),
                                               ev("closed", at(2026, 3, 20), case="R7")],
                              {("overdue", None), ("skipped_node", "review")})):
        found = cards(run(events, at(2026, 4, 10)))
        assert set(found) == expected
        overdue = found[("overdue", None)]
        assert overdue.event_time == at(2026, 3, 20)
        assert overdue.evidence["open_again_from"] == "2026-03-20T10:00:00+08:00"
        assert overdue.evidence["ended_at"] == "2026-03-20T10:00:00+08:00"
    # Returned before the deadline and ended again at that moment: in time.
    early = handled("R8") + [ev("returned", at(2026, 3, 10), case="R8", node="review"),
                             ev("node_completed", at(2026, 3, 10), case="R8", node="review"),
                             ev("closed", at(2026, 3, 10), case="R8")]
    assert active(run(early, at(2026, 4, 10))) == set()


def test_a_node_returned_to_after_the_closing_and_not_redone_is_skipped_at_the_next_closing():
    events = handled("R3") + [ev("returned", at(2026, 3, 6), case="R3", node="review"),
                              ev("closed", at(2026, 3, 9), case="R3")]
    found = cards(run(events, at(2026, 4, 10)))
    assert set(found) == {("skipped_node", "review")}
    assert found[("skipped_node", "review")].evidence["returned_at"] == "2026-03-06T10:00:00+08:00"


def test_a_return_stated_at_the_moment_of_the_closing_or_a_redo_in_time_raises_nothing():
    assert active(run(handled("R4") + [ev("returned", at(2026, 3, 5, 12), case="R4", node="review")],
                      at(2026, 4, 10))) == set()
    assert active(run(handled("R5") + [ev("returned", at(2026, 3, 6), case="R5", node="review"),
                                       ev("node_completed", at(2026, 3, 6, 11), case="R5", node="review"),
                                       ev("closed", at(2026, 3, 9), case="R5")], at(2026, 4, 10))) == set()


def test_the_end_found_once_for_a_state_is_found_again_when_its_events_change():
    closed = run(handled("R9"), at(2026, 3, 13))
    assert closed.ended_by.type.value == "closed" and closed.status == "closed"
    # The same events under another revision: the same end.
    assert closed.evolve(revision=closed.revision + 1).ended_by is closed.ended_by
    # A return after the closing reopens it; the closing alone taken away leaves it open.
    returned = ev("returned", at(2026, 3, 12), case="R9", node="review")
    assert closed.evolve(events=closed.events + (returned,)).ended_by is None
    assert closed.evolve(events=closed.events[:-1]).status == "open"
    assert settled_since(closed.evolve(events=closed.events[:-1], judged_at=at(2026, 3, 13))) is None
    # A copy of a state, its end asked or not, finds the same end.
    for state in (run(handled("R10"), at(2026, 3, 13)), closed):
        for copied in (copy.deepcopy(state), pickle.loads(pickle.dumps(state)), copy.copy(state)):
            assert copied.ended_by == state.ended_by and copied.status == "closed"


def test_a_reopened_case_is_open_in_its_state_its_row_its_stored_form_and_does_not_settle():
    state = run(handled("R6") + [ev("returned", at(2026, 3, 12), case="R6", node="review")], at(2026, 3, 13))
    assert state.status == "open" and state.ended_by is None
    row = case_row(state, "X", "SCJG", None, None, RAISED)
    assert row["status"] == "open" and row["ended_at"] is None
    stored = encode_state(state, 2)
    assert stored_case_status(stored) == (2, "open")
    assert settled_since(state) is None and stored_index_entry(stored)[2] is None
    # Due at its last day (it is open again), and overdue once its deadline passed.
    assert state.next_due == at(2026, 3, 16, 0)
    later = judge_case(state, judge(), at(2026, 3, 18), RAISED).state
    assert ("overdue", None) in cards(later)


def test_a_reopening_stated_ahead_of_the_clock_is_due_at_the_return():
    # Judged at a clock before the return it already holds (a live source a little ahead), the case
    # must be judged again at the return, past its deadline, not left closed in time for good.
    events = handled("R7") + [ev("returned", at(2026, 3, 20), case="R7", node="review")]
    state = run(events, at(2026, 3, 19))
    assert cards(state) == {} and state.next_due == at(2026, 3, 20)
    assert ("overdue", None) in cards(judge_case(state, judge(), at(2026, 3, 20, 12), RAISED).state)


def test_the_case_file_says_when_the_case_was_sent_back_after_its_end():
    j = judge()
    events = handled("R8") + [ev("returned", at(2026, 3, 10), case="R8", node="review"),
                              ev("node_completed", at(2026, 3, 30), case="R8", node="review"),
                              ev("closed", at(2026, 3, 30, 12), case="R8")]
    item = j.catalog.items["320200-XK-SCJG-0001"]
    text = render(case_file(run(events, at(2026, 4, 10)).events, [], item, j.calendar, "市场监管局"))
    assert "曾于 2026-03-05 12:00 办结，又于 2026-03-10 10:00 退回至“审核”重办" in text
    assert "实际于 2026-03-30 12:00 办结" in text and "超过时限" in text


def test_end_in_force_follows_returns_strictly_after_each_end():
    t = [at(2026, 3, d) for d in range(1, 8)]
    assert end_in_force([("accepted", t[0]), ("closed", t[1])]) == 1
    assert end_in_force([("accepted", t[0]), ("closed", t[1]), ("returned", t[1])]) == 1
    assert end_in_force([("accepted", t[0]), ("closed", t[1]), ("returned", t[2])]) is None
    # A withdrawal (撤回/作废) is final: a return after it reopens nothing (found by review).
    assert end_in_force([("accepted", t[0]), ("withdrawn", t[1]), ("returned", t[2]), ("closed", t[3])]) == 1
    assert end_in_force([("accepted", t[0]), ("closed", t[1]), ("returned", t[2]), ("closed", t[3])]) == 3
    assert end_in_force([("accepted", t[0]), ("closed", t[1]), ("closed", t[2])]) == 1
    assert end_in_force([("accepted", t[0]), ("returned", t[1])]) is None


def test_a_return_and_a_closing_again_at_one_moment_end_the_case_whatever_their_registration():
    """Found by review: a return reopening a case and the closing that ended it again, stated at one
    moment, left the case open for good (the closing was read first and skipped: a false red
    overdue card), and its status followed their registration times."""
    from datetime import timedelta

    moment = at(2026, 3, 10)
    for returned_first in (True, False):
        events = handled("R9") + [
            ev("returned", moment, moment + timedelta(minutes=5 if returned_first else 6), case="R9", node="approve"),
            ev("node_completed", moment, moment + timedelta(minutes=5), case="R9", node="approve"),
            ev("closed", moment, moment + timedelta(minutes=6 if returned_first else 5), case="R9")]
        state = run(events, at(2026, 4, 10))
        assert cards(state) == {} and state.status == "closed"
        assert stored_case_status(encode_state(state, 0)) == (0, "closed") and settled_since(state) is not None


def test_a_return_after_a_withdrawal_reopens_nothing():
    """Found by review: a case withdrawn (撤回/作废: it ends unfinished, for good) and then
    returned to a node had overdue, deadline_near and node_overdue cards for good."""
    events = [ev("accepted", at(2026, 3, 2), case="W1"), ev("withdrawn", at(2026, 3, 3), case="W1", reason="申请人撤回"),
              ev("returned", at(2026, 3, 4), case="W1", node="undertake")]
    state = run(events, at(2026, 4, 10))
    assert cards(state) == {} and state.status == "withdrawn"


def test_a_node_limit_that_fell_while_the_case_was_closed_is_not_a_late_node():
    """Found by a black-box test: closed without 批准 (a red skipped card, right), returned to it a
    week later and done within the hour, the case also had a yellow node_overdue card for 批准
    whose limit fell in the week it was closed, its working days counting that week."""
    events = [ev("accepted", at(2026, 3, 2, 9), case="G1"),
              ev("node_completed", at(2026, 3, 2, 10), case="G1", node="undertake"),
              ev("node_completed", at(2026, 3, 2, 11), case="G1", node="review"),
              ev("closed", at(2026, 3, 2, 12), case="G1"),
              ev("returned", at(2026, 3, 9, 9), case="G1", node="approve"),
              ev("node_completed", at(2026, 3, 9, 10), case="G1", node="approve"),
              ev("closed", at(2026, 3, 9, 11), case="G1")]
    assert active(run(events, at(2026, 4, 10))) == {("skipped_node", "approve")}
    # Not done after the return within its limit (one working day from the return): late, from
    # the return, not from before the closing.
    slow = events[:5] + [ev("node_completed", at(2026, 3, 12, 10), case="G1", node="approve"),
                         ev("closed", at(2026, 3, 12, 11), case="G1")]
    found = cards(run(slow, at(2026, 4, 10)))
    assert set(found) == {("skipped_node", "approve"), ("node_overdue", "approve")}
    assert found[("node_overdue", "approve")].evidence["clock_started_at"] == "2026-03-09T09:00:00+08:00"
    # A node already late at the closing stays late.
    late = [ev("accepted", at(2026, 3, 2, 9), case="G2"), ev("closed", at(2026, 3, 12, 12), case="G2"),
            ev("returned", at(2026, 3, 13, 9), case="G2", node="undertake"),
            ev("node_completed", at(2026, 3, 13, 10), case="G2", node="undertake")]
    assert ("node_overdue", "undertake") in active(run(late, at(2026, 3, 13, 11)))


def test_a_return_at_a_later_closing_s_moment_reopens_nothing_and_a_re_acceptance_at_a_reopening_follows_it():
    """Found by review: (1) closed, reopened, closed again at T with a return to 审核 also at T: a
    false red skipped_node (every return after the first end was read before what was stated at
    its moment, though the case was open then); the same tie at the first closing gave nothing.
    (2) Reopened by a return to 受理 and accepted again at that moment: the acceptance was read
    first, while the case was closed, and dropped: a false red skipped_node for 受理."""
    import random

    again = handled("R10") + [ev("returned", at(2026, 3, 6, 9), case="R10", node="approve"),
                              ev("node_completed", at(2026, 3, 6, 10), case="R10", node="approve"),
                              ev("closed", at(2026, 3, 6, 12), case="R10"),
                              ev("returned", at(2026, 3, 6, 12), case="R10", node="review")]
    accepted_again = handled("R11") + [ev("returned", at(2026, 3, 6, 9), case="R11", node="accept"),
                                       ev("accepted", at(2026, 3, 6, 9), case="R11"),
                                       ev("node_completed", at(2026, 3, 6, 10), case="R11", node="undertake"),
                                       ev("node_completed", at(2026, 3, 6, 11), case="R11", node="review"),
                                       ev("node_completed", at(2026, 3, 6, 11, 30), case="R11", node="approve"),
                                       ev("closed", at(2026, 3, 6, 12), case="R11")]
    for events in (again, accepted_again):
        for seed in range(6):
            shuffled = list(events)
            random.Random(seed).shuffle(shuffled)
            state = run(shuffled, at(2026, 4, 10))
            assert cards(state) == {} and state.status == "closed", (events[0].case_id, seed)


def test_a_closing_and_a_withdrawal_at_one_moment_are_read_the_same_whatever_their_ids():
    """Found by a black-box oracle: with the closing's id before the withdrawal's the case was
    closed without its last node (a red skipped_node); with the ids the other way round it was
    withdrawn, no card. The closing comes first at one moment (it went ahead without the node
    either way); the withdrawal then changes nothing."""
    outcomes = set()
    for closing_id, withdrawal_id in (("c-8", "c-9"), ("c-9", "c-8")):
        events = [ev("accepted", at(2026, 3, 2), case="W1"),
                  ev("node_completed", at(2026, 3, 3), case="W1", node="undertake"),
                  ev("node_completed", at(2026, 3, 4), case="W1", node="review"),
                  ev("closed", at(2026, 3, 5), at(2026, 3, 5), case="W1", event_id=closing_id),
                  ev("withdrawn", at(2026, 3, 5), at(2026, 3, 5), case="W1", event_id=withdrawal_id)]
        for order in (events, events[::-1]):
            state = run(order, at(2026, 4, 10))
            outcomes.add((frozenset(active(state)), state.status, state.ended_by.type.value))
            outcomes.add(stored_case_status(encode_state(state, 0)))
    assert outcomes == {(frozenset({("skipped_node", "approve")}), "closed", "closed"), (0, "closed")}


def test_a_withdrawal_after_a_closing_changes_nothing_whatever_its_moment():
    """Review: a withdrawal at the closing's very moment made the case final (a later return
    reopened nothing), one a minute later did not: the card depended on how finely a system
    stamps its times, and a withdrawal registered later and dated to the closing could erase a
    reopening. Read after the closing, as any event after an end, it changes nothing; a later
    return reopens the closed case either way."""
    outcomes = set()
    for withdrawn in (at(2026, 3, 5, 12), at(2026, 3, 5, 12, 1)):
        events = handled("W2") + [ev("withdrawn", withdrawn, case="W2"),
                                  ev("returned", at(2026, 3, 20), case="W2", node="review"),
                                  ev("node_completed", at(2026, 3, 21), case="W2", node="review"),
                                  ev("closed", at(2026, 3, 21, 12), case="W2")]
        for order in (events, events[::-1]):
            state = run(order, at(2026, 4, 10))
            outcomes.add((frozenset(active(state)), state.ended_by.occurred_at,
                          stored_case_status(encode_state(state, 0))))
    assert outcomes == {(frozenset({("overdue", None)}), at(2026, 3, 21, 12), (0, "closed"))}


def test_a_suspension_stated_inside_another_after_a_reopening_is_read_as_in_a_case_never_closed():
    """Found by an independent oracle: hearing suspended 03-04, expert review suspended 03-05, resumed
    03-12, resumed 03-17: the clock stops until 03-17. In a case closed by mistake at 09:10 on its day
    of acceptance and returned at 09:20, the nested suspension was read against that first end, so
    the 03-12 resumption restarted the clock: a false red overdue (and yellow deadline_near) that the
    same facts without the early close-and-return do not raise."""
    from alerts.timeline import read_timeline

    def case(name: str, reopened: bool) -> list:
        early = [ev("closed", at(2026, 3, 2, 10, 10), case=name),
                 ev("returned", at(2026, 3, 2, 10, 20), case=name, node="undertake", reason="误操作")] if reopened else []
        return [ev("accepted", at(2026, 3, 2), case=name), *early,
                ev("node_completed", at(2026, 3, 3), case=name, node="undertake"),
                ev("suspended", at(2026, 3, 4), case=name, reason="hearing"),
                ev("suspended", at(2026, 3, 5), case=name, reason="expert_review"),
                ev("resumed", at(2026, 3, 12), case=name), ev("resumed", at(2026, 3, 17), case=name),
                ev("node_completed", at(2026, 3, 18), case=name, node="review"),
                ev("node_completed", at(2026, 3, 18, 11), case=name, node="approve"),
                ev("closed", at(2026, 3, 19, 10), case=name)]

    plain, reopened = run(case("N1", False), at(2026, 4, 10)), run(case("N2", True), at(2026, 4, 10))
    item = judge().catalog.item("320200-XK-SCJG-0001")
    for state in (plain, reopened):
        timeline = read_timeline(state.events, item)
        assert [(s.suspended.occurred_at, s.end) for s in timeline.suspensions] == [(at(2026, 3, 4), at(2026, 3, 17))]
        assert ("overdue", None) not in cards(state) and ("deadline_near", None) not in cards(state)
    # The early closing skipped every node: that is all the close-and-return changes.
    assert set(cards(reopened)) - set(cards(plain)) == {("skipped_node", n) for n in ("undertake", "review", "approve")}


def test_the_closings_a_return_undid_are_kept_with_the_returns_as_end_in_force_reads_them():
    """`ends_undone`: each closing a later return undid, with that return (a past day's screens
    read the case as closed between them: `cases.undone_ends`); a return at the very moment of the
    closing undoes nothing, and a withdrawal is final."""
    from alerts.events import ends_undone

    def pairs(*steps):
        return ends_undone((kind, moment) for kind, moment in steps)

    assert pairs(("accepted", at(2026, 3, 2)), ("closed", at(2026, 3, 3))) == []
    assert pairs(("accepted", at(2026, 3, 2)), ("closed", at(2026, 3, 3)), ("returned", at(2026, 3, 4)),
                 ("closed", at(2026, 3, 5)), ("returned", at(2026, 3, 6))) == [
        (at(2026, 3, 3), at(2026, 3, 4)), (at(2026, 3, 5), at(2026, 3, 6))]
    assert pairs(("accepted", at(2026, 3, 2)), ("closed", at(2026, 3, 3)), ("returned", at(2026, 3, 3))) == []
    assert pairs(("accepted", at(2026, 3, 2)), ("withdrawn", at(2026, 3, 3)), ("returned", at(2026, 3, 4))) == []
    # Whatever order the events are given in.
    assert pairs(("returned", at(2026, 3, 4)), ("closed", at(2026, 3, 3)), ("accepted", at(2026, 3, 2))) == [
        (at(2026, 3, 3), at(2026, 3, 4))]
    events = [ev("accepted", at(2026, 3, 2), event_id="a"), ev("closed", at(2026, 3, 3), event_id="b"),
              ev("returned", at(2026, 3, 4), node="undertake", event_id="c")]
    row = case_row(CaseState("C1", tuple(events)), "I", "D", None, None, RAISED)
    assert (row["undone_ends"], row["reopened_at"], row["ended_at"]) == ([at(2026, 3, 3)], [at(2026, 3, 4)], None)
