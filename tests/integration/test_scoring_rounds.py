"""A ticket opened again by hand in a later month is a new supervision there; its first round stays
in the month it opened in (sinks.scoring_inputs.month_facts, 督办完成率)."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone
from pathlib import Path
from zoneinfo import ZoneInfo

import orjson

from alerts.calendar import WorkCalendar
from alerts.model import Alert, Rule, Severity
from alerts.tickets import INSPECTORS, Action, ActionKind, TicketPolicy, advance, on_action, on_alert
from dashboards import queries as q
from dashboards.macros import TimeRange, expand
from sinks.clickhouse import connect
from sinks.migrations import migrate
from sinks.rows import ticket_row
from sinks.scoring_inputs import month_facts
from sinks.writer import Batch, ClickHouseWriter
from streams.ticket_codec import ticket_to_json

CST = timezone(timedelta(hours=8))
SHANGHAI = ZoneInfo("Asia/Shanghai")
CAL = WorkCalendar(on_missing_year=lambda year: None)
POLICY = TicketPolicy()


def red_card(case_id: str, item_code: str, department: str) -> Alert:
    """A red overdue card raised 10 March 2026, 10:00."""
    opened_at = datetime(2026, 3, 10, 10, tzinfo=CST)
    return Alert(alert_id="A1", rule=Rule.OVERDUE, severity=Severity.RED, case_id=case_id, item_code=item_code,
                 department=department, region="320200", officer_id=None, node=None, raised_at=opened_at,
                 event_time=opened_at, evidence={})


def reopened_ticket(case_id: str, item_code: str, department: str, notices: list | None = None):
    """The versions of a red overdue ticket opened 10 March 2026, escalated twice by the 31st, closed
    by an inspector on 2 April and opened again by hand an hour later (its second round), and the
    ticket as it stands; its notices added to `notices`, if given."""
    red = red_card(case_id, item_code, department)
    opened_at = red.raised_at
    versions, sent = [], notices if notices is not None else []
    out = on_alert(None, red, POLICY, CAL, opened_at + timedelta(hours=2))
    versions += out.versions
    sent.extend(out.notices)
    out = advance(out.ticket, POLICY, CAL, datetime(2026, 3, 31, tzinfo=CST))  # overdue, escalated
    versions += out.versions
    sent.extend(out.notices)
    ticket = out.ticket

    def by_inspector(kind, version, at, **extra):
        return Action(f"{kind}-{version}", ticket.ticket_id, version, "张督查", INSPECTORS, ActionKind(kind), "说明",
                      at, **extra)

    out = on_action(ticket, by_inspector("close", ticket.version, datetime(2026, 4, 2, 10, tzinfo=CST)), CAL, None)
    versions += out.versions
    sent.extend(out.notices)
    out = on_action(out.ticket, by_inspector("open", None, datetime(2026, 4, 2, 11, tzinfo=CST), alert_id="A1"),
                    CAL, None)
    versions += out.versions
    sent.extend(out.notices)
    return versions, out.ticket


def store_tickets(client, versions) -> None:
    """Ticket versions into a migrated store, as the pipeline writes them."""
    migrate(client)
    batch = Batch()
    for version in versions:
        batch.add("tickets", ticket_row(version, datetime.now(timezone.utc),
                                        orjson.dumps(ticket_to_json(version)).decode()))
    ClickHouseWriter(client).write(batch)


def test_a_ticket_reopened_in_a_later_month_leaves_the_earlier_month_its_unanswered_round(tmp_path):
    """Before, each ticket counted once, as its latest version: closed in April and opened again,
    its March round left March (督办 0/1 became 0/0, 无数据, full points), and the department that
    never answered moved up the ranking (found by a black-box test)."""
    versions, ticket = reopened_ticket("C4", "I-1", "DC")
    assert ticket.round == 2

    client = connect(None, tmp_path)
    try:
        store_tickets(client, versions)
        march = month_facts(client, "2026-03", SHANGHAI).tickets
        april = month_facts(client, "2026-04", SHANGHAI).tickets
        # The wall screen's 本月督办完成率 counts as the score does (it kept the latest version of
        # each ticket: March lost its round there too, and disagreed with `sunlight score`).
        wall = {}
        for month, end in (("2026-03", datetime(2026, 3, 31, 23, 59, tzinfo=CST)),
                           ("2026-04", datetime(2026, 4, 30, 23, 59, tzinfo=CST))):
            sql = expand(q.WALL_TICKET_COMPLETION.sql, TimeRange(end - timedelta(days=1), end))
            result = client.query(sql)
            wall[month] = dict(zip(result.column_names, result.result_rows[0]))
    finally:
        client.close()
    assert [(t.ticket_id, t.status) for t in march] == [("C4/overdue", "closed")]
    assert [(t.ticket_id, t.status) for t in april] == [("C4/overdue", "open")]
    # The wall's last moment of March shows the round as it stood then: closed only on 2 April
    # (the score, run later, counts it as it stands now, closed).
    assert (wall["2026-03"]["tickets"], wall["2026-03"]["completed"]) == (1, 0)
    assert (wall["2026-04"]["tickets"], wall["2026-04"]["completed"]) == (1, 0)


def test_a_letter_for_sunlights_own_failure_is_not_the_departments_nonstandard_push(tmp_path):
    """Before, a letter that Sunlight's own bug (internal_error) or the store (store_refused) wrote
    for a department's pushed event cost that department 数据对接's 5 points as 不规范, as a
    malformed event does (found by a black-box test). The department's own refusals still count."""
    from alerts.letters import make_letter
    from sinks.rows import dead_letter_row

    def letter(event_id: str, reason: str) -> dict:
        event = {"event_id": event_id, "case_id": event_id, "item_code": "I-1", "department": "ZJJ",
                 "type": "accepted", "occurred_at": "2026-04-20T10:00:00+08:00", "channel": "import"}
        made = make_letter("case-events", 0, 0, event_id.encode(), orjson.dumps(event), reason, "why")
        return dead_letter_row(made, datetime(2026, 5, 2, tzinfo=timezone.utc))

    client = connect(None, tmp_path)
    try:
        migrate(client)
        batch = Batch()
        for event_id, reason in (("e1", "internal_error"), ("e2", "store_refused"), ("e3", "schema")):
            batch.add("dead_letters", letter(event_id, reason))
        ClickHouseWriter(client).write(batch)
        facts = month_facts(client, "2026-04", SHANGHAI)
    finally:
        client.close()
    assert [(f.department, f.letter_id) for f in facts.letters] == [("ZJJ", letter("e3", "schema")["letter_id"])]


def test_a_case_never_accepted_counts_in_the_month_of_its_first_event(tmp_path):
    """A case whose acceptance the source never registered was in no month: its department had no
    办件 (当月无办件, not ranked, 操作规范 无数据) while its red cards and tickets counted (found by an
    independent scorer). It counts in the month its first event happened, and its cards with it."""
    import yaml

    from tests.integration.conftest import as_messages, pipeline_settings, replay

    catalog = tmp_path / "catalog.yaml"
    catalog.write_text((Path(__file__).resolve().parents[1] / "data" / "contract" / "catalog.example.yaml").read_text(encoding="utf-8"),
                       encoding="utf-8")
    item = yaml.safe_load(catalog.read_text(encoding="utf-8"))["items"][0]["code"]

    def event(case_id: str, n: int, kind: str, day: str, node: str | None = None) -> dict:
        at = f"{day}T10:00:00+08:00"
        return {"event_id": f"{case_id}-{n}", "case_id": case_id, "item_code": item, "type": kind,
                "occurred_at": at, "recorded_at": at, **({"node": node} if node else {})}

    events = [
        event("ACCEPTED", 1, "accepted", "2026-04-10"), event("ACCEPTED", 2, "node_completed", "2026-04-13", "undertake"),
        # never accepted: its first event in April (and a skipped 受理: a red card), closed in April
        event("UNACCEPTED", 1, "node_completed", "2026-04-20", "undertake"), event("UNACCEPTED", 2, "closed", "2026-04-21"),
        # never accepted: its first event in March, closed in April
        event("MARCH", 1, "node_completed", "2026-03-30", "undertake"), event("MARCH", 2, "closed", "2026-04-02"),
        # never accepted, only voided: never handled, no case of any month (it would dilute the rate)
        event("VOIDED", 1, "withdrawn", "2026-04-15"),
    ]
    settings = pipeline_settings(tmp_path / "data")
    alerts, _ = replay(settings, catalog, as_messages(events), now=datetime(2026, 5, 1, tzinfo=timezone.utc))
    assert any(a["case_id"] == "UNACCEPTED" and a["severity"] == "red" for a in alerts)
    from dashboards.macros import ALL, Variable

    client = connect(None, settings.data_dir)
    try:
        april, march = month_facts(client, "2026-04", SHANGHAI), month_facts(client, "2026-03", SHANGHAI)
        # The inspector's 本月各部门不规范率 counts them as the score does.
        every = {name: Variable(name, [ALL], [row[0] for row in client.query(q.VARIABLE_QUERIES[name]).result_rows],
                                all_value=q.all_value_of(name)) for name in ("rule", "severity", "department", "region")}
        panel = {}
        for month, end in (("2026-03", datetime(2026, 3, 31, 23, 59, tzinfo=CST)),
                           ("2026-04", datetime(2026, 4, 30, 23, 59, tzinfo=CST))):
            result = client.query(expand(q.IRREGULARITY_RATE_BY_DEPARTMENT.sql, TimeRange(end - timedelta(days=1), end),
                                         every))
            rows = [dict(zip(result.column_names, row)) for row in result.result_rows]
            panel[month] = (sum(r["cases"] for r in rows), sum(r["irregular_cases"] for r in rows))
    finally:
        client.close()
    assert sorted(c.case_id for c in april.cases) == ["ACCEPTED", "UNACCEPTED"]
    assert "UNACCEPTED" in april.irregular_cases
    assert [c.case_id for c in march.cases] == ["MARCH"]
    assert panel["2026-04"] == (2, len(april.irregular_cases)) and panel["2026-03"] == (1, len(march.irregular_cases))


def test_a_rating_counts_for_the_department_its_case_is_counted_under(tmp_path):
    """Found by a black-box test: a rating was filed under its event's department (the item's, for a
    rating system that knows no department), not its case's: the department that handled the case
    had 满意 0/0 (无数据), one with no case of its own 满意 1/1; and an item moved to another department
    moved its cases, not their ratings."""
    from alerts.evaluate import step_many
    from sinks.rows import case_row, event_row
    from tests.unit.helpers import ev, judge

    j, at = judge(), datetime(2026, 3, 2, 9, tzinfo=CST)
    item = j.catalog.item("320200-XK-SCJG-0001")
    events = [ev("accepted", at, case="K1", event_id="k1", department="ZJJ"),
              ev("closed", at + timedelta(days=1), case="K1", event_id="k2", department="ZJJ"),
              ev("rated", at + timedelta(days=2), case="K1", event_id="k3", rating="satisfied")]
    state = step_many(None, events, [], j, at + timedelta(days=3), at).outcome.state
    client = connect(None, tmp_path)
    try:
        migrate(client)
        batch = Batch()
        for event in events:
            batch.add("case_events", event_row(event, item.department, at))
        batch.add("cases", case_row(state, item.code, "ZJJ", "320200", None, at))
        ClickHouseWriter(client).write(batch)
        ratings = month_facts(client, "2026-03", SHANGHAI).ratings
        assert [(r.event_id, r.department) for r in ratings] == [("k3", "ZJJ")]
        # The case's latest row under another department (its item moved): its rating moves too.
        moved = state.evolve(revision=state.revision + 1)
        batch = Batch()
        batch.add("cases", case_row(moved, item.code, "WJW", "320200", None, at))
        ClickHouseWriter(client).write(batch)
        assert [(r.event_id, r.department) for r in month_facts(client, "2026-03", SHANGHAI).ratings] == [("k3", "WJW")]
    finally:
        client.close()
