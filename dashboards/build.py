"""The Sunlight dashboards, built with grafana-foundation-sdk (Grafana 11.x line).

`all_dashboards()` returns each dashboard's JSON as Grafana stores it (uid -> model), which
`dashboards.provision` pushes to Grafana and exports for file provisioning:

* ``sunlight-wall`` 政务服务中心大屏: the wall screen, large stat panels on a dark theme (open it
  as ``/d/sunlight-wall?kiosk&theme=dark``: Grafana 11 keeps the theme out of the dashboard);
* ``sunlight-inspector`` 监察员视图: live alerts with filters, the drill-down to a case, the DLQ;
* ``sunlight-department`` 部门视图: one department, chosen by a variable;
* ``sunlight-health`` 运行健康: the pipeline's own metrics, from Prometheus;
* ``sunlight-scores`` 绩效考核: the monthly scores (`sunlight score`, table ``scores``) of the month the
  range ends in: both rankings, each part's average, every computation on record.

The ClickHouse panels' SQL is `dashboards.queries`; targets are `dashboards.clickhouse` queries.
Variables take their options from the catalog's copy in the store (`queries.VARIABLE_QUERIES`).
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from zoneinfo import ZoneInfo
from typing import Mapping

from grafana_foundation_sdk.builders import barchart, common as common_b, dashboard as dash_b, prometheus, stat, table, \
    timeseries
from grafana_foundation_sdk.cog.encoder import JSONEncoder
from grafana_foundation_sdk.models import common, dashboard

from alerts.letters import REASON_TITLE
from alerts.model import RULE_TITLE, SEVERITY_TITLE
from alerts.tickets import STEP_TITLE
from dashboards import queries as q
from dashboards.clickhouse import PLUGIN_TYPE, ClickHouseQueryBuilder

CLICKHOUSE_UID = "sunlight-clickhouse"
CLICKHOUSE_TYPE = PLUGIN_TYPE
PROMETHEUS_UID = "sunlight-prometheus"
PROMETHEUS_TYPE = "prometheus"
FOLDER_UID = "sunlight"
FOLDER_TITLE = "阳光监察"
TIMEZONE = "Asia/Shanghai"
TAGS = ["sunlight", "阳光监察"]

CLICKHOUSE = dashboard.DataSourceRef(type_val=CLICKHOUSE_TYPE, uid=CLICKHOUSE_UID)
PROMETHEUS = dashboard.DataSourceRef(type_val=PROMETHEUS_TYPE, uid=PROMETHEUS_UID)

WALL_UID = "sunlight-wall"
INSPECTOR_UID = "sunlight-inspector"
DEPARTMENT_UID = "sunlight-department"
HEALTH_UID = "sunlight-health"
SCORES_UID = "sunlight-scores"

# Units (Grafana unit ids) and the Chinese suffixes of counts.
RATE = "percentunit"


@dataclass(frozen=True)
class Place:
    x: int
    y: int
    w: int
    h: int


def _grid(place: Place) -> dashboard.GridPos:
    return dashboard.GridPos(x=place.x, y=place.y, w=place.w, h=place.h)


def _ch_target(panel: q.Panel) -> ClickHouseQueryBuilder:
    return ClickHouseQueryBuilder().raw_sql(panel.sql.strip()).ref_id("A").datasource(CLICKHOUSE).table()


def _labels(builder, panel: q.Panel, unit_by_column: dict[str, str] | None = None):
    for column, label in panel.labels.items():
        properties = [dashboard.DynamicConfigValue(id_val="displayName", value=label)]
        if unit_by_column and column in unit_by_column:
            properties.append(dashboard.DynamicConfigValue(id_val="unit", value=unit_by_column[column]))
            if unit_by_column[column] == RATE:
                properties.append(dashboard.DynamicConfigValue(id_val="decimals", value=1))
        builder.override_by_name(column, properties)
    return builder


def _common(builder, panel: q.Panel, place: Place):
    builder.title(panel.title).description(panel.description).datasource(CLICKHOUSE).grid_pos(_grid(place))
    builder.with_target(_ch_target(panel))
    return builder


def _thresholds(*steps: tuple[float | None, str]) -> dash_b.ThresholdsConfig:
    return dash_b.ThresholdsConfig().mode(dashboard.ThresholdsMode.ABSOLUTE).steps(
        [dashboard.Threshold(value=v, color=c) for v, c in steps])


NO_VALUE_COLOUR = "#808080"  # grey: the base of a stat's thresholds, for no value at all


def big_stat(panel: q.Panel, place: Place, unit: str = "none", colors=None, units=None, value_size: int = 96,
             fixed: str | None = None, counts: tuple[str, ...] = ()):
    """A stat panel readable across a hall: values only, large, on a coloured background. The
    thresholds (`colors`) judge the panel's measure (a rate, a backlog); `counts` are columns
    shown beside it, in plain blue (a count of 35 closed cases is not a 98 % rate, nor 0 a bad one)."""
    builder = stat.Panel().unit(unit).graph_mode(common.BigValueGraphMode.NONE) \
        .color_mode(common.BigValueColorMode.BACKGROUND_SOLID).text_mode(common.BigValueTextMode.VALUE_AND_NAME) \
        .justify_mode(common.BigValueJustifyMode.CENTER).orientation(common.VizOrientation.HORIZONTAL) \
        .reduce_options(common_b.ReduceDataOptions().calcs(["lastNotNull"]).values(False).fields("")) \
        .text(common_b.VizTextDisplayOptions().title_size(32).value_size(value_size)).decimals(0) \
        .no_value("无数据")  # a rate of nothing (no case closed yet today) in the hall's language, not "No data"
    steps = list(colors or [(None, "blue")])
    if steps[0][0] is None and len(steps) > 1:
        # No value (no row, the store unreachable, a rate of nothing) takes the base step: grey, not
        # the first real step's colour (a green 无数据 read as an all-clear on the wall while the
        # store was down, a red one as a failing rate each morning: found by a black-box test).
        # Every value shown here is 0 or more: the first real step starts at 0.
        steps = [(None, NO_VALUE_COLOUR), (0, steps[0][1]), *steps[1:]]
    builder.thresholds(_thresholds(*steps))
    if fixed:
        builder.color_scheme(dash_b.FieldColor().mode(dashboard.FieldColorModeId.FIXED).fixed_color(fixed))
    _labels(builder, panel, units)
    for column, color in (("red", "red"), ("yellow", "yellow")):
        if column in panel.labels:  # a count of cards: its colour from one up, green at none (an
            # all-clear read as a solid red 0 on the wall: found by a black-box test), grey for no value
            builder.override_by_name(column, [
                dashboard.DynamicConfigValue(id_val="color", value={"mode": "thresholds"}),
                dashboard.DynamicConfigValue(id_val="thresholds", value={"mode": "absolute", "steps": [
                    {"value": None, "color": NO_VALUE_COLOUR}, {"value": 0, "color": "green"},
                    {"value": 1, "color": color}]})])
    for column in counts:
        if column in panel.labels:
            builder.override_by_name(column, [dashboard.DynamicConfigValue(
                id_val="color", value={"mode": "fixed", "fixedColor": "blue"})])
    return _common(builder, panel, place)


# What an empty list or chart says (an empty overdue list is the all-clear), in the hall's language:
# Grafana's table and bar chart say "No data" whatever the UI's language (found by a black-box test).
EMPTY_LIST = "暂无记录"


def data_table(panel: q.Panel, place: Place, units=None, links: dict[str, str] | None = None):
    builder = table.Panel().filterable(False).cell_height(common.TableCellHeight.SM).no_value(EMPTY_LIST)
    # The table says EMPTY_LIST when it has no rows; an empty cell of a row stays empty (Grafana
    # shows a field's no-value text in its empty cells too: 暂无记录 beside an open case's 办结时间;
    # found by review).
    builder.override_by_regexp(".*", [dashboard.DynamicConfigValue(id_val="noValue", value="")])
    _labels(builder, panel, units)
    for column in panel.hidden:
        builder.override_by_name(column, [dashboard.DynamicConfigValue(id_val="custom.hidden", value=True)])
    for column, url in (links or {}).items():
        builder.override_by_name(column, [dashboard.DynamicConfigValue(
            id_val="links", value=[{"title": "查看办件时间线和证据", "url": url}])])
    return _common(builder, panel, place)


def bars(panel: q.Panel, place: Place, x: str, colors: dict[str, str], stacked: bool = True,
         orientation: common.VizOrientation = common.VizOrientation.HORIZONTAL):
    """Bars along `x`, a column of labels (departments; days or hours counted back from the end of the
    range, which a time axis would clip to the range shown)."""
    builder = barchart.Panel().x_field(x).orientation(orientation).no_value(EMPTY_LIST) \
        .stacking(common.StackingMode.NORMAL if stacked else common.StackingMode.NONE).show_value(common.VisibilityMode.AUTO).fill_opacity(80) \
        .legend(common_b.VizLegendOptions().display_mode(common.LegendDisplayMode.LIST)
                .placement(common.LegendPlacement.BOTTOM).show_legend(True))
    _labels(builder, panel)
    for column, color in colors.items():
        builder.override_by_name(column, [dashboard.DynamicConfigValue(
            id_val="color", value={"mode": "fixed", "fixedColor": color})])
    return _common(builder, panel, place)


# -- variables --------------------------------------------------------------------------------

def catalog_variable(name: str, label: str, description: str, multi: bool = True,
                     query: str | None = None) -> dash_b.QueryVariable:
    """Options from the catalog's copy (`VARIABLE_QUERIES[query or name]`); multi-value ones with All
    (every option, no custom value)."""
    variable = dash_b.QueryVariable(name).label(label).description(description).datasource(CLICKHOUSE) \
        .query(q.VARIABLE_QUERIES[query or name]).refresh(dashboard.VariableRefresh.ON_DASHBOARD_LOAD) \
        .sort(dashboard.VariableSort.DISABLED)
    if multi:
        variable.multi(True).include_all(True).current(dashboard.VariableOption(
            selected=True, text=["全部"], value=["$__all"]))
        if name in q.ALL_VALUE_VARIABLES:  # 全部 is every row, not only the catalog's options
            variable.all_value(q.ALL_VALUE)
    else:
        variable.multi(False).include_all(False)
    return variable


def case_variable() -> dash_b.TextBoxVariable:
    return dash_b.TextBoxVariable("case_id").label("办件编号").description(
        "要查看的办件编号；点击待处置预警清单中的办件编号自动带入。").default_value("")


# -- the dashboards ---------------------------------------------------------------------------

def _base(uid: str, title: str, description: str, time_from: str, time_to: str = "now", refresh: str = "1m"):
    return dash_b.Dashboard(title).uid(uid).description(description).tags(TAGS).timezone(TIMEZONE) \
        .time(time_from, time_to).refresh(refresh).editable().week_start("monday") \
        .tooltip(dashboard.DashboardCursorSync.CROSSHAIR)


def wall() -> dash_b.Dashboard:
    d = _base(WALL_UID, "政务服务中心大屏", "政务服务中心大屏：今日受理与办结、实时红黄牌、超期办件、按时办结率、督办完成率和近30日趋势。"
              "深色主题：以 /d/sunlight-wall?kiosk&theme=dark 打开。", "now/d")
    d.link(dash_b.DashboardLink("大屏模式（深色）").type(dashboard.DashboardLinkType.LINK)
           .url("/d/sunlight-wall?kiosk&theme=dark").keep_time(True))
    accepted_closed = {"accepted": "none", "closed": "none"}
    d.with_panel(big_stat(q.WALL_CASES_TODAY, Place(0, 0, 8, 7), units=accepted_closed, fixed="blue"))
    d.with_panel(big_stat(q.WALL_OPEN_CARDS, Place(8, 0, 8, 7), colors=[(None, "green"), (1, "orange")]))
    d.with_panel(big_stat(q.WALL_ON_TIME_RATE, Place(16, 0, 4, 7),
                          colors=[(None, "red"), (0.9, "orange"), (0.98, "green")], units={"on_time_rate": RATE},
                          value_size=72, counts=("closed_cases",)))
    d.with_panel(big_stat(q.WALL_TICKET_COMPLETION, Place(20, 0, 4, 7),
                          colors=[(None, "red"), (0.8, "orange"), (0.95, "green")],
                          units={"completion_rate": RATE}, value_size=72, counts=("completed", "tickets")))
    d.with_panel(bars(q.WALL_CARDS_BY_DEPARTMENT, Place(0, 7, 12, 11), "department_name",
                      {"red": "red", "yellow": "yellow"}))
    d.with_panel(data_table(q.OVERDUE_CASES, Place(12, 7, 12, 11)))
    d.with_panel(bars(q.WALL_TREND_30D, Place(0, 18, 12, 9), "day", {"accepted": "blue", "closed": "green"},
                      stacked=False, orientation=common.VizOrientation.VERTICAL))
    d.with_panel(data_table(q.OVERDUE_OPEN_CASES_BY_DEPARTMENT, Place(12, 18, 12, 9)))
    d.with_panel(bars(q.EVENTS_OVER_TIME, Place(0, 27, 24, 7), "hour",
                      {"events": "purple", "accepted": "blue", "closed": "green"}, stacked=False,
                      orientation=common.VizOrientation.VERTICAL))
    return d


CASE_LINK = f"/d/{INSPECTOR_UID}/?var-case_id=${{__value.raw}}&${{__url_time_range}}"


def inspector() -> dash_b.Dashboard:
    d = _base(INSPECTOR_UID, "监察员视图", "监察员视图：按规则、等级、部门、区域筛选的待处置预警，点击办件下钻到事件时间线和证据，以及死信队列。",
              "now-30d")
    d.with_variable(catalog_variable("rule", "规则", "预警规则（来自目录库）"))
    d.with_variable(catalog_variable("severity", "等级", "黄牌或红牌"))
    d.with_variable(catalog_variable("department", "部门", "职权目录中的部门"))
    d.with_variable(catalog_variable("region", "区域", "部门所在的行政区划"))
    d.with_variable(case_variable())
    d.with_panel(data_table(q.LIVE_ALERTS, Place(0, 0, 16, 12), links={"case_id": CASE_LINK}))
    d.with_panel(data_table(q.OPEN_ALERTS_BY_RULE, Place(16, 0, 8, 12)))
    d.with_panel(data_table(q.ALERTS_BY_DEPARTMENT, Place(0, 12, 12, 9)))
    d.with_panel(data_table(q.IRREGULARITY_RATE_BY_DEPARTMENT, Place(12, 12, 12, 9),
                            units={"irregularity_rate": RATE}))
    d.with_panel(data_table(q.CASE_SUMMARY, Place(0, 21, 24, 4)))
    d.with_panel(data_table(q.CASE_TIMELINE, Place(0, 25, 12, 10)))
    d.with_panel(data_table(q.CASE_EVIDENCE, Place(12, 25, 12, 10)))
    d.with_panel(big_stat(q.DLQ_SIZE, Place(0, 35, 6, 8), colors=[(None, "green"), (1, "red")], value_size=64,
                          counts=("letters",)))
    d.with_panel(data_table(q.DLQ_BY_REASON, Place(6, 35, 6, 8)))
    d.with_panel(data_table(q.DLQ_LATEST, Place(12, 35, 12, 8)))
    d.with_panel(data_table(q.CASES_WAITING, Place(0, 43, 24, 8), links={"case_id": CASE_LINK}))
    return d


def department() -> dash_b.Dashboard:
    d = _base(DEPARTMENT_UID, "部门视图", "部门负责人视图：所选部门的待处置预警、督办件及期限、本月以来的办件情况。"
              "能看到哪些数据由 ClickHouse 的行策略（各自的数据源用户）决定，部门变量只是筛选。", "now/M")
    d.with_variable(catalog_variable("department", "部门", "要查看的部门：本人数据源用户的行策略允许查看其办件的部门，"
                                     "部门负责人打开即为本部门（尚无办件的部门不列出）", multi=False, query="own_department"))
    d.with_panel(big_stat(q.DEPARTMENT_OPEN_CARDS, Place(0, 0, 8, 6), colors=[(None, "green"), (1, "orange")],
                          value_size=64))
    d.with_panel(big_stat(q.DEPARTMENT_MONTH_SO_FAR, Place(8, 0, 16, 6), units={"on_time_rate": RATE},
                          fixed="blue", value_size=56))
    d.with_panel(data_table(q.DEPARTMENT_OPEN_ALERTS, Place(0, 6, 12, 10)))
    d.with_panel(data_table(q.DEPARTMENT_TICKETS, Place(12, 6, 12, 10)))
    d.with_panel(data_table(q.CASES_HANDLED_PER_ITEM_THIS_MONTH, Place(0, 16, 12, 10), units={"on_time_rate": RATE}))
    d.with_panel(data_table(q.DEPARTMENT_CASE_LIST, Place(12, 16, 12, 10)))
    return d


@dataclass(frozen=True)
class PromPanel:
    title: str
    description: str
    unit: str
    exprs: tuple[tuple[str, str], ...]  # (PromQL, legend)


def titled(expr: str, label: str, titles: Mapping[str, str]) -> str:
    """`expr` with each value of `label` that `titles` names replaced by its title (PromQL's
    label_replace, one per value; a value not named stays as it is), so that a legend of
    `{{label}}` reads in Chinese, as the rest of the dashboards do."""
    for code, title in sorted(titles.items()):
        if not re.fullmatch(r"\w+", code) or '"' in title or "\\" in title:
            raise ValueError(f"{label} {code!r} -> {title!r}: not a plain code and title")
        expr = f'label_replace({expr}, "{label}", "{title}", "{label}", "{code}")'
    return expr


# What the health panels' legends say for the metrics' label values.
OUTCOME_TITLE = {"new": "新事件", "duplicate": "重复事件"}
LEGEND_TITLES: dict[str, Mapping[str, str]] = {
    "outcome": OUTCOME_TITLE, "reason": REASON_TITLE, "step": STEP_TITLE,
    "rule": {rule.value: title for rule, title in RULE_TITLE.items()},
    "severity": {severity.value: title for severity, title in SEVERITY_TITLE.items()},
}


HEALTH_PANELS = (
    PromPanel("事件处理速率", "每秒处理的办件事件数，按结果（新事件、重复事件）。", "suffix: 条/秒",
              ((titled('sum by (outcome) (rate(sunlight_events_processed_total[$__rate_interval]))', "outcome",
                       OUTCOME_TITLE), "{{outcome}}"),)),
    PromPanel("消费滞后", "各输入分区的消费滞后（末端偏移量减已提交偏移量，条）。持续上升说明处理跟不上。", "suffix: 条",
              (('sum by (topic, partition) (sunlight_consumer_lag)', "{{topic}}/{{partition}}"),)),
    PromPanel("写库延迟", "ClickHouse 批量写入耗时的 P50 与 P95（秒）。", "s",
              (('histogram_quantile(0.95, sum by (le) (rate(sunlight_sink_flush_seconds_bucket[$__rate_interval])))',
                "P95"),
               ('histogram_quantile(0.5, sum by (le) (rate(sunlight_sink_flush_seconds_bucket[$__rate_interval])))',
                "P50"))),
    PromPanel("写库失败与积压", "每秒写库失败次数与尚未写入的行数。", "none",
              (('sum(rate(sunlight_sink_failures_total[$__rate_interval]))', "失败/秒"),
               ('sum(sunlight_sink_pending_rows)', "待写行数"))),
    PromPanel("死信速率", "每秒进入死信队列的消息数，按原因。", "suffix: 条/秒",
              ((titled('sum by (reason) (rate(sunlight_events_dead_lettered_total[$__rate_interval]))', "reason",
                       REASON_TITLE), "{{reason}}"),)),
    PromPanel("到期计时积压", "按流时钟已到期但尚未触发的期限与督办计时个数，以及在办办件数。", "none",
              (('sum(sunlight_due_timer_backlog)', "到期未触发"), ('sum(sunlight_open_cases)', "在办办件"))),
    PromPanel("通知失败", "每个时间段内发送失败的通知数，按催办步骤。", "none",
              ((titled('sum by (step) (increase(sunlight_notices_total{status="failed"}[$__rate_interval]))', "step",
                       STEP_TITLE), "{{step}}"),)),
    PromPanel("预警产生速率", "每分钟新产生的预警数，按规则和等级。", "suffix: 条/分钟",
              ((titled(titled('sum by (rule, severity) (rate(sunlight_alerts_raised_total[$__rate_interval])) * 60',
                              "rule", LEGEND_TITLES["rule"]), "severity", LEGEND_TITLES["severity"]),
                "{{severity}}·{{rule}}"),)),
)


def health() -> dash_b.Dashboard:
    d = _base(HEALTH_UID, "运行健康", "流水线自身的运行指标（Prometheus）：事件速率、消费滞后、写库延迟、死信、到期计时积压、通知失败。",
              "now-6h", refresh="30s")
    for i, panel in enumerate(HEALTH_PANELS):
        builder = timeseries.Panel().title(panel.title).description(panel.description).unit(panel.unit) \
            .datasource(PROMETHEUS).grid_pos(_grid(Place((i % 2) * 12, (i // 2) * 8, 12, 8))) \
            .fill_opacity(10).line_width(2).no_value("无数据") \
            .legend(common_b.VizLegendOptions().display_mode(common.LegendDisplayMode.LIST)
                    .placement(common.LegendPlacement.BOTTOM).show_legend(True))
        for ref, (expr, legend) in zip("ABCD", panel.exprs):
            builder.with_target(prometheus.Dataquery().expr(expr).legend_format(legend).ref_id(ref).range()
                                .datasource(PROMETHEUS))
        d.with_panel(builder)
    return d


def scores() -> dash_b.Dashboard:
    d = _base(SCORES_UID, "绩效考核", "月度绩效考核得分（sunlight score 计算并存入）：所选时段末所在月份的市级部门和市(县)区排名、"
              "各考核项平均得分、每次计算的记录。默认显示上月。", "now-1M/M", "now-1M/M", refresh="1h")
    d.with_panel(data_table(q.SCORES_DEPARTMENTS, Place(0, 0, 24, 11)))
    d.with_panel(data_table(q.SCORES_REGIONS, Place(0, 11, 24, 8)))
    d.with_panel(bars(q.SCORES_PART_AVERAGES, Place(0, 19, 12, 9), "part", {"average_points": "blue",
                                                                             "full_points": "#cccccc"}, stacked=False))
    d.with_panel(data_table(q.SCORES_VERSIONS, Place(12, 19, 12, 9)))
    return d


def to_json(builder: dash_b.Dashboard) -> dict:
    """The dashboard as Grafana stores it (plain JSON values, in the SDK's own key order), its
    panels numbered 1..n."""
    model = builder.build()
    for number, panel in enumerate(model.panels or [], start=1):
        panel.id_val = number
    return json.loads(json.dumps(model, cls=JSONEncoder, ensure_ascii=False))


def all_dashboards(timezone: str = TIMEZONE) -> dict[str, dict]:
    """uid -> dashboard JSON, for provisioning and export, its days, months and times in
    `timezone` (the catalog's: `--catalog` of `sunlight dashboards`)."""
    models = {uid: to_json(make()) for uid, make in
              ((WALL_UID, wall), (INSPECTOR_UID, inspector), (DEPARTMENT_UID, department), (HEALTH_UID, health),
               (SCORES_UID, scores))}
    return {uid: in_zone(model, timezone) for uid, model in models.items()}


def in_zone(model: dict, timezone: str) -> dict:
    """A dashboard's JSON with its zone (`TIMEZONE`, in its SQL and its own `timezone`) made
    `timezone`. Built for Asia/Shanghai alone, a catalog in another zone read the wall's deadlines,
    days late and days two hours off the case file's (found by a black-box test)."""
    if timezone == TIMEZONE:
        return model
    if not re.fullmatch(r"[A-Za-z0-9_+\-]+(/[A-Za-z0-9_+\-]+)*", timezone):  # a zone name, nothing to quote
        raise ValueError(f"not a timezone name: {timezone!r}")
    ZoneInfo(timezone)  # a zone the system knows (ZoneInfoNotFoundError otherwise)
    quoted, wanted = f"'{TIMEZONE}'", f"'{timezone}'"

    def swap(value):
        if isinstance(value, str):
            return value.replace(quoted, wanted)
        if isinstance(value, list):
            return [swap(v) for v in value]
        if isinstance(value, dict):
            return {k: swap(v) for k, v in value.items()}
        return value

    return {**swap(model), "timezone": timezone}


def clickhouse_targets(model: dict) -> list[tuple[dict, dict]]:
    """(panel, target) of every ClickHouse query of a dashboard's JSON, rows included."""
    out = []
    for panel in model.get("panels", []):
        for inner in [panel, *panel.get("panels", [])]:
            for target in inner.get("targets", []):
                ref = target.get("datasource") or inner.get("datasource") or {}
                if ref.get("type") == CLICKHOUSE_TYPE:
                    out.append((inner, target))
    return out
