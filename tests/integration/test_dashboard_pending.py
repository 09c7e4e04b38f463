"""What the wall counts 待处置 and 超期, on rows written as the pipeline writes them: a card raised
after its ticket's round was closed, and a case suspended only after its deadline had passed.
Both found by a black-box test of the wall's numbers."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

from dashboards import queries as q
from dashboards.macros import TimeRange, expand
from sinks.clickhouse import connect
from sinks.migrations import migrate

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
            # A card of another severity on the finished case opens no ticket round: dealt with.
            alert("yellow", "X21", severity="yellow"),
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
        pending = {row[0] for row in client.query(f"SELECT alert_id FROM alerts FINAL WHERE {q._PENDING}").result_rows}
        assert pending == {"new", "active"}
        red, yellow = client.query(expand(q.WALL_OPEN_CARDS.sql, rng, {})).result_rows[0]
        assert (red, yellow) == (2, 0)
        overdue = {row[0] for row in client.query(expand(q.OVERDUE_CASES.sql, rng, {})).result_rows}
        assert overdue == {"X14"}
    finally:
        client.close()
