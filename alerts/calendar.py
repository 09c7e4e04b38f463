"""Chinese working days (工作日) and deadlines counted in them.

Working days are Monday-Friday, minus statutory holidays, plus the make-up
working days (调休) of each year's State Council notice. The `chinese_calendar`
package holds those notices up to the year it was released; an override
mapping (loaded by the caller from a file) adds local changes and later years.
A date in a year that neither covers is still counted, as Monday-Friday minus
the holidays whose dates the law itself fixes (元旦, 春节 from 除夕 to 初三, 清明节,
劳动节, 端午节, 中秋节, 国庆节: 1 January and 5-8 February 2027 are no working
days before the 2027 notice is out), but never silently: `on_missing_year` is called once per such year, and `missing_years`
records it for the caller to show.

Deadlines follow the contract: a limit of N working days counts whole working
days after the day the clock starts, and ends at 24:00 local time of the last
one. Suspended time stops the clock: it is measured per working day, so a
suspension that ends at noon gives back the afternoon and the deadline moves
by half a working day.
"""

from __future__ import annotations

import math
import warnings
from bisect import bisect_left, bisect_right
from datetime import date, datetime, time, timedelta, timezone
from typing import Callable, Iterable, Mapping, Sequence
from zoneinfo import ZoneInfo

import chinese_calendar
from lunardate import LunarDate

Pause = tuple[datetime, "datetime | None"]

_MAX_SCAN_DAYS = 3 * 3650
_EPSILON = 1e-12
_UTC = timezone.utc
_MEMO_SIZE = 200_000  # deadlines remembered (start or its day, days, pauses); cleared when full


class MissingCalendarYear(UserWarning):
    pass


def missing_year_text(year: int, override_file: str = "the calendar override file") -> str:
    """What a year without holiday data is counted as, and what to add: said by the warning below
    and by the pipeline's log (`streams.catalog_source`)."""
    return (f"no working-day calendar for {year}: counting Monday-Friday as working days, minus the holidays "
            f"the law fixes (元旦, 春节 除夕-初三, 清明节, 劳动节, 端午节, 中秋节, 国庆节); add the State Council "
            f"notice for {year} (its days in lieu and make-up working days) to {override_file}")


def _warn_missing_year(year: int) -> None:
    warnings.warn(missing_year_text(year), MissingCalendarYear, stacklevel=3)


# The holidays whose dates the law itself fixes (《全国年节及纪念日放假办法》, as revised in 2024):
# 元旦 1 January, 劳动节 1-2 May, 国庆节 1-3 October, 清明节 on the day of the solar term, and on
# lunar dates 春节 (除夕 and 正月初一 to 初三), 端午节 (五月初五) and 中秋节 (八月十五). Only the days
# given in lieu and the make-up working days come with each year's State Council notice.
_FIXED_HOLIDAYS = frozenset({(1, 1), (5, 1), (5, 2), (10, 1), (10, 2), (10, 3)})


def _lunar_holidays(year: int) -> frozenset[date]:
    """春节 (除夕 to 初三), 端午节 and 中秋节 of the Gregorian `year` (none beyond lunardate's range)."""
    out: set[date] = set()
    # The lunar year's 正月初一 falls in late January or February (除夕 the day before), 端午 in May
    # or June, 中秋 in September or October: all in the Gregorian year of the same number.
    for month, day, offsets in ((1, 1, range(-1, 3)), (5, 5, (0,)), (8, 15, (0,))):
        try:
            start = LunarDate(year, month, day).to_solar_date()
        except ValueError:  # outside lunardate's table (1900-2099)
            continue
        out.update(start + timedelta(days=offset) for offset in offsets)
    return frozenset(out)


_LUNAR: dict[int, frozenset[date]] = {}


def _fixed_holiday(day: date) -> bool:
    """Is `day` a holiday by the law alone, in a year whose State Council notice the calendar lacks?"""
    if (day.month, day.day) in _FIXED_HOLIDAYS:
        return True
    if day.year not in _LUNAR:
        _LUNAR[day.year] = _lunar_holidays(day.year)
    if day in _LUNAR[day.year]:
        return True
    if day.month == 4 and 3 <= day.day <= 6:
        try:
            return any(name == "清明" for _, name in chinese_calendar.get_solar_terms(day, day))
        except Exception:  # a year beyond the package's solar terms
            return False
    return False


class WorkCalendar:
    def __init__(self, overrides: Mapping[date, bool] | None = None,
                 timezone: str = "Asia/Shanghai",
                 on_missing_year: Callable[[int], None] = _warn_missing_year):
        self.overrides = dict(overrides or {})
        self.tz = ZoneInfo(timezone)
        self.on_missing_year = on_missing_year
        self.missing_years: set[int] = set()
        self._cache: dict[date, bool] = {}
        self._override_years = {d.year for d in self.overrides}
        # Working days by year, as day ordinals: `_years[y]` lists the working days of year y and
        # `_before[y]` counts the working days of every earlier indexed year, so that counting
        # and finding the n-th working day cost a bisection, whatever the number of days.
        self._years: dict[int, list[int]] = {}
        self._deadlines: dict[tuple, datetime | None] = {}
        self._day_lengths: dict[tuple[date, ZoneInfo], float] = {}  # seconds, by (day, zone)

    def has_holiday_data(self, year: int) -> bool:
        """Whether the year's days off in lieu and make-up working days are known (an override of the
        year, or the installed holiday tables)."""
        if year in self._override_years:
            return True
        try:
            chinese_calendar.is_workday(date(year, 1, 1))
        except NotImplementedError:
            return False
        return True

    def is_workday(self, day: date) -> bool:
        cached = self._cache.get(day)
        if cached is not None:
            return cached
        if day in self.overrides:
            result = self.overrides[day]
        else:
            try:
                result = chinese_calendar.is_workday(day)
            except NotImplementedError:
                if day.year not in self.missing_years and day.year not in self._override_years:
                    self.missing_years.add(day.year)
                    self.on_missing_year(day.year)
                result = day.weekday() < 5 and not _fixed_holiday(day)
        self._cache[day] = result
        return result

    def local(self, moment: datetime, tz: ZoneInfo | None = None) -> datetime:
        return moment.astimezone(tz or self.tz)

    def midnight(self, day: date, tz: ZoneInfo | None = None) -> datetime:
        return datetime.combine(day, time(0), tzinfo=tz or self.tz)

    # -- counting working days ---------------------------------------------------------------

    def _year(self, year: int) -> list[int]:
        days = self._years.get(year)
        if days is None:
            first, last = date(year, 1, 1).toordinal(), date(year, 12, 31).toordinal()
            days = [o for o in range(first, last + 1) if self.is_workday(date.fromordinal(o))]
            self._years[year] = days
        return days

    def workdays_in(self, first: date, last: date) -> int:
        """The number of working days from `first` to `last`, both included."""
        if last < first:
            return 0
        a, b = first.toordinal(), last.toordinal()
        total = 0
        for year in range(first.year, last.year + 1):
            days = self._year(year)
            total += bisect_right(days, b) - bisect_left(days, a)
        return total

    def nth_workday_after(self, day: date, n: int) -> date:
        """The n-th working day after `day` (n >= 1); `day` itself is not counted."""
        if n < 1:
            raise ValueError(f"n must be at least 1, got {n}")
        left, ordinal, year = n, day.toordinal(), day.year
        for _ in range(_MAX_SCAN_DAYS // 365 + 2):
            days = self._year(year)
            first = bisect_right(days, ordinal)  # the year's first working day after `day`
            later = len(days) - first
            if later >= left:
                return date.fromordinal(days[first + left - 1])
            left -= later
            year += 1
        raise ValueError(f"no {n} working days within {_MAX_SCAN_DAYS} days after {day}")

    def _share(self, start: datetime, end: datetime, tz: ZoneInfo) -> float:
        """Working time in [start, end), in working days: a working day counts 1 in whole, and a
        part of one its share of that day's length (24 hours, or 23 or 25 across a time change)."""
        if end <= start:
            return 0.0
        first, last = self.local(start, tz).date(), self.local(end, tz).date()
        if first == last:
            return self._part(first, start, end, tz)
        share = self._part(first, start, self.midnight(first + timedelta(days=1), tz), tz)
        share += self.workdays_in(first + timedelta(days=1), last - timedelta(days=1))
        return share + self._part(last, self.midnight(last, tz), end, tz)

    def _part(self, day: date, start: datetime, end: datetime, tz: ZoneInfo) -> float:
        if end <= start or not self.is_workday(day):
            return 0.0
        return _elapsed(start, end) / self._day_seconds(day, tz)

    def _day_seconds(self, day: date, tz: ZoneInfo) -> float:
        """How long the day is in `tz`: 86,400 seconds, or an hour less or more on a day of a time change."""
        key = (day, tz)
        seconds = self._day_lengths.get(key)
        if seconds is None:
            if len(self._day_lengths) >= _MEMO_SIZE:
                self._day_lengths.clear()
            seconds = _elapsed(self.midnight(day, tz), self.midnight(day + timedelta(days=1), tz))
            self._day_lengths[key] = seconds
        return seconds

    def _advance(self, start: datetime, remaining: float, tz: ZoneInfo) -> datetime:
        """The moment at which `remaining` working days (at most what [start, next day's end) and
        the days after hold) have run from `start`, with no pause."""
        first = self.local(start, tz).date()
        head = self._part(first, start, self.midnight(first + timedelta(days=1), tz), tz)
        if head >= remaining - _EPSILON:
            return _after(start, remaining * self._day_seconds(first, tz))
        remaining -= head
        whole = math.ceil(remaining - _EPSILON)
        day = self.nth_workday_after(first, whole)
        return _after(self.midnight(day, tz), (remaining - (whole - 1)) * self._day_seconds(day, tz))

    def deadline(self, start: datetime, days: int, pauses: Sequence[Pause] = (),
                 tz: ZoneInfo | None = None) -> datetime | None:
        """When a clock started at `start` with `days` working days runs out.

        Returns None when the clock is stopped by a pause that has not ended
        (its end is None) before the time ran out. The cost does not grow with the number of
        days (a bisection per pause), and results are remembered.
        """
        tz = tz or self.tz
        # Without a pause the deadline is the same for every start of one local day: remembered so.
        key = (self.local(start, tz).date(), days, tz) if not pauses else (start, days, tuple(pauses), tz)
        if key in self._deadlines:
            return self._deadlines[key]
        result = self._deadline(start, days, pauses, tz)
        if len(self._deadlines) >= _MEMO_SIZE:
            self._deadlines.clear()
        self._deadlines[key] = result
        return result

    def _deadline(self, start: datetime, days: float, pauses: Sequence[Pause], tz: ZoneInfo) -> datetime | None:
        """`days` working days from the day after `start`'s; a part of a day only with `pauses`.

        0 days (即办) is the rest of the day the clock starts, suspended time not counted; a clock
        started on a day off has the next working day."""
        start_day = self.local(start, tz).date()
        if days == 0:
            if not self.is_workday(start_day):
                return self._deadline(start, 1, pauses, tz)
            day_end = self.midnight(start_day + timedelta(days=1), tz)
            if not pauses:
                return day_end
            return self._runs_out(start, self._part(start_day, start, day_end, tz), pauses, tz, days)
        if start_day.toordinal() + _MAX_SCAN_DAYS > date.max.toordinal():
            raise ValueError(f"deadline of {days} working days after {start} is beyond {_MAX_SCAN_DAYS} days")
        if not pauses:  # the end of the n-th working day after the start's day
            try:
                return self.midnight(self.nth_workday_after(start_day, days) + timedelta(days=1), tz)
            except ValueError:
                raise ValueError(f"deadline of {days} working days after {start} is beyond "
                                 f"{_MAX_SCAN_DAYS} days") from None
        # The day of the start is not counted.
        return self._runs_out(self.midnight(start_day + timedelta(days=1), tz), float(days), pauses, tz, days)

    def _runs_out(self, cursor: datetime, remaining: float, pauses: Sequence[Pause], tz: ZoneInfo,
                  days: float) -> datetime | None:
        """When `remaining` working days, counted from `cursor`, run out, the pauses not counted;
        None when a pause that has not ended comes first."""
        for pause_start, pause_end in merge_pauses(pauses):
            if pause_end is not None and pause_end <= cursor:
                continue
            if pause_start > cursor:
                share = self._share(cursor, pause_start, tz)
                if share >= remaining - _EPSILON:
                    return self._advance(cursor, remaining, tz)
                remaining -= share
            if pause_end is None:  # an open pause covers the rest of time
                return None
            cursor = max(cursor, pause_end)
        try:
            return self._advance(cursor, remaining, tz)
        except ValueError:
            raise ValueError(f"deadline of {days} working days from {cursor} is beyond "
                             f"{_MAX_SCAN_DAYS} days") from None

    def stated_deadline(self, start: datetime, stated: datetime, pauses: Sequence[Pause] = (),
                        tz: ZoneInfo | None = None) -> datetime | None:
        """A deadline the source system states as a moment, for a clock started at `start`, with
        suspended time not counted: the clock holds the working time from the day after the
        start's day (from the start itself for a moment within its day) up to `stated`, and the
        pauses move the moment it runs out, never before `stated`. None when a pause that has not
        ended stops it before it runs out."""
        tz = tz or self.tz
        day_end = self.midnight(self.local(start, tz).date() + timedelta(days=1), tz)
        cursor = start if stated <= day_end else day_end
        budget = self._share(cursor, stated, tz)
        if not pauses or budget <= _EPSILON:
            return stated
        moved = self._runs_out(cursor, budget, pauses, tz, budget)
        return None if moved is None else max(stated, moved)

    def working_days_between(self, start: datetime, end: datetime, pauses: Sequence[Pause] = (),
                             tz: ZoneInfo | None = None, limit: datetime | None = None) -> float:
        """Working days the clock ran from the day after `start` up to `end`; from `start` itself when
        its `limit` ran out by the end of the start's day (即办, a deadline stated within the day, or
        one passed before the start), as the clock counted it (`deadline`, `stated_deadline`): else a
        case of such a clock used "0 working days" on its overdue card, however late it ended."""
        tz = tz or self.tz
        cursor = self.midnight(self.local(start, tz).date() + timedelta(days=1), tz)
        if limit is not None and limit <= cursor:
            cursor = start
        used = 0.0
        for pause_start, pause_end in merge_pauses(pauses):
            if cursor >= end:
                break
            if pause_end is not None and pause_end <= cursor:
                continue
            used += self._share(cursor, min(pause_start, end), tz)
            if pause_end is None:
                cursor = end
                break
            cursor = max(cursor, pause_end)
        used += self._share(cursor, end, tz)
        return round(used, 4)


def _elapsed(start: datetime, end: datetime) -> float:
    """The seconds that pass from `start` to `end`. Two times of one ZoneInfo subtract as wall
    clocks: across a time change on a working day (Africa/Cairo's on a Friday) a suspension gave
    back an hour more or less than it took (found by a black-box test)."""
    elapsed = end - start
    if start.tzinfo is end.tzinfo:  # subtracted as wall clocks: less the change of offset between
        shift = end.utcoffset() - start.utcoffset()
        if shift:
            elapsed -= shift
    return elapsed.total_seconds()


def _after(start: datetime, seconds: float) -> datetime:
    """The moment `seconds` after `start` as they pass, in `start`'s zone (adding a timedelta to a
    ZoneInfo time moves its wall clock)."""
    later = start + timedelta(seconds=seconds)  # a wall clock moved on: the same moment unless the offset changed
    if later.utcoffset() == start.utcoffset():
        return later
    return (start.astimezone(_UTC) + timedelta(seconds=seconds)).astimezone(start.tzinfo)


def merge_pauses(pauses: Iterable[Pause]) -> list[Pause]:
    """Sort pauses and merge the overlapping ones. An end of None means still paused."""
    out: list[list] = []
    for start, end in sorted(pauses, key=lambda p: p[0]):
        if end is not None and end <= start:
            continue
        if out and (out[-1][1] is None or start <= out[-1][1]):
            if out[-1][1] is not None and (end is None or end > out[-1][1]):
                out[-1][1] = end
            continue
        out.append([start, end])
    return [(s, e) for s, e in out]


OVERRIDE_KEYS = ("holidays", "workdays")


def load_overrides(raw: object) -> dict[date, bool]:
    """Parse an override document: ``{workdays: [dates], holidays: [dates]}``. Anything else is
    refused, naming it: a misspelt key (`holiday:`) dropped its days without a word, a holiday
    not taken a false red card (found by a black-box test)."""
    if raw is None:
        return {}
    if not isinstance(raw, dict):
        raise ValueError("calendar overrides: expected a mapping with 'workdays' and 'holidays' lists")
    unknown = [str(key) for key in raw if key not in OVERRIDE_KEYS]
    if unknown:
        raise ValueError(f"calendar overrides: {', '.join(repr(k) for k in unknown)} "
                         f"{'is not a key' if len(unknown) == 1 else 'are not keys'} of the file: its keys are "
                         f"'holidays' and 'workdays' (each a list of YYYY-MM-DD dates)")
    out: dict[date, bool] = {}
    for key, flag in (("holidays", False), ("workdays", True)):
        values = raw.get(key)
        if values is None:
            continue
        if not isinstance(values, list):
            raise ValueError(f"calendar overrides: {key} must be a list of YYYY-MM-DD dates (one per line, "
                             f"'- 2027-01-01'), got {str(values)!r}")
        for value in values:
            try:
                day = value if isinstance(value, date) and not isinstance(value, datetime) \
                    else date.fromisoformat(str(value))
            except ValueError:
                raise ValueError(f"calendar overrides: {key} entry {str(value)!r} is not a YYYY-MM-DD date") from None
            if day in out and out[day] != flag:
                raise ValueError(f"calendar overrides: {day} is listed as both a holiday and a workday")
            out[day] = flag
    return out


# -- office hours: when the pipeline's operators expect events (PromQL knows no Chinese calendar) --

DEFAULT_OFFICE_HOURS = ((time(9), time(17)),)

def parse_office_hours(raw) -> tuple[tuple[time, time], ...]:
    """Office hours as the catalog may give them (`office_hours: "09:00-17:00"`, or a list of such
    ranges, e.g. a lunch break: `["08:30-12:00", "13:30-17:30"]`); None: 9:00-17:00."""
    if raw is None:
        return DEFAULT_OFFICE_HOURS
    ranges = [raw] if isinstance(raw, str) else raw
    if not isinstance(ranges, list) or not ranges:
        raise ValueError(f"office_hours must be \"HH:MM-HH:MM\" or a list of such ranges, got {raw!r}")
    out = []
    for text in ranges:
        try:
            start, end = (time.fromisoformat(part.strip()) for part in str(text).split("-"))
        except ValueError:
            raise ValueError(f"office_hours: {text!r} is not a range \"HH:MM-HH:MM\"") from None
        if not start < end:
            raise ValueError(f"office_hours: {text!r} ends before it starts")
        out.append((start, end))
    return tuple(out)


def is_office_hours(calendar, moment: datetime, hours: Iterable[tuple[time, time]] = DEFAULT_OFFICE_HOURS) -> bool:
    """Is `moment` within office hours of a working day, by the project's calendar (Chinese
    holidays and make-up working days), in the calendar's timezone?"""
    local = calendar.local(moment)
    if not calendar.is_workday(date(local.year, local.month, local.day)):
        return False
    clock = local.time().replace(tzinfo=None)
    return any(start <= clock < end for start, end in hours)
