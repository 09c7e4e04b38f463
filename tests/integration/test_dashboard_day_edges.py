"""A day chosen on a dashboard holds all of its last second. Grafana ends a chosen day at
23:59:59.999; the plugin's second-resolution macros ($__timeFilter, $__toTime) cut it to
23:59:59, so a case accepted at 23:59:59.5 belonged to no day at all (found by a test of the
wall's numbers). The panels use the millisecond macros."""

from __future__ import annotations

from datetime import datetime, timedelta
from zoneinfo import ZoneInfo

from dashboards import queries as q
from dashboards.macros import TimeRange, expand
from sinks.clickhouse import connect
from sinks.migrations import migrate

LOCAL = ZoneInfo("Asia/Shanghai")


def day(date: datetime) -> TimeRange:
    """A day as Grafana gives it when it is chosen: from its first millisecond to its last."""
    return TimeRange(date, date + timedelta(days=1) - timedelta(milliseconds=1))


def test_a_case_accepted_in_the_last_second_of_a_day_counts_on_that_day_and_only_there(tmp_path):
    client = connect(None, tmp_path / "data")
    try:
        migrate(client)
        first = datetime(2026, 3, 2, tzinfo=LOCAL)
        accepted = {"LAST": first + timedelta(days=1) - timedelta(milliseconds=500), "NEXT": first + timedelta(days=1)}
        columns = ["case_id", "item_code", "department", "status", "revision", "accepted_at", "event_count"]
        client.insert("cases", [[case_id, "I", "D", "open", 1, at, 1] for case_id, at in accepted.items()],
                      column_names=columns)
        counts = [client.query(expand(q.WALL_CASES_TODAY.sql, day(d), {})).result_rows[0][0]
                  for d in (first, first + timedelta(days=1))]
        assert counts == [1, 1]
    finally:
        client.close()


def test_no_panel_cuts_its_range_to_whole_seconds():
    """Every range and "now" of the panels is read to the millisecond."""
    for panel in q.PANELS.values():
        assert "$__timeFilter(" not in panel.sql, panel.name
        for macro in ("$__toTime", "$__fromTime"):
            assert panel.sql.count(macro) == panel.sql.count(macro + "_ms"), panel.name
