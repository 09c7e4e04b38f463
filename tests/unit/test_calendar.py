"""Working days and deadlines: National Day, make-up Saturdays (调休), years without data."""

from datetime import date, datetime, timedelta, timezone
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


def test_deadlines_remembered_by_day_keep_the_local_day_and_the_zone_apart():
    """Without a pause a deadline depends only on the start's local day: remembered so, a start
    just before and just after local midnight, or the same moment in another zone, still differ."""
    from datetime import timezone

    calendar = WorkCalendar()
    utc = timezone.utc
    before = datetime(2026, 9, 29, 15, 59, tzinfo=utc)  # Tuesday 23:59 in Shanghai
    after = datetime(2026, 9, 29, 16, 1, tzinfo=utc)  # Wednesday 00:01: the holidays come first
    first = calendar.deadline(before, 3)
    # 24:00 of the third working day after Tuesday: 9-30, 10-8, 10-9 (National Day between).
    assert calendar.deadline(at(2026, 9, 29, 8), 3) == first == at(2026, 10, 10)
    assert calendar.deadline(after, 3) == at(2026, 10, 11)  # 10-8, 10-9 and the make-up Saturday 10-10
    berlin = ZoneInfo("Europe/Berlin")  # Tuesday 17:59 there: the same days, and midnight there
    assert calendar.deadline(before, 3, tz=berlin) == datetime(2026, 10, 10, tzinfo=berlin) != first
    assert calendar.deadline(before, 3) == first


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
    # 12-29, 12-30, 12-31 (2026 data), then 2027 without data: Fri 1-1 is 元旦 by law (before,
    # it was counted as a working day: a case accepted 12-31 with one day was overdue on 1-2),
    # then Mon 1-4 and Tue 1-5 as weekdays.
    assert deadline == at(2027, 1, 6)
    assert cal.deadline(at(2026, 12, 31, 10), 1) == at(2027, 1, 5)
    assert seen == [2027]
    cal.deadline(at(2026, 12, 28, 10), 8)
    assert seen == [2027]
    assert cal.missing_years == {2027}


def test_in_a_year_without_data_the_holidays_the_law_fixes_by_date_are_no_working_days():
    cal = WorkCalendar(on_missing_year=lambda year: None)
    # 2027: 元旦 Fri 1-1, 清明 Mon 4-5 (the solar term), 劳动节 on a weekend (Sat 5-1, Sun 5-2),
    # 国庆节 Fri 10-1 (10-2, 10-3 a weekend). 2028: 劳动节 Mon 5-1 and Tue 5-2, 国庆节 Mon 10-2, Tue 10-3.
    assert not any(cal.is_workday(d) for d in (date(2027, 1, 1), date(2027, 4, 5), date(2027, 10, 1),
                                                date(2028, 5, 1), date(2028, 5, 2), date(2028, 10, 2),
                                                date(2028, 10, 3)))
    assert all(cal.is_workday(d) for d in (date(2027, 1, 4), date(2027, 4, 6), date(2027, 5, 3),
                                           date(2028, 10, 4)))
    assert cal.missing_years == {2027, 2028}


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


def test_overrides_refuse_a_misspelt_key_and_a_day_not_in_a_list(tmp_path):
    """Found by a black-box test: `holiday:` (the 2027 notice typed by hand, chinese_calendar
    1.11.0 ending with 2026) was read as no override at all, its days not taken, without a word;
    `holidays: 2027-01-04` stopped with a TypeError traceback."""
    from alerts.catalog import CatalogError
    from streams.catalog_source import load_judge
    from tests.unit.helpers import CONTRACT

    with pytest.raises(ValueError, match="'holiday' is not a key of the file: its keys are 'holidays' and"):
        load_overrides({"holiday": ["2027-01-04"]})
    with pytest.raises(ValueError, match="holidays must be a list of YYYY-MM-DD dates"):
        load_overrides({"holidays": date(2027, 1, 4)})
    with pytest.raises(ValueError, match="'2027-01-04 10:00:00' is not a YYYY-MM-DD date"):
        load_overrides({"workdays": [datetime(2027, 1, 4, 10)]})
    assert load_overrides({"holidays": None, "workdays": [date(2027, 2, 14)]}) == {date(2027, 2, 14): True}
    days = tmp_path / "days.yaml"
    days.write_text("holiday:\n  - 2027-01-04\n", encoding="utf-8")
    with pytest.raises(CatalogError, match=f"{days} \\(SUNLIGHT_CALENDAR_OVERRIDES\\): calendar overrides: 'holiday'"):
        load_judge(CONTRACT / "catalog.example.yaml", days)


def test_a_suspension_on_a_working_day_with_a_time_change_gives_back_its_share_of_that_day():
    """Found by a black-box test: in Africa/Cairo, 2026-04-24 (a Friday, a Chinese working day) is
    23 hours long. Six hours suspended that day are 6/23 of it, and the deadline moves on by that
    share of its last day: 06:15:39. It moved 7 hours: two times of one zone subtracted as wall
    clocks (the day's length read as 24 hours, the suspension's as 7 when stated in the zone)."""
    cal = WorkCalendar({}, "Africa/Cairo")
    cairo, summer = cal.tz, timezone(timedelta(hours=3))
    accepted = datetime(2026, 4, 20, 10, tzinfo=timezone(timedelta(hours=2)))
    assert cal.deadline(accepted, 10) == datetime(2026, 5, 8, tzinfo=summer)
    moved = datetime(2026, 5, 8, 6, 15, 39, 130435, tzinfo=summer)
    for zone in (summer, cairo):  # stated with its offset, or in the catalog's zone
        suspension = (datetime(2026, 4, 24, 12, tzinfo=zone), datetime(2026, 4, 24, 18, tzinfo=zone))
        assert cal.deadline(accepted, 10, [suspension]) == moved
    # In a zone without time changes, six hours are a quarter of a day, as before.
    shanghai = WorkCalendar({}).tz
    suspension = (datetime(2026, 4, 24, 12, tzinfo=shanghai), datetime(2026, 4, 24, 18, tzinfo=shanghai))
    assert WorkCalendar({}).deadline(datetime(2026, 4, 20, 10, tzinfo=shanghai), 10, [suspension]) \
        == datetime(2026, 5, 8, 6, tzinfo=shanghai)


def test_working_days_between_leaves_out_holidays_and_pauses():
    cal = WorkCalendar()
    assert cal.working_days_between(at(2026, 9, 25, 10), at(2026, 10, 9, 12)) == 4.5
    paused = [(at(2026, 9, 28), at(2026, 9, 29))]
    assert cal.working_days_between(at(2026, 9, 25, 10), at(2026, 10, 9, 12), paused) == 3.5


def test_merge_pauses_joins_overlaps_and_keeps_open_ends():
    a, b, c = at(2026, 3, 2), at(2026, 3, 3), at(2026, 3, 4)
    assert merge_pauses([(b, c), (a, b + timedelta(hours=1))]) == [(a, c)]
    assert merge_pauses([(a, b), (b - timedelta(hours=1), None)]) == [(a, None)]


# -- the counting is fast, and counts exactly as the day-by-day walk it replaced ------------------

def _walk_deadline(cal, start, days, pauses, tz):
    """The reference: walk day by day, a working day's running time counted as its share."""
    start_day = start.astimezone(tz).date()
    merged = merge_pauses(pauses)
    remaining, day, first = float(days), start_day, None
    if days == 0:  # 即办: the rest of the start's day (a day off: the next working day)
        if not cal.is_workday(start_day):
            return _walk_deadline(cal, start, 1, pauses, tz)
        day_end = cal.midnight(start_day + timedelta(days=1), tz)
        if not merged:
            return day_end
        remaining = (day_end - start).total_seconds() / (day_end - cal.midnight(start_day, tz)).total_seconds()
        day, first = start_day - timedelta(days=1), start
    for _ in range(20000):
        day += timedelta(days=1)
        if not cal.is_workday(day):
            continue
        day_start, day_end = cal.midnight(day, tz), cal.midnight(day + timedelta(days=1), tz)
        length = (day_end - day_start).total_seconds()
        cursor, first = first or day_start, None
        for p_start, p_end in merged + [(day_end, day_end)]:
            if p_end is not None and p_end <= cursor:
                continue
            run_end = min(max(p_start, cursor), day_end)
            share = (run_end - cursor).total_seconds() / length
            if share >= remaining - 1e-12 and run_end > cursor:
                return cursor + timedelta(seconds=remaining * length)
            remaining -= share
            if p_start >= day_end:
                break
            if p_end is None:
                return None
            cursor = max(cursor, p_end)
            if cursor >= day_end:
                break
    raise AssertionError("not found")


@pytest.mark.parametrize("zone", ["Asia/Shanghai", "Europe/Amsterdam"])
def test_deadlines_with_pauses_match_the_day_by_day_walk(zone):
    import random

    tz = ZoneInfo(zone)
    cal = WorkCalendar(timezone=zone, on_missing_year=lambda year: None)
    rng = random.Random(zone)
    for _ in range(400):
        start = datetime(2024, 1, 1, tzinfo=tz) + timedelta(minutes=rng.randrange(0, 3 * 365 * 24 * 60))
        days = rng.choice([0, 1, 2, 5, 10, 20, 45, 90, 400])
        pauses = []
        cursor = start - timedelta(days=2)
        for _ in range(rng.randrange(0, 4)):
            cursor += timedelta(minutes=rng.randrange(0, 20 * 24 * 60))
            end = cursor + timedelta(minutes=rng.randrange(1, 10 * 24 * 60))
            pauses.append((cursor, None if rng.random() < 0.1 else end))
            cursor = end
        want = _walk_deadline(cal, start, days, pauses, tz)
        got = cal.deadline(start, days, pauses)
        assert got == want or abs((got - want).total_seconds()) < 1e-3, (start, days, pauses)
        if want is not None and days:
            used = cal.working_days_between(start, want, [p for p in pauses if p[1] is not None])
            if all(p[1] is not None for p in pauses):
                assert used == pytest.approx(days, abs=1e-3)


def test_a_ten_year_deadline_with_suspensions_costs_what_a_short_one_does():
    # Cost counted in days looked at, not in seconds: once the calendar's years are indexed, a
    # deadline looks at the days its pauses cut, whatever the number of days it spans.
    looked_at = []

    class Counting(WorkCalendar):
        def is_workday(self, day):
            looked_at.append(day)
            return super().is_workday(day)

    cal = Counting(on_missing_year=lambda year: None)
    start = at(2026, 3, 2, 10)
    pauses = [(at(2026, 3, 3 + i, 9), at(2026, 3, 3 + i, 15)) for i in range(0, 20, 2)]
    assert cal.deadline(start, 3650, pauses) > at(2040, 1, 1)  # indexes the years it spans

    def cost(days, minute):
        looked_at.clear()
        cal.deadline(start + timedelta(minutes=minute), days, pauses)  # another start: not remembered
        return len(looked_at)

    assert cost(5, 1) <= cost(3650, 1) <= 4 * len(pauses) + 4


def test_a_limit_of_no_days_is_the_rest_of_the_day_with_suspended_time_not_counted():
    """即办 (0 working days): before, always 24:00 of the day the clock started, whatever the
    suspensions and whether that day was a working day (found by a black-box test: a case
    suspended at 10:00 for good got a red card at midnight, one accepted online on a Saturday too)."""
    cal = WorkCalendar(on_missing_year=lambda year: None)
    monday = at(2026, 3, 2, 9)
    assert cal.deadline(monday, 0) == at(2026, 3, 3)
    assert cal.deadline(monday, 0, [(at(2026, 3, 2, 10), None)]) is None  # stopped for good
    # 15 hours left at 09:00; suspended 10:00 to 09:00 the next day: 14 left, to 23:00 Tuesday.
    assert cal.deadline(monday, 0, [(at(2026, 3, 2, 10), at(2026, 3, 3, 9))]) == at(2026, 3, 3, 23)
    # A day off: the next working day (Saturday 7 March 2026 -> Monday 9 March, 24:00).
    assert cal.deadline(at(2026, 3, 7, 9), 0) == at(2026, 3, 10)
    # A stated moment within the day of acceptance moves with a suspension the same way.
    assert cal.stated_deadline(monday, at(2026, 3, 2, 18), [(at(2026, 3, 2, 10), at(2026, 3, 3, 10))]) == \
        at(2026, 3, 3, 18)
    assert cal.stated_deadline(monday, at(2026, 3, 2, 18)) == at(2026, 3, 2, 18)


def test_in_a_year_without_data_the_lunar_holidays_the_law_fixes_are_no_working_days():
    """Found by a black-box test: a case accepted on 2027-02-04 and closed on 02-19 had a false red
    overdue card, 除夕 (Fri 02-05) and 初三 (Mon 02-08) counted as working days. The law fixes
    春节 (除夕 to 初三), 端午节 and 中秋节 on lunar dates; only days in lieu wait for the notice."""
    cal = WorkCalendar(on_missing_year=lambda year: None)
    # 2027: 除夕 Fri 02-05 to 初三 Mon 02-08, 端午 Wed 06-09, 中秋 Wed 09-15.
    assert not any(cal.is_workday(d) for d in (date(2027, 2, 5), date(2027, 2, 8), date(2027, 6, 9),
                                                date(2027, 9, 15)))
    assert all(cal.is_workday(d) for d in (date(2027, 2, 4), date(2027, 2, 9), date(2027, 6, 10)))
    assert cal.deadline(datetime(2027, 2, 4, 10, tzinfo=TZ), 10) == datetime(2027, 2, 23, tzinfo=TZ)


def test_the_lunar_holidays_computed_agree_with_the_state_council_notices_of_the_known_years():
    """The computation checked against the notices chinesecalendar holds: 正月初一, 初二, 端午 and
    中秋 since 2008 (the law's dates then), and 除夕 and 初三 too since 2025 (the 2024 revision)."""
    import chinese_calendar

    from alerts.calendar import _lunar_holidays

    for year in range(2008, 2027):
        days = sorted(_lunar_holidays(year))
        spring = [d for d in days if d.month <= 2]
        assert len(spring) == 4 and len(days) == 6, (year, days)
        checked = spring[1:3] + days[4:] if year < 2025 else days
        assert all(chinese_calendar.is_holiday(d) for d in checked), (year, checked)
