"""The console's pages of a ticket opened again: the rounds kept apart (a store of its own: chdb
serves one data directory per process, so not beside test_console_security's)."""

from __future__ import annotations

import asyncio
from datetime import datetime, timedelta, timezone

import orjson

from sinks.clickhouse import connect
from streams.catalog_source import load_judge
from streams.console.app import Backend, create_app
from streams.console.links import Links
from tests.integration.conftest import pipeline_settings
from tests.integration.test_console_security import EXAMPLE, KEY, Client, in_a_week, path_of


def test_a_reply_page_shows_this_round_and_keeps_the_earlier_ones_apart(tmp_path):
    """Found by a black-box test: a ticket closed and opened again showed the department every
    round's history unmarked (an escalation to the discipline-inspection office of a round it was
    never told of among it), and the system's own steps by "sunlight"."""
    from alerts.model import Alert, Rule, Severity
    from alerts.calendar import WorkCalendar
    from alerts.tickets import INSPECTORS, Action, ActionKind, TicketPolicy, advance, on_action, on_alert
    from sinks.migrations import migrate
    from sinks.rows import ticket_row
    from sinks.writer import Batch, ClickHouseWriter
    from streams.ticket_codec import ticket_to_json

    cst, cal, policy = timezone(timedelta(hours=8)), WorkCalendar(on_missing_year=lambda year: None), TicketPolicy()
    opened_at = datetime(2026, 3, 10, 10, tzinfo=cst)
    red = Alert(alert_id="A1", rule=Rule.OVERDUE, severity=Severity.RED, case_id="C-R", item_code="320200-XK-SCJG-0001",
                department="SCJG", region="320200", officer_id=None, node=None, raised_at=opened_at,
                event_time=opened_at, evidence={})
    out = on_alert(None, red, policy, cal, opened_at + timedelta(hours=2))
    versions = list(out.versions)
    out = advance(out.ticket, policy, cal, datetime(2026, 3, 31, tzinfo=cst))  # escalated twice
    versions += out.versions
    ticket = out.ticket

    def by_inspector(kind, version, at, **extra):
        return Action(f"{kind}-{version}", ticket.ticket_id, version, "张督查", INSPECTORS, ActionKind(kind), "核实中",
                      at, **extra)

    out = on_action(ticket, by_inspector("close", ticket.version, datetime(2026, 4, 2, 10, tzinfo=cst)), cal, None)
    versions += out.versions
    out = on_action(out.ticket, by_inspector("open", None, datetime(2026, 4, 2, 11, tzinfo=cst), alert_id="A1"),
                    cal, None)
    versions += out.versions
    current = out.ticket
    client = connect(None, tmp_path / "data")
    try:
        migrate(client)
        batch = Batch()
        for version in versions:
            batch.add("tickets", ticket_row(version, datetime.now(timezone.utc),
                                            orjson.dumps(ticket_to_json(version)).decode()))
        ClickHouseWriter(client).write(batch)
        judge = load_judge(EXAMPLE, None)
        settings = pipeline_settings(tmp_path / "data", secret_key=KEY, public_url="https://console.city.example",
                                     users_file=tmp_path / "users.json")
        app = create_app(settings, Backend(client, lambda: judge, lambda messages: asyncio.sleep(0), wait_seconds=0.2))
        links = Links("https://console.city.example", KEY)
        page = Client(app).get(path_of(links.make(current.ticket_id, "SCJG", in_a_week(), current.version)))
    finally:
        client.close()
    assert page.status == 200, page.text
    this_round, _, earlier = page.text.partition("<details data-earlier-rounds>")
    assert "本轮为第 2 轮督办" in this_round and "人工督办" in this_round
    assert "升级至纪检监察机构" not in this_round and "督办办结" not in this_round
    assert "此前各轮督办记录" in earlier and "升级至纪检监察机构" in earlier and "督办办结" in earlier
    assert "电子监察系统 · 升级至部门负责人" in earlier and " · sunlight · " not in page.text
