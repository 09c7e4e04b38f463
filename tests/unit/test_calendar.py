"""Working days and deadlines: National Day, make-up Saturdays (调休), years without data."""

from datetime import date, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest

from alerts.calendar import MissingCalendarYear, WorkCalendar, load_overrides, merge_pauses

TZ = ZoneInfo("Asia/Shanghai")


def at(y, m, d, h=0, mi=0):
    return datetime(y, m, d, h, mi, tzinfo=TZ)


@pytest.mark.parametrize("day, workday", [
    (date(2026, 10, 1), False),   # National Day
    (date(2026, 10, 7), False),
    (date(2026, 10, 8), True),
    (date(2026, 10, 10), True),   # make-up Saturday (调休)
    (date(2026, 9, 20), True),    # make-up Sunday
    (date(2026, 10, 11), False),  # an ordinary Sunday
    (date(2026, 10, 12), True),
])
def test_workdays_follow_the_state_council_notice(day, workday):
    assert WorkCalendar().is_workday(day) is workday


@pytest.mark.parametrize("accepted, days, deadline", [
    # Accepted Friday before National Day: 9-28, 9-29, 9-30, 10-8, 10-9, 10-10 (Sat, make-up), 10-12 ...
    (at(2026, 9, 25, 10), 3, at(2026, 10, 1)),
    (at(2026, 9, 25, 10), 4, at(2026, 10, 9)),
    (at(2026, 9, 25, 10), 6, at(2026, 10, 11)),   # the make-up Saturday counts
    (at(2026, 9, 25, 10), 10, at(2026, 10, 16)),
    (at(2026, 9, 30, 23, 59), 1, at(2026, 10, 9)),  # the acceptance day itself is not counted
    (at(2026, 3, 2, 9), 0, at(2026, 3, 3)),       # 即办: the day of acceptance
])
def test_deadline_counts_whole_working_days_after_acceptance(accepted, days, deadline):
    assert WorkCalendar().deadline(accepted, days) == deadline


def test_a_suspension_moves_the_deadline_by_the_working_time_it_stopped():
    cal = WorkCalendar()
    accepted = at(2026, 3, 2, 9)  # Monday
    plain = cal.deadline(accepted, 5)
    assert plain == at(2026, 3, 10)
    # Suspended Tuesday 00:00 to Thursday 12:00: 2.5 working days stopped.
    moved = cal.deadline(accepted, 5, [(at(2026, 3, 3), at(2026, 3, 5, 12))])
    assert moved == at(2026, 3, 12, 12)
    # A suspension over a weekend stops nothing.
    assert cal.deadline(accepted, 5, [(at(2026, 3, 7), at(2026, 3, 9))]) == plain


def test_an_open_suspension_stops_the_clock():
    cal = WorkCalendar()
    assert cal.deadline(at(2026, 3, 2, 9), 5, [(at(2026, 3, 4, 10), None)]) is None
    # ... unless the time had already run out before it began.
    assert cal.deadline(at(2026, 3, 2, 9), 1, [(at(2026, 3, 4, 10), None)]) == at(2026, 3, 4)


def test_a_deadline_that_crosses_into_a_year_without_data_warns_once_and_counts_weekdays():
    seen = []
    cal = WorkCalendar(on_missing_year=seen.append)
    deadline = cal.deadline(at(2026, 12, 28, 10), 5)
    # 12-29, 12-30, 12-31 (2026 data), then 2027 without data: Fri 1-1, Mon 1-4 as weekdays.
    assert deadline == at(2027, 1, 5)
    assert seen == [2027]
    cal.deadline(at(2026, 12, 28, 10), 8)
    assert seen == [2027]
    assert cal.missing_years == {2027}


def test_the_default_warning_is_loud():
    with pytest.warns(MissingCalendarYear, match="2027"):
        WorkCalendar().is_workday(date(2027, 3, 1))


def test_an_override_fixes_a_year_without_data():
    overrides = load_overrides({"holidays": ["2027-01-01"], "workdays": ["2027-01-09"]})
    seen = []
    cal = WorkCalendar(overrides, on_missing_year=seen.append)
    # 12-29, 12-30, 12-31, (1-1 holiday), 1-4, 1-5
    assert cal.deadline(at(2026, 12, 28, 10), 5) == at(2027, 1, 6)
    assert cal.is_workday(date(2027, 1, 9)) is True
    assert seen == []


def test_overrides_refuse_contradictions_and_bad_dates():
    with pytest.raises(ValueError, match="both"):
        load_overrides({"holidays": ["2027-01-01"], "workdays": ["2027-01-01"]})
    with pytest.raises(ValueError, match="not a YYYY-MM-DD"):
        load_overrides({"holidays": ["first of May"]})


def test_working_days_between_leaves_out_holidays_and_pauses():
    cal = WorkCalendar()
    assert cal.working_days_between(at(2026, 9, 25, 10), at(2026, 10, 9, 12)) == 4.5
    paused = [(at(2026, 9, 28), at(2026, 9, 29))]
    assert cal.working_days_between(at(2026, 9, 25, 10), at(2026, 10, 9, 12), paused) == 3.5


def test_merge_pauses_joins_overlaps_and_keeps_open_ends():
    a, b, c = at(2026, 3, 2), at(2026, 3, 3), at(2026, 3, 4)
    assert merge_pauses([(b, c), (a, b + timedelta(hours=1))]) == [(a, c)]
    assert merge_pauses([(a, b), (b - timedelta(hours=1), None)]) == [(a, None)]
