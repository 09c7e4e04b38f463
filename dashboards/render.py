"""A picture of a dashboard, drawn from its JSON grid and each panel's query results.

Grafana cannot run here, so `docs/dashboards.md` shows what the wall would show with this
approximation: every panel where its `gridPos` puts it (24 columns, 30 px a row), its title,
and its data drawn the way its type draws it (a stat's big numbers, a table's first rows, a
time series' lines, bars). It is a picture of the data and the layout, not of Grafana's styling.

`render(dashboard, results, path)` takes the dashboard JSON and, per panel id, a `Result`
(the columns and rows its query returned). Needs a CJK font (Debian's fonts-wqy-zenhei or
fonts-noto-cjk); `.ci/run` installs one.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import date, datetime, timezone
from pathlib import Path
from typing import Any, Mapping, Sequence
from zoneinfo import ZoneInfo

import logging

import matplotlib

matplotlib.use("Agg")
logging.getLogger("matplotlib.font_manager").setLevel(logging.ERROR)  # a CJK font has one weight
import matplotlib.pyplot as plt  # noqa: E402
from matplotlib import font_manager  # noqa: E402

CJK_FONTS = ("WenQuanYi Zen Hei", "Noto Sans CJK SC", "Noto Sans CJK JP", "Source Han Sans SC")
ROW_PX = 30       # Grafana's height of one grid row
WIDTH_PX = 1920   # 24 columns
DPI = 100
BACKGROUND = {"dark": "#111217", "light": "#f4f5f5"}
PANEL = {"dark": "#181b1f", "light": "#ffffff"}
TEXT = {"dark": "#ccccdc", "light": "#24292e"}
PALETTE = ["#73bf69", "#5794f2", "#ff9830", "#b877d9", "#8ab8ff", "#ca95e5", "#f2cc0c", "#f2495c"]
# Series named for a card take its colour, as the dashboards' overrides give them.
CARD_COLOURS = (("红", "#f2495c"), ("red", "#f2495c"), ("黄", "#f2cc0c"), ("yellow", "#f2cc0c"))


def _colour(name: str, n: int) -> str:
    for word, colour in CARD_COLOURS:
        if word in str(name).lower():
            return colour
    return PALETTE[n % len(PALETTE)]


class RenderError(RuntimeError):
    pass


@dataclass(frozen=True)
class Result:
    columns: Sequence[str]
    rows: Sequence[Sequence[Any]]
    error: str | None = None


def cjk_font() -> str:
    name = _known_cjk_font()
    if name is None:
        # matplotlib caches the fonts it found when it first ran: a font installed since (`.ci/run`
        # installs one on a machine where matplotlib may have run before) is not in that list.
        known = {font.fname for font in font_manager.fontManager.ttflist}
        for path in font_manager.findSystemFonts():
            if path not in known:
                try:
                    font_manager.fontManager.addfont(path)
                except (OSError, RuntimeError, ValueError):  # a font file matplotlib cannot read
                    continue
        name = _known_cjk_font()
    if name is not None:
        return name
    raise RenderError("no CJK font found (install Debian's fonts-wqy-zenhei or fonts-noto-cjk): "
                      "the pictures would show boxes instead of Chinese")


def _known_cjk_font() -> str | None:
    names = {font.name for font in font_manager.fontManager.ttflist}
    return next((name for name in CJK_FONTS if name in names), None)


def _number(value) -> float | None:
    if isinstance(value, bool) or value is None:
        return None
    if isinstance(value, (int, float)):
        return None if isinstance(value, float) and math.isnan(value) else float(value)
    if isinstance(value, (str, bytes)):  # codes such as a region's 320211 are text, not numbers
        return None
    try:
        return float(value)  # Decimal
    except (TypeError, ValueError):
        return None


def _format(value, unit: str | None = None, decimals: int | None = None) -> str:
    number = _number(value)
    if number is None:
        if isinstance(value, datetime):
            return value.strftime("%Y-%m-%d %H:%M")
        if isinstance(value, date):
            return value.isoformat()
        return "" if value is None else str(value)
    if unit == "percentunit":
        return f"{number * 100:.{1 if decimals is None else decimals}f}%"
    if unit == "percent":
        return f"{number:.{1 if decimals is None else decimals}f}%"
    text = f"{number:,.0f}" if number == int(number) and decimals is None else \
        f"{number:,.{2 if decimals is None else decimals}f}"
    suffix = {"s": " s", "ms": " ms", "short": "", "none": "", None: ""}.get(unit, "")
    if unit and unit.startswith("suffix:"):
        suffix = unit.removeprefix("suffix:")
    return text + suffix


def _field_config(panel: Mapping) -> tuple[str | None, int | None]:
    defaults = (panel.get("fieldConfig") or {}).get("defaults") or {}
    return defaults.get("unit"), defaults.get("decimals")


GRAFANA_COLOURS = {"red": "#f2495c", "yellow": "#fade2a", "green": "#73bf69", "blue": "#5794f2",
                   "orange": "#ff9830", "purple": "#b877d9"}


def _overrides(panel: Mapping) -> dict[str, dict[str, Any]]:
    """column -> {displayName, unit, decimals, color}, from the panel's byName overrides."""
    found: dict[str, dict[str, Any]] = {}
    for override in (panel.get("fieldConfig") or {}).get("overrides") or []:
        matcher = override.get("matcher") or {}
        if matcher.get("id") != "byName":
            continue
        for prop in override.get("properties") or []:
            value = prop.get("value")
            if prop.get("id") == "color" and isinstance(value, Mapping):
                value = ("thresholds" if value.get("mode") == "thresholds"
                         else GRAFANA_COLOURS.get(value.get("fixedColor"), value.get("fixedColor")))
            found.setdefault(matcher.get("options"), {})[prop.get("id")] = value
    return found


def _by_thresholds(thresholds: Mapping, value: Any) -> str | None:
    """The colour Grafana gives `value` by a field's absolute thresholds: the last step at or below it."""
    number = _number(value)
    steps = thresholds.get("steps") or []
    colour = steps[0]["color"] if steps else None
    for step in steps[1:]:
        if number is not None and number >= step["value"]:
            colour = step["color"]
    return GRAFANA_COLOURS.get(colour, colour) if colour else None


def _name(panel: Mapping, column: str) -> str:
    return _overrides(panel).get(column, {}).get("displayName") or column


def _column_format(panel: Mapping, column: str) -> tuple[str | None, int | None]:
    unit, decimals = _field_config(panel)
    own = _overrides(panel).get(column, {})
    return own.get("unit", unit), own.get("decimals", decimals)


def _label_and_values(result: Result) -> tuple[list[str], list[tuple[str, float]]]:
    """The first text-like column as labels, the numeric columns as values."""
    if not result.rows:
        return [], []
    first = result.rows[0]
    numeric = [i for i, v in enumerate(first) if _number(v) is not None]
    text = [i for i in range(len(first)) if i not in numeric]
    labels = [" ".join(_format(row[i]) for i in text[:1]) for row in result.rows]
    values = [(result.columns[i], i) for i in numeric]
    return labels, values


def _draw_stat(ax, panel, result: Result, theme: str) -> None:
    labels, values = _label_and_values(result)
    if not values:
        ax.text(0.5, 0.45, _format(result.rows[0][0]) if result.rows else "无数据", ha="center", va="center",
                fontsize=24, color=TEXT[theme])
        return
    cells = []
    for row_number, row in enumerate(result.rows[:12]):
        for name, index in values:
            shown = _name(panel, name)
            label = labels[row_number] if labels and labels[row_number] else shown
            if labels and labels[row_number] and len(values) > 1:
                label = f"{label} {shown}"
            own = _overrides(panel).get(name, {})
            color = _by_thresholds(own["thresholds"], row[index]) if own.get("color") == "thresholds" else own.get("color")
            cells.append((label, _format(row[index], *_column_format(panel, name)), color or _colour(name, len(cells))))
    count = len(cells)
    columns = min(count, 6)
    lines = math.ceil(count / columns)
    height = ax.bbox.height / DPI * 72  # points
    width = ax.bbox.width / DPI * 72 / columns  # points per cell
    size = max(10, min(64, height / (lines * 2.4), width / 4.5))
    for n, (label, text, color) in enumerate(cells):
        x = (n % columns + 0.5) / columns
        y = 1 - (n // columns + 0.45) / lines
        ax.text(x, y, text, ha="center", va="center", fontsize=size, color=color, fontweight="bold")
        if label:
            ax.text(x, y - 0.36 / lines, label, ha="center", va="center", fontsize=max(8, min(size / 3, width / 9)),
                    color=TEXT[theme])


def _draw_table(ax, panel, result: Result, theme: str) -> None:
    unit, decimals = _field_config(panel)
    height_px = ax.bbox.height
    visible = max(1, int((height_px - 24) // 22))
    hidden = {c for c, o in _overrides(panel).items() if o.get("custom.hidden")}
    shown = [i for i, c in enumerate(result.columns) if c not in hidden][:8]
    result = Result([result.columns[i] for i in shown], [[row[i] for i in shown] for row in result.rows], result.error)
    columns = list(result.columns)
    widths = [max(len(_name(panel, str(c))) * 2, *(len(_format(r[i], None, decimals)) for r in result.rows[:visible]))
              for i, c in enumerate(columns)]
    total = sum(min(w, 28) for w in widths) or 1
    x = 0.01
    positions = []
    for w in widths:
        positions.append(x)
        x += min(w, 28) / total * 0.98
    line = 1 / (visible + 1)
    for i, name in enumerate(columns):
        ax.text(positions[i], 1 - line / 2, _name(panel, str(name)), ha="left", va="center", fontsize=9, color="#6e9fff",
                fontweight="bold")
    for r, row in enumerate(result.rows[:visible]):
        for i in range(len(columns)):
            unit_i, decimals_i = _column_format(panel, columns[i])
            text = _format(row[i], unit_i if unit_i not in ("none", "short") else None, decimals_i)
            limit = max(4, int(min(widths[i], 28) * 1.1))
            ax.text(positions[i], 1 - line * (r + 1.5), text if len(text) <= limit else text[:limit - 1] + "…",
                    ha="left", va="center", fontsize=9, color=TEXT[theme])
    if len(result.rows) > visible:
        ax.text(0.99, 0.01, f"共 {len(result.rows)} 行", ha="right", va="bottom", fontsize=8, color=TEXT[theme])


def _draw_timeseries(ax, panel, result: Result, theme: str) -> None:
    if not result.rows:
        return
    time_index = next((i for i, v in enumerate(result.rows[0]) if isinstance(v, (datetime, date))), 0)
    xs = [row[time_index] for row in result.rows]
    series = [i for i, v in enumerate(result.rows[0]) if i != time_index and _number(v) is not None]
    text_columns = [i for i in range(len(result.columns)) if i != time_index and i not in series]
    plot = ax.inset_axes([0.06, 0.14, 0.92, 0.78])
    plot.set_facecolor(PANEL[theme])
    if text_columns:  # long format: one line per value of the first text column
        groups: dict[str, list] = {}
        for row in result.rows:
            groups.setdefault(str(row[text_columns[0]]), []).append((row[time_index], _number(row[series[0]])))
        for n, (name, points) in enumerate(sorted(groups.items())[:8]):
            plot.plot([p[0] for p in points], [p[1] for p in points], color=_colour(name, n), label=name)
    else:
        for n, index in enumerate(series[:8]):
            plot.plot(xs, [_number(row[index]) for row in result.rows], color=_overrides(panel).get(result.columns[index], {}).get("color") or _colour(result.columns[index], n),
                      label=_name(panel, result.columns[index]))
    plot.tick_params(colors=TEXT[theme], labelsize=7)
    for spine in plot.spines.values():
        spine.set_color("#2c3235")
    plot.legend(fontsize=7, loc="upper left", facecolor=PANEL[theme], labelcolor=TEXT[theme], framealpha=0.6)
    for label in plot.get_xticklabels():
        label.set_rotation(20)


def _draw_bars(ax, panel, result: Result, theme: str) -> None:
    unit, decimals = _field_config(panel)
    labels, values = _label_and_values(result)
    if not values:
        return
    rows = result.rows[:15]
    plot = ax.inset_axes([0.22, 0.06, 0.74, 0.86])
    plot.set_facecolor(PANEL[theme])
    count = len(values[:3])
    height = 0.8 / count
    for n, (name, index) in enumerate(values[:3]):
        ys = [k + n * height for k in range(len(rows))]
        plot.barh(ys, [_number(row[index]) or 0 for row in rows], height=height, color=_overrides(panel).get(name, {}).get("color") or _colour(name, n),
                  label=_name(panel, name))
    plot.set_yticks([k + 0.4 - height / 2 for k in range(len(rows))], labels=labels[:len(rows)])
    plot.invert_yaxis()
    plot.tick_params(colors=TEXT[theme], labelsize=8)
    for spine in plot.spines.values():
        spine.set_color("#2c3235")
    if count > 1:
        plot.legend(fontsize=7, facecolor=PANEL[theme], labelcolor=TEXT[theme], framealpha=0.6)


DRAW = {"stat": _draw_stat, "gauge": _draw_stat, "table": _draw_table, "timeseries": _draw_timeseries,
        "barchart": _draw_bars, "bargauge": _draw_bars, "piechart": _draw_bars}


def panels_of(dashboard: Mapping) -> list[Mapping]:
    """Every panel, those inside rows included."""
    found = []
    for panel in dashboard.get("panels", []):
        found.append(panel)
        found.extend(panel.get("panels", []))
    return found


def in_zone(results: Mapping[int, Result], zone: str | None) -> dict[int, Result]:
    """The results' times in the dashboard's time zone, as Grafana shows them (the store gives a
    UTC column's times without a zone: 承诺时限 2026-03-31 00:00 was drawn 03-30 16:00)."""
    if not zone or zone in ("browser", "utc"):
        return dict(results)
    tz = ZoneInfo(zone)

    def moved(value):
        if not isinstance(value, datetime):
            return value
        return (value if value.tzinfo else value.replace(tzinfo=timezone.utc)).astimezone(tz)

    return {key: Result(r.columns, [[moved(v) for v in row] for row in r.rows], r.error) for key, r in results.items()}


def render(dashboard: Mapping, results: Mapping[int, Result], path: Path) -> Path:
    """Draw `dashboard` with each panel's results to the PNG `path`, times in its time zone."""
    results = in_zone(results, dashboard.get("timezone"))
    font = cjk_font()
    plt.rcParams["font.family"] = [font]
    plt.rcParams["axes.unicode_minus"] = False
    theme = "light" if dashboard.get("style") == "light" else "dark"
    panels = panels_of(dashboard)
    if not panels:
        raise RenderError(f"dashboard {dashboard.get('uid')} has no panels")
    rows = max(p["gridPos"]["y"] + p["gridPos"]["h"] for p in panels) + 2  # + the title bar
    height_px = rows * ROW_PX
    figure = plt.figure(figsize=(WIDTH_PX / DPI, height_px / DPI), dpi=DPI, facecolor=BACKGROUND[theme])
    figure.text(0.01, 1 - (ROW_PX / height_px), dashboard.get("title", ""), fontsize=16, color=TEXT[theme],
                va="center", fontweight="bold")
    for panel in panels:
        grid = panel["gridPos"]
        left, width = grid["x"] / 24, grid["w"] / 24
        top = (grid["y"] + 2) * ROW_PX / height_px
        height = grid["h"] * ROW_PX / height_px
        frame = figure.add_axes([left + 0.002, 1 - top - height + 0.002, width - 0.004, height - 0.004])
        frame.set_facecolor(PANEL[theme] if panel.get("type") != "row" else BACKGROUND[theme])
        frame.set_xticks([])
        frame.set_yticks([])
        for spine in frame.spines.values():
            spine.set_color("#2c3235")
        frame.text(0.01, 0.99, panel.get("title", ""), ha="left", va="top", fontsize=11 if grid["h"] > 2 else 12,
                   color=TEXT[theme], fontweight="bold", transform=frame.transAxes)
        if panel.get("type") == "row":
            continue
        body = frame.inset_axes([0, 0, 1, max(0.2, 1 - 28 / max(frame.bbox.height, 1))])
        body.set_axis_off()
        result = results.get(panel.get("id"))
        if result is None:
            body.text(0.5, 0.5, "（本图未取数）", ha="center", va="center", color=TEXT[theme], fontsize=10)
            continue
        if result.error:
            body.text(0.5, 0.5, f"查询失败：{result.error[:80]}", ha="center", va="center", color="#f2495c",
                      fontsize=9)
            continue
        if not result.rows:
            empty = panel.get("fieldConfig", {}).get("defaults", {}).get("noValue") or "无数据"  # as Grafana shows it
            body.text(0.5, 0.5, empty, ha="center", va="center", color=TEXT[theme], fontsize=12)
            continue
        targets = panel.get("targets") or []
        # A Prometheus panel's picture holds current values, not series: drawn as numbers.
        kind = "stat" if targets and all("expr" in t for t in targets) else panel.get("type")
        DRAW.get(kind, _draw_table)(body, panel, result, theme)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path, facecolor=BACKGROUND[theme])
    plt.close(figure)
    return path
