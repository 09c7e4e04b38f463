"""Supervision tickets (alerts/tickets.py): bundling, settling, the ladder, actions, silences."""

from __future__ import annotations

import random
from dataclasses import replace
from datetime import datetime, timedelta, timezone

import pytest

from alerts.calendar import WorkCalendar
from alerts.model import Alert, AlertStatus, Rule, Severity
from alerts.tickets import (INSPECTORS, Action, ActionKind, ActionRefused, Ladder, Resolution, Silence, Step,
                            TicketPolicy, TicketStatus, act, advance, case_of, on_action, on_alert, standing_notices,
                            ticket_id)

CST = timezone(timedelta(hours=8))
CAL = WorkCalendar(on_missing_year=lambda year: None)
POLICY = TicketPolicy()


def alert(node="N2", rule=Rule.SKIPPED_NODE, severity=Severity.RED, at=datetime(2026, 3, 2, 10, 0, tzinfo=CST),
          status=AlertStatus.OPEN, version=1, case_id="C-1") -> Alert:
    return Alert(alert_id=f"{rule.value}-{node}", rule=rule, severity=severity, case_id=case_id, item_code="I-1",
                 department="SCJG", region="320200", officer_id="o1", node=node, raised_at=at, event_time=at,
                 evidence={"node": node}, status=status, version=version)


def action(kind, version, department="SCJG", text="已整改", at=datetime(2026, 3, 3, 9, tzinfo=CST), action_id=None,
           ticket="C-1/skipped_node", alert_id=None) -> Action:
    return Action(action_id or f"{kind}-{version}-{department}", ticket, version, "张三", department,
                  ActionKind(kind), text, at, alert_id)


LICENCE = "320200-XK-SCJG-0001"  # the contract example catalog's licence item


def contract_catalog_raw() -> dict:
    """The contract's example catalog as its YAML reads (a test may change it before loading)."""
    import yaml

    from tests.unit.helpers import CONTRACT

    return yaml.safe_load((CONTRACT / "catalog.example.yaml").read_text(encoding="utf-8"))


def contract_catalog():
    from alerts.catalog import load_catalog

    return load_catalog(contract_catalog_raw())


def licence_ticket(opened_by=datetime(2026, 3, 2, 12, tzinfo=CST), **changes):
    """A red card on the contract's licence item (`changes` to the alert) and its ticket, advanced
    to `opened_by`: open from 11:00, an hour after the finding."""
    red = replace(alert(), item_code=LICENCE, **changes)
    return red, advance(on_alert(None, red, POLICY, CAL, red.event_time).ticket, POLICY, CAL, opened_by).ticket


def opened(at=datetime(2026, 3, 2, 11, 0, tzinfo=CST)):
    outcome = on_alert(None, alert(), POLICY, CAL, at)
    return outcome


def test_a_red_alert_settles_an_hour_before_its_ticket_opens_with_a_notice_to_the_contact():
    settling = on_alert(None, alert(), POLICY, CAL, datetime(2026, 3, 2, 10, 30, tzinfo=CST))
    assert settling.ticket.status is TicketStatus.SETTLING and not settling.changes and not settling.notices
    assert settling.ticket.next_due == datetime(2026, 3, 2, 11, 0, tzinfo=CST)
    out = advance(settling.ticket, POLICY, CAL, datetime(2026, 3, 2, 11, 5, tzinfo=CST))
    ticket = out.ticket
    assert ticket.status is TicketStatus.OPEN and ticket.version == 1
    assert ticket.opened_at == datetime(2026, 3, 2, 11, 0, tzinfo=CST)  # at its moment, not the tick's
    # 3 working days after Monday 2 March: Thursday 5 March, 24:00 local time
    assert ticket.deadline == datetime(2026, 3, 6, 0, 0, tzinfo=CST)
    assert [n.step for n in out.notices] == [Step.OPENED] and out.notices[0].recipient == "contact"


def test_a_red_card_withdrawn_while_settling_never_reaches_the_department():
    settling = on_alert(None, alert(), POLICY, CAL, datetime(2026, 3, 2, 10, 30, tzinfo=CST)).ticket
    gone = on_alert(settling, alert(status=AlertStatus.WITHDRAWN, version=2), POLICY, CAL,
                    datetime(2026, 3, 2, 10, 40, tzinfo=CST)).ticket
    out = advance(gone, POLICY, CAL, datetime(2026, 3, 9, tzinfo=CST))
    assert out.ticket.status is TicketStatus.SETTLING and not out.ticket.visible
    assert not out.changes and not out.notices and out.ticket.next_due is None


def test_live_a_finding_whose_facts_arrive_late_settles_from_when_it_arrives():
    """A week of history pushed to a live worker: its acceptance alone makes a case look overdue
    on the wall clock, and its closing comes seconds later. Settled from the finding's business
    time, long past, the ticket opened and escalated at once, to the head and the inspection
    office; settled from when the finding reached the tickets, the closing withdraws it first."""
    week_ago = datetime(2026, 3, 2, 10, 0, tzinfo=CST)
    now = datetime(2026, 3, 9, 15, 0, tzinfo=CST)
    out = on_alert(None, alert(at=week_ago), POLICY, CAL, now, seen_at=now)
    assert out.ticket.status is TicketStatus.SETTLING and not out.notices
    assert out.ticket.next_due == now + timedelta(hours=1)
    gone = on_alert(out.ticket, alert(at=week_ago, status=AlertStatus.WITHDRAWN, version=2), POLICY, CAL,
                    now + timedelta(seconds=5), seen_at=now + timedelta(seconds=5)).ticket
    later = advance(gone, POLICY, CAL, now + timedelta(days=30))
    assert not later.ticket.visible and not later.notices
    # A finding that stands opens an hour after it arrived, and the department's time runs from then.
    stands = advance(out.ticket, POLICY, CAL, now + timedelta(hours=2))
    assert stands.ticket.opened_at == now + timedelta(hours=1) and [n.step for n in stands.notices] == [Step.OPENED]
    assert stands.ticket.deadline == datetime(2026, 3, 13, 0, 0, tzinfo=CST)  # 3 working days after Monday 9th
    # A new version of the finding keeps when it first arrived.
    again = on_alert(out.ticket, alert(at=week_ago, version=2), POLICY, CAL, now + timedelta(minutes=50),
                     seen_at=now + timedelta(minutes=50)).ticket
    assert again.next_due == now + timedelta(hours=1)
    # A replay (no seen_at) judges with every fact it will get: its tickets run in business time.
    replayed = on_alert(None, alert(at=week_ago), POLICY, CAL, now).ticket
    assert replayed.opened_at == week_ago + timedelta(hours=1)


def test_yellow_alerts_open_no_ticket_by_default_and_the_policy_can_say_otherwise():
    yellow = alert(rule=Rule.NODE_OVERDUE, severity=Severity.YELLOW)
    assert on_alert(None, yellow, POLICY, CAL, yellow.event_time).ticket is None
    policy = TicketPolicy(rules=frozenset({(Rule.NODE_OVERDUE, Severity.YELLOW)}))
    ticket = on_alert(None, yellow, policy, CAL, yellow.event_time).ticket
    assert ticket.ticket_id == "C-1/node_overdue"
    # Its history says a yellow card opened it (it said red: found by a black-box test).
    opened = advance(ticket, policy, CAL, yellow.event_time + timedelta(hours=2)).ticket
    assert opened.last.kind == "opened" and opened.last.text == "黄牌预警持续有效，生成督办件"


def test_one_ticket_bundles_a_rule_s_alerts_and_is_withdrawn_only_when_all_are():
    t = on_alert(None, alert("N2"), POLICY, CAL, datetime(2026, 3, 2, 10, 0, tzinfo=CST)).ticket
    t = on_alert(t, alert("N3"), POLICY, CAL, datetime(2026, 3, 2, 10, 0, tzinfo=CST)).ticket
    t = advance(t, POLICY, CAL, datetime(2026, 3, 2, 12, tzinfo=CST)).ticket
    assert t.status is TicketStatus.OPEN and set(t.alerts) == {"skipped_node-N2", "skipped_node-N3"}
    t = on_alert(t, alert("N2", status=AlertStatus.WITHDRAWN, version=2), POLICY, CAL,
                 datetime(2026, 3, 2, 13, tzinfo=CST)).ticket
    assert t.status is TicketStatus.OPEN
    out = on_alert(t, alert("N3", status=AlertStatus.WITHDRAWN, version=2), POLICY, CAL,
                   datetime(2026, 3, 2, 14, tzinfo=CST))
    assert out.ticket.status is TicketStatus.WITHDRAWN and out.changes[0].kind == "withdrawn"


def test_live_a_withdrawn_ticket_reopened_by_a_late_finding_runs_from_now_not_from_a_moment_to_come():
    """Settled from when it arrived, the finding's opening lies an hour ahead: the new round opens
    then, as a first round would (it once ran from a moment to come: its opened_at in the future)."""
    at = datetime(2026, 3, 10, 23, 30, tzinfo=CST)
    t = on_alert(None, alert("N2"), POLICY, CAL, datetime(2026, 3, 2, 10, 0, tzinfo=CST)).ticket
    t = advance(t, POLICY, CAL, datetime(2026, 3, 2, 12, tzinfo=CST)).ticket
    t = on_alert(t, alert("N2", status=AlertStatus.WITHDRAWN, version=2), POLICY, CAL, at - timedelta(hours=1),
                 seen_at=at - timedelta(hours=1)).ticket
    assert t.status is TicketStatus.WITHDRAWN
    out = on_alert(t, alert("N3", at=datetime(2026, 3, 5, 10, tzinfo=CST)), POLICY, CAL, at, seen_at=at)
    # A new round settles as a first one does (a card withdrawn again within the hour reaches no one),
    # then runs from its opening; the withdrawn round stays as it is meanwhile.
    assert out.ticket.status is TicketStatus.WITHDRAWN and out.ticket.next_due == at + timedelta(hours=1)
    assert not out.changes and out.ticket.round == 1
    opened_round = advance(out.ticket, POLICY, CAL, at + timedelta(hours=2))
    assert opened_round.ticket.status is TicketStatus.OPEN and opened_round.ticket.opened_at == at + timedelta(hours=1)
    assert opened_round.ticket.deadline == datetime(2026, 3, 17, tzinfo=CST)  # 3 working days after the 11th
    assert [n.notice_id for n in opened_round.notices] == ["C-1/skipped_node/opened/r2"]


def test_silence_escalates_to_the_head_at_the_deadline_then_to_the_inspection_office():
    t = advance(opened().ticket, POLICY, CAL, datetime(2026, 3, 2, 11, tzinfo=CST)).ticket
    out = advance(t, POLICY, CAL, datetime(2026, 3, 20, tzinfo=CST))  # one late tick: both steps, each at its moment
    assert [n.step for n in out.notices] == [Step.LEVEL_1, Step.LEVEL_2]
    assert [n.recipient for n in out.notices] == ["head", "inspection_office"]
    assert out.notices[0].at == datetime(2026, 3, 6, tzinfo=CST)  # the deadline
    assert out.notices[1].at == datetime(2026, 3, 10, tzinfo=CST)  # 2 working days later
    assert out.ticket.overdue and out.ticket.escalation_level == 2 and out.ticket.next_due is None
    again = advance(out.ticket, POLICY, CAL, datetime(2026, 3, 30, tzinfo=CST))
    assert not again.changes and not again.notices  # exactly one notice per step


def test_the_loop_reply_return_reply_accept():
    t = advance(opened().ticket, POLICY, CAL, datetime(2026, 3, 2, 11, tzinfo=CST)).ticket
    t = on_action(t, action("reply", 1), CAL, t.opened_at).ticket
    assert t.status is TicketStatus.REPLIED and t.next_due is None
    out = on_action(t, action("return", 2, INSPECTORS, "整改不到位"), CAL, t.opened_at)
    assert out.ticket.status is TicketStatus.RETURNED and [n.step for n in out.notices] == [Step.RETURNED]
    t = on_action(out.ticket, action("reply", 3), CAL, t.opened_at).ticket
    t = on_action(t, action("accept", 4, INSPECTORS, ""), CAL, t.opened_at).ticket
    assert t.status is TicketStatus.CLOSED and t.resolution is Resolution.ACCEPTED and t.version == 5
    assert t.last.actor == "张三" and t.last.kind == "accept"


def closed_ticket():
    """The N2 card's ticket, replied to and accepted on 3 March (round 1 closed)."""
    t = advance(opened().ticket, POLICY, CAL, datetime(2026, 3, 2, 11, tzinfo=CST)).ticket
    t = on_action(t, action("reply", 1), CAL, t.opened_at).ticket
    t = on_action(t, action("accept", 2, INSPECTORS, ""), CAL, t.opened_at).ticket
    assert t.status is TicketStatus.CLOSED
    return t


def test_a_red_card_its_closed_ticket_did_not_answer_opens_a_new_round():
    """Found by a black-box test: a node skipped at the closing, found after the inspector accepted
    the reply about another skipped node, stood as a red card that reached no ticket and no one (the
    closed record stayed as it was)."""
    at = datetime(2026, 3, 9, 10, tzinfo=CST)
    out = on_alert(closed_ticket(), alert("N4", at=at), POLICY, CAL, at + timedelta(hours=2))
    assert out.ticket.status is TicketStatus.OPEN and out.ticket.round == 2 and out.ticket.resolution is None
    assert out.ticket.opened_at == at + timedelta(hours=1)  # settled from the new finding
    assert [n.notice_id for n in out.notices] == ["C-1/skipped_node/opened/r2"]
    assert out.changes[0].kind == "reopened"
    # Its history names the card it is for (it said only 新的预警成立: found by a black-box test).
    assert out.changes[0].text == "新的预警成立（预警 skipped_node-N4（环节“N4”）），督办件重新生效"
    # A new version of the card the closed round answered changes nothing of its record but the bundle.
    same = on_alert(closed_ticket(), alert("N2", version=2), POLICY, CAL, at)
    assert same.ticket.status is TicketStatus.CLOSED and not same.notices
    assert [c.text for c in same.changes] == ["预警 skipped_node-N2（环节“N2”） 更新为第 2 版"]


def test_a_new_round_never_opens_before_the_round_it_follows_ended_nor_escalates_at_once():
    """Found by review: a finding dated before the closing (a replay, a redrive) opened the new round
    at its business time, before round 1 closed, and levels 1 and 2 went out in the same breath;
    live, a card standing again weeks after it was first seen settled from its first sighting."""
    closed = closed_ticket()  # accepted on 3 March
    early = alert("N4", at=datetime(2026, 2, 20, 10, tzinfo=CST))
    out = on_alert(closed, early, POLICY, CAL, datetime(2026, 3, 4, 9, tzinfo=CST))
    assert out.ticket.round == 2 and out.ticket.opened_at == closed.last.at
    assert [n.step for n in out.notices] == [Step.OPENED]  # nothing due yet: 3 working days from then
    # Live: N2 withdrawn, then standing again on 20 March, weeks after it was first seen.
    t = advance(opened().ticket, POLICY, CAL, datetime(2026, 3, 2, 11, tzinfo=CST)).ticket
    t = on_alert(t, alert("N2", status=AlertStatus.WITHDRAWN, version=2), POLICY, CAL,
                 datetime(2026, 3, 2, 12, tzinfo=CST), seen_at=datetime(2026, 3, 2, 12, tzinfo=CST)).ticket
    assert t.status is TicketStatus.WITHDRAWN
    back = datetime(2026, 3, 20, 10, tzinfo=CST)
    out = on_alert(t, alert("N2", version=3), POLICY, CAL, back, seen_at=back)
    assert out.ticket.status is TicketStatus.WITHDRAWN and out.ticket.next_due == back + timedelta(hours=1)
    assert not out.notices


def test_a_new_round_is_history_when_its_process_sends_nothing_and_waits_out_a_silence():
    """Found by review: a new round kept the closed round's `quiet` (a live red card's round held
    every notice), and opened within a silence, telling the department at once."""
    closed = replace(closed_ticket(), quiet=True)
    at = datetime(2026, 3, 9, 10, tzinfo=CST)
    live = on_alert(closed, alert("N4", at=at), POLICY, CAL, at + timedelta(hours=2))
    assert not live.ticket.quiet and [n.step for n in live.notices] == [Step.OPENED]
    history = on_alert(closed_ticket(), alert("N4", at=at), POLICY, CAL, at + timedelta(hours=2), quiet=True)
    assert history.ticket.quiet
    silence = Silence("S1", datetime(2026, 3, 12, tzinfo=CST), "流程修订中", department="SCJG")
    silenced = on_alert(closed_ticket(), alert("N4", at=at), replace(POLICY, silences=(silence,)), CAL,
                        at + timedelta(hours=2))
    assert silenced.ticket.status is TicketStatus.CLOSED and not silenced.notices
    assert silenced.ticket.next_due == silence.until
    after = advance(silenced.ticket, replace(POLICY, silences=(silence,)), CAL, silence.until + timedelta(minutes=1))
    assert [n.notice_id for n in after.notices] == ["C-1/skipped_node/opened/r2"]
    assert after.ticket.opened_at == silence.until


def test_the_ended_round_stays_as_it_is_while_the_next_one_settles():
    """Found by review: a settling new round was the ended round's record turned settling: written as
    a row under the ended round's last version (its closing overwritten: resolution gone, round 2),
    an answered card's new version reopened it backdated at once, a card withdrawn while it settled
    left the closed ticket never withdrawn, and a hand opening then skipped a round number."""
    closed = closed_ticket()
    found = datetime(2026, 3, 9, 10, tzinfo=CST)
    pending = on_alert(closed, alert("N4", at=found), POLICY, CAL, found + timedelta(minutes=5)).ticket
    assert (pending.status, pending.version, pending.resolution, pending.round) == (
        TicketStatus.CLOSED, closed.version, closed.resolution, 1)
    assert pending.next_due == found + timedelta(hours=1)
    # A new version of the card the closed round answered: recorded on it; the round still settles.
    again = on_alert(pending, alert("N2", version=2), POLICY, CAL, found + timedelta(minutes=10))
    assert [c.kind for c in again.changes] == ["alerts"] and again.ticket.status is TicketStatus.CLOSED
    assert again.ticket.next_due == found + timedelta(hours=1) and not again.notices
    # The new card withdrawn within the hour: no round; then the answered card withdrawn: the closed
    # ticket is withdrawn, and those it reached told.
    gone = on_alert(again.ticket, alert("N4", at=found, status=AlertStatus.WITHDRAWN, version=2), POLICY, CAL,
                    found + timedelta(minutes=20)).ticket
    assert gone.status is TicketStatus.CLOSED and gone.next_due is None
    out = on_alert(gone, alert("N2", status=AlertStatus.WITHDRAWN, version=3), POLICY, CAL,
                   found + timedelta(minutes=30))
    assert out.ticket.status is TicketStatus.WITHDRAWN and [n.recipient for n in out.notices] == ["contact"]
    # Opened by hand while a round settles: the next round, not one after it.
    by_hand = action("open", None, INSPECTORS, "复查", at=found + timedelta(minutes=15), alert_id="skipped_node-N4")
    opened_by_hand = on_action(pending, by_hand, CAL, found + timedelta(minutes=15), None).ticket
    assert opened_by_hand.round == 2 and not opened_by_hand.pending
    from streams.ticket_codec import ticket_from_json, ticket_to_json
    assert ticket_from_json(ticket_to_json(pending)) == pending


def test_a_round_opened_by_hand_from_a_yellow_card_is_opened_again_by_hand():
    """Found by review: a hand-opened yellow ticket, closed, its card withdrawn (the ticket with it)
    and standing again, reopened by itself and escalated: the policy opens no ticket for it."""
    yellow = alert(rule=Rule.NODE_OVERDUE, severity=Severity.YELLOW)
    by_hand = action("open", None, INSPECTORS, "请核查", ticket=ticket_id("C-1", Rule.NODE_OVERDUE),
                     alert_id=yellow.alert_id)
    t = on_action(None, by_hand, CAL, by_hand.at, yellow).ticket
    t = on_action(t, action("close", t.version, INSPECTORS, "已核实", ticket=t.ticket_id), CAL, by_hand.at).ticket
    t = on_alert(t, replace(yellow, status=AlertStatus.WITHDRAWN, version=2), POLICY, CAL,
                 datetime(2026, 3, 5, tzinfo=CST)).ticket
    assert t.status is TicketStatus.WITHDRAWN
    out = on_alert(t, replace(yellow, version=3), POLICY, CAL, datetime(2026, 3, 20, tzinfo=CST))
    assert out.ticket.status is TicketStatus.WITHDRAWN and not out.notices and not out.changes


def test_a_closed_ticket_whose_cards_are_all_withdrawn_is_withdrawn_and_taken_back_in_writing():
    """Found by a black-box test: a closing dated before the deadline withdrew the overdue card of a
    ticket that had gone to the head and was closed; the ticket stayed 已办结, its card shown 有效,
    and no one was told the accusation had not held."""
    t = advance(opened().ticket, POLICY, CAL, datetime(2026, 3, 7, tzinfo=CST)).ticket  # overdue: head told
    t = on_action(t, action("reply", t.version, at=datetime(2026, 3, 7, 9, tzinfo=CST)), CAL, t.opened_at).ticket
    t = on_action(t, action("accept", t.version, INSPECTORS, ""), CAL, t.opened_at).ticket
    assert t.status is TicketStatus.CLOSED and t.escalation_level == 1
    out = on_alert(t, alert("N2", status=AlertStatus.WITHDRAWN, version=2), POLICY, CAL,
                   datetime(2026, 3, 12, tzinfo=CST))
    assert out.ticket.status is TicketStatus.WITHDRAWN and not out.ticket.open_alerts
    assert sorted(n.recipient for n in out.notices) == ["contact", "head"]


def test_a_step_due_before_the_ticket_s_last_change_is_taken_at_that_change():
    """Found by a black-box test: a second replay's alert updates were recorded at its clock (27th),
    then the level 1 that fell due on the 6th was dated the 6th, after them: a history running
    backwards. It is taken when the ticket's last change was recorded."""
    t = advance(opened().ticket, POLICY, CAL, datetime(2026, 3, 2, 11, tzinfo=CST)).ticket
    later = datetime(2026, 3, 27, 8, tzinfo=CST)
    t = on_alert(t, alert("N3"), POLICY, CAL, later).ticket  # another card of the bundle, recorded on the 27th
    assert t.last.at == later and t.last.text == "新增预警 skipped_node-N3（环节“N3”）"
    out = advance(t, POLICY, CAL, later)
    assert [(v.last.kind, v.last.at) for v in out.versions] == [("level_1", later), ("level_2", later)]
    assert [n.at for n in out.notices] == [later, later]
    assert "退回" not in out.ticket.last.text and out.ticket.level_2_on_return is None


def test_a_closed_ticket_opened_again_by_hand_at_an_earlier_stated_time_is_dated_after_its_closing():
    """Found by an independent scorer: `tickets open --now 2026-05-10` on a ticket closed on 06-01
    made version 5 dated before version 4."""
    closed = closed_ticket()
    earlier = closed.last.at - timedelta(days=20)
    again = action("open", None, INSPECTORS, "复查", at=earlier, alert_id=alert().alert_id)
    out = on_action(closed, again, CAL, earlier, None)
    assert out.ticket.round == 2 and out.ticket.last.at == closed.last.at == out.notices[0].at


def test_an_action_the_ticket_s_status_forbids_is_refused_in_words():
    """Said in Chinese, and in English that reads ("cannot be replyed" before)."""
    t = advance(opened().ticket, POLICY, CAL, datetime(2026, 3, 2, 11, tzinfo=CST)).ticket
    t = on_action(t, action("reply", 1), CAL, t.opened_at).ticket
    with pytest.raises(ActionRefused) as refused:
        on_action(t, action("reply", 2, action_id="again"), CAL, t.opened_at)
    assert refused.value.reason == "not_allowed"
    assert refused.value.detail == "督办件当前为“已答复待审核”，不能答复（a ticket replied cannot be replied to）"


@pytest.mark.parametrize("bad, reason", [
    (dict(department="ZJJ"), "wrong_department"),
    (dict(version=7), "stale_version"),
    (dict(ticket="C-2/skipped_node"), "unknown_ticket"),
    (dict(text=" "), "malformed_action"),
])
def test_a_refused_reply_changes_nothing(bad, reason):
    t = advance(opened().ticket, POLICY, CAL, datetime(2026, 3, 2, 11, tzinfo=CST)).ticket
    args = dict(kind="reply", version=1) | {k: v for k, v in bad.items()}
    with pytest.raises(ActionRefused) as refused:
        on_action(None if "ticket" in bad else t, action(**args), CAL, t.opened_at)
    assert refused.value.reason == reason


def test_only_inspectors_accept_return_or_close():
    t = advance(opened().ticket, POLICY, CAL, datetime(2026, 3, 2, 11, tzinfo=CST)).ticket
    t = on_action(t, action("reply", 1), CAL, t.opened_at).ticket
    with pytest.raises(ActionRefused, match="wrong_department"):
        on_action(t, action("accept", 2, "SCJG"), CAL, t.opened_at)


def test_a_redelivered_action_changes_nothing():
    t = advance(opened().ticket, POLICY, CAL, datetime(2026, 3, 2, 11, tzinfo=CST)).ticket
    reply = action("reply", 1)
    once = on_action(t, reply, CAL, t.opened_at)
    twice = on_action(once.ticket, reply, CAL, t.opened_at)
    assert twice.ticket == once.ticket and not twice.changes


def test_a_reply_before_the_deadline_stops_the_ladder_and_a_return_starts_it_again():
    t = advance(opened().ticket, POLICY, CAL, datetime(2026, 3, 2, 11, tzinfo=CST)).ticket
    t = on_action(t, action("reply", 1), CAL, t.opened_at).ticket
    assert not advance(t, POLICY, CAL, datetime(2026, 4, 1, tzinfo=CST)).notices
    t = on_action(t, action("return", 2, INSPECTORS, "补充材料"), CAL, t.opened_at).ticket
    assert [n.step for n in advance(t, POLICY, CAL, datetime(2026, 3, 6, 1, tzinfo=CST)).notices] == [Step.LEVEL_1]


def test_a_reply_after_the_deadline_finds_the_ticket_overdue_whichever_process_takes_it_first():
    """A ticket stored open (a replay at --now before its deadline); the next process to touch it
    is a reply, at a moment past the deadline and level 2. Before, the reply came first and the
    ticket was never overdue (逾期 否, no escalation), while `serve` taking it first escalated it:
    the record depended on which command came first."""
    t = advance(opened().ticket, POLICY, CAL, datetime(2026, 3, 2, 11, tzinfo=CST)).ticket
    late = action("reply", t.version, at=datetime(2026, 3, 20, 12, tzinfo=CST))
    out = act(t, late, POLICY, CAL, late.at)
    assert out.ticket.status is TicketStatus.REPLIED
    assert out.ticket.overdue and out.ticket.escalation_level == 2
    assert [c.kind for c in out.changes] == ["level_1", "level_2", "reply"]
    assert [n.step for n in out.notices] == [Step.LEVEL_1, Step.LEVEL_2]
    # The same as when the clock's steps came first, at their ticks.
    ticked = advance(t, POLICY, CAL, late.at).ticket
    assert act(ticked, replace(late, version=ticked.version), POLICY, CAL, late.at).ticket == out.ticket
    # An action's stated time never moves the clock: stated in the future, only the steps due by now.
    early = act(t, replace(late, action_id="future"), POLICY, CAL, datetime(2026, 3, 6, 1, tzinfo=CST))
    assert early.ticket.escalation_level == 1 and [c.kind for c in early.changes] == ["level_1", "reply"]
    # A reply before the deadline takes no step of the clock; a stale version is still refused.
    on_time = act(t, replace(late, at=datetime(2026, 3, 3, 9, tzinfo=CST)), POLICY, CAL, late.at)
    assert not on_time.ticket.overdue and [c.kind for c in on_time.changes] == ["reply"]
    with pytest.raises(ActionRefused, match="stale_version"):
        act(t, replace(late, version=t.version - 1), POLICY, CAL, late.at)


def test_an_inspector_opens_a_ticket_by_hand_from_a_yellow_alert():
    yellow = alert(rule=Rule.NODE_OVERDUE, severity=Severity.YELLOW)
    act = action("open", None, INSPECTORS, "人工督办", ticket=ticket_id("C-1", Rule.NODE_OVERDUE),
                 alert_id=yellow.alert_id)
    out = on_action(None, act, CAL, act.at, yellow)
    assert out.ticket.status is TicketStatus.OPEN and out.ticket.manual and out.ticket.version == 1
    assert [n.step for n in out.notices] == [Step.OPENED]
    with pytest.raises(ActionRefused, match="wrong_department"):
        on_action(None, replace(act, department="SCJG"), CAL, act.at, yellow)


def test_a_ticket_from_history_opened_again_by_hand_is_a_round_the_department_is_told_of():
    quiet = on_alert(None, alert(), POLICY, CAL, datetime(2026, 3, 2, 11, tzinfo=CST), quiet=True).ticket
    assert quiet.quiet and quiet.status is TicketStatus.OPEN
    closed = on_action(quiet, action("close", quiet.version, INSPECTORS, "历史件"), CAL, quiet.opened_at).ticket
    again = on_action(closed, action("open", None, INSPECTORS, "重新督办", alert_id=alert().alert_id,
                                     at=datetime(2026, 4, 1, 9, tzinfo=CST)), CAL, datetime(2026, 4, 1, 9, tzinfo=CST))
    assert not again.ticket.quiet and again.ticket.round == 2
    assert [n.step for n in again.notices] == [Step.OPENED]


def test_opening_by_hand_a_ticket_already_open_says_so():
    """A red card's ticket opened by itself: the red card is the ticket's own (not among the alerts
    a hand opens from), which made the refusal say there was no open alert."""
    t = advance(opened().ticket, POLICY, CAL, datetime(2026, 3, 2, 11, tzinfo=CST)).ticket
    act = action("open", None, INSPECTORS, "人工督办", alert_id=alert().alert_id)
    with pytest.raises(ActionRefused) as refused:
        on_action(t, act, CAL, act.at, None)
    assert refused.value.reason == "not_allowed" and "已在办（待答复）" in refused.value.detail


def test_a_silence_holds_a_ticket_until_it_ends_and_never_the_alert():
    silence = Silence("S1", datetime(2026, 3, 4, tzinfo=CST), "流程修订中", item_code="I-1")
    policy = replace(POLICY, silences=(silence,))
    t = on_alert(None, alert(), policy, CAL, datetime(2026, 3, 2, 12, tzinfo=CST))
    assert t.ticket.status is TicketStatus.SETTLING and t.ticket.silenced_by == "S1" and not t.notices
    out = advance(t.ticket, policy, CAL, datetime(2026, 3, 4, 1, tzinfo=CST))
    assert out.ticket.status is TicketStatus.OPEN and out.ticket.opened_at == silence.until


def test_the_same_alerts_and_clock_give_the_same_tickets_in_any_order():
    """Alert versions in any order, interleaved with late ticks: the same ticket. And, as long as
    each finding reaches the tickets after those of earlier business time, the same notices: an
    order that withdraws every alert of the ticket for a while (N3 withdrawn before N2, earlier,
    arrives) tells those its notices reached of the withdrawal, and the new round of the ticket."""
    versions = [alert("N2"), alert("N3", at=datetime(2026, 3, 2, 12, tzinfo=CST)),
                alert("N3", status=AlertStatus.WITHDRAWN, version=2, at=datetime(2026, 3, 2, 12, tzinfo=CST)),
                alert("N4", at=datetime(2026, 3, 5, 9, tzinfo=CST))]
    end = datetime(2026, 3, 12, tzinfo=CST)
    results, told, transient = set(), set(), 0
    for seed in range(40):
        rng = random.Random(seed)
        order = versions[:]
        rng.shuffle(order)
        in_time = seed % 2 == 0
        if in_time:  # half the orders: by business time, versions of one time in any order
            order.sort(key=lambda v: v.event_time)
        ticket, notices = None, []
        clock = datetime(2026, 3, 2, 8, tzinfo=CST)
        for version in order:
            clock = max(clock, version.event_time + timedelta(minutes=rng.randint(0, 600)))
            out = on_alert(ticket, version, POLICY, CAL, clock)
            ticket, notices = out.ticket, notices + [n.notice_id for n in out.notices]
            out = advance(ticket, POLICY, CAL, clock)
            ticket, notices = out.ticket, notices + [n.notice_id for n in out.notices]
        out = advance(ticket, POLICY, CAL, end)
        ticket, notices = out.ticket, notices + [n.notice_id for n in out.notices]
        results.add((ticket.opened_at, ticket.deadline, ticket.status, ticket.escalation_level))
        if in_time:
            told.add(tuple(notices))
        elif any("/withdrawn/" in n for n in notices):
            transient += 1
            assert notices[-3:] == ["C-1/skipped_node/opened/r2", "C-1/skipped_node/level_1/r2",
                                    "C-1/skipped_node/level_2/r2"], notices
    assert len(results) == 1, results
    assert told == {("C-1/skipped_node/opened", "C-1/skipped_node/level_1", "C-1/skipped_node/level_2")}, told
    assert transient, "some order withdraws the ticket for a while"


def test_actions_from_json_refuse_what_is_not_one():
    good = action("reply", 1).to_json()
    assert Action.from_json(good) == action("reply", 1)
    for bad, reason in [([], "malformed_action"), ({**good, "kind": "delete"}, "malformed_action"),
                        ({**good, "text": "字" * 5000}, "text_too_long"), ({**good, "at": "yesterday"},
                                                                           "malformed_action"),
                        ({**good, "version": "1"}, "malformed_action"), ({**good, "ticket_id": "x"}, "unknown_ticket")]:
        with pytest.raises(ActionRefused) as refused:
            Action.from_json(bad)
        assert refused.value.reason == reason


def test_ticket_ids_name_their_case():
    assert case_of(ticket_id("SCJG/2026/001", Rule.OVERDUE)) == "SCJG/2026/001"


def test_an_edited_ladder_changes_only_new_tickets():
    t = advance(opened().ticket, POLICY, CAL, datetime(2026, 3, 2, 11, tzinfo=CST)).ticket
    longer = replace(POLICY, default_ladder=Ladder(reply_days=10))
    assert advance(t, longer, CAL, datetime(2026, 3, 6, 1, tzinfo=CST)).ticket.escalation_level == 1


def test_a_policy_file_names_the_rules_and_their_ladders():
    from alerts.tickets import policy_from_config

    policy = policy_from_config({"reply_days": 5, "rules": [
        {"rule": "overdue"}, {"rule": "node_overdue", "severity": "yellow", "reply_days": 2, "settle_hours": 0}]})
    assert policy.opens(Rule.OVERDUE, Severity.RED) and policy.opens(Rule.NODE_OVERDUE, Severity.YELLOW)
    assert not policy.opens(Rule.SKIPPED_NODE, Severity.RED)
    assert policy.ladder(Rule.OVERDUE, Severity.RED).reply_days == 5
    assert policy.ladder(Rule.NODE_OVERDUE, Severity.YELLOW) == Ladder(timedelta(0), 2, 2)
    assert policy_from_config(None) == TicketPolicy()
    for bad in ({"rules": [{"rule": "late"}]}, {"reply_days": -1}, {"rules": "overdue"}, []):
        with pytest.raises(ValueError, match="ticket policy"):
            policy_from_config(bad)


def test_a_notice_names_its_recipient_from_the_catalog_and_says_what_happened_in_chinese():
    from alerts.notices import message_id, render_notice
    from sinks.notify import load_templates

    catalog = contract_catalog()
    red = replace(alert(), item_code="320200-XK-SCJG-0001", evidence={"node": "review", "went_ahead": "decision"})
    t = on_alert(None, red, POLICY, CAL, red.event_time).ticket
    out = advance(t, POLICY, CAL, datetime(2026, 3, 20, tzinfo=CST))
    texts = load_templates()
    rendered = [render_notice(n, out.ticket, catalog, texts) for n in out.notices]
    assert [(r.step, r.recipient_email) for r in rendered] == [
        (Step.OPENED, "scjg-fagui@example.gov.cn"), (Step.LEVEL_1, "scjg-head@example.gov.cn"),
        (Step.LEVEL_2, "jijian@example.gov.cn")]
    opened = rendered[0]
    assert opened.subject.startswith("【督办通知】市市场监督管理局") and "跳过环节" in opened.subject
    assert "食品经营许可" in opened.body and "2026-03-05 24:00" in opened.body and "C-1/skipped_node" in opened.body
    assert opened.message_id == message_id(opened.notice_id)  # the same notice, the same Message-ID
    assert len({r.message_id for r in rendered}) == 3
    assert "逾期未答复的，将按规定提请部门负责人督促办理。" in opened.body
    assert "第 1 轮" not in opened.subject + opened.body and "此前各轮" not in opened.body
    # A round after it says so: the department was just told this ticket was closed (found by a
    # black-box test: the second round's notice read as the first's).
    second = render_notice(out.notices[0], replace(out.ticket, round=2), catalog, texts)
    assert second.subject.startswith("【督办通知】（第 2 轮）市市场监督管理局")
    assert "本件为该督办件的第 2 轮督办，此前各轮已结束。现予督办（督办件编号 C-1/skipped_node" in second.body
    for notice in out.notices[1:]:  # and the round's other notices, in their subjects
        first, later = (render_notice(notice, replace(out.ticket, round=n), catalog, texts).subject for n in (1, 2))
        assert "轮" not in first and later == first.replace("】", "】（第 2 轮）", 1), later
    # A department whose head is the one the ticket reaches (no contact in the catalog) was told
    # it would be reported to its head (found by a black-box test).
    scjg = catalog.departments["SCJG"]
    no_contact = replace(catalog, departments={**catalog.departments, "SCJG": replace(scjg, contact=None)})
    to_head = render_notice(out.notices[0], out.ticket, no_contact, texts)
    assert to_head.recipient_email == "scjg-head@example.gov.cn" and "提请部门负责人" not in to_head.body
    assert "仍未答复的，将按规定提交纪检监察机构" in to_head.body
    # Resent once the catalog names a contact, it tells the contact what comes of no answer to them
    # (it kept what was said to the head: found by review).
    from alerts.notices import readdressed

    to_contact = readdressed(to_head, catalog)
    assert to_contact.recipient_email == "scjg-fagui@example.gov.cn" and to_contact.body.startswith("市场监管局法规科：")
    assert "提请部门负责人督促办理" in to_contact.body and "纪检监察机构" not in to_contact.body


def test_a_city_s_template_with_an_unknown_field_is_refused(tmp_path):
    from alerts.notices import TemplateError
    from sinks.notify import load_templates

    (tmp_path / "opened.txt").write_text("【督办】{department}\n{secret}\n", encoding="utf-8")
    with pytest.raises(TemplateError, match="secret"):
        load_templates(tmp_path)
    (tmp_path / "opened.txt").write_text("【督办】{department}\n{recipient}：请于 {deadline} 前答复。\n", encoding="utf-8")
    assert load_templates(tmp_path).templates[Step.OPENED][0] == "【督办】{department}"


def test_a_templates_directory_that_is_none_or_holds_no_template_is_refused(tmp_path):
    """Found by a black-box test: SUNLIGHT_NOTICE_TEMPLATES naming a directory that does not exist, or
    one whose only file is misspelt (opend.txt), started silently and mailed the default wording."""
    from alerts.notices import TemplateError
    from sinks.notify import load_templates

    with pytest.raises(TemplateError, match="does not exist"):
        load_templates(tmp_path / "nowhere")
    (tmp_path / "opend.txt").write_text("【督办】{department}\n请答复。\n", encoding="utf-8")
    with pytest.raises(TemplateError, match="holds none of .*opened.txt.* \\(it holds: opend.txt\\)"):
        load_templates(tmp_path)


def test_a_silence_stops_an_escalation_s_notice_but_not_the_escalation():
    t = advance(opened().ticket, POLICY, CAL, datetime(2026, 3, 2, 11, tzinfo=CST)).ticket
    silence = Silence("S2", datetime(2026, 3, 9, tzinfo=CST), "机构调整", department="SCJG")
    out = advance(t, replace(POLICY, silences=(silence,)), CAL, datetime(2026, 3, 20, tzinfo=CST))
    assert out.ticket.escalation_level == 2 and out.ticket.overdue
    # Level 1 fell in the silence: recorded, its notice held, and sent when the silence ended,
    # before level 2 (before, the head was never told: found by a black-box test).
    assert [(n.step, n.at) for n in out.notices] == [(Step.LEVEL_1, silence.until),
                                                         (Step.LEVEL_2, out.ticket.level_2_at)]
    assert [v.last.kind for v in out.versions] == ["level_1", "held_sent", "level_2"]
    assert "静默 S2" in out.versions[0].last.text and out.versions[1].last.at == silence.until
    assert "补发" in out.versions[1].last.text
    from alerts.tickets import standing_notices

    assert [n.step for n in standing_notices(out.ticket)] == [Step.OPENED, Step.LEVEL_1, Step.LEVEL_2]
    # Recorded again after a redelivery while the silence still holds it, the record's notices leave
    # out the one held (before, the notifier, which never had it, sent it during the silence: found
    # by review).
    during = advance(t, replace(POLICY, silences=(silence,)), CAL, datetime(2026, 3, 8, tzinfo=CST))
    assert during.notices == () and during.ticket.level_1_held and during.ticket.next_due == silence.until
    assert [n.step for n in standing_notices(during.ticket)] == [Step.OPENED]


def test_escalations_within_a_silence_are_told_when_it_ends_unless_the_ticket_ended_or_another_silence_holds():
    """Found by a black-box test: a level 2 reached within a silence was never sent, after it
    neither: the discipline-inspection office never learnt of an escalated ticket."""
    t = advance(opened().ticket, POLICY, CAL, datetime(2026, 3, 2, 11, tzinfo=CST)).ticket
    long = Silence("S3", datetime(2026, 3, 16, tzinfo=CST), "机构调整", department="SCJG")
    policy = replace(POLICY, silences=(long,))
    both = advance(t, policy, CAL, datetime(2026, 3, 13, tzinfo=CST))
    assert both.ticket.escalation_level == 2 and both.notices == ()
    assert both.ticket.next_due == long.until
    ended = advance(both.ticket, policy, CAL, datetime(2026, 3, 16, 0, 0, 1, tzinfo=CST))
    assert [(n.step, n.at) for n in ended.notices] == [(Step.LEVEL_1, long.until), (Step.LEVEL_2, long.until)]
    assert ended.ticket.held_until is None and not ended.ticket.level_2_held
    assert advance(ended.ticket, policy, CAL, datetime(2026, 4, 1, tzinfo=CST)).notices == ()  # once
    # Extended meanwhile (another silence from its end): held until that one ends.
    longer = replace(POLICY, silences=(long, Silence("S4", datetime(2026, 3, 20, tzinfo=CST), "延长",
                                                      department="SCJG")))
    still = advance(both.ticket, longer, CAL, datetime(2026, 3, 17, tzinfo=CST))
    assert still.notices == () and still.ticket.held_until == datetime(2026, 3, 20, tzinfo=CST)
    # Expired early (its end moved to 03-14 10:00): told at the next tick after that, not on 03-16,
    # dated at the silence's end; its due moment under the silences now says so (for the index).
    early = replace(POLICY, silences=(replace(long, until=datetime(2026, 3, 14, 10, tzinfo=CST)),))
    assert both.ticket.due_under(early.silences) == datetime(2026, 3, 14, 10, tzinfo=CST)
    told = advance(both.ticket, early, CAL, datetime(2026, 3, 14, 10, 0, 1, tzinfo=CST))
    assert [n.step for n in told.notices] == [Step.LEVEL_1, Step.LEVEL_2]
    assert told.versions[-1].last.at == datetime(2026, 3, 14, 10, tzinfo=CST)
    # Looked at only later, after the next step was due: the held notices still go first, dated
    # at the silence's end (found by review: level 2 went out first, the held level 1 dated later).
    level_1_only = Silence("S6", datetime(2026, 3, 30, tzinfo=CST), "机构调整", department="SCJG")
    held_1 = advance(t, replace(POLICY, silences=(level_1_only,)), CAL, datetime(2026, 3, 7, tzinfo=CST)).ticket
    assert held_1.level_1_held and held_1.escalation_level == 1
    ended_6th = replace(POLICY, silences=(replace(level_1_only, until=datetime(2026, 3, 8, 9, tzinfo=CST)),))
    late_look = advance(held_1, ended_6th, CAL, datetime(2026, 3, 20, tzinfo=CST))
    assert [(v.last.kind, v.last.at) for v in late_look.versions] == [
        ("held_sent", datetime(2026, 3, 8, 9, tzinfo=CST)), ("level_2", held_1.level_2_at)]
    # Closed within the silence: nobody is told of an escalation that is over.
    closed = on_action(both.ticket, action("close", both.ticket.version, INSPECTORS, "已核实"), CAL,
                       datetime(2026, 3, 14, tzinfo=CST))
    assert [n.recipient for n in closed.notices] == ["contact"]  # only whom the round reached
    assert advance(closed.ticket, policy, CAL, datetime(2026, 4, 1, tzinfo=CST)).notices == ()
    # Withdrawn within it: its history says the held notices will not come, as their holding said
    # they would (it read 静默结束后补发 to the end: found by a black-box test).
    gone = on_alert(both.ticket, alert(status=AlertStatus.WITHDRAWN, version=2), policy, CAL,
                    datetime(2026, 3, 14, tzinfo=CST))
    assert gone.ticket.status is TicketStatus.WITHDRAWN
    assert gone.ticket.last.text.endswith("；静默期间未发出的升级通知（升级至部门负责人、升级至纪检监察机构）不再补发"), \
        gone.ticket.last.text
    assert advance(gone.ticket, policy, CAL, datetime(2026, 4, 1, tzinfo=CST)).notices == ()


def test_a_ticket_waiting_out_a_silence_expired_early_opens_at_the_next_tick():
    """An inspector who ended a silence early (`silences expire`) saw its tickets open only at the
    silence's old end: the ticket kept the end it was told when it began to wait."""
    silence = Silence("S5", datetime(2026, 3, 20, tzinfo=CST), "机构调整", department="SCJG")
    waiting = on_alert(None, alert(), replace(POLICY, silences=(silence,)), CAL,
                       datetime(2026, 3, 2, 11, tzinfo=CST)).ticket
    assert waiting.status.value == "settling" and waiting.opens_at == silence.until
    expired = replace(POLICY, silences=(replace(silence, until=datetime(2026, 3, 5, 9, tzinfo=CST)),))
    assert waiting.due_under(expired.silences) == datetime(2026, 3, 5, 9, tzinfo=CST)
    out = advance(waiting, expired, CAL, datetime(2026, 3, 5, 9, 0, 1, tzinfo=CST))
    assert out.ticket.status.value == "open" and [n.step for n in out.notices] == [Step.OPENED]
    assert out.ticket.opened_at == datetime(2026, 3, 5, 9, tzinfo=CST)  # when the silence ended
    # Expired before its cards had settled: it opens once they have, not before (never sooner
    # than a ticket no silence held).
    too_soon = replace(POLICY, silences=(replace(silence, until=datetime(2026, 3, 2, 10, 30, tzinfo=CST)),))
    assert waiting.due_under(too_soon.silences) == waiting.ladder.settle + min(
        a.stands_from for a in waiting.open_alerts)


def test_a_card_standing_again_after_its_ticket_waited_out_a_silence_settles_again():
    """Found by review: a ticket that once waited out a silence kept its `silenced_by`; its card
    withdrawn, then standing again weeks later, opened at once, without its settling hour."""
    silence = Silence("S1", datetime(2026, 3, 2, 12, tzinfo=CST), "机构调整", department="SCJG")
    policy = replace(POLICY, silences=(silence,))
    waiting = on_alert(None, alert(), policy, CAL, datetime(2026, 3, 2, 11, tzinfo=CST)).ticket
    assert waiting.silenced_by == "S1"
    gone = on_alert(waiting, alert(status=AlertStatus.WITHDRAWN, version=2), policy, CAL,
                    datetime(2026, 3, 2, 11, 30, tzinfo=CST)).ticket
    back_at = datetime(2026, 3, 20, 10, tzinfo=CST)
    again = on_alert(gone, alert(version=3, at=back_at), policy, CAL, back_at + timedelta(minutes=1))
    assert again.ticket.status is TicketStatus.SETTLING and again.notices == ()
    assert again.ticket.next_due == back_at + again.ticket.ladder.settle


def test_a_closed_ticket_s_coming_round_waiting_out_a_silence_expired_early_opens_then():
    """Found by review: the next round of a closed ticket, waiting out a silence, opened at the
    silence's old end after it was expired early."""
    t = advance(opened().ticket, POLICY, CAL, datetime(2026, 3, 2, 11, tzinfo=CST)).ticket
    closed = on_action(t, action("close", t.version, INSPECTORS, "已核实"), CAL, datetime(2026, 3, 3, tzinfo=CST)).ticket
    silence = Silence("S7", datetime(2026, 3, 20, tzinfo=CST), "机构调整", department="SCJG")
    policy = replace(POLICY, silences=(silence,))
    other = alert(node="N3", at=datetime(2026, 3, 4, 9, tzinfo=CST))
    pending = on_alert(closed, other, policy, CAL, datetime(2026, 3, 4, 9, 5, tzinfo=CST)).ticket
    waiting = advance(pending, policy, CAL, datetime(2026, 3, 4, 10, 30, tzinfo=CST)).ticket
    assert waiting.status is TicketStatus.CLOSED and waiting.silenced_by == "S7"
    expired = replace(POLICY, silences=(replace(silence, until=datetime(2026, 3, 6, 9, tzinfo=CST)),))
    assert waiting.due_under(expired.silences) == datetime(2026, 3, 6, 9, tzinfo=CST)
    out = advance(waiting, expired, CAL, datetime(2026, 3, 6, 9, 1, tzinfo=CST))
    assert out.ticket.status is TicketStatus.OPEN and out.ticket.round == 2


def test_a_ticket_s_record_says_which_notices_were_due():
    from alerts.tickets import standing_notices

    t = advance(opened().ticket, POLICY, CAL, datetime(2026, 3, 2, 11, tzinfo=CST)).ticket
    assert [n.notice_id for n in standing_notices(t)] == ["C-1/skipped_node/opened"]
    out = advance(t, POLICY, CAL, datetime(2026, 3, 20, tzinfo=CST))
    assert [n.notice_id for n in standing_notices(out.ticket)] == [n.notice_id for n in (
        *standing_notices(t), *out.notices)]
    t = on_action(out.ticket, action("reply", out.ticket.version), CAL, out.ticket.opened_at).ticket
    returned = on_action(t, action("return", t.version, INSPECTORS, "补充"), CAL, t.opened_at)
    assert standing_notices(returned.ticket)[-1] == returned.notices[0]


def test_a_closed_ticket_opened_again_by_hand_is_a_new_round_with_its_own_notices():
    """Found by a black-box test: a red ticket closed by an inspector could not be opened again
    ("no open alert", though its red card stood), and a yellow one opened again sent no notice (its
    notice had the first round's id, finished already), while the console refused the old link."""
    from alerts.tickets import standing_notices

    t = advance(opened().ticket, POLICY, CAL, datetime(2026, 3, 2, 11, tzinfo=CST)).ticket
    first = [n.notice_id for n in standing_notices(t)]
    escalated = advance(t, POLICY, CAL, datetime(2026, 3, 20, tzinfo=CST)).ticket  # both levels reached
    closed = on_action(escalated, action("close", escalated.version, INSPECTORS, "已核实"), CAL,
                       datetime(2026, 3, 21, tzinfo=CST)).ticket
    again = action("open", None, INSPECTORS, "再次督办", at=datetime(2026, 3, 23, 9, tzinfo=CST),
                   alert_id=alert().alert_id)
    out = on_action(closed, again, CAL, again.at, None)  # the red card is the ticket's own, still standing
    assert out.ticket.status is TicketStatus.OPEN and out.ticket.escalation_level == 0
    assert [n.step for n in out.notices] == [Step.OPENED]
    assert out.notices[0].notice_id not in first + [n.notice_id for n in standing_notices(escalated)]
    later = advance(out.ticket, POLICY, CAL, datetime(2026, 4, 20, tzinfo=CST))
    assert [n.step for n in later.notices] == [Step.LEVEL_1, Step.LEVEL_2]
    assert not {n.notice_id for n in later.notices} & {n.notice_id for n in standing_notices(escalated)}
    # A red card withdrawn since is no ground for a new round.
    gone = on_alert(closed, alert(status=AlertStatus.WITHDRAWN, version=2), POLICY, CAL, again.at).ticket
    with pytest.raises(ActionRefused, match="unknown_alert"):
        on_action(gone, again, CAL, again.at, None)


def test_a_returned_notice_says_why_the_reply_was_returned():
    # Found by a black-box test: the notice said only that the answer was returned, not why; the
    # department could read the inspector's reason nowhere but on the reply page.
    from alerts.notices import render_notice
    from sinks.notify import load_templates

    catalog = contract_catalog()
    red, t = licence_ticket(datetime(2026, 3, 2, 11, tzinfo=CST))
    t = on_action(t, action("reply", t.version), CAL, datetime(2026, 3, 3, 9, tzinfo=CST)).ticket
    out = on_action(t, action("return", t.version, INSPECTORS, "整改措施未落实到具体责任人"), CAL,
                    datetime(2026, 3, 3, 10, tzinfo=CST))
    (notice,) = out.notices
    rendered = render_notice(notice, out.ticket, catalog, load_templates())
    assert "整改措施未落实到具体责任人" in rendered.body
    later = on_action(out.ticket, action("close", out.ticket.version, INSPECTORS, "另案处理"), CAL,
                      datetime(2026, 3, 4, tzinfo=CST)).ticket
    again = render_notice(notice, later, catalog, load_templates())  # rendered once more, after a later change
    assert "另案处理" not in again.body


def test_a_withdrawal_notice_takes_back_an_escalation_only_when_one_was_sent():
    # Found by a black-box test: it said "督办及升级通知一并作废" of a ticket never escalated.
    from alerts.notices import render_notice
    from sinks.notify import load_templates

    catalog, texts = contract_catalog(), load_templates()
    red, t = licence_ticket(datetime(2026, 3, 2, 11, tzinfo=CST))

    def withdrawal(ticket, at):
        out = on_alert(ticket, replace(red, status=AlertStatus.WITHDRAWN, version=2), POLICY, CAL, at)
        assert out.ticket.status is TicketStatus.WITHDRAWN
        return [render_notice(n, out.ticket, catalog, texts) for n in out.notices]

    (to_contact,) = withdrawal(t, datetime(2026, 3, 3, 9, tzinfo=CST))
    assert "此前就本督办件发出的督办通知一并作废。" in to_contact.body and "升级" not in to_contact.body
    escalated = advance(t, POLICY, CAL, datetime(2026, 3, 7, tzinfo=CST)).ticket  # the head urged at the deadline
    assert escalated.escalation_level == 1
    taken_back = withdrawal(escalated, datetime(2026, 3, 7, 9, tzinfo=CST))
    assert [n.recipient_role for n in taken_back] == ["contact", "head"]
    assert all("此前就本督办件发出的督办及升级通知一并作废。" in n.body for n in taken_back)
    later = withdrawal(replace(t, round=2), datetime(2026, 3, 3, 9, tzinfo=CST))[0]
    assert "此前就本督办件发出的第 2 轮督办通知一并作废。" in later.body


def test_the_escalation_notices_say_what_the_department_did_and_what_was_done_as_it_stood():
    """Found by review: the head read 仍未答复 of a department whose answer had been returned, and a
    level 1 held by a silence, sent with level 2, promised a referral by a day already past; a
    withdrawal voided an escalation notice never sent, the head having no address."""
    from alerts.notices import render_notice
    from sinks.notify import load_templates

    catalog, texts = contract_catalog(), load_templates()
    red, t = licence_ticket(datetime(2026, 3, 2, 11, tzinfo=CST))
    # Answered, returned, not answered again by the deadline (the 5th, 24:00) nor by level 2.
    t = on_action(t, action("reply", t.version), CAL, datetime(2026, 3, 3, 9, tzinfo=CST)).ticket
    t = on_action(t, action("return", t.version, INSPECTORS, "材料不全", at=datetime(2026, 3, 3, 10, tzinfo=CST)),
                  CAL, datetime(2026, 3, 3, 10, tzinfo=CST)).ticket
    out = advance(t, POLICY, CAL, datetime(2026, 3, 20, tzinfo=CST))
    made = {v.version: v for v in out.versions}
    level_1, level_2 = (render_notice(n, made[n.made_at], catalog, texts) for n in out.notices)
    assert "答复期限 2026-03-05 24:00 已过，其答复经审核退回重办后仍未重新答复。" in level_1.body
    assert "仍未答复。" not in level_1.body and "将提交纪检监察机构" in level_1.body
    assert "其答复经审核退回重办后，至 2026-03-09 24:00 仍未重新答复，现提交贵机构" in level_2.body
    assert "答复退回后逾期仍未重新答复" in level_2.subject
    # Never answered: as before.
    fresh = licence_ticket(datetime(2026, 3, 2, 11, tzinfo=CST))[1]
    plain = advance(fresh, POLICY, CAL, datetime(2026, 3, 20, tzinfo=CST))
    made = {v.version: v for v in plain.versions}
    level_1, level_2 = (render_notice(n, made[n.made_at], catalog, texts) for n in plain.notices)
    assert "已过，仍未答复。" in level_1.body and "至 2026-03-09 24:00 仍未答复的，将提交纪检监察机构。" in level_1.body
    assert "至 2026-03-09 24:00 仍未答复，现提交贵机构" in level_2.body
    # Both taken in one unit (a late clock) and sent together: as the unit leaves the ticket, referred.
    together = render_notice(plain.notices[0], made[plain.notices[0].made_at], catalog, texts, latest=plain.ticket)
    assert "因至 2026-03-09 24:00 仍未答复，该督办件已同时提交纪检监察机构。" in together.body
    # Resent after the referral: the promise is taken out (`resent` says the referral was made).
    from alerts.notices import resent

    again = resent(level_1, {"level_2": plain.notices[1].at}, catalog)
    assert "已于 2026-03-10 00:00 提交纪检监察机构" in again.body and "将提交纪检监察机构" not in again.body
    # Both levels held by a silence until the 16th and sent together: the referral is made, not promised.
    silence = Silence("S-B", datetime(2026, 3, 16, tzinfo=CST), "机构调整", department="SCJG")
    held = advance(fresh, replace(POLICY, silences=(silence,)), CAL, datetime(2026, 3, 20, tzinfo=CST))
    made = {v.version: v for v in held.versions}
    sent = [render_notice(n, made[n.made_at], catalog, texts) for n in held.notices]
    assert [(n.step, n.at) for n in held.notices] == [(Step.LEVEL_1, silence.until), (Step.LEVEL_2, silence.until)]
    assert "因至 2026-03-09 24:00 仍未答复，该督办件已同时提交纪检监察机构。" in sent[0].body
    assert "将提交纪检监察机构" not in sent[0].body
    # Answered after the level-2 moment (the 12th) and returned (the 13th), both levels still held:
    # the office reads no return before the 9th that never was (found by review).
    quiet = replace(POLICY, silences=(silence,))
    late = advance(fresh, quiet, CAL, datetime(2026, 3, 11, tzinfo=CST)).ticket
    assert late.level_1_held and late.level_2_held
    late = act(late, action("reply", late.version, at=datetime(2026, 3, 12, 9, tzinfo=CST)), quiet, CAL,
               datetime(2026, 3, 12, 9, tzinfo=CST)).ticket
    late = act(late, action("return", late.version, INSPECTORS, "材料不全", at=datetime(2026, 3, 13, 9, tzinfo=CST)),
               quiet, CAL, datetime(2026, 3, 13, 9, tzinfo=CST)).ticket
    late_out = advance(late, quiet, CAL, datetime(2026, 3, 20, tzinfo=CST))
    made = {v.version: v for v in late_out.versions}
    office = render_notice(late_out.notices[-1], made[late_out.notices[-1].made_at], catalog, texts)
    assert office.step is Step.LEVEL_2 and "至 2026-03-09 24:00 仍未答复，现提交贵机构" in office.body
    assert "退回" not in office.subject + office.body
    assert "静默结束后向部门负责人发出的督促通知与本通知同时发出，至 2026-03-09 24:00 仍未答复" in sent[1].body
    # The head has no address: level 1 was recorded, never sent; a withdrawal voids the opening alone.
    raw = contract_catalog_raw()
    for department in raw["departments"]:
        if department["code"] == "SCJG":
            department["head"].pop("email")
    from alerts.catalog import load_catalog

    no_head = load_catalog(raw)
    escalated = advance(t, POLICY, CAL, datetime(2026, 3, 7, tzinfo=CST)).ticket
    gone = on_alert(escalated, replace(red, status=AlertStatus.WITHDRAWN, version=2), POLICY, CAL,
                    datetime(2026, 3, 7, 9, tzinfo=CST))
    contact = render_notice(gone.notices[0], gone.ticket, no_head, texts)
    assert contact.recipient_role == "contact" and "此前就本督办件发出的督办通知一并作废。" in contact.body
    told = render_notice(gone.notices[0], gone.ticket, catalog, texts)
    assert "此前就本督办件发出的督办及升级通知一并作废。" in told.body
    # Referred to the office, which has an address: its escalation was sent (found by review).
    referred = advance(t, POLICY, CAL, datetime(2026, 3, 20, tzinfo=CST)).ticket
    gone = on_alert(referred, replace(red, status=AlertStatus.WITHDRAWN, version=2), POLICY, CAL,
                    datetime(2026, 3, 20, 9, tzinfo=CST))
    assert all("督办及升级通知一并作废" in render_notice(n, gone.ticket, no_head, texts).body for n in gone.notices)


def test_the_level_2_notice_says_what_came_of_level_1_as_it_was():
    """It said "经提请部门负责人督促后" (after the head was urged) when the catalog had no address
    for the head, or a silence held level 1's notice: the head had never been told (found by a
    black-box test). And a contact with a name but no address is no one to send to: the head is."""
    from alerts.catalog import load_catalog
    from alerts.notices import render_notice
    from sinks.notify import load_templates

    raw = contract_catalog_raw()
    red, t = licence_ticket(evidence={"node": "review", "went_ahead": "decision"})
    texts = load_templates()

    def level_2_body(catalog, policy=POLICY):
        out = advance(t, policy, CAL, datetime(2026, 3, 20, tzinfo=CST))
        (notice,) = [n for n in out.notices if n.step is Step.LEVEL_2]
        return render_notice(notice, out.ticket, catalog, texts).body

    assert "已向部门负责人发出督促通知（送达情况见通知记录），至" in level_2_body(load_catalog(raw))
    # A silence held level 1's notice until it ended, before level 2: the head was told then.
    silence = Silence("S2", datetime(2026, 3, 9, tzinfo=CST), "机构调整", department="SCJG")
    held = level_2_body(load_catalog(raw), replace(POLICY, silences=(silence,)))
    assert "已向部门负责人发出督促通知" in held and "经提请" not in held
    # A silence still holding level 1 at level 2: the office is told the head was not told.
    from alerts.notices import level_1_note

    assert "静默期，未通知部门负责人" in level_1_note(replace(t, level_1_held=True), load_catalog(raw).departments["SCJG"])
    # One made from history (quiet): its held notice, in the notice log, said the head was urged.
    quiet = level_1_note(replace(t, quiet=True), load_catalog(raw).departments["SCJG"])
    assert "历史数据生成" in quiet and "督促通知" not in quiet, quiet
    scjg = raw["departments"][0]
    scjg["head"] = {"name": "市场监管局局长"}  # no address
    scjg["contact"] = {"name": "法规科"}  # no address either
    catalog = load_catalog(raw)
    never = level_2_body(catalog)
    # Neither address: the department itself never heard of the ticket, and the office is told so
    # (before, only that the head's address was missing: found by a black-box test).
    assert "督办通知未能送达该部门" in never and "升级通知未能送达部门负责人" in never and "督促通知" not in never
    assert catalog.departments["SCJG"].ticket_contact.name == "市场监管局局长"
    scjg["head"] = {"name": "市场监管局局长", "email": "scjg-head@example.gov.cn"}
    settling = on_alert(None, red, POLICY, CAL, red.event_time).ticket
    (notice,) = advance(settling, POLICY, CAL, datetime(2026, 3, 3, tzinfo=CST)).notices
    opened = render_notice(notice, t, load_catalog(raw), texts)
    assert opened.recipient_email == "scjg-head@example.gov.cn"  # before: "", and the notice failed


def test_an_answer_at_the_reply_deadline_itself_is_in_time():
    """Found by review: a ticket escalated at its reply deadline itself, so an answer stamped at
    24:00 was late, and its head told the department had not answered; a case's deadline is passed
    only once the clock is past it (`alerts.detectors.deadlines.PASSED`). So is a ticket's."""
    _, t = licence_ticket()
    deadline = t.deadline  # 2026-03-05 24:00
    assert t.next_due == deadline + timedelta(microseconds=1)
    assert advance(t, POLICY, CAL, deadline).versions == ()
    answered = act(t, action("reply", t.version, at=deadline), POLICY, CAL, deadline)
    assert answered.ticket.status is TicketStatus.REPLIED and not answered.ticket.overdue and not answered.notices
    late = advance(t, POLICY, CAL, deadline + timedelta(microseconds=1))
    assert [(v.last.kind, v.last.at) for v in late.versions] == [("level_1", deadline)]


def test_a_return_after_the_deadline_asks_for_the_answer_at_once_and_a_hand_opening_carries_its_note():
    """A returned ticket keeps its deadline: its notice asked "请于 <a past date> 前重新答复" (found
    by a black-box test). And the note an inspector typed opening a ticket by hand was on the reply
    page but not in the mail. An answer given in time and returned after the deadline has its
    reply days again from the return (found by a black-box test: the ladder took level 1 and level
    2 at once, dated before the return, and told the head and the inspection office that the
    department had not answered)."""
    from alerts.notices import render_notice
    from sinks.notify import load_templates

    catalog = contract_catalog()
    texts = load_templates()
    red, t = licence_ticket()
    t = on_action(t, action("reply", 1), CAL, None).ticket  # 3 March: in time (deadline 6 March 00:00)
    for at, asked in ((datetime(2026, 3, 4, 9, tzinfo=CST), "请于 2026-03-05 24:00 前重新答复"),
                      (datetime(2026, 3, 20, 9, tzinfo=CST), "请于 2026-03-25 24:00 前重新答复")):
        out = on_action(t, action("return", 2, INSPECTORS, "整改不到位", at=at, action_id=f"r{at.day}"), CAL, None)
        (notice,) = out.notices
        assert asked in render_notice(notice, out.ticket, catalog, texts).body
    later = advance(out.ticket, POLICY, CAL, datetime(2026, 3, 20, 12, tzinfo=CST))
    assert not later.versions and not later.notices  # (due once the clock is past its new deadline)
    assert later.ticket.next_due == datetime(2026, 3, 26, tzinfo=CST) + timedelta(microseconds=1)
    # Answered late (after level 1), returned after the level-2 moment: the deadline stands, and
    # level 2 comes at the return, not dated before it.
    late = act(t := licence_ticket()[1], action("reply", 1, at=datetime(2026, 3, 9, 9, tzinfo=CST)), POLICY, CAL,
               datetime(2026, 3, 9, 9, tzinfo=CST))
    assert late.ticket.overdue and late.ticket.escalation_level == 1
    back = datetime(2026, 3, 20, 9, tzinfo=CST)
    out = on_action(late.ticket, action("return", late.ticket.version, INSPECTORS, "整改不到位", at=back,
                                        action_id="late-return"), CAL, None)
    assert "答复期限 2026-03-05 24:00 已过，请立即重新答复" in render_notice(out.notices[0], out.ticket, catalog, texts).body
    level_2 = advance(out.ticket, POLICY, CAL, datetime(2026, 3, 20, 12, tzinfo=CST))
    assert [(v.last.kind, v.last.at) for v in level_2.versions] == [("level_2", back)]
    assert [(n.step, n.at) for n in level_2.notices] == [(Step.LEVEL_2, back)]
    # And says so: the department answered, late, and was returned; it did not "仍未答复" (found
    # by a black-box test). One that never answered is told as before.
    told = render_notice(level_2.notices[0], level_2.ticket, catalog, texts)
    assert told.subject.endswith("逾期答复经审核退回") and "仍未答复" not in told.subject + told.body
    assert "部门逾期后作出答复，该答复于 2026-03-20 09:00 经审核退回重办，现提交贵机构" in told.body
    from streams.ticket_codec import ticket_from_json, ticket_to_json
    assert ticket_from_json(ticket_to_json(level_2.ticket)) == level_2.ticket
    silent = advance(licence_ticket()[1], POLICY, CAL, datetime(2026, 3, 20, tzinfo=CST))
    unanswered = render_notice(silent.notices[-1], silent.ticket, catalog, texts)
    assert unanswered.subject.endswith("逾期仍未答复") and "至 2026-03-09 24:00 仍未答复，现提交贵机构" in unanswered.body
    yellow = replace(alert(rule=Rule.NODE_OVERDUE, severity=Severity.YELLOW), item_code="320200-XK-SCJG-0001")
    by_hand = action("open", None, INSPECTORS, "请重点核查承办环节超时原因", ticket=ticket_id("C-1", Rule.NODE_OVERDUE),
                     alert_id=yellow.alert_id)
    out = on_action(None, by_hand, CAL, by_hand.at, yellow)
    body = render_notice(out.notices[0], out.ticket, catalog, texts).body
    assert "\n\n督办说明：请重点核查承办环节超时原因\n" in body
    plain = render_notice(advance(on_alert(None, red, POLICY, CAL, red.event_time).ticket, POLICY, CAL,
                                  datetime(2026, 3, 2, 12, tzinfo=CST)).notices[0], t, catalog, texts).body
    assert "督办说明" not in plain
    # Opened without a note: the history says 人工发起督办, the notice no 督办说明 (found by review).
    no_note = on_action(None, replace(by_hand, text=""), CAL, by_hand.at, yellow)
    assert no_note.ticket.last.text == "人工发起督办"
    assert "督办说明" not in render_notice(no_note.notices[0], no_note.ticket, catalog, texts).body


def test_a_ticket_withdrawn_after_its_notices_went_out_is_taken_back_in_writing():
    """Before, a red card withdrawn after its ticket had reached the department, its head and the
    discipline-inspection office told none of them (found by a black-box test): the accusation
    stood in their mailboxes. Each told is told of the withdrawal; a finding that stands again
    opens a new round, told again from its opening."""
    from alerts.notices import render_notice
    from sinks.notify import load_templates

    t = advance(opened().ticket, POLICY, CAL, datetime(2026, 3, 20, tzinfo=CST)).ticket  # level 2 reached
    gone = on_alert(t, alert(status=AlertStatus.WITHDRAWN, version=2), POLICY, CAL, datetime(2026, 3, 21, tzinfo=CST))
    assert gone.ticket.status is TicketStatus.WITHDRAWN
    assert [(n.step, n.recipient) for n in gone.notices] == [
        (Step.WITHDRAWN, "contact"), (Step.WITHDRAWN, "head"), (Step.WITHDRAWN, "inspection_office")]
    assert len({n.notice_id for n in gone.notices}) == 3
    catalog = contract_catalog()
    ticket = replace(gone.ticket, item_code="320200-XK-SCJG-0001")
    letter = render_notice(gone.notices[2], ticket, catalog, load_templates())
    assert letter.subject.startswith("【督办撤销】") and "无需答复" in letter.body
    assert letter.recipient_email == "jijian@example.gov.cn" and "http" not in letter.body
    # Only those told: withdrawn before any escalation, the contact alone.
    early = advance(opened().ticket, POLICY, CAL, datetime(2026, 3, 2, 11, tzinfo=CST)).ticket
    out = on_alert(early, alert(status=AlertStatus.WITHDRAWN, version=2), POLICY, CAL,
                   datetime(2026, 3, 3, tzinfo=CST))
    assert [n.recipient for n in out.notices] == ["contact"]
    # Standing again: a new round, its opening told at once.
    again = on_alert(gone.ticket, alert("N9", at=datetime(2026, 3, 23, 9, tzinfo=CST)), POLICY, CAL,
                     datetime(2026, 3, 23, 11, tzinfo=CST))
    assert again.ticket.status is TicketStatus.OPEN and again.ticket.round == 2
    assert [n.notice_id for n in again.notices] == ["C-1/skipped_node/opened/r2"]


def test_the_department_learns_how_its_ticket_ended():
    """An inspector's accept or close was told to no one: the department learnt it only by looking
    (found by a black-box test)."""
    from alerts.notices import render_notice
    from sinks.notify import load_templates

    catalog = contract_catalog()
    texts = load_templates()
    red, t = licence_ticket()
    replied = on_action(t, action("reply", 1), CAL, None).ticket
    accepted = on_action(replied, action("accept", 2, INSPECTORS, ""), CAL, None)
    closed = on_action(t, action("close", 1, INSPECTORS, "已移送纪检监察机构处理"), CAL, None)
    for out, said in ((accepted, "答复经审核通过"), (closed, "办结理由：已移送纪检监察机构处理")):
        (notice,) = out.notices
        assert (notice.step, notice.recipient) == (Step.CLOSED, "contact")
        letter = render_notice(notice, out.ticket, catalog, texts)
        assert letter.subject.startswith("【督办办结】") and said in letter.body and "http" not in letter.body
        assert letter.recipient_email == "scjg-fagui@example.gov.cn"


def test_those_an_escalated_ticket_reached_learn_how_it_ended():
    """Found by a black-box test: a ticket escalated to the head and the inspection office, then
    answered and accepted, was told ended to the contact alone: the head and the office kept a
    referral open in their inbox with no word of its end. Each its round reached is told, as of a
    withdrawal; the contact's notice keeps its id, and a head who stands in for the contact is told
    once."""
    from alerts.notices import render_notice, told_once
    from sinks.notify import load_templates

    catalog = contract_catalog()
    texts = load_templates()
    _, t = licence_ticket()
    escalated = advance(t, POLICY, CAL, t.level_2_at + timedelta(hours=1)).ticket
    assert escalated.escalation_level == 2
    replied = on_action(escalated, action("reply", escalated.version), CAL, None).ticket
    accepted = on_action(replied, action("accept", replied.version, INSPECTORS, ""), CAL, None)
    assert [(n.recipient, n.notice_id) for n in accepted.notices] == [
        ("contact", f"{t.ticket_id}/closed"), ("head", f"{t.ticket_id}/closed/head"),
        ("inspection_office", f"{t.ticket_id}/closed/inspection_office")]
    assert standing_notices(accepted.ticket)[-3:] == list(accepted.notices)
    letters = [render_notice(n, accepted.ticket, catalog, texts) for n in accepted.notices]
    assert all(x.subject.startswith("【督办办结】") and "答复经审核通过" in x.body for x in letters)
    assert all("贵单位" not in x.body and "市场监督管理局督办件" in x.body for x in letters), letters[2].body
    # Not escalated: the contact alone, as before.
    (notice,) = on_action(on_action(t, action("reply", 1), CAL, None).ticket, action("accept", 2, INSPECTORS, ""),
                          CAL, None).notices
    assert notice.recipient == "contact"
    # A department without a contact of its own: its head is told once.
    from alerts.catalog import load_catalog

    raw = contract_catalog_raw()
    for department in raw["departments"]:
        department.pop("contact", None)
    once = told_once(list(accepted.notices), lambda n: accepted.ticket, load_catalog(raw))
    assert [n.recipient for n in once] == ["contact", "inspection_office"]


def test_a_finding_s_facts_are_registered_when_its_acceptance_and_its_own_event_were():
    """When a replay's or an import's ticket settles from (`facts_registered_at`): the acceptance's
    and the finding's own event's registration, not the case's first (a rating registered on time
    made a case pushed weeks late look online, its tickets escalated at once: found by review), nor
    its last (a node registered weeks late would hold an overdue card that stood meanwhile)."""
    from alerts.tickets import facts_registered_at
    from tests.unit.helpers import at, ev

    pushed = at(2026, 12, 5, 20)
    accepted = ev("accepted", at(2026, 11, 16, 9), pushed)
    rating = ev("rated", at(2026, 11, 16, 10), at(2026, 11, 16, 10), rating="satisfied")
    closing = ev("closed", at(2026, 11, 20, 10), pushed)
    overdue = replace(alert("O1"), rule=Rule.OVERDUE, event_time=at(2026, 12, 1, 0))
    skipped = replace(alert("S1"), event_time=closing.occurred_at)
    assert facts_registered_at(overdue, [accepted, rating, closing]) == pushed
    on_time = ev("accepted", at(2026, 11, 16, 9), at(2026, 11, 16, 9, 5))
    assert facts_registered_at(skipped, [on_time, rating, closing]) == pushed  # the closing came late
    late_node = ev("node_completed", at(2026, 11, 18, 10), pushed, node="review")
    assert facts_registered_at(overdue, [on_time, late_node]) == on_time.recorded_at
    assert facts_registered_at(overdue, [rating]) is None
    again = ev("accepted", at(2026, 11, 30, 9), pushed)  # accepted again (补正), registered late
    assert facts_registered_at(overdue, [on_time, again]) == on_time.recorded_at


def test_a_head_who_stands_in_for_the_contact_is_told_of_a_withdrawal_once():
    # Found by a black-box test: a department without a contact had its head told of a withdrawal
    # twice, as the contact and as the head, in two identical mails.
    from alerts.catalog import load_catalog
    from alerts.notices import recipient, told_once

    t = advance(opened().ticket, POLICY, CAL, datetime(2026, 3, 20, tzinfo=CST)).ticket  # level 2 reached
    gone = on_alert(t, alert(status=AlertStatus.WITHDRAWN, version=2), POLICY, CAL, datetime(2026, 3, 21, tzinfo=CST))
    ticket = replace(gone.ticket, item_code=LICENCE)
    raw = contract_catalog_raw()
    for department in raw["departments"]:
        department.pop("contact", None)
    alone = load_catalog(raw)
    kept = told_once(list(gone.notices), lambda n: ticket, alone)
    assert [n.recipient for n in kept] == ["contact", "inspection_office"]
    assert recipient(kept[0], ticket, alone) == alone.departments[ticket.department].head
    # A department with a contact of its own: each told.
    with_contact = contract_catalog()
    assert with_contact.departments[ticket.department].contact is not None
    assert told_once(list(gone.notices), lambda n: ticket, with_contact) == list(gone.notices)


def test_a_ticket_bundling_two_findings_gives_each_as_its_own_sentence():
    # Found by a black-box test: the evidence of two skipped nodes read "…事件 A7-close。；必经环节…".
    from alerts.notices import render_notice
    from sinks.notify import load_templates

    first = replace(alert("N2"), item_code=LICENCE, evidence={"skipped_node_name": "审核", "went_ahead": "closed",
                                                                "went_ahead_event_id": "A7-close"})
    second = replace(alert("N3"), item_code=LICENCE, evidence={"skipped_node_name": "决定", "went_ahead": "closed",
                                                                 "went_ahead_event_id": "A7-close"})
    t = on_alert(None, first, POLICY, CAL, first.event_time).ticket
    t = on_alert(t, second, POLICY, CAL, second.event_time).ticket
    opened = advance(t, POLICY, CAL, datetime(2026, 3, 2, 12, tzinfo=CST))
    body = render_notice(opened.notices[0], opened.ticket, contract_catalog(), load_templates()).body
    assert "“审核”" in body and "“决定”" in body and "。；" not in body


def test_a_bundle_change_names_the_node_by_its_name():
    """The ticket's history said "新增预警 …（环节 N3）", the catalog's id of the node, which a head
    does not know; the evidence carries its name."""
    t = opened().ticket
    named = replace(alert("N3"), evidence={"node": "N3", "skipped_node_name": "现场核查"})
    assert on_alert(t, named, POLICY, CAL, datetime(2026, 3, 2, 11, tzinfo=CST)).ticket.last.text == (
        "新增预警 skipped_node-N3（环节“现场核查”）")
    late = replace(alert("N3", rule=Rule.NODE_OVERDUE, severity=Severity.YELLOW),
                   evidence={"node_name": "审核"})
    assert "（环节“审核”）" in on_alert(t, late, POLICY, CAL, datetime(2026, 3, 2, 11, tzinfo=CST)).ticket.last.text


def test_a_notice_resent_twice_says_it_once_as_of_the_last_resend():
    """`alerts.notices.resent`: the line after the salutation is replaced, not added again; a level 2
    notice has no later step to tell."""
    from alerts.notices import RenderedNotice, UNANSWERED_TO_CONTACT, resent
    from tests.unit.helpers import example_catalog

    catalog = example_catalog()
    body = f"法规科：\n\n现予督办。{UNANSWERED_TO_CONTACT}\n\n答复方式：……"
    notice = RenderedNotice("n1", "C1/overdue", Step.OPENED, "contact", "法规科", "a@b", "s", body, "SCJG", "320200",
                            datetime(2026, 3, 16, 2, tzinfo=timezone.utc), "<m>")
    once = resent(notice, {}, catalog)
    assert once.body == f"法规科：\n（本通知原定于 2026-03-16 10:00 发出，因投递失败现重新发送。）\n\n现予督办。{UNANSWERED_TO_CONTACT}\n\n答复方式：……"
    twice = resent(once, {"level_1": datetime(2026, 3, 21, tzinfo=timezone.utc)}, catalog)
    assert twice.body.count("本通知原定于") == 1 and UNANSWERED_TO_CONTACT not in twice.body
    assert "此后，该督办件逾期未答复，已于 2026-03-21 08:00 提请部门负责人督促办理。）" in twice.body
    level_2 = RenderedNotice("n2", "C1/overdue", Step.LEVEL_2, "inspection_office", "纪检组", "j@b", "s", "纪检组：\n\n正文",
                             "SCJG", "320200", datetime(2026, 3, 28, tzinfo=timezone.utc), "<m2>")
    assert resent(level_2, {"level_1": datetime(2026, 3, 21, tzinfo=timezone.utc)}, catalog).body.splitlines()[1] == \
        "（本通知原定于 2026-03-28 08:00 发出，因投递失败现重新发送。）"


def test_an_escalation_resent_after_the_department_answered_says_it_has_answered():
    """Found by a black-box test: a level 1 that failed while the mail server was down, resent after
    the department had replied, told the head 仍未答复 with nothing to say otherwise."""
    from alerts.notices import RenderedNotice, resent
    from streams.notices import to_send_again
    from tests.unit.helpers import example_catalog

    catalog = example_catalog()
    level_1 = RenderedNotice("C1/overdue/level_1", "C1/overdue", Step.LEVEL_1, "head", "王局长", "h@b", "s",
                             "王局长：\n\n答复期限已过，仍未答复。请督促。", "SCJG", "320200",
                             datetime(2026, 3, 21, tzinfo=timezone.utc), "<m>")
    answered = resent(level_1, {}, catalog, answered=True)
    assert answered.body.splitlines()[1] == \
        "（本通知原定于 2026-03-21 08:00 发出，因投递失败现重新发送。此后，该部门已作出答复，答复正在审核。）"
    assert "此后" not in resent(level_1, {}, catalog).body.splitlines()[1]
    # An opening or a return says nothing of an answer: it asks for one.
    opened = RenderedNotice("C1/overdue/opened", "C1/overdue", Step.OPENED, "contact", "法规科", "a@b", "s",
                            "法规科：\n\n现予督办。", "SCJG", "320200", datetime(2026, 3, 16, tzinfo=timezone.utc), "<o>")
    assert "答复正在审核" not in resent(opened, {}, catalog, answered=True).body
    # As a resend reads the store's record: the ticket's status now.
    from streams.notices import notice_to_json

    record = {**notice_to_json(level_1), "due_at": level_1.due_at.isoformat(), "ticket_status": "replied",
              "of_round": 1, "ticket_round": 1, "later_steps": {}}
    assert "该部门已作出答复" in to_send_again(record, catalog).body
    assert "该部门已作出答复" not in to_send_again({**record, "ticket_status": "open"}, catalog).body


def test_a_notice_s_round_is_read_from_its_id_whatever_the_case_and_rule_are_called():
    from alerts.tickets import Ticket, _notice, notice_round

    for case_id in ("C1", "X/r5", "r2"):
        for rule in (Rule.RETROACTIVE_SUSPENSION, Rule.OVERDUE):
            ticket = Ticket(ticket_id(case_id, rule), case_id, rule, Severity.RED, "I", "D", "R", {})
            for number in (1, 2, 13):
                this_round = replace(ticket, round=number, version=4)
                for step in Step:
                    notice = _notice(this_round, step, datetime(2026, 3, 2, tzinfo=timezone.utc),
                                     "contact" if step in (Step.WITHDRAWN, Step.CLOSED) else None)
                    assert notice_round(notice.notice_id) == number, notice.notice_id
