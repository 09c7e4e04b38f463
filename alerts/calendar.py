"""Chinese working days (工作日) and deadlines counted in them.

Working days are Monday-Friday, minus statutory holidays, plus the make-up
working days (调休) of each year's State Council notice. The `chinese_calendar`
package holds those notices up to the year it was released; an override
mapping (loaded by the caller from a file) adds local changes and later years.
A date in a year that neither covers is still counted, as Monday-Friday, but
never silently: `on_missing_year` is called once per such year, and
`missing_years` records it for the caller to show.

Deadlines follow the contract: a limit of N working days counts whole working
days after the day the clock starts, and ends at 24:00 local time of the last
one. Suspended time stops the clock: it is measured per working day, so a
suspension that ends at noon gives back the afternoon and the deadline moves
by half a working day.
"""

from __future__ import annotations

import warnings
from datetime import date, datetime, time, timedelta
from typing import Callable, Iterable, Mapping, Sequence
from zoneinfo import ZoneInfo

import chinese_calendar

Pause = tuple[datetime, "datetime | None"]

_MAX_SCAN_DAYS = 3 * 3650


class MissingCalendarYear(UserWarning):
    pass


def _warn_missing_year(year: int) -> None:
    warnings.warn(f"no working-day calendar for {year}: counting Monday-Friday as working days; "
                  f"add the State Council notice for {year} to the calendar override file",
                  MissingCalendarYear, stacklevel=3)


class WorkCalendar:
    def __init__(self, overrides: Mapping[date, bool] | None = None,
                 timezone: str = "Asia/Shanghai",
                 on_missing_year: Callable[[int], None] = _warn_missing_year):
        self.overrides = dict(overrides or {})
        self.tz = ZoneInfo(timezone)
        self.on_missing_year = on_missing_year
        self.missing_years: set[int] = set()
        self._cache: dict[date, bool] = {}
        self._nth_cache: dict[tuple[date, int], date] = {}
        self._override_years = {d.year for d in self.overrides}

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
                result = day.weekday() < 5
        self._cache[day] = result
        return result

    def local(self, moment: datetime, tz: ZoneInfo | None = None) -> datetime:
        return moment.astimezone(tz or self.tz)

    def midnight(self, day: date, tz: ZoneInfo | None = None) -> datetime:
        return datetime.combine(day, time(0), tzinfo=tz or self.tz)

    def nth_workday_after(self, day: date, n: int) -> date:
        """The n-th working day after `day` (n >= 1); `day` itself is not counted."""
        cached = self._nth_cache.get((day, n))
        if cached is not None:
            return cached
        result = self._nth_workday_after(day, n)
        self._nth_cache[(day, n)] = result
        return result

    def _nth_workday_after(self, day: date, n: int) -> date:
        current, left = day, n
        for _ in range(_MAX_SCAN_DAYS):
            current += timedelta(days=1)
            if self.is_workday(current):
                left -= 1
                if left == 0:
                    return current
        raise ValueError(f"no {n} working days within {_MAX_SCAN_DAYS} days after {day}")

    def deadline(self, start: datetime, days: int, pauses: Sequence[Pause] = (),
                 tz: ZoneInfo | None = None) -> datetime | None:
        """When a clock started at `start` with `days` working days runs out.

        Returns None when the clock is stopped by a pause that has not ended
        (its end is None) before the time ran out.
        """
        tz = tz or self.tz
        start_day = self.local(start, tz).date()
        if days == 0:
            return self.midnight(start_day + timedelta(days=1), tz)
        if not pauses:
            return self.midnight(self.nth_workday_after(start_day, days) + timedelta(days=1), tz)
        merged = merge_pauses(pauses)
        remaining = float(days)
        day = start_day
        for _ in range(_MAX_SCAN_DAYS):
            day += timedelta(days=1)
            if not self.is_workday(day):
                continue
            day_start = self.midnight(day, tz)
            day_end = self.midnight(day + timedelta(days=1), tz)
            length = (day_end - day_start).total_seconds()
            for running_start, running_end in _running(day_start, day_end, merged):
                if running_start is None:  # an open pause covers the rest of time
                    return None
                share = (running_end - running_start).total_seconds() / length
                if share >= remaining - 1e-12:
                    return running_start + timedelta(seconds=remaining * length)
                remaining -= share
        raise ValueError(f"deadline of {days} working days after {start} is beyond {_MAX_SCAN_DAYS} days")

    def working_days_between(self, start: datetime, end: datetime, pauses: Sequence[Pause] = (),
                             tz: ZoneInfo | None = None) -> float:
        """Working days the clock ran from the day after `start` up to `end`."""
        tz = tz or self.tz
        merged = merge_pauses(pauses)
        day = self.local(start, tz).date()
        last = self.local(end, tz).date()
        used = 0.0
        while day < last:
            day += timedelta(days=1)
            if not self.is_workday(day):
                continue
            day_start = self.midnight(day, tz)
            day_end = min(self.midnight(day + timedelta(days=1), tz), end)
            if day_end <= day_start:
                break
            length = (self.midnight(day + timedelta(days=1), tz) - day_start).total_seconds()
            for running_start, running_end in _running(day_start, day_end, merged):
                if running_start is None:
                    break
                used += (running_end - running_start).total_seconds() / length
        return round(used, 4)


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


def _running(day_start: datetime, day_end: datetime, pauses: list[Pause]):
    """The intervals of [day_start, day_end) not covered by pauses; (None, None) for an open pause."""
    cursor = day_start
    for start, end in pauses:
        if start >= day_end:
            break
        if end is not None and end <= cursor:
            continue
        if start > cursor:
            yield cursor, start
        if end is None:
            yield None, None
            return
        cursor = max(cursor, end)
        if cursor >= day_end:
            return
    if cursor < day_end:
        yield cursor, day_end


def load_overrides(raw: object) -> dict[date, bool]:
    """Parse an override document: ``{workdays: [dates], holidays: [dates]}``."""
    if raw is None:
        return {}
    if not isinstance(raw, dict):
        raise ValueError("calendar overrides: expected a mapping with 'workdays' and 'holidays' lists")
    out: dict[date, bool] = {}
    for key, flag in (("holidays", False), ("workdays", True)):
        for value in raw.get(key) or []:
            try:
                day = value if isinstance(value, date) else date.fromisoformat(str(value))
            except ValueError:
                raise ValueError(f"calendar overrides: {key} entry {value!r} is not a YYYY-MM-DD date") from None
            if day in out and out[day] != flag:
                raise ValueError(f"calendar overrides: {day} is listed as both a holiday and a workday")
            out[day] = flag
    return out
