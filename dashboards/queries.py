"""The SQL of the Grafana panels: the wall screen (大屏) and the inspectors' lists.

Pure data: each `Panel` is a name, a Chinese title, what it shows in the domain's words,
and one ClickHouse SELECT over the tables of `sinks.migrations` (case_events, cases,
alerts). The SQL is complete as it stands; the only values it takes are ClickHouse query
parameters (``{department:String}``, ``{month:Date}``), bound by the client, never pasted
into the text. "Now" is the server's ``now()`` and months are local business months
(Asia/Shanghai), so the panels need no templating.

Every table is a ReplacingMergeTree, so until a background merge runs a key may have
several stored rows (an event delivered twice, a case's older revisions, an alert's older
versions). Every panel counts one row per key, the newest, and each query takes the
cheapest way to that which stays exact (measured by ``bench/dashboard_queries.py``):

* alerts and cases: ``FINAL``, with every condition in WHERE, which FINAL applies after it
  has chosen the newest row (PREWHERE would filter before, and could keep a stale revision
  whose newer one no longer matches). FINAL merges only the key ranges where parts overlap
  and reads the rest as is; picking candidate keys first and then the newest revision with
  argMax over ``case_id IN (...)`` was slower, because that lookup touches every stored key;
* case_events: no FINAL. The stored copies of an event are the same event written again,
  with the same occurred_at and type, so filtering first and then keeping one row per
  (case_id, event_id) with ``LIMIT 1 BY`` is exact. It also lets ClickHouse skip whole
  parts that hold only older events, by the per-part column statistics it keeps (26.x,
  ``auto_statistics_types``); FINAL reads every part. Events arrive roughly in time order,
  so parts are roughly ordered in time until merges mix them (see the bench's
  ``--optimize-final`` for the fully merged case).

Who may see which rows is not in this SQL: a user's scope (departments, regions) is for the
server's row policies to apply.

Status words: an alert is "open" (待处置) while its status is ``open`` or ``acknowledged``;
``resolved`` ones are handled and ``withdrawn`` ones never held (kept only for the audit
trail). A case is "in progress" (在办) while its status is ``open`` or ``suspended``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Mapping

from alerts.model import RULE_TITLE, SEVERITY_TITLE


@dataclass(frozen=True)
class Panel:
    name: str
    title: str
    doc: str
    sql: str
    # ClickHouse query parameters the SQL binds: name -> what to pass.
    params: Mapping[str, str] = field(default_factory=dict)


# Local business month boundaries, as DateTime in Asia/Shanghai (compared as instants with the
# DateTime64 UTC columns).
_MONTH_START = "toDateTime(toStartOfMonth(now(), 'Asia/Shanghai'), 'Asia/Shanghai')"
_MONTH_END = "toDateTime(toStartOfMonth(now(), 'Asia/Shanghai') + INTERVAL 1 MONTH, 'Asia/Shanghai')"

def _sql_array(values) -> str:
    return "[" + ", ".join(f"'{v}'" for v in values) + "]"


# The Chinese titles of alerts.model, for panels to show (a rule not listed shows its name).
_SEVERITY_TITLE = (f"transform(severity, {_sql_array(s.value for s in SEVERITY_TITLE)}, "
                   f"{_sql_array(SEVERITY_TITLE.values())}, severity)")
_RULE_TITLE = (f"transform(rule, {_sql_array(r.value for r in RULE_TITLE)}, "
               f"{_sql_array(RULE_TITLE.values())}, rule)")


OPEN_ALERTS_BY_RULE = Panel(
    name="open_alerts_by_rule",
    title="待处置预警（按规则、黄红牌）",
    doc="How many alerts are waiting to be dealt with (open or acknowledged), per rule, "
        "with the yellow/red card each rule gives: the wall screen's headline numbers.",
    sql=f"""
SELECT
    rule,
    {_RULE_TITLE} AS rule_title,
    severity,
    {_SEVERITY_TITLE} AS severity_title,
    count() AS open_alerts
FROM alerts FINAL
WHERE status IN ('open', 'acknowledged')
GROUP BY rule, severity
ORDER BY severity = 'red' DESC, open_alerts DESC
""",
)

ALERTS_BY_DEPARTMENT_THIS_MONTH = Panel(
    name="alerts_by_department_this_month",
    title="本月各部门预警（黄牌 / 红牌）",
    doc="Alerts of the current local month (by the business time of the finding), per "
        "department: yellow cards, red cards, and how many are still open. Withdrawn alerts "
        "never held and are not counted.",
    sql=f"""
SELECT
    department,
    countIf(severity = 'yellow') AS yellow,
    countIf(severity = 'red') AS red,
    count() AS alerts,
    countIf(status IN ('open', 'acknowledged')) AS still_open
FROM alerts FINAL
WHERE status != 'withdrawn'
  AND event_time >= {_MONTH_START}
  AND event_time < {_MONTH_END}
GROUP BY department
ORDER BY red DESC, yellow DESC, department
""",
)

IRREGULARITY_RATE_BY_DEPARTMENT = Panel(
    name="irregularity_rate_by_department",
    title="各部门不规范率（月度）",
    doc="For the cases a department accepted (受理) in the given month: how many drew at "
        "least one yellow or red alert that still stands (resolved counts, withdrawn does "
        "not), over all of them: the department's 不规范率 for that month.",
    params={"month": "Date: the first day of the local month, e.g. 2026-11-01"},
    sql="""
SELECT
    department,
    count() AS cases,
    countIf(case_id IN (
        SELECT case_id FROM alerts FINAL WHERE status != 'withdrawn'
    )) AS irregular_cases,
    round(irregular_cases / cases, 4) AS irregularity_rate
FROM cases FINAL
WHERE accepted_at >= toDateTime({month:Date}, 'Asia/Shanghai')
  AND accepted_at < toDateTime({month:Date} + INTERVAL 1 MONTH, 'Asia/Shanghai')
GROUP BY department
ORDER BY irregularity_rate DESC, department
""",
)

EVENTS_PER_HOUR_24H = Panel(
    name="events_per_hour_24h",
    title="近24小时办件事件量（按小时）",
    doc="Case events per local hour over the last 24 hours, by when they happened: all "
        "events, new cases accepted (受理) and cases finished (办结): the wall screen's "
        "live pulse.",
    sql="""
SELECT
    toStartOfHour(occurred_at, 'Asia/Shanghai') AS hour,
    count() AS events,
    countIf(type = 'accepted') AS accepted,
    countIf(type = 'closed') AS closed
FROM (
    SELECT occurred_at, type
    FROM case_events
    WHERE occurred_at >= now() - INTERVAL 24 HOUR
    LIMIT 1 BY case_id, event_id
)
GROUP BY hour
ORDER BY hour
""",
)

NEWEST_OPEN_RED_ALERTS = Panel(
    name="newest_open_red_alerts",
    title="最新红牌预警（待处置）",
    doc="The 100 red-card alerts raised most recently that are still waiting to be dealt "
        "with: the inspectors' live list, newest first.",
    sql=f"""
SELECT
    alert_id, title, rule, {_RULE_TITLE} AS rule_title, case_id, item_code, department, region,
    officer_id, node, event_time, raised_at, status, version
FROM alerts FINAL
WHERE severity = 'red' AND status IN ('open', 'acknowledged')
ORDER BY raised_at DESC, alert_id
LIMIT 100
""",
)

OVERDUE_OPEN_CASES_BY_DEPARTMENT = Panel(
    name="overdue_open_cases_by_department",
    title="各部门超期未办结办件",
    doc="Cases still open whose promised deadline (承诺时限) has passed, per department: how "
        "many, how many are more than 30 days late, and the worst delay in days. Suspended "
        "cases are not counted: their clock is stopped.",
    sql="""
SELECT
    department,
    count() AS overdue_cases,
    countIf(deadline < now() - INTERVAL 30 DAY) AS over_30_days,
    max(dateDiff('day', deadline, now())) AS worst_days_late
FROM cases FINAL
WHERE status = 'open' AND deadline < now()
GROUP BY department
ORDER BY overdue_cases DESC, department
""",
)

CASES_HANDLED_PER_ITEM_THIS_MONTH = Panel(
    name="cases_handled_per_item_this_month",
    title="本月各事项办结量",
    doc="Cases finished (办结) in the current local month, per power item (权力事项): how many, "
        "how many within the promised deadline, the on-time rate and the mean handling time "
        "in days.",
    sql=f"""
SELECT
    item_code,
    any(department) AS department,
    count() AS closed_cases,
    countIf(ended_at <= deadline) AS on_time,
    round(on_time / closed_cases, 4) AS on_time_rate,
    round(avg(dateDiff('second', accepted_at, ended_at)) / 86400, 1) AS mean_days
FROM cases FINAL
WHERE status = 'closed' AND ended_at >= {_MONTH_START} AND ended_at < {_MONTH_END}
GROUP BY item_code
ORDER BY closed_cases DESC, item_code
""",
)

DEPARTMENT_CASE_LIST = Panel(
    name="department_case_list",
    title="部门在办办件清单",
    doc="One department's cases in progress (open or suspended), the most urgent first: "
        "deadline, days left, events so far and the alerts standing against each. At most 200.",
    params={"department": "String: the department code, e.g. SCJGJ"},
    sql="""
SELECT
    case_id, item_code, region, status, accepted_at, deadline,
    dateDiff('day', now(), deadline) AS days_left,
    event_count, open_alerts, updated_at
FROM cases FINAL
WHERE department = {department:String} AND status IN ('open', 'suspended')
ORDER BY deadline ASC NULLS LAST, case_id
LIMIT 200
""",
)

PANELS: dict[str, Panel] = {p.name: p for p in (
    OPEN_ALERTS_BY_RULE,
    ALERTS_BY_DEPARTMENT_THIS_MONTH,
    IRREGULARITY_RATE_BY_DEPARTMENT,
    EVENTS_PER_HOUR_24H,
    NEWEST_OPEN_RED_ALERTS,
    OVERDUE_OPEN_CASES_BY_DEPARTMENT,
    CASES_HANDLED_PER_ITEM_THIS_MONTH,
    DEPARTMENT_CASE_LIST,
)}
