"""The SQL of every ClickHouse panel of the dashboards, in the form Grafana sends it.

Pure data: each `Panel` is a name, a Chinese title and description (what the person at the
screen reads), what it shows in the domain's words (`doc`), the labels of its columns, and one
ClickHouse SELECT over the tables of `sinks.migrations` (case_events, cases, alerts, tickets,
dead_letters, and the catalog's copy, catalog_*). `dashboards.build` places the panels on the
dashboards; `dashboards.macros` expands them as Grafana and the ClickHouse plugin do, for the
tests and `bench/dashboard_queries.py`.

The SQL takes its values the way Grafana gives them, as text pasted into it:

* time through the plugin's macros: ``$__timeFilter_ms(col)`` for "in the dashboard's range",
  ``$__toTime_ms`` for "now" (the end of the range: the moment the screen shows), ``$__fromTime_ms``,
  ``$__timeInterval(col)`` for time buckets. Never ``now()``: a panel can be checked on replayed
  history, and a wall screen can show any past day. Local business days and months are
  Asia/Shanghai;
* template variables as ``${var:singlequote}`` (multi-value ones inside ``IN (...)``), whose
  options come from the catalog's codes (`VARIABLE_QUERIES`).

Every table is a ReplacingMergeTree, so until a background merge runs a key may have
several stored rows (an event delivered twice, a case's older revisions, an alert's older
versions). Every panel counts one row per key, the newest, and each query takes the
cheapest way to that which stays exact (measured by ``bench/dashboard_queries.py``):

* alerts, cases, dead_letters and the catalog: ``FINAL``, with every condition in WHERE, which
  FINAL applies after it has chosen the newest row (PREWHERE would filter before, and could keep
  a stale revision whose newer one no longer matches). FINAL merges only the key ranges where
  parts overlap and reads the rest as is; picking candidate keys first and then the newest
  revision with argMax over ``case_id IN (...)`` was slower, because that lookup touches every
  stored key;
* case_events: no FINAL. The stored copies of an event are the same event written again,
  with the same occurred_at and type, so filtering first and then keeping one row per
  (case_id, event_id) with ``LIMIT 1 BY`` is exact. It also lets ClickHouse skip whole
  parts that hold only older events, by the per-part column statistics it keeps (26.x,
  ``auto_statistics_types``); FINAL reads every part. Events arrive roughly in time order,
  so parts are roughly ordered in time until merges mix them (see the bench's
  ``--optimize-final`` for the fully merged case);
* tickets: every change is a row of its own, keyed (ticket_id, version); a ticket as it stands
  is its newest version (``ORDER BY version DESC LIMIT 1 BY ticket_id``), version 0 being a
  ticket still settling that no department has seen.

Who may see which rows is not in this SQL: a user's scope (departments, regions) is for the
server's row policies to apply, through the viewer's datasource user. A dashboard variable
narrows what is shown, it never grants or withholds access.

Status words: an alert is waiting to be dealt with (待处置) while it stands (its status is
``open`` or ``acknowledged``) and its ticket is active; or a round is coming for it (its closed or
withdrawn ticket holds it for the next round, or that ticket, not opened by hand, ended before it
came); or no closed round answered it, its case is in progress, and it is no deadline_near card whose
deadline has passed, overtaken by the case's red overdue card (``_OVERTAKEN``) (``_PENDING``); one that stands otherwise is dealt with (已处置: its ticket closed with it, or its
case finished with no ticket); ``withdrawn`` ones never held (kept only for the audit trail). A case is "in progress" (在办) while its status is ``open`` or ``suspended``. A ticket is
"completed" (督办完成) once the department replied (``replied``) or it is ``closed``; withdrawn
tickets never reached a department and do not count.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Mapping

from alerts.describe import ATTR_TITLE, ATTR_VALUE, TIER_TITLE
from alerts.letters import HOLDS_ITS_CASE, OVERTAKEN_ACTIONS, REASON_ADVICE, REASON_TITLE
from alerts.model import RULE_TITLE, SEVERITY_TITLE
from alerts.tickets import STATUS_TITLE as TICKET_STATUS_TITLE
from dashboards.macros import variable_names
from sinks.queries import NOT_A_RATING
from sinks.rows import TICKET_ROUND


@dataclass(frozen=True)
class Panel:
    name: str
    title: str
    description: str  # Chinese, shown in the panel's (i)
    doc: str
    sql: str
    # Column -> Chinese label shown instead of the column's name.
    labels: Mapping[str, str] = field(default_factory=dict)
    # Columns the panel must show (checked by the tests against the store).
    columns: tuple[str, ...] = ()
    # Columns the query returns for its order, its links and the tests, and the table hides (a
    # deadline's raw moment beside its words: `_deadline_text`).
    hidden: tuple[str, ...] = ()

    @property
    def variables(self) -> set[str]:
        return variable_names(self.sql)


def _sql_array(values) -> str:
    return "[" + ", ".join(f"'{v}'" for v in values) + "]"


def _attrs_in_words(column: str) -> str:
    """An event's facts (its attrs' JSON) in words, as `alerts.describe.attrs_in_words` gives them:
    '原因：补正材料；裁量档次：从重（heavy）'. The timeline showed the raw JSON, English keys and
    codes (found by a black-box test of the screens)."""
    value = f"JSONExtractString({column}, k)"

    def words(mapping: Mapping[str, str]) -> str:
        return f"transform({value}, {_sql_array(mapping)}, {_sql_array(mapping.values())}, {value})"

    keys = _sql_array(ATTR_TITLE)  # the contract's facts in its order, then any other
    tier = f"transform(lower(trim({value})), {_sql_array(TIER_TITLE)}, {_sql_array(TIER_TITLE.values())}, '')"
    cases = [f"k = '{key}' AND JSONType({column}, k) = 'String', {words(mapping)}"
             for key, mapping in ATTR_VALUE.items()]
    return f"""arrayStringConcat(arrayMap(k -> concat(
        transform(k, {keys}, {_sql_array(ATTR_TITLE.values())}, k), '：',
        multiIf({', '.join(cases)},
                k = 'discretion_tier' AND JSONType({column}, k) = 'String',
                if({tier} = '', {value}, concat({tier}, '（', {value}, '）')),
                k = 'penalty_amount' AND JSONType({column}, k) IN ('Int64', 'UInt64', 'Double'),
                toString(JSONExtractFloat({column}, k)),
                JSONType({column}, k) = 'String', {value}, JSONExtractRaw({column}, k))),
        arraySort(k -> if(indexOf({keys}, k) = 0, 1000, indexOf({keys}, k)), JSONExtractKeys({column}))), '；')"""


# The Chinese titles of alerts.model, for panels to show (a rule not listed shows its name).
_SEVERITY_TITLE = (f"transform(severity, {_sql_array(s.value for s in SEVERITY_TITLE)}, "
                   f"{_sql_array(SEVERITY_TITLE.values())}, severity)")
_RULE_TITLE = (f"transform(rule, {_sql_array(r.value for r in RULE_TITLE)}, "
               f"{_sql_array(RULE_TITLE.values())}, rule)")
# An alert's title from its severity and rule as they are titled now, not as its stored row was
# titled when written (an overdue card written before 2026-12-04 says 超时办结, "closed late").
_ALERT_TITLE = f"concat({_SEVERITY_TITLE}, '·', {_RULE_TITLE})"
_REASON_TITLE = (f"transform(reason, {_sql_array(REASON_TITLE)}, {_sql_array(REASON_TITLE.values())}, reason)")
# What to do about a letter, by its reason (alerts.letters.REASON_ADVICE; none for a reason not listed).
_REASON_ADVICE = f"transform(reason, {_sql_array(REASON_ADVICE)}, {_sql_array(REASON_ADVICE.values())}, '')"
# A ticket's status in the words of `sunlight tickets` and the console (alerts.tickets.STATUS_TITLE).
_TICKET_STATUS_TITLE = (f"transform(status, {_sql_array(s.value for s in TICKET_STATUS_TITLE)}, "
                        f"{_sql_array(TICKET_STATUS_TITLE.values())}, status)")

# Department and item names from the catalog's copy, as scalars computed once per query (a JOIN
# would be planned against the big table); a code the catalog does not know shows as itself.
_NAMES = """WITH
    (SELECT (groupArray(code), groupArray(name)) FROM catalog_departments FINAL) AS _departments,
    (SELECT (groupArray(code), groupArray(name)) FROM catalog_items FINAL) AS _items
"""


def _department_name(column: str = "department") -> str:
    return f"transform(toString({column}), _departments.1, _departments.2, toString({column}))"


def _item_name(column: str = "item_code") -> str:
    return f"transform(toString({column}), _items.1, _items.2, toString({column}))"


# Node names from the catalog's copy (an item's node ids are its own): for a panel about one case
# or one department's alerts, a scalar computed once per query like the names above.
_NODES = """
    (SELECT (groupArray(concat(item_code, char(31), node_id)), groupArray(name)) FROM catalog_nodes FINAL) AS _nodes
"""


def _node_name(item: str = "item_code", node: str = "node") -> str:
    """A node's name in its item (a node the catalog does not know shows as its id; none: empty)."""
    return (f"if(ifNull({node}, '') = '', '', transform(concat(toString({item}), char(31), assumeNotNull({node})), "
            f"_nodes.1, _nodes.2, assumeNotNull({node})))")


# "Now" is the end of the dashboard's range; the local month it falls in starts at:
_MONTH_START = "toDateTime(toStartOfMonth(toDateTime($__toTime_ms, 'Asia/Shanghai')), 'Asia/Shanghai')"
# The first moment of the 30 local days that end with the day of "now" (that day included).
_DAYS_30_START = "toDateTime(toDate($__toTime_ms, 'Asia/Shanghai') - 29, 'Asia/Shanghai')"
_OPEN = "status IN ('open', 'acknowledged')"
# A deadline is stored as the moment it ends (24:00 of its last working day, i.e. the next local
# midnight); its last day is the local day before that moment. Days late count the local days since
# that last day (the day after it is the first day late: 1), days left the days to it, today
# included (1 on the last day itself); dateDiff from the stored moment was a day short of each.
# A deadline that is not at midnight (a suspension moved it) passes on its last day itself: that
# day is the first day late, the next the second (0 beside a red card read as not late, 0 days left
# as due today: found by a black-box test). Read only of deadlines passed.
_LAST_DAY = "(deadline - INTERVAL 1 MICROSECOND)"
_DAYS_LATE = (f"(dateDiff('day', {_LAST_DAY}, $__toTime_ms, 'Asia/Shanghai') "
              f"+ (deadline != toStartOfDay(deadline, 'Asia/Shanghai')))")


def _deadline_text(column: str) -> str:
    """A deadline as the contract words it, as `sunlight cases show` and the notices give it
    (`alerts.describe.deadline_moment`): one that ends at midnight is '2026-03-09 24:00', the end of
    its last day. Shown raw, Grafana gave '2026-03-10 00:00', a day late beside 超期天数 (a Saturday
    make-up working day read as the Sunday of a holiday: found by a black-box test). One a source
    stated with seconds (23:59:59) keeps them."""
    return (f"if({column} = toStartOfDay({column}, 'Asia/Shanghai'), "
            f"concat(formatDateTime({column} - INTERVAL 1 DAY, '%Y-%m-%d', 'Asia/Shanghai'), ' 24:00'), "
            f"if({column} = toStartOfMinute({column}), formatDateTime({column}, '%Y-%m-%d %H:%i', 'Asia/Shanghai'), "
            f"formatDateTime({column}, '%Y-%m-%d %H:%i:%S', 'Asia/Shanghai')))")
# Not dealt with yet (the rest of 待处置): an alert's ticket (its case and rule's) is active
# (settling, open, returned, or replied and waiting for the inspector); or it has no ticket, or
# one withdrawn, and its case is still in progress. Handling is recorded on the ticket, never on
# the alert (the contract): an alert whose ticket was closed, or one on a finished case that no
# ticket took up, has been dealt with. Before, every alert that stands counted, for good: a
# yellow card never left the wall, nor a red card whose ticket was accepted.
# Each ticket's latest row, joined to the alerts of its case and rule (`_alerts_with_tickets`): its
# status, whether it was opened by hand, the cards it holds, and the cards of its coming round (a
# closed or withdrawn ticket's `pending_alert_ids`, migration 0017: parsed from every version's
# stored form, about 1.2 KB, they cost these panels 300 to 800 ms at 10M events). Its columns are named `ticket_*`, so
# that an alert's own (status, case_id, rule, ...) keep their names; an alert with no ticket reads
# them empty (`ticket_status` '', or NULL where a server sets join_use_nulls: every condition below
# reads either as "no ticket").
# Its latest row by `LIMIT 1 BY` over the key's order: argMax of each column cost the wall's
# 待处置 panels 100 ms more at 10M events (argMax of an array column; bench/dashboard_queries.py).
# One join: the same latest rows read as five `IN` sets, one per condition, cost the ten 待处置
# panels 11-19% more in all at 10M events, a case's or a department's up to 70% (2026-12-06).
def _ticket_latest(tickets: str = "") -> str:
    """`tickets`: a condition on `tickets` that narrows the rows read (one case's drill-down reads
    that case's tickets alone)."""
    narrowed = f"WHERE {tickets} " if tickets else ""
    return ("(SELECT ticket_id, status AS ticket_status, manual AS ticket_manual, alert_ids AS ticket_alert_ids, "
            "pending_alert_ids AS ticket_coming FROM tickets "
            f"{narrowed}ORDER BY ticket_id, version DESC LIMIT 1 BY ticket_id)")


def _alerts_with_tickets(tickets: str = "") -> str:
    """The FROM of a panel that tells 待处置: every alert as it stands, beside its ticket's latest row."""
    return (f"alerts FINAL LEFT JOIN {_ticket_latest(tickets)} AS ticket "
            "ON ticket.ticket_id = concat(case_id, '/', rule)")


_ALERTS_WITH_TICKETS = _alerts_with_tickets()
# Of the chosen case alone (the drill-down's case_id).
_ALERTS_OF_THE_CASE_WITH_TICKETS = _alerts_with_tickets("case_id = ${case_id:singlequote}")
# The alert's ticket is active: settling, open, returned, or replied and waiting for the inspector.
_TICKET_ACTIVE = "ticket_status NOT IN ('', 'closed', 'withdrawn')"
_TICKET_ENDED = "ticket_status IN ('closed', 'withdrawn')"
# The alert's ticket (its case and rule's) was not closed with it: its closed round did not answer
# it (a card raised after that round is not among its cards, or is among the next round's).
_TICKET_NOT_CLOSED = ("NOT (ticket_status = 'closed' AND has(ticket_alert_ids, alert_id) "
                      "AND NOT has(ticket_coming, alert_id))")
# A round is coming for it: a closed or withdrawn ticket holds it for its next round, or an automatic
# ticket (not opened by hand: an inspector opens those again by hand) ended before the card came.
# Before, such a card read 已处置 on a finished case, and left every 待处置 count while a silence held
# the round back: a false all-clear (found by a black-box test).
_ROUND_COMING = (f"({_TICKET_ENDED} AND (has(ticket_coming, alert_id) "
                 f"OR (NOT has(ticket_alert_ids, alert_id) AND ticket_manual = 0)))")


# A deadline_near card is overtaken once the deadline it warned of has passed (`warned_deadline`, its
# evidence's `deadline` kept in a column by migration 0017, as last judged: a moved deadline changes
# the card, or withdraws it): the red overdue
# card raised then, with its ticket, is what is to be dealt with, as an Alertmanager inhibition rule
# silences the lesser alert. It still waits through an active ticket of its own (one opened by hand,
# or by a policy for it). Before, such a yellow card counted as 待处置 for as long as its case stayed
# open, after the red card's ticket was answered too: 141 of a city's 304 yellow cards on the wall
# were of cases weeks late (found by a black-box test). Read from the card's own row: a lookup of
# the cases past their deadline, or of the standing overdue cards, cost the wall's 待处置 panels
# 15-40% more at 10M events. Not the card's moment plus a day: a stated deadline on a day off is
# near from the last working day before it, and such a card left the wall days before the red one
# came (found by review). Passed as of the end of the range: the screen's now.
_OVERTAKEN = "(rule = 'deadline_near' AND ifNull(warned_deadline <= $__toTime_ms, 0))"


def _unhandled(cases: str = "") -> str:
    """`cases`: a condition on `cases` that narrows its lookup where the alerts are of known cases
    (one case's drill-down reads one case's latest row, not every case's). Over
    `_alerts_with_tickets`."""
    narrowed = f"{cases} AND " if cases else ""
    return f"""({_TICKET_ACTIVE}
    OR ({_ROUND_COMING} AND NOT {_OVERTAKEN})
    OR ({_TICKET_NOT_CLOSED} AND NOT {_OVERTAKEN}
        AND case_id IN (SELECT case_id FROM cases FINAL WHERE {narrowed}status IN ('open', 'suspended'))))"""


# Waiting to be dealt with (待处置), over `_ALERTS_WITH_TICKETS`.
_PENDING = f"{_OPEN} AND {_unhandled()}"
# Of the chosen case alone (the drill-down's case_id), over `_ALERTS_OF_THE_CASE_WITH_TICKETS`.
_PENDING_OF_THE_CASE = f"{_OPEN} AND {_unhandled('case_id = ${case_id:singlequote}')}"
# The same of an alert whose case is known to be in progress (a list of cases in progress): its
# ticket active, or none closed with it (and not overtaken, unless its own ticket is active: a
# deadline_near card's ticket opened by hand, or by a policy for it). Without `cases FINAL` a second
# time, which cost a department's case list 50 ms at 10M events.
_PENDING_IN_PROGRESS = f"{_OPEN} AND {_TICKET_NOT_CLOSED} AND (NOT {_OVERTAKEN} OR {_TICKET_ACTIVE})"
# A case open at the end of the range ("now" of the screen): not yet finished then (a past day
# shows the cases finished since as they were). A case suspended before its deadline has none
# stored while its clock stands still (`deadline < $__toTime_ms` leaves it out); one suspended only
# after its deadline had passed is overdue all the same (before, every suspended case was left
# out: a case suspended a month late, its red overdue card standing, dropped off the overdue lists;
# found by a black-box test). With `deadline < $__toTime_ms` beside it, the acceptance is not read: a
# case accepted after a past day whose stated deadline had already passed then would be listed for
# that day too (a case that rare costs no column read on every screen refresh: ~15 ms at 10M events).
#
# A case closed and sent back since (退回) reads as it stood then: closed between its closing and
# the return (`cases.undone_ends`, `cases.reopened_at`, in pairs). Before, its row (open now) read
# it as open on every past day: listed overdue on a day it was closed, its closing counted on no
# day (found by a black-box test).
# The arrays are read from `case_reopenings`, where a materialized view copies the rows of the few
# cases that have any (migration 0016), into one scalar per query (`_CLOSED_THEN_AT`, a WITH
# expression): the cases closed at the end of the range by a closing a return undid only after it,
# with that closing. At "now" (the live wall) there are none (no return is stated in the future),
# and every row reads as before. Read in the FINAL scan of every case, the arrays cost the wall's
# panels 15 to 35 ms more at 10M events, and a set (`IN (SELECT ...)`) 10 to 25
# (bench/dashboard_queries.py). A row there counts while it is its case's latest revision: matched
# on (case_id, revision) with the case's row (a case whose events read otherwise since has a later
# row in `cases` alone).
_CLOSED_THEN_AT = ("(SELECT (groupArray((case_id, revision)), groupArray(arrayFirst((c, r) -> c <= $__toTime_ms AND "
                   "r > $__toTime_ms, undone_ends, reopened_at))) FROM case_reopenings FINAL "
                   "WHERE arrayExists((c, r) -> c <= $__toTime_ms AND r > $__toTime_ms, undone_ends, reopened_at)) "
                   "AS _closed_then")
# Not ended at the end of the range as its row stands: what a case closed then by a closing a return
# undid since must be (it ended again, if at all, after that return).
_NOT_ENDED_BY_THEN = "(ended_at IS NULL OR ended_at > $__toTime_ms)"
# Closed at the end of the range by a closing a return undid since (with `_CLOSED_THEN_AT`).
_CLOSED_THEN = (f"({_NOT_ENDED_BY_THEN} AND notEmpty(_closed_then.1) AND has(_closed_then.1, (case_id, revision)))")
_OPEN_AT_END = f"({_NOT_ENDED_BY_THEN} AND NOT {_CLOSED_THEN})"
# The closing in force at the end of the range, if any: the case's closing now, or one a return
# undid only after the end (a withdrawal is no closing; NULL for a case open then). A closing now
# at or before the end comes after every return, so no undone one is in force then.
_CLOSING_AT_END = (f"if(status = 'closed' AND ended_at <= $__toTime_ms, ended_at, if({_CLOSED_THEN}, "
                   f"arrayElement(_closed_then.2, indexOf(_closed_then.1, (case_id, revision))), NULL))")
# The WITH clause of a panel that reads them, with the catalog's names or alone.
_NAMES_AND_CLOSED_THEN = f"{_NAMES[:-1]},\n    {_CLOSED_THEN_AT}\n"
_WITH_CLOSED_THEN = f"WITH {_CLOSED_THEN_AT}\n"


def _closed_since(start: str = "$__fromTime_ms") -> str:
    """Closed from `start` to the end of the range, as the case stood at its end (with
    `_CLOSED_THEN_AT`)."""
    return (f"((status = 'closed' AND ended_at >= {start} AND ended_at <= $__toTime_ms) OR ({_CLOSED_THEN} "
            f"AND arrayElement(_closed_then.2, indexOf(_closed_then.1, (case_id, revision))) >= {start}))")


_CLOSED_IN_RANGE = _closed_since()
# A department or region filter left on 全部 holds ALL_VALUE (the variables' custom all value,
# dashboards.build): every row, also those of a region or department the catalog does not list
# (an event's own region, a department without one, one that left the catalog), which the list of
# options would leave out.
ALL_VALUE = "'__all__'"
ALL_VALUE_VARIABLES = ("department", "region")


def all_value_of(variable: str) -> str | None:
    """The custom all value a multi-value variable holds for 全部 (None: every option)."""
    return ALL_VALUE if variable in ALL_VALUE_VARIABLES else None


def _chosen(variable: str, column: str) -> str:
    """`column` among the values of a multi-value variable with a custom all value: any row for 全部."""
    values = f"${{{variable}:singlequote}}"
    return f"({ALL_VALUE} IN ({values}) OR {column} IN ({values}))"


# The inspector's filters, every one a multi-value variable with All.
_REGION = "ifNull(region, '')"
_ALERT_FILTERS = ("rule IN (${rule:singlequote}) AND severity IN (${severity:singlequote}) "
                  f"AND {_chosen('department', 'department')} AND {_chosen('region', _REGION)}")
# Each round of each ticket as it stood at the end of the range, its newest version changed by
# then (a ticket opened again is a new round, `round` in its state from round 2 on; version 0 is a
# ticket still settling, which no department has seen): the 督办完成率 counts rounds in the month
# they opened, as `sunlight score` does (sinks.scoring_inputs.month_facts), and a past day's rate
# counts no answer given after it.
_TICKET_ROUNDS_AT_END = """(
    SELECT ticket_id, department, status, opened_at, {round} AS round
    FROM tickets
    WHERE version > 0 AND changed_at <= $__toTime_ms
    ORDER BY ticket_id, round, version DESC
    LIMIT 1 BY ticket_id, round
)""".format(round=TICKET_ROUND)

# The tickets as they stood at the end of the range: the newest version of each changed by then
# (the department's list showed tickets opened after a past range, with today's escalation beside
# hours counted from the range's end: found by a black-box test).
_TICKETS_AT_END = """(
    SELECT ticket_id, case_id, rule, severity, department, status, overdue, escalation_level, opened_at, deadline
    FROM tickets
    WHERE version > 0 AND changed_at <= $__toTime_ms{where}
    ORDER BY ticket_id, version DESC
    LIMIT 1 BY ticket_id
)"""

# -- the wall screen (大屏) ---------------------------------------------------------------------

WALL_CASES_TODAY = Panel(
    name="wall_cases_today",
    title="今日受理与办结",
    description="所选时段（默认今日）内受理的办件数与办结的办件数，按业务发生时间统计；一件办件只计一次（重复的受理、办结事件不重复计）。",
    doc="Cases accepted (受理) and finished (办结) in the dashboard's range (today on the wall), "
        "by when it happened: each case once, at its acceptance and at its closing in force at the "
        "end of the range (`cases.accepted_at`; `cases.ended_at`, or a closing a later return undid: "
        "`cases.undone_ends`), so that a second `closed` "
        "event of a closed case is not a second case finished.",
    labels={"accepted": "今日受理（件）", "closed": "今日办结（件）"},
    columns=("accepted", "closed"),
    sql=f"""{_WITH_CLOSED_THEN}SELECT countIf(($__timeFilter_ms(accepted_at))) AS accepted, countIf({_CLOSED_IN_RANGE}) AS closed
FROM cases FINAL
WHERE ($__timeFilter_ms(accepted_at)) OR {_CLOSED_IN_RANGE}
""",
)

WALL_OPEN_CARDS = Panel(
    name="wall_open_cards",
    title="待处置红黄牌（实时）",
    description="当前待处置的红牌、黄牌预警总数：预警成立，且其督办件尚未办结（无督办件或督办件已撤销的，办件仍在办理中）；"
                "督办件办结后新发的同类预警待下一轮督办，仍为待处置。督办件随该预警办结、或办件已办结且未立督办件的"
                "预警视为已处置；临近办理时限黄牌所警示的时限已过的，转由办理超时红牌督办，不再计入（其自身督办件仍在办理的除外）。"
                "预警、督办件与办件均按当前状态统计，不随时间范围变化；黄牌所警示的时限是否已过，以所选时段的结束时刻"
                "（大屏即当前时刻）判断。",
    doc="Alerts waiting to be dealt with now, red and yellow: the wall's headline.",
    labels={"red": "红牌（条）", "yellow": "黄牌（条）"},
    columns=("red", "yellow"),
    sql=f"""
SELECT countIf(severity = 'red') AS red, countIf(severity = 'yellow') AS yellow
FROM {_ALERTS_WITH_TICKETS}
WHERE {_PENDING}
""",
)

WALL_CARDS_BY_DEPARTMENT = Panel(
    name="wall_cards_by_department",
    title="各部门待处置红黄牌（实时）",
    description="各部门当前待处置的红牌、黄牌预警数，红牌多的部门在前。",
    doc="Open red and yellow cards per department (by its Chinese name), red first.",
    labels={"department_name": "部门", "red": "红牌", "yellow": "黄牌"},
    columns=("department_name", "red", "yellow"),
    sql=f"""{_NAMES}
SELECT {_department_name()} AS department_name,
    countIf(severity = 'red') AS red, countIf(severity = 'yellow') AS yellow
FROM {_ALERTS_WITH_TICKETS}
WHERE {_PENDING}
GROUP BY department
ORDER BY red DESC, yellow DESC, department_name
""",
)

OVERDUE_CASES = Panel(
    name="overdue_cases",
    title="超期未办结办件清单",
    description="截至所选时段末，承诺时限已过仍未办结的办件（当时尚未办结的也计入，即使其后已办结；当时已办结、其后退回重办的不计；时限届满前挂起、"
                "尚未恢复的不计，其时钟已停；超期后才挂起的照计），超期最久的在前，最多100件。",
    doc="Cases open at the end of the range and past their promised deadline then, the longest "
        "overdue first (at most 100): on a past day, also those finished since. A case suspended "
        "before its deadline, and not resumed, has none while its clock stands still, and is not "
        "counted (left out of past days too: the store keeps a case's deadline as it stands now); "
        "one suspended only after its deadline had passed is (before, every suspended case was left "
        "out: found by a black-box test).",
    labels={"case_id": "办件编号", "department_name": "部门", "item_name": "事项", "deadline_text": "承诺时限",
            "days_late": "超期天数"},
    columns=("case_id", "department_name", "item_name", "deadline_text", "days_late"),
    hidden=("deadline",),
    sql=f"""{_NAMES_AND_CLOSED_THEN}SELECT case_id, {_department_name()} AS department_name, {_item_name()} AS item_name,
    {_deadline_text("deadline")} AS deadline_text, {_DAYS_LATE} AS days_late, deadline
FROM cases FINAL
WHERE {_OPEN_AT_END} AND deadline < $__toTime_ms
ORDER BY deadline ASC, case_id
LIMIT 100
""",
)

OVERDUE_OPEN_CASES_BY_DEPARTMENT = Panel(
    name="overdue_open_cases_by_department",
    title="各部门超期未办结办件",
    description="截至所选时段末，各部门承诺时限已过仍未办结的办件数、其中超期30天以上的件数和最长超期天数"
                "（当时尚未办结的也计入，即使其后已办结；时限届满前挂起、尚未恢复的不计，超期后才挂起的照计）。",
    doc="Cases open at the end of the range whose promised deadline (承诺时限) had passed by then, per "
        "department: how many, how many are 30 days late or more (以上 includes the number, as the "
        "worst delay counts days: a case 30 days late was in 最长超期 30 but not in 超期30天以上, found "
        "by a black-box test), and the worst delay in days (on a past day, also those finished since). "
        "A case suspended before its deadline is not counted (its clock is stopped); one suspended "
        "after it is.",
    labels={"department_name": "部门", "overdue_cases": "超期件数", "over_30_days": "超期30天以上",
            "worst_days_late": "最长超期（天）"},
    columns=("department_name", "overdue_cases", "over_30_days", "worst_days_late"),
    sql=f"""{_NAMES_AND_CLOSED_THEN}SELECT
    {_department_name()} AS department_name,
    count() AS overdue_cases,
    countIf({_DAYS_LATE} >= 30) AS over_30_days,
    max({_DAYS_LATE}) AS worst_days_late
FROM cases FINAL
WHERE {_OPEN_AT_END} AND deadline < $__toTime_ms
GROUP BY department
ORDER BY overdue_cases DESC, department_name
""",
)

WALL_ON_TIME_RATE = Panel(
    name="wall_on_time_rate",
    title="按时办结率",
    description="所选时段内办结的办件中，在承诺时限内办结的比例。",
    doc="Of the cases finished in the range, the share finished by their promised deadline.",
    labels={"on_time_rate": "按时办结率", "closed_cases": "办结件数"},
    columns=("on_time_rate", "closed_cases"),
    sql=f"""{_WITH_CLOSED_THEN}SELECT if(count() = 0, NULL, round(countIf(({_CLOSING_AT_END}) <= deadline) / count(), 4)) AS on_time_rate,
    count() AS closed_cases
FROM cases FINAL
WHERE {_CLOSED_IN_RANGE}
""",
)

WALL_TICKET_COMPLETION = Panel(
    name="wall_ticket_completion",
    title="本月督办完成率",
    description="本月（截至所选时段末）发出的督办件中，截至时段末部门已答复或已办结的比例；已撤销的督办件不计。",
    doc="Of the supervision tickets opened this local month up to the end of the range (withdrawn "
        "ones left out), the share the department replied to or that are closed: 督办完成率. Each "
        "round of a ticket counts in the month it opened in, as `sunlight score` counts it, and as it "
        "stood at the end of the range (a past day's rate counts no answer given after it).",
    labels={"completion_rate": "督办完成率", "completed": "已完成（件）", "tickets": "督办件数"},
    columns=("completion_rate", "completed", "tickets"),
    sql=f"""
SELECT if(count() = 0, NULL, round(countIf(status IN ('replied', 'closed')) / count(), 4)) AS completion_rate,
    countIf(status IN ('replied', 'closed')) AS completed, count() AS tickets
FROM {_TICKET_ROUNDS_AT_END}
WHERE status != 'withdrawn' AND opened_at >= {_MONTH_START} AND opened_at <= $__toTime_ms
""",
)

WALL_TREND_30D = Panel(
    name="wall_trend_30d",
    title="近30日受理与办结趋势",
    description="截至所选时段末的30天（按本地日）每天受理和办结的办件数。",
    doc="Cases accepted and finished per local day over the 30 local days up to the end of the range "
        "(a day with none shows 0), counted back from $__toTime_ms in the SQL, so that a past day shown "
        "on the wall has its own 30 days (Grafana's relative time override would count from now, "
        "and is ignored on a day picked on the calendar). Read from the cases as they stand (a "
        "case's accepted_at and, once closed, ended_at are the times of its accepted and closed "
        "events): a month of events with LIMIT 1 BY took ~210 ms at p95 over 10M events, this "
        "~50 ms, with the same result.",
    labels={"day": "日期", "accepted": "受理", "closed": "办结"},
    columns=("day", "accepted", "closed"),
    sql=f"""
SELECT formatDateTime(day_start, '%m-%d') AS day, accepted, closed
FROM (
    SELECT toDate(moment, 'Asia/Shanghai') AS day_start, countIf(role = 1) AS accepted, countIf(role = 2) AS closed
    FROM (
        SELECT pair.1 AS role, assumeNotNull(pair.2) AS moment
        FROM (
            SELECT arrayJoin(arrayFilter(x -> x.2 >= {_DAYS_30_START} AND x.2 <= $__toTime_ms,
                       [(1, accepted_at), (2, if(status = 'closed', ended_at, NULL))])) AS pair
            FROM cases FINAL
            WHERE (accepted_at >= {_DAYS_30_START} AND accepted_at <= $__toTime_ms)
               OR (status = 'closed' AND ended_at >= {_DAYS_30_START} AND ended_at <= $__toTime_ms)
        )
        UNION ALL
        -- The closings a return undid on a later local day: each a closing of its own day, as it
        -- stood at that day's end (one undone the same day was no day's closing).
        SELECT toUInt8(2) AS role, c AS moment
        FROM case_reopenings FINAL ARRAY JOIN undone_ends AS c, reopened_at AS r
        WHERE toDate(r, 'Asia/Shanghai') > toDate(c, 'Asia/Shanghai') AND c >= {_DAYS_30_START} AND c <= $__toTime_ms
          AND (case_id, revision) IN (SELECT case_id, max(revision) FROM cases
                                      WHERE case_id IN (SELECT case_id FROM case_reopenings) GROUP BY case_id)
    )
    GROUP BY day_start
    ORDER BY day_start WITH FILL FROM toDate({_DAYS_30_START}, 'Asia/Shanghai') TO toDate($__toTime_ms, 'Asia/Shanghai') + 1
)
ORDER BY day_start
""",
)

EVENTS_OVER_TIME = Panel(
    name="events_over_time",
    title="近24小时办件事件量",
    description="截至所选时段末的24个小时（含当前小时），每小时的办件事件数（全部事件、受理事件、办结事件），按业务发生时间统计；"
                "按事件计，同一办件重复登记的受理或办结各计一次，故可多于“今日受理与办结”的件数。",
    doc="Case events per local hour over the 24 clock hours up to the end of the range, its own hour "
        "included (an hour with none shows 0), by when they happened: all events, new cases accepted "
        "(受理) and cases finished (办结): the live pulse. Counted back from $__toTime_ms in the SQL, as "
        "the 30-day trend. Events, not cases: a second acceptance or closing of a case counts, so its "
        "legends say 事件 (a black-box test read them as cases beside 今日受理与办结).",
    labels={"hour": "时间", "events": "全部事件", "accepted": "受理事件", "closed": "办结事件"},
    columns=("hour", "events", "accepted", "closed"),
    sql="""
SELECT formatDateTime(hour_start, '%H:00', 'Asia/Shanghai') AS hour, events, accepted, closed
FROM (
    SELECT toStartOfHour(occurred_at, 'Asia/Shanghai') AS hour_start,
        count() AS events, countIf(type = 'accepted') AS accepted, countIf(type = 'closed') AS closed
    FROM (
        SELECT occurred_at, type
        FROM case_events
        WHERE occurred_at >= toStartOfHour($__toTime_ms - INTERVAL 23 HOUR, 'Asia/Shanghai') AND occurred_at <= $__toTime_ms
        LIMIT 1 BY case_id, event_id
    )
    GROUP BY hour_start
    ORDER BY hour_start WITH FILL
        FROM toStartOfHour($__toTime_ms - INTERVAL 23 HOUR, 'Asia/Shanghai') TO toStartOfHour($__toTime_ms, 'Asia/Shanghai') + 1
        STEP 3600
)
ORDER BY hour_start
""",
)

# -- the inspectors' view -----------------------------------------------------------------------

OPEN_ALERTS_BY_RULE = Panel(
    name="open_alerts_by_rule",
    title="待处置预警（按规则、黄红牌）",
    description="按规则和黄红牌统计当前待处置的预警数，受上方规则、等级、部门、区域筛选。",
    doc="How many alerts are waiting to be dealt with (open or acknowledged), per rule, with the "
        "yellow/red card each rule gives, within the inspector's filters.",
    labels={"rule_title": "规则", "severity_title": "等级", "open_alerts": "待处置（条）"},
    columns=("rule_title", "severity_title", "open_alerts"),
    sql=f"""
SELECT {_RULE_TITLE} AS rule_title, {_SEVERITY_TITLE} AS severity_title, count() AS open_alerts
FROM {_ALERTS_WITH_TICKETS}
WHERE {_PENDING} AND {_ALERT_FILTERS}
GROUP BY rule, severity
ORDER BY severity = 'red' DESC, open_alerts DESC, rule_title
""",
)

LIVE_ALERTS = Panel(
    name="live_alerts",
    title="待处置预警清单",
    description="所选时段内发现、当前仍待处置的预警，最新的在前，最多200条。点击办件编号查看该办件的事件时间线和证据。",
    doc="Alerts found in the range (by the finding's business time) that are still open, within the "
        "filters, newest first, at most 200: the inspectors' live list. The case number links to "
        "the case's timeline and evidence (the case_id variable).",
    labels={"event_time": "发生时间", "raised_at": "系统预警时间", "severity_title": "等级", "rule_title": "规则",
            "case_id": "办件编号", "department_name": "部门", "item_name": "事项", "title": "预警", "state": "状态"},
    columns=("event_time", "raised_at", "severity_title", "rule_title", "case_id", "department_name", "item_name",
             "title"),
    sql=f"""{_NAMES}
SELECT event_time, raised_at, {_SEVERITY_TITLE} AS severity_title, {_RULE_TITLE} AS rule_title, case_id,
    {_department_name()} AS department_name, {_item_name()} AS item_name, {_ALERT_TITLE} AS title,
    if(status = 'acknowledged', '已签收', '待处置') AS state
FROM {_ALERTS_WITH_TICKETS}
WHERE {_PENDING} AND {_ALERT_FILTERS} AND $__timeFilter_ms(event_time)
ORDER BY event_time DESC, alert_id
LIMIT 200
""",
)

ALERTS_BY_DEPARTMENT = Panel(
    name="alerts_by_department",
    title="各部门预警（黄牌 / 红牌）",
    description="所选时段内发现的预警（已撤销的不计），按部门统计黄牌、红牌、合计和仍待处置的条数。",
    doc="Alerts found in the range (by the business time of the finding), per department: yellow "
        "cards, red cards, all, and how many are still open. Withdrawn alerts never held.",
    labels={"department_name": "部门", "yellow": "黄牌", "red": "红牌", "alerts": "合计", "still_open": "仍待处置"},
    columns=("department_name", "yellow", "red", "alerts", "still_open"),
    sql=f"""{_NAMES}
SELECT
    {_department_name()} AS department_name,
    countIf(severity = 'yellow') AS yellow,
    countIf(severity = 'red') AS red,
    count() AS alerts,
    countIf({_PENDING}) AS still_open
FROM {_ALERTS_WITH_TICKETS}
WHERE status != 'withdrawn' AND {_ALERT_FILTERS} AND $__timeFilter_ms(event_time)
GROUP BY department
ORDER BY red DESC, yellow DESC, department_name
""",
)

IRREGULARITY_RATE_BY_DEPARTMENT = Panel(
    name="irregularity_rate_by_department",
    title="本月各部门不规范率",
    description="本月（截至所选时段末）各部门受理的办件（未登记受理的按其首个办理环节的时间计入）中，"
                "至少有一条成立的黄牌或红牌预警的比例，受上方规则、等级、部门、区域筛选"
                "（规则、等级选“全部”时即考核口径的不规范率）。预警按目前已知的情况计，含所选时段末之后才发现的"
                "（与月度考核一致），因此回看过去某日时可能高于当日所见。",
    doc="For the cases a department accepted (受理) in the local month of the range's end, up to "
        "it (a case never registered as accepted: by its first step, as the scoring counts it): how "
        "many drew at least one yellow or red alert that still stands (resolved counts, "
        "withdrawn does not), over all of them: the department's 不规范率. Within the inspector's "
        "filters: departments and regions narrow the cases, rules and severities the alerts that "
        "count (with all of them, the rate of the monthly scoring). The alerts are those that stand "
        "now, also those found after the range's end, as the monthly scoring counts them: on a past "
        "day the rate can be above what the wall showed that day, and the description says so (a "
        "black-box test read it as the rate as it stood).",
    labels={"department_name": "部门", "cases": "受理件数", "irregular_cases": "不规范件数",
            "irregularity_rate": "不规范率"},
    columns=("department_name", "cases", "irregular_cases", "irregularity_rate"),
    sql=f"""{_NAMES}
SELECT
    {_department_name()} AS department_name,
    count() AS cases,
    countIf(case_id IN (
        -- The standing alerts of the month's cases only: each alert's latest version (every
        -- version of an alert is about its one case, so none is left out by the case filter),
        -- over cases with any revision accepted in the month or none (a superset of the month's cases).
        SELECT case_id FROM alerts
        WHERE case_id IN (SELECT case_id FROM cases WHERE (accepted_at >= {_MONTH_START} AND accepted_at <= $__toTime_ms)
                                                          OR accepted_at IS NULL)
            AND rule IN (${{rule:singlequote}}) AND severity IN (${{severity:singlequote}})
        GROUP BY alert_id, case_id
        HAVING argMax(status, version) != 'withdrawn'
    )) AS irregular_cases,
    round(irregular_cases / cases, 4) AS irregularity_rate
FROM cases FINAL
WHERE ((accepted_at >= {_MONTH_START} AND accepted_at <= $__toTime_ms) OR (accepted_at IS NULL AND case_id IN (
        -- A case never registered as accepted counts in the month of its first step (not a rating
        -- nor a withdrawal), as the monthly scoring counts it (sinks.scoring_inputs.month_facts).
        SELECT case_id FROM case_events
        WHERE case_id IN (SELECT case_id FROM cases WHERE accepted_at IS NULL) AND type NOT IN ('rated', 'withdrawn')
        GROUP BY case_id HAVING min(occurred_at) >= {_MONTH_START} AND min(occurred_at) <= $__toTime_ms)))
  AND {_chosen('department', 'department')} AND {_chosen('region', 'region')}
GROUP BY department
ORDER BY irregularity_rate DESC, department_name
""",
)

CASE_SUMMARY = Panel(
    name="case_summary",
    title="办件概况",
    description="所选办件（由预警清单点击带入）的当前状态、受理时间、承诺时限和预警数。",
    doc="The chosen case (the case_id variable, set by the live list's link) as it stands.",
    labels={"case_id": "办件编号", "department_name": "部门", "item_name": "事项", "state": "状态",
            "accepted_at": "受理时间", "deadline_text": "承诺时限", "ended_at": "办结时间", "event_count": "事件数",
            "open_alerts": "待处置预警"},
    columns=("case_id", "department_name", "item_name", "state", "accepted_at", "deadline_text"),
    hidden=("deadline",),
    sql=f"""{_NAMES}
SELECT case_id, {_department_name()} AS department_name, {_item_name()} AS item_name,
    transform(status, ['open', 'suspended', 'closed', 'withdrawn'], ['在办', '挂起', '办结', '撤回'], status) AS state,
    accepted_at, {_deadline_text("deadline")} AS deadline_text, ended_at, event_count, deadline,
    (SELECT count() FROM {_ALERTS_OF_THE_CASE_WITH_TICKETS} WHERE case_id = ${{case_id:singlequote}}
        AND {_PENDING_OF_THE_CASE}) AS open_alerts
FROM cases FINAL
WHERE case_id = ${{case_id:singlequote}}
""",
)

CASE_TIMELINE = Panel(
    name="case_timeline",
    title="办件事件时间线",
    description="所选办件的全部事件，按发生时间排列：受理、各环节办理、挂起、退回、办结等。",
    doc="Every event of the chosen case, in business-time order, each once.",
    labels={"occurred_at": "发生时间", "recorded_at": "登记时间", "event": "事件", "node_name": "环节",
            "officer_id": "经办人", "channel": "渠道", "facts": "附加信息"},
    columns=("occurred_at", "recorded_at", "event", "node_name", "officer_id"),
    sql=f"""
WITH {_NODES.strip()}
SELECT occurred_at, recorded_at,
    transform(type, ['accepted', 'node_completed', 'suspended', 'resumed', 'returned', 'decided', 'closed', 'withdrawn',
                     'rated'],
              ['受理', '环节办结', '挂起', '恢复', '退回', '作出决定', '办结', '撤回', '评价'], type) AS event,
    {_node_name()} AS node_name, officer_id,
    transform(channel, ['online', 'window', 'import', ''], ['网上办理', '窗口办理', '系统导入', '未注明'], channel) AS channel,
    {_attrs_in_words("attrs")} AS facts
FROM (
    SELECT * FROM case_events
    WHERE case_id = ${{case_id:singlequote}}
    LIMIT 1 BY case_id, event_id
)
ORDER BY occurred_at, event_id
""",
)

CASE_EVIDENCE = Panel(
    name="case_evidence",
    title="预警证据",
    description="针对所选办件的全部预警及其证据（包括已处置和已撤销的，已撤销的注明原因）。证据以文字说明，与办件档案和督办通知中的相同。",
    doc="Every alert about the chosen case, with its evidence (the facts the rule judged) in words, "
        "as `sunlight cases show` and the notices give it (its JSON for a row written before the "
        "store kept the words), including resolved and withdrawn ones (with why it was withdrawn).",
    labels={"event_time": "发生时间", "raised_at": "系统预警时间", "severity_title": "等级", "rule_title": "规则",
            "state": "状态",
            "node_name": "环节", "evidence": "证据", "withdrawn_reason": "撤销原因"},
    columns=("event_time", "raised_at", "severity_title", "rule_title", "state", "evidence"),
    sql=f"""WITH {_NODES.strip()}
SELECT event_time, raised_at, {_SEVERITY_TITLE} AS severity_title, {_RULE_TITLE} AS rule_title,
    multiIf(status = 'withdrawn', '已撤销', status = 'acknowledged', '已签收', {_PENDING_OF_THE_CASE}, '待处置',
            {_OVERTAKEN} AND case_id IN (SELECT case_id FROM cases FINAL WHERE case_id = ${{case_id:singlequote}}
                AND status IN ('open', 'suspended')), '已超时（转红牌督办）', '已处置') AS state,
    {_node_name()} AS node_name, if(evidence_text != '', evidence_text, evidence) AS evidence, withdrawn_reason
FROM {_ALERTS_OF_THE_CASE_WITH_TICKETS}
WHERE case_id = ${{case_id:singlequote}}
ORDER BY event_time, alert_id
""",
)

# A letter that waits for someone: open (not redriven, not closed by an operator), and not a ticket
# action the ticket had moved past (the person who acted was told; nothing to redrive:
# `alerts.letters.OVERTAKEN_ACTIONS`).
_LETTER_WAITING = f"status = 'open' AND reason NOT IN {_sql_array(sorted(OVERTAKEN_ACTIONS))}"

DLQ_SIZE = Panel(
    name="dlq_size",
    title="死信队列",
    description="无法处理的消息（死信）：待处理的条数与累计条数；已重投的、运维人员注明原因关闭的（sunlight dlq close），"
                "和已告知操作人的过时督办操作（督办件已更新或状态已变）不计入待处理。",
    doc="The dead letters waiting (not redriven, not closed by an operator, not a ticket action the "
        "ticket had moved past: its actor was told) and all of them.",
    labels={"waiting": "待处理死信", "letters": "累计死信"},
    columns=("waiting", "letters"),
    sql=f"""
SELECT countIf({_LETTER_WAITING}) AS waiting, count() AS letters
FROM dead_letters FINAL
""",
)

DLQ_LATEST = Panel(
    name="dlq_latest",
    title="最新死信及原因",
    description="最近收到的50条死信：时间、原因（及其代码，供 sunlight dlq list --reason 查询）、处理办法、"
                "系统说明（系统原文，指出出错的字段和取值，供修正来源系统）、来源、涉及的办件和状态（关闭的注明谁关闭及原因）。",
    doc="The 50 newest dead letters: when, why (the reason in Chinese, its code), what to do (in "
        "Chinese, by reason), the detail (the system's own words), where from, which case, and its "
        "state (a closed one with who closed it and why).",
    labels={"received_at": "收到时间", "reason_title": "原因", "reason": "原因代码", "advice": "处理办法",
            "detail": "系统说明（原文）", "topic": "来源", "case_id": "办件编号", "department_name": "部门",
            "state": "状态"},
    columns=("received_at", "reason_title", "reason", "advice", "detail", "topic", "state"),
    sql=f"""{_NAMES}
SELECT received_at, {_REASON_TITLE} AS reason_title, reason, {_REASON_ADVICE} AS advice, detail, topic, case_id,
    {_department_name()} AS department_name,
    multiIf(status = 'redriven', '已重投', status = 'closed',
        concat('已关闭（', ifNull(closed_by, ''), '：', ifNull(closed_reason, ''), '）'),
        reason IN {_sql_array(sorted(OVERTAKEN_ACTIONS))}, '已告知操作人', '待处理') AS state
FROM dead_letters FINAL
ORDER BY received_at DESC, letter_id
LIMIT 50
""",
)

DLQ_BY_REASON = Panel(
    name="dlq_by_reason",
    title="待处理死信原因分布",
    description="死信队列中待处理的死信（未重投、未关闭，且不是已告知操作人的过时督办操作），按原因统计，并注明每种原因最近一次收到的时间和处理办法。",
    doc="The dead letters waiting (not redriven, not closed, not an overtaken ticket action), per reason, with when "
        "the newest of each came: "
        "what is in the DLQ now, whenever it arrived (received_at is the worker's clock, not "
        "business time, so it is not filtered by the dashboard's range).",
    labels={"reason_title": "原因", "reason": "原因代码", "letters": "条数", "latest": "最近收到", "advice": "处理办法"},
    columns=("reason_title", "reason", "letters", "latest", "advice"),
    sql=f"""
SELECT {_REASON_TITLE} AS reason_title, reason, count() AS letters, max(received_at) AS latest,
    {_REASON_ADVICE} AS advice
FROM dead_letters FINAL
WHERE {_LETTER_WAITING}
GROUP BY reason
ORDER BY letters DESC, reason
""",
)

# Not a rating's (`sinks.queries.NOT_A_RATING`; one kept as base64, GBK, is read by no SQL, and listed).
_HOLDING_LETTERS = f"""status = 'open' AND reason IN {_sql_array(sorted(HOLDS_ITS_CASE))}
    AND case_id IS NOT NULL AND event_id IS NOT NULL
    AND {NOT_A_RATING}"""

CASES_WAITING = Panel(
    name="cases_waiting",
    title="暂缓评判的办件",
    description="有事件被拒收（进入死信队列）而事实不完整的办件：在更正的事件重新提交（sunlight dlq redrive）之前，"
                "除事件登记迟延和处罚金额超出裁量基准外不新发预警（被拒收的仅为环节、决定或退回事件，"
                "或为所述时间在办理期限届满之后的挂起、办结或撤回事件时，临近到期、超时预警及涉及办理时限的事后补挂起预警照常发出；"
                "被拒收的评议不影响评判，不列入）。"
                "最早的在前，最多200件。",
    doc="Cases that wait for refused events (open dead letters that name the case and an event it "
        "does not hold, docs/faults.md): until the events come corrected they raise no alert but late "
        "registrations and fines outside their benchmark (and their deadline's, with suspensions that "
        "moved it after the fact, when only node, decision or return events are refused, or suspensions, "
        "closings or withdrawals stated after the deadline); "
        "refused ratings hold nothing back and are not listed; the oldest first, at most 200.",
    labels={"case_id": "办件编号", "department_name": "部门", "refused_events": "被拒收事件数", "reasons": "原因",
            "since": "最早拒收时间"},
    columns=("case_id", "department_name", "refused_events", "reasons", "since"),
    sql=f"""{_NAMES}
SELECT case_id, {_department_name()} AS department_name, count() AS refused_events,
    arrayStringConcat(arraySort(groupUniqArray({_REASON_TITLE})), '、') AS reasons, min(received_at) AS since
FROM dead_letters FINAL
WHERE {_HOLDING_LETTERS}
    AND (case_id, event_id) NOT IN (
        SELECT case_id, event_id FROM case_events
        WHERE case_id IN (SELECT case_id FROM dead_letters FINAL WHERE {_HOLDING_LETTERS}))
GROUP BY case_id, department
ORDER BY since, case_id
LIMIT 200
""",
)

# -- the department head's view ---------------------------------------------------------------

DEPARTMENT_OPEN_CARDS = Panel(
    name="department_open_cards",
    title="本部门待处置红黄牌",
    description="所选部门当前待处置的红牌、黄牌预警数。",
    doc="The chosen department's open red and yellow cards.",
    labels={"red": "红牌（条）", "yellow": "黄牌（条）"},
    columns=("red", "yellow"),
    sql=f"""
SELECT countIf(severity = 'red') AS red, countIf(severity = 'yellow') AS yellow
FROM {_ALERTS_WITH_TICKETS}
WHERE {_PENDING} AND department = ${{department:singlequote}}
""",
)

DEPARTMENT_OPEN_ALERTS = Panel(
    name="department_open_alerts",
    title="本部门待处置预警",
    description="所选部门当前待处置的预警，红牌在前、最新的在前，最多200条。",
    doc="The chosen department's open alerts, red first then newest first, at most 200.",
    labels={"event_time": "发生时间", "raised_at": "系统预警时间", "severity_title": "等级", "rule_title": "规则",
            "case_id": "办件编号", "item_name": "事项", "node_name": "环节", "title": "预警"},
    columns=("event_time", "raised_at", "severity_title", "rule_title", "case_id", "item_name", "node_name"),
    sql=f"""{_NAMES.rstrip()},{_NODES.rstrip()}
SELECT event_time, raised_at, {_SEVERITY_TITLE} AS severity_title, {_RULE_TITLE} AS rule_title, case_id,
    {_item_name()} AS item_name, {_node_name()} AS node_name, {_ALERT_TITLE} AS title
FROM {_ALERTS_WITH_TICKETS}
WHERE {_PENDING} AND department = ${{department:singlequote}}
ORDER BY severity = 'red' DESC, event_time DESC, alert_id
LIMIT 200
""",
)

DEPARTMENT_TICKETS = Panel(
    name="department_tickets",
    title="本部门督办件及期限",
    description="所选部门截至所选时段末尚未办结的督办件：当时的状态、答复期限、距期限的整小时数（不足一小时不计；负数为已逾期；"
                "已答复待审核的不计）"
                "和催办级别，期限最近的在前。",
    doc="The chosen department's tickets not yet closed or withdrawn at the end of the range, as "
        "they stood then: status, answer deadline, whole hours left then (rounded down: negative as "
        "soon as it is overdue; none for one answered, which waits for the inspector), overdue (an answer still due past its deadline, or given late) "
        "and escalation level, nearest deadline first.",
    labels={"ticket_id": "督办件", "case_id": "办件编号", "rule_title": "规则", "state": "状态",
            "opened_at": "发出时间", "deadline_text": "答复期限", "hours_left": "剩余（小时）",
            "is_overdue": "已逾期", "escalation_level": "催办级别"},
    columns=("ticket_id", "case_id", "state", "deadline_text", "hours_left"),
    hidden=("deadline",),
    sql=f"""
SELECT ticket_id, case_id, {_RULE_TITLE} AS rule_title,
    {_TICKET_STATUS_TITLE} AS state,
    opened_at, {_deadline_text("deadline")} AS deadline_text,
    if(status = 'replied', NULL, toInt64(floor(dateDiff('second', $__toTime_ms, deadline) / 3600))) AS hours_left,
    if(overdue = 1 OR (status IN ('open', 'returned') AND deadline <= $__toTime_ms), '是', '否') AS is_overdue,
    escalation_level, deadline
FROM {_TICKETS_AT_END.format(where=" AND department = ${department:singlequote}")}
WHERE status IN ('open', 'returned', 'replied')
ORDER BY deadline ASC NULLS LAST, ticket_id
""",
)

DEPARTMENT_MONTH_SO_FAR = Panel(
    name="department_month_so_far",
    title="本月以来",
    description="所选部门本月（截至所选时段末）受理、办结、按时办结的办件数和按时办结率。",
    doc="The chosen department's local month up to the end of the range: cases accepted, closed, "
        "closed on time and the on-time rate.",
    labels={"accepted": "本月受理", "closed": "本月办结", "on_time": "按时办结", "on_time_rate": "按时办结率"},
    columns=("accepted", "closed", "on_time", "on_time_rate"),
    sql=f"""{_WITH_CLOSED_THEN}SELECT
    countIf(accepted_at >= {_MONTH_START} AND accepted_at <= $__toTime_ms) AS accepted,
    countIf({_closed_since(_MONTH_START)}) AS closed,
    countIf({_closed_since(_MONTH_START)} AND ({_CLOSING_AT_END}) <= deadline) AS on_time,
    if(closed = 0, NULL, round(on_time / closed, 4)) AS on_time_rate
FROM cases FINAL
WHERE department = ${{department:singlequote}}
  AND (accepted_at >= {_MONTH_START} OR ended_at >= {_MONTH_START} OR {_CLOSED_THEN})
""",
)

CASES_HANDLED_PER_ITEM_THIS_MONTH = Panel(
    name="cases_handled_per_item_this_month",
    title="本月各事项办结情况",
    description="所选部门本月（截至所选时段末）各权力事项的办结件数、按时办结件数、按时办结率和平均办理天数"
                "（受理至办结的自然日，含周末、节假日和挂起时间；承诺时限按工作日计）。",
    doc="Cases of the chosen department finished (办结) in the local month of the range's end, per "
        "power item (权力事项): how many, how many within the promised deadline, the on-time rate "
        "and the mean handling time in days.",
    labels={"item_name": "事项", "closed_cases": "办结件数", "on_time": "按时办结", "on_time_rate": "按时办结率",
            "mean_days": "平均办理（天）"},
    columns=("item_name", "closed_cases", "on_time", "on_time_rate", "mean_days"),
    sql=f"""{_NAMES_AND_CLOSED_THEN}SELECT
    {_item_name()} AS item_name,
    count() AS closed_cases,
    countIf(({_CLOSING_AT_END}) <= deadline) AS on_time,
    round(on_time / closed_cases, 4) AS on_time_rate,
    round(avg(dateDiff('second', accepted_at, {_CLOSING_AT_END})) / 86400, 1) AS mean_days
FROM cases FINAL
WHERE {_closed_since(_MONTH_START)} AND department = ${{department:singlequote}}
GROUP BY item_code
ORDER BY closed_cases DESC, item_name
""",
)

DEPARTMENT_CASE_LIST = Panel(
    name="department_case_list",
    title="本部门在办办件清单",
    description="所选部门当前在办（办理中或挂起）的办件（不随所选时段变化），期限最近的在前：承诺时限、剩余天数（截至所选时段末，"
                "含当天，期限最后一天为1；负数为已超期天数）、事件数和待处置预警数，最多200件。",
    doc="One department's cases in progress now (open or suspended; the list does not follow the "
        "range: as of a past range's end it read every case's dates, 25% slower at 10M events), the "
        "most urgent first: deadline, days left at the end of the range, events so far and the "
        "alerts pending against each. At most 200.",
    labels={"case_id": "办件编号", "item_name": "事项", "state": "状态", "accepted_at": "受理时间",
            "deadline_text": "承诺时限", "days_left": "剩余（天）", "event_count": "事件数", "open_alerts": "待处置预警"},
    columns=("case_id", "item_name", "state", "deadline_text", "days_left"),
    hidden=("deadline",),
    sql=f"""{_NAMES}
SELECT
    case_id, {_item_name()} AS item_name, if(status = 'suspended', '挂起', '在办') AS state, accepted_at,
    {_deadline_text("deadline")} AS deadline_text,
    if(deadline > $__toTime_ms, dateDiff('day', $__toTime_ms, {_LAST_DAY}, 'Asia/Shanghai') + 1, -{_DAYS_LATE}) AS days_left,
    event_count, ifNull(pending.open_alerts, 0) AS open_alerts, deadline
FROM cases FINAL
LEFT JOIN (
    -- every case of the list is in progress: an alert is pending unless its ticket was closed
    SELECT case_id, count() AS open_alerts FROM {_ALERTS_WITH_TICKETS}
    WHERE {_PENDING_IN_PROGRESS} AND department = ${{department:singlequote}}
    GROUP BY case_id
) AS pending USING (case_id)
WHERE department = ${{department:singlequote}} AND status IN ('open', 'suspended')
ORDER BY deadline ASC NULLS LAST, case_id
LIMIT 200
""",
)

# -- the monthly scores (绩效考核, table `scores`, written by `sunlight score`) -----------------------

# The month shown: the local month the end of the dashboard's range falls in, as 'YYYY-MM'.
_SCORE_MONTH = ("concat(toString(toYear(toDateTime($__toTime_ms, 'Asia/Shanghai'))), '-', "
                "leftPad(toString(toMonth(toDateTime($__toTime_ms, 'Asia/Shanghai'))), 2, '0'))")
# Every kind of part a rulebook may hold (alerts.scoring.PART_KINDS), with its column and title.
_SCORE_PARTS = (("coverage", "部门覆盖"), ("publication", "权力公开"), ("operation", "权力运行"),
                ("data_exchange", "数据对接"), ("maintenance", "权力库维护"), ("conformity", "操作规范"),
                ("rating", "行政相对人评议"), ("supervision", "督办及落实"), ("other", "其他"))


# A subject's notes (说明), as `sunlight score` writes them (alerts.scoring_report.row): each part's
# title and note, in the rulebook's order, joined by "；".
_SCORE_NOTES = ("arrayStringConcat(arrayFilter(x -> x != '', arrayMap(part -> "
                "if(JSONExtractString(part.2, 'note') = '', '', "
                "concat(JSONExtractString(part.2, 'title'), JSONExtractString(part.2, 'note'))), "
                "JSONExtractKeysAndValuesRaw(parts))), '；')")


def _ranking(attachment: str, parts: tuple[str, ...]) -> str:
    columns = ",\n    ".join(f"if(has(part_keys, '{key}'), part_points[indexOf(part_keys, '{key}')], NULL) AS {key}"
                              for key in parts)
    return f"""
SELECT if(ranked = 1, toString(rank), '不排名') AS rank_text, subject, name AS subject_name, cases, total,
    {columns},
    {_SCORE_NOTES} AS notes
FROM scores FINAL
WHERE attachment = '{attachment}' AND month = {_SCORE_MONTH}
    AND version = (SELECT max(version) FROM scores WHERE attachment = '{attachment}' AND month = {_SCORE_MONTH})
ORDER BY ranked DESC, rank, subject
"""


_DEPARTMENT_PARTS = ("publication", "operation", "data_exchange", "maintenance", "conformity", "rating",
                     "supervision", "other")
_REGION_PARTS = ("coverage", "publication", "operation", "maintenance", "conformity", "supervision", "other")
_PART_TITLE = dict(_SCORE_PARTS)

SCORES_DEPARTMENTS = Panel(
    name="scores_departments",
    title="市级部门绩效考核排名",
    description="所选时段末所在月份的市级部门得分（附件2），按总分排名；当月无办件的部门不排名、列在最后。"
                "同一月份重新计算后显示最新一版。说明列与 sunlight score 的说明相同（如某项无数据、按满分计）。",
    doc="The city departments' scores of the local month the range ends in (attachment 2), the month's "
        "latest version, ranked; departments without a case that month last, marked 不排名.",
    labels={"rank_text": "名次", "subject": "部门编码", "subject_name": "部门", "cases": "办件数", "total": "总分",
            **{key: _PART_TITLE[key] for key in _DEPARTMENT_PARTS}, "notes": "说明"},
    columns=("rank_text", "subject", "subject_name", "cases", "total", *_DEPARTMENT_PARTS, "notes"),
    sql=_ranking("department", _DEPARTMENT_PARTS),
)

SCORES_REGIONS = Panel(
    name="scores_regions",
    title="市(县)区绩效考核排名",
    description="所选时段末所在月份的市(县)区得分（附件1），按总分排名；当月无办件的地区不排名、列在最后。"
                "说明列与 sunlight score 的说明相同。",
    doc="The regions' scores of the local month the range ends in (attachment 1), latest version, ranked.",
    labels={"rank_text": "名次", "subject": "地区编码", "subject_name": "地区", "cases": "办件数", "total": "总分",
            **{key: _PART_TITLE[key] for key in _REGION_PARTS}, "notes": "说明"},
    columns=("rank_text", "subject", "subject_name", "cases", "total", *_REGION_PARTS, "notes"),
    sql=_ranking("region", _REGION_PARTS),
)

SCORES_PART_AVERAGES = Panel(
    name="scores_part_averages",
    title="各考核项平均得分（市级部门）",
    description="所选月份参与排名的市级部门各考核项的平均得分与该项分值：看出普遍失分的环节。",
    doc="Per part, the ranked city departments' average points beside the part's worth (latest version).",
    labels={"part": "考核项", "average_points": "平均得分", "full_points": "分值"},
    columns=("part", "average_points", "full_points"),
    sql=f"""
SELECT part, round(avg(points), 2) AS average_points, max(worth) AS full_points
FROM scores FINAL
ARRAY JOIN part_titles AS part, part_points AS points, part_max AS worth, arrayEnumerate(part_titles) AS position
WHERE attachment = 'department' AND ranked = 1 AND month = {_SCORE_MONTH}
    AND version = (SELECT max(version) FROM scores WHERE attachment = 'department' AND month = {_SCORE_MONTH})
GROUP BY part
ORDER BY min(position)
""",
)

SCORES_VERSIONS = Panel(
    name="scores_versions",
    title="计算记录",
    description="所选月份及以前各月的每一次计算（版本）：计算时间、考核细则、考核对象数和参与排名数，最新的100条。"
                "重新计算留有记录。",
    doc="Every computation of the month shown and the months before it (the newest 100): month, "
        "attachment, version, when, the rulebook, how many subjects were scored and ranked.",
    labels={"month": "月份", "attachment_title": "考核对象", "version": "版本", "computed_at": "计算时间",
            "rulebook": "考核细则", "subjects": "对象数", "ranked_subjects": "参与排名"},
    columns=("month", "attachment_title", "version", "computed_at", "subjects", "ranked_subjects"),
    sql=f"""
SELECT month, if(attachment = 'department', '市级部门', '市(县)区') AS attachment_title, version,
    max(computed_at) AS computed_at, any(rulebook) AS rulebook, count() AS subjects, sum(ranked) AS ranked_subjects
FROM scores FINAL
WHERE month <= {_SCORE_MONTH}
GROUP BY month, attachment, version
ORDER BY month DESC, attachment, version DESC
LIMIT 100
""",
)

PANELS: dict[str, Panel] = {p.name: p for p in (
    WALL_CASES_TODAY,
    WALL_OPEN_CARDS,
    WALL_CARDS_BY_DEPARTMENT,
    OVERDUE_CASES,
    OVERDUE_OPEN_CASES_BY_DEPARTMENT,
    WALL_ON_TIME_RATE,
    WALL_TICKET_COMPLETION,
    WALL_TREND_30D,
    EVENTS_OVER_TIME,
    OPEN_ALERTS_BY_RULE,
    LIVE_ALERTS,
    ALERTS_BY_DEPARTMENT,
    IRREGULARITY_RATE_BY_DEPARTMENT,
    CASE_SUMMARY,
    CASE_TIMELINE,
    CASE_EVIDENCE,
    DLQ_SIZE,
    DLQ_LATEST,
    DLQ_BY_REASON,
    CASES_WAITING,
    DEPARTMENT_OPEN_CARDS,
    DEPARTMENT_OPEN_ALERTS,
    DEPARTMENT_TICKETS,
    DEPARTMENT_MONTH_SO_FAR,
    CASES_HANDLED_PER_ITEM_THIS_MONTH,
    DEPARTMENT_CASE_LIST,
    SCORES_DEPARTMENTS,
    SCORES_REGIONS,
    SCORES_PART_AVERAGES,
    SCORES_VERSIONS,
)}


# -- the variables: their options from the catalog's copy (value, then the label shown) ---------

VARIABLE_QUERIES: dict[str, str] = {
    "department": "SELECT code AS value, concat(name, '（', code, '）') AS label "
                  "FROM catalog_departments FINAL WHERE in_catalog = 1 ORDER BY code",
    # The department view's one department: of those whose cases the viewer's datasource user may
    # read (the row policies on `cases`), so that a head's view opens on their own department. Its
    # options were the whole catalog, the first by code chosen: a head's view opened on another
    # department and showed 红牌 0 / 黄牌 0, a false all-clear (found by a black-box test).
    "own_department": "SELECT code AS value, concat(name, '（', code, '）') AS label "
                      "FROM catalog_departments FINAL WHERE in_catalog = 1 "
                      "AND code IN (SELECT DISTINCT department FROM cases) ORDER BY code",
    # A region by its name where the rulebook gives one (滨湖区（320211）), else by its code.
    "region": "SELECT code AS value, if(title = code, code, concat(title, '（', code, '）')) AS label "
              "FROM catalog_codes FINAL WHERE kind = 'region' AND in_catalog = 1 ORDER BY code",
    "rule": "SELECT code AS value, title AS label FROM catalog_codes FINAL "
            "WHERE kind = 'rule' AND in_catalog = 1 ORDER BY code",
    "severity": "SELECT code AS value, title AS label FROM catalog_codes FINAL "
                "WHERE kind = 'severity' AND in_catalog = 1 ORDER BY code",
}
