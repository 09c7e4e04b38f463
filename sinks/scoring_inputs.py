"""The store's side of the monthly scoring: the month's facts read from ClickHouse, and the
scores written back (table ``scores``, migration 0007).

What is counted (see docs/scoring.md):

* cases of the month: cases whose acceptance (``cases.accepted_at``) falls in the local month, and
  cases never registered as accepted whose first step (no rating nor withdrawal) falls in it;
* of those, the cases with a standing (not withdrawn) yellow or red alert;
* tickets opened in the month, each as it stands now (latest version; settling ones are no one's yet);
  a ticket opened again by hand in a later month is a new round there, and its earlier round stays
  in its own month as that round ended;
* ``rated`` events of cases (not of a record only rated or withdrawn) that occurred in the month, each case's in order (its first rating counts:
  一事一评), each marked when its case was rated in an earlier month (then none of them counts);
* per department, the events that occurred in the month on the ``import`` channel or on none
  stated (pushed, for a self-built department, as the backfill rule reads it), and their last
  ``recorded_at`` (when the self-built system pushed them, not when Sunlight stored them);
* dead letters of the data a department pushed: letters of the case-events topic (the
  ``case_events_topic`` passed in, ``Settings.case_events_topic``) whose payload is an event on the
  ``import`` channel, on none, or on one the contract does not know (`NOT_PUSHED`), naming a
  department, that occurred in the month (a time without an offset read at local time; a payload
  without a readable ``occurred_at`` counts in the month Sunlight received it), redriven, closed or
  not: the data was not to the standard when it was pushed. Other letters (a refused ticket action,
  an online or window event) are not about pushed data. The query reads only letters received since the
  month began (``received_at``: a push cannot be refused before it happened), filtered by topic
  and channel in ClickHouse; only those payloads are parsed here. A letter's push time is its
  event's ``recorded_at``, as a push's is (else when Sunlight received it): a push refused whole
  after the push day is late as well as not to the standard.

Scoring is the office's work over the whole city: these queries are unscoped
(``Scope.everything()``); the rows written are scoped by department and region.
"""

from __future__ import annotations

import hashlib
from datetime import datetime, timezone
from typing import Any
from zoneinfo import ZoneInfo

import orjson

from alerts.events import EARLIEST_TIME, LATEST_TIME, RATINGS
from alerts.letters import SUNLIGHTS_OWN
from alerts.scoring import (CaseFact, EnteredFact, LetterFact, MonthFacts, MonthScores, PushFact, RatingFact,
                            TicketFact, month_bounds)
from sinks.rows import TICKET_ROUND
from sinks.scope import Scope, ScopedQuery


def _utc(value: datetime) -> datetime:
    return value.replace(tzinfo=timezone.utc) if value.tzinfo is None else value.astimezone(timezone.utc)


def month_facts(client, month: str, tz: ZoneInfo, scope: Scope = Scope.everything(), *,
                case_events_topic: str = "case-events") -> MonthFacts:
    """Everything the store holds that the month's scores are computed from. `case_events_topic`
    is the topic whose dead letters are pushed data (``Settings.case_events_topic``; its default)."""
    start, end = (t.astimezone(timezone.utc) for t in month_bounds(month, tz))
    window = {"start": start.replace(tzinfo=None), "end": end.replace(tzinfo=None)}

    # A case counts in the month it was accepted; one never registered as accepted (its acceptance
    # missing from the source, or a process without one, such as a fine decided at once), in the
    # month its first step happened (a rating or a withdrawal is none: a record only voided was never
    # handled, and would dilute the rate; found by a review). Before, such a case was in no month: a
    # department whose acceptances were missing had no 办件, escaped its 不规范率 and the ranking,
    # while its cases' alerts and tickets counted (found by an independent scorer).
    # An event that handles a case: a rating or a withdrawal is none.
    a_step = "type NOT IN ('rated', 'withdrawn')"
    latest = ("SELECT case_id, argMax(item_code, revision) AS item_code, argMax(department, revision) AS "
              "department, argMax(region, revision) AS region, argMax(accepted_at, revision) AS accepted "
              "FROM cases GROUP BY case_id")
    latest_cases = (f"(SELECT l.case_id AS case_id, l.item_code AS item_code, l.department AS department, "
                    f"l.region AS region, if(l.accepted IS NULL, f.first_at, l.accepted) AS counted_at "
                    f"FROM ({latest}) AS l LEFT JOIN ("
                    f"SELECT case_id, min(occurred_at) AS first_at FROM case_events "
                    f"WHERE {a_step} "
                    # any revision without acceptance: a superset, read only where the latest has none
                    f"AND case_id IN (SELECT case_id FROM cases WHERE accepted_at IS NULL) "
                    f"GROUP BY case_id) AS f ON l.case_id = f.case_id)")
    query = ScopedQuery("case_id, item_code, department, region", latest_cases,
                        where="counted_at >= {start:DateTime64(6, 'UTC')} AND counted_at < {end:DateTime64(6, 'UTC')}",
                        tail="ORDER BY case_id")
    sql, parameters = query.sql(scope)
    cases = tuple(CaseFact(*row) for row in client.query(sql, parameters={**parameters, **window}).result_rows)

    ids = [c.case_id for c in cases]
    irregular: frozenset[str] = frozenset()
    if ids:
        rows = client.query("SELECT DISTINCT case_id FROM alerts FINAL WHERE status != 'withdrawn' "
                            "AND severity IN ('yellow', 'red') AND case_id IN {ids:Array(String)}",
                            parameters={"ids": ids}).result_rows
        irregular = frozenset(r[0] for r in rows)

    query = ScopedQuery(
        "ticket_id, department, region, status", "tickets FINAL",
        # Each round of a ticket (opened again: a new round, `Ticket.round`) is a supervision of the
        # month it opened in, as its round ended or stands.
        where="version > 0 AND (ticket_id, version) IN (SELECT ticket_id, max(version) FROM tickets WHERE version > 0 "
              f"GROUP BY ticket_id, {TICKET_ROUND})"
              " AND opened_at >= {start:DateTime64(6, 'UTC')} AND opened_at < {end:DateTime64(6, 'UTC')}",
        tail="ORDER BY ticket_id")
    sql, parameters = query.sql(scope)
    tickets = tuple(TicketFact(*row) for row in client.query(sql, parameters={**parameters, **window}).result_rows)

    # The ratings of cases: of a record with no step but ratings and withdrawals, which is no case
    # (above), none counts (before, it weighed on its department's 满意率 while it was in no month's
    # 办件; found by an independent scorer). A rating is its case's: under the department and
    # region the case is counted under (its latest row), not those its rating event names or its
    # item had then (a rating system that knows no department filed it under the item's, and an item
    # moved to another department in the catalog left its ratings behind: found by a black-box test).
    rated_cases = ("(SELECT e.event_id AS event_id, c.department AS department, c.region AS region, "
                   "e.attrs AS attrs, e.case_id AS case_id, e.occurred_at AS occurred_at "
                   "FROM case_events AS e FINAL INNER JOIN (SELECT case_id, argMax(department, revision) AS "
                   "department, argMax(region, revision) AS region FROM cases GROUP BY case_id) AS c "
                   "ON e.case_id = c.case_id "
                   "WHERE e.type = 'rated' AND e.occurred_at >= {start:DateTime64(6, 'UTC')} "
                   "AND e.occurred_at < {end:DateTime64(6, 'UTC')})")
    query = ScopedQuery("event_id, department, region, attrs, case_id", rated_cases,
                        where=f"case_id IN (SELECT case_id FROM case_events WHERE {a_step})",
                        tail="ORDER BY case_id, occurred_at, event_id")  # each case's first rating first
    sql, parameters = query.sql(scope)
    rows = client.query(sql, parameters={**parameters, **window}).result_rows
    # Cases rated in an earlier month (一事一评: that rating was the case's one).
    rated = sorted({case_id for *_, case_id in rows if case_id})
    rated_before = {row[0] for row in client.query(
        "SELECT DISTINCT case_id FROM case_events FINAL WHERE type = 'rated' AND case_id IN {ids:Array(String)} "
        "AND occurred_at < {start:DateTime64(6, 'UTC')} "
        "AND JSONExtractString(attrs, 'rating') IN {ratings:Array(String)}",
        parameters={"ids": rated, "start": window["start"], "ratings": sorted(RATINGS)}).result_rows} if rated else set()
    ratings = []
    for event_id, department, region, attrs, case_id in rows:
        rating = (orjson.loads(attrs) if attrs else {}).get("rating")
        # Not a rating (absent, null): kept as "", which the scoring does not count.
        ratings.append(RatingFact(event_id, department, region, rating if isinstance(rating, str) else "", case_id,
                                  case_id in rated_before))

    # Pushed: channel `import`, or none stated (a self-built department's system, as the backfill
    # rule reads it: alerts.detectors.CaseView.pushed); only self-built departments' are scored. Not
    # a rating: the applicant's, not the department's handling (one registered after the push day
    # made a push on time late: found by an independent scorer).
    # Entered (填报): registered online or at a window, with the first registration. Both in one read.
    pushed_channel, entered_channel = "channel IN ('import', '')", "channel IN ('online', 'window')"
    query = ScopedQuery(f"department, countIf({pushed_channel}), maxIf(recorded_at, {pushed_channel}), "
                        f"countIf({entered_channel}), minIf(recorded_at, {entered_channel})", "case_events FINAL",
                        where="type != 'rated' "
                              "AND occurred_at >= {start:DateTime64(6, 'UTC')} "
                              "AND occurred_at < {end:DateTime64(6, 'UTC')}",
                        tail="GROUP BY department ORDER BY department")
    sql, parameters = query.sql(scope)
    rows = client.query(sql, parameters={**parameters, **window}).result_rows
    pushes = tuple(PushFact(d, int(n), _utc(last)) for d, n, last, _, _ in rows if n)
    entered = tuple(EnteredFact(d, int(n), _utc(first)) for d, _, _, n, first in rows if n)

    query = ScopedQuery("letter_id, department, region, payload, received_at", "dead_letters FINAL",
                        where="topic = {topic:String} AND department != '' "
                              "AND reason NOT IN {own:Array(String)} "
                              "AND received_at >= {start:DateTime64(6, 'UTC')} "
                              "AND lower(trimBoth(JSONExtractString(payload, 'channel'))) "
                              "NOT IN {not_pushed:Array(String)}",
                        tail="ORDER BY letter_id")
    sql, parameters = query.sql(scope)
    letters = []
    rows = client.query(sql, parameters={**parameters, **window, "topic": case_events_topic,
                                         "own": sorted(SUNLIGHTS_OWN), "not_pushed": list(NOT_PUSHED)}).result_rows
    for letter_id, department, region, payload, received_at in rows:
        event = _event(payload)
        if event is None or _channel(event) in NOT_PUSHED or event.get("type") == "rated":  # no push (above)
            continue
        received = _utc(received_at)
        moment = _moment(event, "occurred_at", tz)
        if moment is None or moment > received:  # no time to read, or one after it came: a year mistyped
            moment = received
        if start <= moment < end:
            letters.append(LetterFact(letter_id, department, region,
                                      _moment(event, "recorded_at", tz) or _utc(received_at)))
    return MonthFacts(month, cases, irregular, tickets, tuple(ratings), pushes, tuple(letters), entered=entered)


def _event(payload: str) -> dict[str, Any] | None:
    try:
        obj = orjson.loads(payload)
    except orjson.JSONDecodeError:
        return None
    return obj if isinstance(obj, dict) else None


# A refused event that states one of these channels (whatever its capitals or spaces: `"Online"`
# is the platform's own registration, misspelt) is an online or window registration, not pushed
# data. Any other (`import`, none, or one the contract does not know: `"Import "` or `"推送"` is
# itself data not to the standard) is the pushing system's (before, only `import` and none
# counted, so a push refused for its misspelt channel escaped the −5: found by a black-box test).
NOT_PUSHED = ("online", "window")


def _channel(event: dict[str, Any]) -> Any:
    channel = event.get("channel")
    return channel.strip().lower() if isinstance(channel, str) else channel


def _moment(event: dict[str, Any], field: str, tz: ZoneInfo) -> datetime | None:
    """An event's time as it states it, in UTC; a time without an offset (refused as `bad_time` for
    that) read at the month's local time, for the month it is about (before, it counted in the month
    the letter was received: an October push refused in November was docked in November; found by a
    black-box test); None when absent, not a time, or not a possible one (outside 1990..2099, as the
    contract's `impossible_time`: .NET's empty date 0001-01-01, which crashed the scoring in UTC:
    found by review), so that the letter counts in the month it was received (as does one stating a
    time after it was received: 2062 for 2026)."""
    try:
        moment = datetime.fromisoformat(event[field])
        moment = (moment if moment.tzinfo else moment.replace(tzinfo=tz)).astimezone(timezone.utc)
    except (KeyError, TypeError, ValueError, OverflowError):
        return None
    return moment if EARLIEST_TIME <= moment < LATEST_TIME else None


def digest(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


SCORE_COLUMNS = ("month", "attachment", "subject", "name", "department", "region", "version", "ranked", "rank",
                 "cases", "total", "part_keys", "part_titles", "part_points", "part_max", "parts", "rulebook",
                 "rulebook_sha256", "inputs_sha256", "computed_at", "catalog_sha256")


def latest_version(client, month: str, attachment: str) -> int:
    rows = client.query("SELECT max(version) FROM scores WHERE month = {m:String} AND attachment = {a:String}",
                        parameters={"m": month, "a": attachment}).result_rows
    return int(rows[0][0] or 0) if rows else 0


def write_scores(client, scores: MonthScores, rulebook_sha256: str, inputs_sha256: str,
                 computed_at: datetime | None = None, catalog_sha256: str = "") -> int:
    """The month's scores as a new version (one more than the month's latest); returns it."""
    version = latest_version(client, scores.month, scores.attachment) + 1
    computed_at = computed_at or datetime.now(timezone.utc)
    rows: list[list[Any]] = []
    for subject in scores.all:
        rows.append([scores.month, scores.attachment, subject.code, subject.name, subject.department,
                     subject.region, version, int(subject.ranked), subject.rank, subject.cases, subject.total,
                     [p.key for p in subject.parts], [p.title for p in subject.parts],
                     [p.points for p in subject.parts], [p.max for p in subject.parts],
                     orjson.dumps(subject.as_json(scores.month)["parts"], default=str).decode(),
                     scores.rulebook, rulebook_sha256, inputs_sha256, computed_at, catalog_sha256])
    if rows:
        client.insert("scores", rows, column_names=list(SCORE_COLUMNS))
    return version


def stored_scores(client, month: str, attachment: str, scope: Scope = Scope.everything(),
                  version: int | None = None) -> list[dict[str, Any]]:
    """The month's scores as stored (the latest version unless one is named), ranked first."""
    version = version or latest_version(client, month, attachment)
    query = ScopedQuery(", ".join(SCORE_COLUMNS), "scores FINAL",
                        where="month = {m:String} AND attachment = {a:String} AND version = {v:UInt32}",
                        tail="ORDER BY ranked DESC, rank, subject")
    sql, parameters = query.sql(scope)
    rows = client.query(sql, parameters={**parameters, "m": month, "a": attachment, "v": version}).result_rows
    out = []
    for row in rows:
        record = dict(zip(SCORE_COLUMNS, row))
        record["parts"] = orjson.loads(record["parts"])
        out.append(record)
    return out
