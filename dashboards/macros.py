"""Expand a panel's SQL the way Grafana and the ClickHouse plugin do before ClickHouse sees it.

Two passes, in Grafana's order:

1. **Template variables** (Grafana's frontend, ``templateSrv.replace``): ``$var``, ``${var}``,
   ``${var:format}`` and ``[[var]]`` become the variable's current value, as text. Formats:
   ``singlequote`` (each value in single quotes, ``'`` escaped as ``\\'``, joined with commas),
   ``doublequote``, ``csv``/``raw`` (joined with commas) and ``sqlstring`` (``''``-escaped);
   no format is ``raw`` here (the dashboards always name one). A multi-value variable set to
   *All* stands for every one of its options, unless it has a custom all value, which Grafana
   pastes as it is, unformatted. Grafana's globals ``$__from``/``$__to`` (milliseconds) and
   ``$__interval``/``$__interval_ms`` are replaced in this pass too.
2. **The plugin's macros** (its backend, ``pkg/macros/macros.go``): ``$__timeFilter(col)`` is
   ``col >= toDateTime(FROM) AND col <= toDateTime(TO)`` with FROM and TO in Unix seconds;
   ``$__timeFilter_ms`` the same with ``fromUnixTimestamp64Milli(ms)``; ``$__fromTime`` and
   ``$__toTime`` are ``toDateTime(seconds)``; ``$__fromTime_ms``/``$__toTime_ms``
   ``fromUnixTimestamp64Milli(ms)``; ``$__dateFilter(col)`` ``col >= toDate('YYYY-MM-DD') AND
   col <= toDate(...)`` (UTC dates); ``$__timeInterval(col)`` is
   ``toStartOfInterval(toDateTime(col), INTERVAL N second)`` with N the query interval in
   seconds (at least 1); ``$__interval_s`` is N.

The interval is Grafana's: the range divided by the panel's max data points (default 1000 here,
Grafana uses the panel's pixel width), rounded to a "nice" interval, never below the panel's
minimum interval (``interval``, e.g. ``1m``).

Relative times (``now``, ``now-30d``, ``now/d``, ``now-1M/M``) are resolved against a given
"now" in the dashboard's time zone. A panel's relative time override (``timeFrom``, e.g. ``30d``)
replaces a relative dashboard range by the last that long up to now, and is ignored on an
absolute one (a day picked on the calendar), as Grafana does (``applyPanelTimeOverrides``:
"if (_isString(timeRange.raw.from))"; the scenes' ``PanelTimeRange`` alike). The dashboards here
use none: a panel that shows "the last 30 days" counts them back from ``$__toTime_ms`` in its SQL,
so that it follows a past day too.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from typing import Mapping, Sequence
from zoneinfo import ZoneInfo

ALL = "$__all"


class MacroError(ValueError):
    pass


@dataclass(frozen=True)
class TimeRange:
    start: datetime
    end: datetime
    relative: bool = False  # given as relative times (now-30d .. now), as dashboard_range makes it

    def __post_init__(self):
        if self.start.tzinfo is None or self.end.tzinfo is None:
            raise ValueError("a time range needs aware datetimes")
        if self.end < self.start:
            raise ValueError("a time range ends after it starts")


@dataclass(frozen=True)
class Variable:
    """A dashboard variable as Grafana holds it when a query runs: its current value(s), and
    for *All* the options it stands for."""
    name: str
    current: str | Sequence[str]
    options: Sequence[str] = ()
    all_value: str | None = None

    def values(self) -> list[str]:
        current = [self.current] if isinstance(self.current, str) else list(self.current)
        if ALL in current:
            return list(self.options)
        return current


# -- relative time ----------------------------------------------------------------------------

_UNITS = {"s": "seconds", "m": "minutes", "h": "hours", "d": "days", "w": "weeks"}
_RELATIVE = re.compile(r"^now(?:(?P<sign>[+-])(?P<n>\d+)(?P<unit>[smhdwMy]))?(?:/(?P<round>[smhdwMy]))?$")


def _shift(moment: datetime, n: int, unit: str) -> datetime:
    if unit in _UNITS:
        return moment + timedelta(**{_UNITS[unit]: n})
    months = n * (12 if unit == "y" else 1)
    total = moment.year * 12 + (moment.month - 1) + months
    year, month = divmod(total, 12)
    day = min(moment.day, [31, 29 if year % 4 == 0 and (year % 100 or year % 400 == 0) else 28, 31, 30, 31, 30,
                           31, 31, 30, 31, 30, 31][month])
    return moment.replace(year=year, month=month + 1, day=day)


def _start_of(moment: datetime, unit: str) -> datetime:
    if unit == "s":
        return moment.replace(microsecond=0)
    if unit == "m":
        return moment.replace(second=0, microsecond=0)
    if unit == "h":
        return moment.replace(minute=0, second=0, microsecond=0)
    day = moment.replace(hour=0, minute=0, second=0, microsecond=0)
    if unit == "d":
        return day
    if unit == "w":  # Grafana's default week starts on Monday in this locale
        return day - timedelta(days=day.weekday())
    if unit == "M":
        return day.replace(day=1)
    return day.replace(month=1, day=1)


def _end_of(moment: datetime, unit: str) -> datetime:
    nxt = _shift(_start_of(moment, unit), 1, unit) if unit in ("M", "y") else \
        _start_of(moment, unit) + timedelta(**{_UNITS[unit]: 1})
    return nxt - timedelta(milliseconds=1)


def resolve(expression: str, now: datetime, tz: str = "Asia/Shanghai", round_up: bool = False) -> datetime:
    """A Grafana time expression (``now-30d``, ``now/d``, an ISO time) as an aware datetime.
    ``/unit`` rounds down, or up to the unit's last millisecond for a range's end, as Grafana."""
    match = _RELATIVE.match(expression.strip())
    if not match:
        moment = datetime.fromisoformat(expression)
        return moment if moment.tzinfo else moment.replace(tzinfo=ZoneInfo(tz))
    moment = now.astimezone(ZoneInfo(tz))
    if match["n"]:
        n = int(match["n"]) * (1 if match["sign"] == "+" else -1)
        moment = _shift(moment, n, match["unit"])
    if match["round"]:
        moment = _end_of(moment, match["round"]) if round_up else _start_of(moment, match["round"])
    return moment


def dashboard_range(time_from: str, time_to: str, now: datetime, tz: str = "Asia/Shanghai") -> TimeRange:
    return TimeRange(resolve(time_from, now, tz), resolve(time_to, now, tz, round_up=True),
                     relative=time_from.startswith("now"))


def panel_range(dashboard: TimeRange, time_from: str | None = None, tz: str = "Asia/Shanghai") -> TimeRange:
    """The range a panel queries: the dashboard's, or, on a relative dashboard range, its relative
    time override (``30d``, ``24h``, ``now/d``) counted back from the range's end (now). On an
    absolute range Grafana ignores the override."""
    if not time_from or not dashboard.relative:
        return dashboard
    expression = time_from if time_from.startswith("now") else f"now-{time_from}"
    return TimeRange(resolve(expression, dashboard.end, tz), dashboard.end, relative=True)


# -- the interval -----------------------------------------------------------------------------

_DURATION = re.compile(r"^(\d+)(ms|s|m|h|d|w|y)$")
_SECONDS = {"ms": 0.001, "s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800, "y": 31536000}

# Grafana's rangeUtil.roundInterval: (upper bound of the raw interval, rounded interval), in ms.
_ROUND = [(15, 10), (35, 20), (75, 50), (150, 100), (350, 200), (750, 500), (1500, 1000), (3500, 2000),
          (7500, 5000), (12500, 10000), (17500, 15000), (25000, 20000), (45000, 30000), (90000, 60000),
          (210000, 120000), (450000, 300000), (750000, 600000), (1050000, 900000), (1500000, 1200000),
          (2700000, 1800000), (5400000, 3600000), (9000000, 7200000), (16200000, 10800000),
          (32400000, 21600000), (86400000, 43200000), (604800000, 86400000), (1814400000, 604800000),
          (3628800000, 2592000000)]


def duration_seconds(text: str) -> float:
    match = _DURATION.match(text.strip())
    if not match:
        raise MacroError(f"not a duration: {text!r}")
    return int(match[1]) * _SECONDS[match[2]]


def round_interval(ms: float) -> int:
    for bound, rounded in _ROUND:
        if ms < bound:
            return rounded
    return 31536000000


def interval_ms(time_range: TimeRange, max_data_points: int = 1000, min_interval: str | None = None) -> int:
    span = (time_range.end - time_range.start).total_seconds() * 1000
    ms = round_interval(span / max(max_data_points, 1))
    if min_interval:
        ms = max(ms, int(duration_seconds(min_interval) * 1000))
    return ms


# -- pass 1: template variables ---------------------------------------------------------------

_VARIABLE = re.compile(r"\$(\w+)|\$\{(\w+)(?::([^}]+))?\}|\[\[(\w+)(?::([^\]]+))?\]\]")


def format_values(values: Sequence[str], fmt: str | None) -> str:
    if fmt == "singlequote":
        return ",".join("'" + v.replace("'", "\\'") + "'" for v in values)
    if fmt == "doublequote":
        return ",".join('"' + v.replace('"', '\\"') + '"' for v in values)
    if fmt == "sqlstring":
        return ",".join("'" + v.replace("'", "''") + "'" for v in values)
    if fmt in (None, "raw", "csv"):
        return ",".join(values)
    raise MacroError(f"variable format {fmt!r} is not supported here")


def variable_names(sql: str) -> set[str]:
    """The dashboard variables a text refers to (Grafana's globals ``__...`` left out)."""
    names = set()
    for match in _VARIABLE.finditer(sql):
        name = match[1] or match[2] or match[4]
        if not name.startswith("__"):
            names.add(name)
    return names


def interpolate(sql: str, variables: Mapping[str, Variable], time_range: TimeRange, interval: int) -> str:
    """Grafana's templateSrv.replace over the text (pass 1)."""
    globals_ = {"__from": str(int(time_range.start.timestamp() * 1000)),
                "__to": str(int(time_range.end.timestamp() * 1000)),
                "__interval": _interval_text(interval), "__interval_ms": str(interval)}

    def replace(match: re.Match) -> str:
        name = match[1] or match[2] or match[4]
        fmt = match[3] or match[5]
        if name in globals_:
            return globals_[name]
        if name.startswith("__"):  # a plugin macro ($__timeFilter...): pass 2
            return match[0]
        if name not in variables:
            raise MacroError(f"variable ${name} is not defined")
        variable = variables[name]
        current = [variable.current] if isinstance(variable.current, str) else list(variable.current)
        if ALL in current and variable.all_value is not None:
            return variable.all_value  # a custom all value is pasted unformatted
        return format_values(variable.values(), fmt)

    return _VARIABLE.sub(replace, sql)


def _interval_text(ms: int) -> str:
    for unit, size in (("d", 86400000), ("h", 3600000), ("m", 60000), ("s", 1000)):
        if ms >= size and ms % size == 0:
            return f"{ms // size}{unit}"
    return f"{ms}ms"


# -- pass 2: the plugin's macros --------------------------------------------------------------

_MACRO = re.compile(r"\$__(\w+)")


def _args(sql: str, start: int) -> tuple[list[str] | None, int]:
    """Arguments of a macro whose name ends at `start`: split on top-level commas."""
    if start >= len(sql) or sql[start] != "(":
        return None, start
    depth, args, current = 0, [], ""
    for i in range(start, len(sql)):
        ch = sql[i]
        if ch == "(":
            depth += 1
            if depth == 1:
                continue
        elif ch == ")":
            depth -= 1
            if depth == 0:
                args.append(current.strip())
                return args, i + 1
        elif ch == "," and depth == 1:
            args.append(current.strip())
            current = ""
            continue
        current += ch
    raise MacroError(f"unclosed macro arguments at {start}")


def expand_macros(sql: str, time_range: TimeRange, interval: int) -> str:
    """The plugin's macros.go over the text (pass 2)."""
    start_s, end_s = int(time_range.start.timestamp()), int(time_range.end.timestamp())
    start_ms, end_ms = int(time_range.start.timestamp() * 1000), int(time_range.end.timestamp() * 1000)
    utc_start, utc_end = time_range.start.astimezone(timezone.utc), time_range.end.astimezone(timezone.utc)
    seconds = max(interval // 1000, 1)
    out, pos = [], 0
    while True:
        match = _MACRO.search(sql, pos)
        if not match:
            out.append(sql[pos:])
            return "".join(out)
        out.append(sql[pos:match.start()])
        name = match[1]
        args, end = _args(sql, match.end())
        one = (lambda: _one(name, args))
        if name == "fromTime":
            text = f"toDateTime({start_s})"
        elif name == "toTime":
            text = f"toDateTime({end_s})"
        elif name == "fromTime_ms":
            text = f"fromUnixTimestamp64Milli({start_ms})"
        elif name == "toTime_ms":
            text = f"fromUnixTimestamp64Milli({end_ms})"
        elif name == "timeFilter":
            col = one()
            text = f"{col} >= toDateTime({start_s}) AND {col} <= toDateTime({end_s})"
        elif name == "timeFilter_ms":
            col = one()
            text = f"{col} >= fromUnixTimestamp64Milli({start_ms}) AND {col} <= fromUnixTimestamp64Milli({end_ms})"
        elif name == "dateFilter":
            col = one()
            text = f"{col} >= toDate('{utc_start:%Y-%m-%d}') AND {col} <= toDate('{utc_end:%Y-%m-%d}')"
        elif name == "timeInterval":
            text = f"toStartOfInterval(toDateTime({one()}), INTERVAL {seconds} second)"
        elif name == "timeInterval_ms":
            text = f"toStartOfInterval(toDateTime64({one()}, 3), INTERVAL {max(interval, 1)} millisecond)"
        elif name == "interval_s":
            text = str(seconds)
        else:
            raise MacroError(f"unknown macro $__{name}")
        if name in ("fromTime", "toTime", "fromTime_ms", "toTime_ms", "interval_s"):
            end = match.end()  # these take no arguments; a "(" after them is the SQL's
        out.append(text)
        pos = end


def _one(name: str, args: list[str] | None) -> str:
    if not args or len(args) != 1 or not args[0]:
        raise MacroError(f"$__{name} expects 1 argument, received {0 if not args else len(args)}")
    return args[0]


def expand(sql: str, time_range: TimeRange, variables: Mapping[str, Variable] | None = None,
           max_data_points: int = 1000, min_interval: str | None = None) -> str:
    """What ClickHouse receives for `sql` over `time_range` with `variables` set."""
    interval = interval_ms(time_range, max_data_points, min_interval)
    return expand_macros(interpolate(sql, variables or {}, time_range, interval), time_range, interval)
