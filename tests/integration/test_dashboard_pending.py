"""What the wall counts 待处置 and 超期, on rows written as the pipeline writes them: a card raised
after its ticket's round was closed, and a case suspended only after its deadline had passed.
Both found by a black-box test of the wall's numbers."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

import pytest

from dashboards import queries as q
from dashboards.macros import TimeRange, expand
from sinks.clickhouse import connect
from sinks.migrations import migrate, rollback

NOW = datetime(2026, 6, 1, 12, tzinfo=timezone.utc)


def alert(alert_id: str, case_id: str, rule: str = "skipped_node", severity: str = "red") -> dict:
    return {"alert_id": alert_id, "case_id": case_id, "rule": rule, "severity": severity, "status": "open",
            "version": 1, "department": "D", "item_code": "I", "raised_at": NOW - timedelta(days=3),
            "event_time": NOW - timedelta(days=3)}


def ticket(case_id: str, status: str, alert_ids: list[str], version: int, rule: str = "skipped_node") -> dict:
    return {"ticket_id": f"{case_id}/{rule}", "version": version, "case_id": case_id, "rule": rule, "severity": "red",
            "department": "D", "item_code": "I", "status": status, "alert_ids": alert_ids,
            "changed_at": NOW - timedelta(days=2), "written_at": NOW - timedelta(days=2)}


def case(case_id: str, status: str, deadline: datetime | None, ended_at: datetime | None = None) -> dict:
    return {"case_id": case_id, "item_code": "I", "department": "D", "status": status, "revision": 1,
            "accepted_at": NOW - timedelta(days=60), "deadline": deadline, "ended_at": ended_at, "event_count": 3}


def pending_at(client, now: datetime = NOW) -> set[str]:
    """The alerts 待处置 (`dashboards.queries._PENDING`) on a screen whose range ends at `now`."""
    sql = expand(f"SELECT alert_id FROM {q._ALERTS_WITH_TICKETS} WHERE {q._PENDING}",
                 TimeRange(now - timedelta(days=1), now), {})
    pending = {row[0] for row in client.query(sql).result_rows}
    # An alert with no ticket reads its ticket's columns as NULL on a server that sets join_use_nulls:
    # the same alerts are pending.
    assert {row[0] for row in client.query(sql + " SETTINGS join_use_nulls = 1").result_rows} == pending
    return pending


def insert(client, table: str, rows: list[dict]) -> None:
    columns = sorted(rows[0])
    client.insert(table, [[row[c] for c in columns] for row in rows], column_names=columns)


def test_a_card_raised_after_its_ticket_closed_a_round_waits_and_a_case_suspended_late_is_overdue(tmp_path):
    client = connect(None, tmp_path / "data")
    try:
        migrate(client)
        insert(client, "alerts", [
            alert("old", "X21"),  # its ticket's round closed with it: dealt with
            alert("new", "X21"),  # raised after that round, its next round held back (a silence): waits
            alert("done", "Y1"),  # its case finished with no ticket: dealt with
            alert("active", "Y2")])  # its ticket open: waits
        insert(client, "tickets", [ticket("X21", "open", ["old"], 1), ticket("X21", "closed", ["old"], 2),
                                   ticket("Y2", "open", ["active"], 1)])
        insert(client, "cases", [
            case("X21", "closed", NOW - timedelta(days=40), ended_at=NOW - timedelta(days=1)),
            case("Y1", "closed", NOW - timedelta(days=40), ended_at=NOW - timedelta(days=1)),
            case("Y2", "open", NOW + timedelta(days=5)),
            case("X14", "suspended", NOW - timedelta(days=50)),  # suspended a month after its deadline
            case("X4", "suspended", None)])  # suspended before it: its clock stands still, no deadline
        rng = TimeRange(NOW - timedelta(days=1), NOW)
        assert pending_at(client) == {"new", "active"}
        red, yellow = client.query(expand(q.WALL_OPEN_CARDS.sql, rng, {})).result_rows[0]
        assert (red, yellow) == (2, 0)
        overdue = {row[0] for row in client.query(expand(q.OVERDUE_CASES.sql, rng, {})).result_rows}
        assert overdue == {"X14"}
    finally:
        client.close()


def _rows_of(*tickets) -> list[dict]:
    """Ticket rows as the pipeline writes them (`sinks.rows.ticket_row`, with the stored state)."""
    import orjson

    from sinks.rows import ticket_row
    from streams.ticket_codec import ticket_to_json

    columns = ("ticket_id", "version", "case_id", "rule", "severity", "department", "item_code", "status",
               "alert_ids", "manual", "changed_at", "written_at", "state")
    rows = [ticket_row(t, NOW, orjson.dumps(ticket_to_json(t)).decode()) for t in tickets]
    return [{k: row[k] for k in columns} for row in rows]


# The last migration before the columns the 待处置 panels read (0017: a ticket's coming round, the
# deadline a deadline_near card warned of); rows written before it are read by their DEFAULT.
BEFORE_PENDING_COLUMNS = 16


def migrated(client, written_before_0017: bool) -> None:
    """The store's schema to write the rows under: the latest, or the one before migration 0017
    (`after_writing` then migrates it)."""
    migrate(client)
    if written_before_0017:
        rollback(client, BEFORE_PENDING_COLUMNS)


def after_writing(client, written_before_0017: bool) -> None:
    if written_before_0017:
        migrate(client)


def _pending_of(tmp_path, alerts: list[dict], tickets: list[dict], case_id: str,
                written_before_0017: bool = False) -> set[str]:
    client = connect(None, tmp_path / "data")
    try:
        migrated(client, written_before_0017)
        insert(client, "alerts", alerts)
        insert(client, "tickets", tickets)
        insert(client, "cases", [case(case_id, "closed", NOW - timedelta(days=40), ended_at=NOW - timedelta(days=1))])
        after_writing(client, written_before_0017)
        return pending_at(client)
    finally:
        client.close()


@pytest.mark.parametrize("written_before_0017", [False, True])
def test_a_card_waiting_for_the_next_round_still_waits_after_an_update_of_the_card_its_round_answered(
        tmp_path, written_before_0017):
    """Found by review: a change recorded on the closed ticket (a new version of the card the closed
    round answered) lists every card of its bundle, the waiting one too, and it read 已处置 again.
    The ticket's stored state names the coming round's cards (`pending`), kept in a column of their
    own (`pending_alert_ids`, migration 0017), also for a row written before that column."""
    from alerts.tickets import on_alert
    from tests.unit.test_tickets import CAL, CST, POLICY, alert as card, closed_ticket

    closed = closed_ticket()
    found = datetime(2026, 3, 9, 10, tzinfo=CST)
    waiting = on_alert(closed, card("N4", at=found), POLICY, CAL, found + timedelta(minutes=5))
    assert not waiting.versions  # the round settles: no row yet
    (updated,) = on_alert(waiting.ticket, card("N2", version=2), POLICY, CAL, found + timedelta(minutes=10)).versions
    cards = [{**alert(a.alert_id, "C-1"), "case_id": a.case_id} for a in (card("N2"), card("N4"))]
    assert _pending_of(tmp_path, cards, _rows_of(closed, updated), "C-1",
                       written_before_0017) == {card("N4").alert_id}


def test_a_yellow_card_after_a_round_opened_by_hand_is_not_waiting_for_one(tmp_path):
    """Found by review: an inspector opened a yellow card's ticket by hand and closed it; a later
    yellow card of its rule on the finished case is opened again by hand only (docs/tickets.md):
    no round is coming for it, and it is dealt with as any card on a finished case with no ticket."""
    from alerts.tickets import INSPECTORS, Rule, Severity, on_action, ticket_id
    from tests.unit.test_tickets import CAL, action, alert as card

    first = card(rule=Rule.NODE_OVERDUE, severity=Severity.YELLOW)
    act = action("open", None, INSPECTORS, "人工督办", ticket=ticket_id("C-1", Rule.NODE_OVERDUE),
                 alert_id=first.alert_id)
    opened = on_action(None, act, CAL, act.at, first).ticket
    closed = on_action(opened, action("close", opened.version, INSPECTORS, "已核实", ticket=opened.ticket_id),
                       CAL, act.at).ticket
    later = card("N3", rule=Rule.NODE_OVERDUE, severity=Severity.YELLOW)
    cards = [{**alert(a.alert_id, "C-1", rule="node_overdue", severity="yellow")} for a in (first, later)]
    assert _pending_of(tmp_path, cards, _rows_of(opened, closed), "C-1") == set()


@pytest.mark.parametrize("written_before_0017", [False, True])
def test_a_deadline_near_card_whose_deadline_has_passed_waits_no_more(tmp_path, written_before_0017):
    """Found by a black-box test of the wall: a yellow 临近办理时限 card stayed 待处置 for as long as
    its case was open, weeks after the deadline it warned of had passed and its red 办理超时 card
    (whose ticket the department had answered) said so: 141 of a city's 304 yellow cards. One whose
    deadline is still to come waits, though its last working day was days before (a stated deadline
    after a weekend: found by review); one with a ticket of its own waits through it. The deadline
    is kept in a column of its own (`warned_deadline`, migration 0017), also for a card written
    before that column."""
    import orjson

    def near(alert_id: str, case_id: str, last_day: datetime, deadline: datetime) -> dict:
        return {**alert(alert_id, case_id, "deadline_near", "yellow"), "event_time": last_day,
                "evidence": orjson.dumps({"deadline": deadline.isoformat()}).decode()}

    client = connect(None, tmp_path / "data")
    try:
        migrated(client, written_before_0017)
        today = NOW.replace(hour=0) - timedelta(hours=8)  # 00:00 in Shanghai, as deadline_near's moment
        rows = [near("near-late", "L1", today - timedelta(days=3), today - timedelta(days=2)),
                alert("late", "L1", "overdue"),
                alert("node-late", "L1", "node_overdue", "yellow"),  # another rule: not overtaken
                near("near", "L2", today, today + timedelta(days=1)),  # its last day: waits
                # Its last working day a Friday, its stated deadline the Monday: waits over the weekend.
                near("near-weekend", "L3", today - timedelta(days=1), today + timedelta(days=2)),
                near("near-own", "L4", today - timedelta(days=3), today - timedelta(days=2)),
                alert("late-4", "L4", "overdue")]
        insert(client, "alerts", [{"evidence": "{}", **row} for row in rows])
        insert(client, "tickets", [ticket("L4", "open", ["near-own"], 1, rule="deadline_near")])
        insert(client, "cases", [case("L1", "open", today - timedelta(days=2)), case("L2", "open", today + timedelta(days=1)),
                                 case("L3", "open", today + timedelta(days=2)),
                                 case("L4", "suspended", today - timedelta(days=2))])
        after_writing(client, written_before_0017)
        assert pending_at(client) == {"late", "node-late", "near", "near-weekend", "near-own", "late-4"}
        assert "near" not in pending_at(client, today + timedelta(days=1))  # the screen the next day: L2 late too
        rng = TimeRange(NOW - timedelta(days=1), NOW)
        assert client.query(expand(q.WALL_OPEN_CARDS.sql, rng, {})).result_rows[0] == (2, 4)
        listed = client.query(expand(q.DEPARTMENT_CASE_LIST.sql.replace("${department:singlequote}", "'D'"), rng, {}))
        index = listed.column_names.index("open_alerts")
        assert {row[0]: row[index] for row in listed.result_rows} == {"L1": 2, "L2": 1, "L3": 1, "L4": 2}
        evidence = q.CASE_EVIDENCE.sql.replace("SELECT event_time,", "SELECT alert_id, event_time,", 1)
        states = dict((row[0], row[5]) for row in client.query(
            expand(evidence.replace("${case_id:singlequote}", "'L1'"), rng, {})).result_rows)
        assert states == {"near-late": "已超时（转红牌督办）", "late": "待处置", "node-late": "待处置"}
    finally:
        client.close()
