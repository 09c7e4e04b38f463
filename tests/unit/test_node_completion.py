"""Which events complete a node: its own node_completed, and acceptance or closing only where
the catalog says so (`completed_by`). Found on the real receipt log: closing used to complete
the last node silently, so a case closed without its last step raised nothing."""

import copy

import pytest
import yaml

from alerts.calendar import WorkCalendar
from alerts.catalog import CatalogError, CompletedBy, load_catalog
from alerts.evaluate import Judge
from tests.unit.helpers import CONTRACT, LICENCE, PENALTY, active, at, ev, run

RAW = yaml.safe_load((CONTRACT / "catalog.example.yaml").read_text(encoding="utf-8"))


def judge_with(change) -> Judge:
    raw = copy.deepcopy(RAW)
    change(raw["items"][0]["nodes"])
    return Judge(load_catalog(raw), WorkCalendar(on_missing_year=lambda year: None))


def whole_process(close=True, last_node=False):
    events = [ev("accepted", at(2026, 3, 2, 10)), ev("node_completed", at(2026, 3, 3), node="undertake"),
              ev("node_completed", at(2026, 3, 4), node="review"), ev("node_completed", at(2026, 3, 5), node="approve")]
    if last_node:
        events.append(ev("node_completed", at(2026, 3, 6, 9), node="close"))
    if close:
        events.append(ev("closed", at(2026, 3, 6, 10)))
    return events


def without_completed_by(nodes):
    for node in nodes:
        node.pop("completed_by", None)


def test_the_contract_example_says_which_nodes_acceptance_and_closing_complete():
    item = load_catalog(RAW).item(LICENCE)
    assert [n.id for n in item.completed_by(CompletedBy.ACCEPTED)] == ["accept"]
    assert [n.id for n in item.completed_by(CompletedBy.CLOSED)] == ["close"]
    assert active(run(whole_process(), at(2026, 5, 1))) == set()


def test_closing_does_not_complete_a_last_node_the_catalog_does_not_give_it():
    judge = judge_with(lambda nodes: nodes[-1].pop("completed_by"))
    assert active(run(whole_process(), at(2026, 5, 1), judge)) == {("skipped_node", "close")}
    # Its own event completes it.
    assert active(run(whole_process(last_node=True), at(2026, 5, 1), judge)) == set()


def test_acceptance_does_not_complete_a_first_node_the_catalog_does_not_give_it():
    judge = judge_with(lambda nodes: nodes[0].pop("completed_by"))
    state = run(whole_process(), at(2026, 5, 1), judge)
    assert active(state) == {("skipped_node", "accept")}
    (skip,) = [a for a in state.alerts.values() if a.rule.value == "skipped_node"]
    assert skip.evidence["went_ahead_node"] == "undertake"


def test_a_catalog_without_completed_by_needs_every_node_event():
    judge = judge_with(without_completed_by)
    events = [ev("node_completed", at(2026, 3, 2, 10, 30), node="accept")] + whole_process(last_node=True)
    assert active(run(events, at(2026, 5, 1), judge)) == set()


def test_completed_by_is_checked_when_the_catalog_loads():
    raw = copy.deepcopy(RAW)
    raw["items"][0]["nodes"][0]["completed_by"] = "decided"
    with pytest.raises(CatalogError, match="node 'accept': completed_by must be accepted or closed"):
        load_catalog(raw)


def test_the_catalog_names_contacts_and_the_inspection_office():
    catalog = load_catalog(RAW)
    scjg, zjj = catalog.departments["SCJG"], catalog.departments["ZJJ"]
    assert scjg.ticket_contact.email == "scjg-fagui@example.gov.cn"
    assert zjj.ticket_contact == zjj.head  # the contract's default: the head
    assert (scjg.self_built, zjj.self_built) == (False, True)
    assert catalog.inspection_office.email == "jijian@example.gov.cn"


def test_closing_checks_what_the_node_it_completes_requires_even_an_optional_node():
    """A node closing completes (`completed_by: closed`) that `requires` an optional node: closing
    before that node completed skips it, as that node's own event would (a black-box test found
    the red card missing: closing checked only the nodes marked required)."""
    def close_requires_site_check(nodes):
        nodes[-1]["requires"] = ["site_check"]

    judge = judge_with(close_requires_site_check)
    state = run(whole_process(), at(2026, 5, 1), judge)
    assert active(state) == {("skipped_node", "site_check")}
    (skip,) = [a for a in state.alerts.values() if a.rule.value == "skipped_node"]
    assert skip.evidence["went_ahead"] == "closing"
    # With the optional node done, nothing; and its own event for the closing node checks the same.
    checked = whole_process()[:-1] + [ev("node_completed", at(2026, 3, 5, 12), node="site_check"),
                                      ev("closed", at(2026, 3, 6, 10))]
    assert active(run(checked, at(2026, 5, 1), judge)) == set()
    own_event = active(run(whole_process(close=False, last_node=True), at(2026, 5, 1), judge))
    assert {a for a in own_event if a[0] == "skipped_node"} == {("skipped_node", "site_check")}


def test_a_decision_does_not_complete_a_node_the_catalog_does_not_give_it():
    """The contract: a node completes only by its own node_completed (or the acceptance or closing
    the catalog names). A licence decided and closed without its 批准 step skipped it, whatever the
    node's id (found by a black-box test: a node named approve, decide or decision was completed
    by the decision, and the case closed without it raised nothing)."""
    events = [e for e in whole_process() if e.node != "approve"][:-1] + [ev("closed", at(2026, 3, 5, 16))]
    decided = [*events[:-1], ev("decided", at(2026, 3, 5), decision="approve"), events[-1]]
    assert active(run(decided, at(2026, 5, 1))) == {("skipped_node", "approve")}
    # Its own event completes it, before the decision or after it.
    approve = ev("node_completed", at(2026, 3, 5), node="approve")
    assert active(run([*decided[:-2], approve, *decided[-2:]], at(2026, 5, 1))) == set()
    later = ev("node_completed", at(2026, 3, 5, 11), node="approve")
    assert active(run([*decided[:-1], later, decided[-1]], at(2026, 5, 1))) == set()
    # Deciding before a required step before the decision node is still a skip of that step.
    early = [events[0], events[1], ev("decided", at(2026, 3, 3, 11), decision="approve"), *events[2:]]
    assert ("skipped_node", "review") in active(run(early, at(2026, 5, 1)))


def test_a_catalog_that_names_its_decision_node_has_it_completed_by_the_decision():
    """`decision_node` (an optional field Sunlight adds to an item: the real road-traffic log's
    fine is its decision): the decision completes that node, as the catalog says."""
    def name_decision_node(raw):
        raw["items"][0]["decision_node"] = "approve"

    raw = copy.deepcopy(RAW)
    name_decision_node(raw)
    judge = Judge(load_catalog(raw), WorkCalendar(on_missing_year=lambda year: None))
    events = [e for e in whole_process() if e.node != "approve"]
    decided = [*events[:-1], ev("decided", at(2026, 3, 5), decision="approve"), events[-1]]
    assert active(run(decided, at(2026, 5, 1), judge)) == set()


def test_a_decision_waits_for_what_its_node_requires_not_for_a_parallel_branch_listed_before_it():
    """Found by a black-box test: a flowchart's parallel branches (T02 -> T03 beside T04, the
    decision node, both after T01) are listed one after the other, and a decision made before
    T02 and T03, which the decision node does not require, raised two red skipped_node cards,
    while the same node completed by its own event raised none. The decision is checked as its
    node's own completion is: against what that node requires; closing still needs every required
    node."""
    raw = copy.deepcopy(RAW)
    item = raw["items"][0]
    item["decision_node"] = "decide"
    item["nodes"] = [{"id": "T01", "name": "受理", "completed_by": "accepted"},
                     {"id": "T02", "name": "勘查", "requires": ["T01"]},
                     {"id": "T03", "name": "复核", "requires": ["T02"]},
                     {"id": "decide", "name": "决定", "requires": ["T01"]},
                     {"id": "T05", "name": "送达", "requires": ["T03", "decide"]},
                     {"id": "T08", "name": "办结", "completed_by": "closed"}]
    judge = Judge(load_catalog(raw), WorkCalendar(on_missing_year=lambda year: None))
    accepted = ev("accepted", at(2026, 3, 2, 9))
    branch = [ev("node_completed", at(2026, 3, 3), node="T02"), ev("node_completed", at(2026, 3, 4), node="T03")]
    rest = [ev("node_completed", at(2026, 3, 5), node="T05"), ev("closed", at(2026, 3, 6))]
    by_decision = [accepted, ev("decided", at(2026, 3, 2, 10), decision="approve"), *branch, *rest]
    by_node = [accepted, ev("node_completed", at(2026, 3, 2, 10), node="decide"), *branch, *rest]
    assert active(run(by_node, at(2026, 5, 1), judge)) == set()
    assert active(run(by_decision, at(2026, 5, 1), judge)) == set()
    # A node the decision's node requires is still waited for; a branch skipped is still a skip.
    early = [ev("decided", at(2026, 3, 1, 10), decision="approve"), accepted, *branch, *rest]
    assert ("skipped_node", "T01") in active(run(early, at(2026, 5, 1), judge))
    without_t03 = [accepted, ev("decided", at(2026, 3, 2, 10), decision="approve"), branch[0], *rest]
    assert active(run(without_t03, at(2026, 5, 1), judge)) == {("skipped_node", "T03")}


def test_a_decision_made_again_at_the_moment_of_a_return_to_its_node_redoes_it():
    """Found by a black-box test: a penalty decided, served, then returned to its decision node and
    decided again at the moment of the return: the second decision was read before the return,
    which then undid the node, and the closing raised a red skipped_node for it; the same redo by
    the node's own event, or a minute later, raised nothing."""
    raw = copy.deepcopy(RAW)
    raw["items"][1]["decision_node"] = "decide"
    judge = Judge(load_catalog(raw), WorkCalendar(on_missing_year=lambda year: None))

    def case(first, redo):
        return [ev("accepted", at(2026, 3, 2, 9), item=PENALTY),
                *[ev("node_completed", at(2026, 3, 3, h), item=PENALTY, node=n)
                  for h, n in ((9, "file"), (10, "investigate"), (11, "legal_review"), (12, "notify"))],
                first, ev("node_completed", at(2026, 3, 5, 10), item=PENALTY, node="serve"),
                ev("returned", at(2026, 3, 5, 11), item=PENALTY, node="decide"), redo,
                ev("node_completed", at(2026, 3, 5, 13), item=PENALTY, node="serve"),
                ev("closed", at(2026, 3, 5, 15), item=PENALTY)]

    def decided(moment):
        return ev("decided", moment, item=PENALTY, decision="penalize", violation_code="V-FOOD-124",
                  penalty_amount=30000, discretion_tier="normal")

    def node(moment):
        return ev("node_completed", moment, item=PENALTY, node="decide")

    for first in (decided(at(2026, 3, 4, 10)), node(at(2026, 3, 4, 10))):
        for redo in (decided(at(2026, 3, 5, 11)), node(at(2026, 3, 5, 11)), decided(at(2026, 3, 5, 11, 1))):
            assert active(run(case(first, redo), at(2026, 5, 1), judge)) == set(), (first.type, redo)
        # Not redone: the closing went ahead of it.
        undone = [e for e in case(first, decided(at(2026, 3, 5, 11))) if e.type.value != "decided" or e is first]
        assert ("skipped_node", "decide") in active(run(undone, at(2026, 5, 1), judge))


@pytest.mark.parametrize("ids, name, decides", [
    (("shouli", "chengban", "shenhe", "jueding", "banjie"), "决定", True),
    (("n1", "n2", "n3", "n4", "n5"), "审 批", True),
    (("n1", "n2", "n3", "n4", "n5"), "作出行政许可决定", True),
    (("n1", "n2", "n3", "n4", "n5"), "集体讨论决定", True),
    (("n1", "n2", "n3", "n4", "n5"), "执行许可决定", False),  # after the decision, not where it is made
    (("n1", "n2", "n3", "n4", "n5"), "告知拟作出的决定", False),
    (("n1", "n2", "n3", "n4", "n5"), "结案审批", False),  # found by a review: false red cards on every case
    (("n1", "n2", "n3", "n4", "n5"), "作出受理决定", False),
])
def test_the_node_where_a_case_is_decided_is_known_by_its_chinese_name_whatever_its_id(ids, name, decides):
    """Found by a black-box test: only the ids decide/approve/decision made a decision node, so in a
    catalog with pinyin or numbered ids a case decided before a step the decision needs raised
    nothing, while the same catalog with English ids raised a red card."""
    raw = copy.deepcopy(RAW)
    nodes = raw["items"][0]["nodes"]
    del nodes[2]  # site_check: the five required steps remain
    old = [n["id"] for n in nodes]
    for node, new in zip(nodes, ids):
        node["id"] = new
        node.pop("requires", None)
        node["name"] = name if new == ids[3] else node["name"].replace("批准", "签发")
    judge = Judge(load_catalog(raw), WorkCalendar(on_missing_year=lambda year: None))
    assert judge.catalog.item(LICENCE).decision_node == (ids[3] if decides else None)
    rename = dict(zip(old, ids))
    events = [ev("accepted", at(2026, 3, 2, 10)), ev("decided", at(2026, 3, 2, 11), decision="approve"),
              ev("node_completed", at(2026, 3, 3), node=rename["undertake"]),
              ev("node_completed", at(2026, 3, 4), node=rename["review"]),
              ev("node_completed", at(2026, 3, 5), node=rename["approve"]), ev("closed", at(2026, 3, 6, 10))]
    skipped = {node for rule, node in active(run(events, at(2026, 5, 1), judge)) if rule == "skipped_node"}
    assert skipped == ({rename["undertake"], rename["review"]} if decides else set())


def test_an_english_decision_id_wins_over_an_earlier_node_named_like_a_decision():
    """Found by a review: 立案审批 first, then decide (作出处罚决定): the first node found by either
    its id or its name won, so the filing step became the decision node and a decision made before
    the investigation raised nothing."""
    raw = copy.deepcopy(RAW)
    nodes = raw["items"][1]["nodes"]
    nodes[0]["name"] = "立案审批"
    nodes[nodes.index(next(n for n in nodes if n["id"] == "decide"))]["name"] = "作出处罚决定"
    assert load_catalog(raw).item("320200-CF-SCJG-0007").decision_node == "decide"


def test_a_node_the_closing_completes_stated_at_the_closings_moment_goes_ahead_of_nothing_the_closing_completes():
    """Found by a black-box test: approve and close both completed by the closing (`completed_by:
    closed`), close's own event stated at the very moment of the closing. Read before the closing
    (nodes come before it at one moment), close went ahead of approve, which the closing was about
    to complete: a false red skipped_node. Done with the closing, it skips nothing, in whatever
    order or batches the two come; a node the closing does not complete is still skipped."""
    def both_by_closing(nodes):
        for node in nodes:
            if node["id"] == "approve":
                node["completed_by"] = "closed"

    judge = judge_with(both_by_closing)
    handled = [ev("accepted", at(2026, 3, 2, 10)), ev("node_completed", at(2026, 3, 3), node="undertake"),
               ev("node_completed", at(2026, 3, 5), node="review")]  # approve's day to 03-06
    own = ev("node_completed", at(2026, 3, 6, 10), node="close", event_id="z-close")
    closing = ev("closed", at(2026, 3, 6, 10), event_id="a-closed")
    for events in ([*handled, own, closing], [*handled, closing, own]):
        assert active(run(events, at(2026, 5, 1), judge)) == set(), [e.type.value for e in events]
    # Without review done, the closing (and close) went ahead of it: review alone is skipped.
    cards = active(run([handled[0], handled[1], own, closing], at(2026, 5, 1), judge))
    assert {card for card in cards if card[0] == "skipped_node"} == {("skipped_node", "review")}


def test_a_node_completed_after_the_closing_goes_ahead_of_the_optional_node_it_requires_in_any_batches():
    """Found by a black-box test: review requires site_check (optional), and was completed an hour
    after the closing, without it. Review still went ahead of site_check (the contract: a node
    completes before a node it requires has completed), but nodes after the end were not read: the
    card was missing, and one raised while the closing had not come was withdrawn when it came,
    as if facts showed it never held. A refused node stated after the closing but before review
    may be site_check's: it holds the case back; one after review does not."""
    from datetime import datetime, timezone

    from alerts.evaluate import step_many
    from alerts.state import after_the_end, last_node_after_the_end

    def review_requires_site_check(nodes):  # and the closing completes no node (it would need them all)
        for node in nodes:
            if node["id"] == "review":
                node["requires"] = ["undertake", "site_check"]
            if node["id"] == "close":
                node.pop("completed_by", None)

    judge = judge_with(review_requires_site_check)
    raised_at = datetime(2026, 1, 1, tzinfo=timezone.utc)
    accepted, undertaken = ev("accepted", at(2026, 3, 2, 10)), ev("node_completed", at(2026, 3, 3), node="undertake")
    closing = ev("closed", at(2026, 3, 6, 10))
    review = ev("node_completed", at(2026, 3, 6, 11), node="review")
    expected = {("skipped_node", "review"), ("skipped_node", "approve"), ("skipped_node", "close"),
                ("skipped_node", "site_check")}

    def skipped(state):
        return {card for card in active(state) if card[0] == "skipped_node"}

    assert skipped(run([accepted, undertaken, closing, review], at(2026, 5, 1), judge)) == expected
    first = step_many(None, [accepted, undertaken, review], [], judge, at(2026, 3, 9), raised_at).outcome.state
    assert ("skipped_node", "site_check") in skipped(first)
    assert skipped(step_many(first, [closing], [], judge, at(2026, 5, 1), raised_at).outcome.state) == expected
    # Not after a withdrawal, which is final: nothing after it is read.
    withdrawn = ev("withdrawn", at(2026, 3, 6, 10), reason="other")
    assert skipped(run([accepted, undertaken, withdrawn, review], at(2026, 5, 1), judge)) == set()
    assert last_node_after_the_end([accepted, undertaken, withdrawn, review], withdrawn.occurred_at) is None
    node = ev("node_completed", at(2026, 3, 6, 10, 30), node="site_check")  # in between, as a refused one states it
    last = last_node_after_the_end([accepted, undertaken, closing, review], closing.occurred_at)
    assert last == review.occurred_at
    assert not after_the_end(node.type, node.occurred_at, closing.occurred_at, last)
    assert after_the_end(node.type, at(2026, 3, 6, 12), closing.occurred_at, last)
