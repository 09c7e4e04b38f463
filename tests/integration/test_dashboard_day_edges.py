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


def test_a_case_closed_and_sent_back_since_reads_on_a_past_day_as_it_stood_then(tmp_path):
    """Found by a black-box test: a case closed on 2 June and sent back (退回) on 8 June is open now,
    and its row said so for every day: a past day's wall listed it overdue on a day it was closed,
    and counted its closing on no day. Its row keeps the closings a return undid
    (`cases.undone_ends`, `cases.reopened_at`), and each panel reads the case as it stood at the
    end of its range: closed between a closing and its return."""
    from alerts.state import apply
    from dashboards.macros import Variable
    from sinks.rows import case_row, to_arrow
    from tests.unit.helpers import ev

    def case(case_id, *steps):
        state = None
        for n, (kind, moment) in enumerate(steps):
            node = "undertake" if kind == "returned" else None
            state, _ = apply(state, ev(kind, moment, case=case_id, event_id=f"{case_id}-{n}", node=node))
        return state

    def local(d, h, mi=0):
        return datetime(2026, 6, d, h, mi, tzinfo=LOCAL)

    reopened = case("HG", ("accepted", local(1, 9)), ("closed", local(2, 11)), ("returned", local(8, 9)))
    again = case("HB", ("accepted", local(1, 9)), ("closed", local(1, 15)), ("returned", local(2, 9)),
                 ("closed", local(3, 10)))
    deadlines = {"HG": local(4, 23, 59), "HB": local(5, 23, 59)}
    client = connect(None, tmp_path / "data")
    try:
        migrate(client)
        rows = [case_row(state, "I", "D", "R", deadlines[state.case_id], local(10, 0)) for state in (reopened, again)]
        client.insert_arrow("cases", to_arrow("cases", rows))
        department = {"department": Variable("department", "D")}

        def rows_of(panel, d, variables=None):
            return client.query(expand(panel.sql, day(datetime(2026, 6, d, tzinfo=LOCAL)), variables)).result_rows

        # Closed on 2 June, open again from the 8th: not overdue on the 6th, overdue on the 9th.
        assert [row[0] for row in rows_of(q.OVERDUE_CASES, 6)] == []
        assert [row[0] for row in rows_of(q.OVERDUE_CASES, 9)] == ["HG"]
        assert rows_of(q.OVERDUE_OPEN_CASES_BY_DEPARTMENT, 6) == []
        # Each day's closings as they stood at its end: HB's first closing on the 1st (sent back on
        # the 2nd), HG's on the 2nd, HB's again on the 3rd.
        assert [rows_of(q.WALL_CASES_TODAY, d)[0][1] for d in (1, 2, 3, 6)] == [1, 1, 1, 0]
        assert rows_of(q.WALL_ON_TIME_RATE, 2)[0] == (1.0, 1)
        trend = {day: closed for day, _, closed in rows_of(q.WALL_TREND_30D, 9)}
        assert (trend["06-01"], trend["06-02"], trend["06-03"]) == (1, 1, 1)
        # The month so far: on the 6th both stood closed; on the 9th HG is open again.
        month = {d: rows_of(q.DEPARTMENT_MONTH_SO_FAR, d, department)[0][1] for d in (6, 9)}
        assert month == {6: 2, 9: 1}
        assert [row[1] for row in rows_of(q.CASES_HANDLED_PER_ITEM_THIS_MONTH, 6, department)] == [2]
        # The rows with such closings are copied apart (`case_reopenings`) for the panels, which
        # read them only while they are their case's latest: a later row of HG without the return
        # (its events read otherwise since) reads as that row says, closed on the 2nd.
        assert client.query("SELECT count() FROM case_reopenings").result_rows[0][0] == 2
        later = case("HG", ("accepted", local(1, 9)), ("closed", local(2, 11))).evolve(revision=10)
        client.insert_arrow("cases", to_arrow("cases", [case_row(later, "I", "D", "R", deadlines["HG"], local(10, 0))]))
        assert [row[0] for row in rows_of(q.OVERDUE_CASES, 9)] == []
        assert [rows_of(q.WALL_CASES_TODAY, d)[0][1] for d in (1, 2, 3)] == [1, 1, 1]
    finally:
        client.close()
