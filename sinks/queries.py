"""Read queries against the store: alerts, dead letters, one case's file, the demo's summaries.

Every query takes a `Scope` (required, no default): what it returns is limited to
the scope's departments and regions by `sinks.scope.ScopedQuery`, the one place
where the scope's condition is added to the SQL.
"""

from __future__ import annotations

from datetime import datetime, timezone
from typing import Any, Iterable, Iterator
from zoneinfo import ZoneInfo

import orjson

from alerts.events import READ_BY_NO_RULE
from alerts.letters import HOLDS_ITS_CASE, stored_refusal
from alerts.state import cautious
from alerts.tickets import notice_round
from sinks.scope import Scope, ScopedQuery
from sinks.rows import TICKET_ROUND

ALERT_COLUMNS = ("alert_id", "rule", "severity", "case_id", "item_code", "department", "region",
                 "officer_id", "node", "raised_at", "event_time", "evidence", "status", "version", "title",
                 "withdrawn_reason")


_OF_CASES = "case_id IN {case_ids:Array(String)}"


def _of_cases(case_ids: list[str] | None) -> dict[str, Any]:
    return {"case_ids": list(case_ids)} if case_ids is not None else {}


def _time(value: datetime, tz: ZoneInfo) -> str:
    if value.tzinfo is None:
        value = value.replace(tzinfo=timezone.utc)
    return value.astimezone(tz).isoformat()


def export_alerts(client, scope: Scope, include_withdrawn: bool = False,
                  tz: ZoneInfo = ZoneInfo("Asia/Shanghai"), case_id: str | None = None,
                  case_ids: list[str] | None = None) -> Iterator[dict[str, Any]]:
    """The latest version of every alert in scope (of one case, with `case_id`, or of some, with
    `case_ids`), in the contract's format (times in local business time)."""
    conditions = [] if include_withdrawn else ["status != 'withdrawn'"]
    if case_id is not None:
        conditions.append("case_id = {case_id:String}")
    if case_ids is not None:
        conditions.append(_OF_CASES)
    query = ScopedQuery(", ".join(ALERT_COLUMNS), "alerts FINAL", where=" AND ".join(conditions),
                        tail="ORDER BY event_time, alert_id")
    parameters = _of_cases(case_ids)
    if case_id is not None:
        parameters["case_id"] = case_id
    for row in query.run(client, scope, parameters):
        yield _alert_record(row, tz)


def _alert_record(row, tz: ZoneInfo) -> dict[str, Any]:
    """A stored alert row in the contract's format (times in local business time)."""
    record = dict(zip(ALERT_COLUMNS, row))
    record["raised_at"] = _time(record["raised_at"], tz)
    record["event_time"] = _time(record["event_time"], tz)
    record["evidence"] = orjson.loads(record["evidence"])
    if record["withdrawn_reason"] is None:
        del record["withdrawn_reason"]
    return record


def alert_page(client, scope: Scope, rule: str = "", severity: str = "", status: str = "open",
               department: str = "", case_contains: str = "", limit: int = 300, offset: int = 0,
               tz: ZoneInfo = ZoneInfo("Asia/Shanghai")) -> tuple[list[dict[str, Any]], int]:
    """The console's alert list: the latest alerts in scope matching the filters (`status`: open,
    withdrawn or all), red ones first then newest first (the alert id breaks ties, so pages do not
    overlap), at most `limit` of them after the first `offset`, and how many match."""
    conditions, parameters = [], {}
    if status == "open":
        conditions.append("status != 'withdrawn'")
    elif status == "withdrawn":
        conditions.append("status = 'withdrawn'")
    for name, value in (("rule", rule), ("severity", severity), ("department", department)):
        if value:
            conditions.append(f"{name} = {{{name}:String}}")
            parameters[name] = value
    if case_contains:
        # Whatever case the person types it in (c0700023 for C0700023: found by a black-box test).
        conditions.append("positionCaseInsensitiveUTF8(case_id, {case_contains:String}) > 0")
        parameters["case_contains"] = case_contains
    where = " AND ".join(conditions)
    sql, scoped = ScopedQuery("count()", "alerts FINAL", where=where).sql(scope)
    total = int(client.query(sql, parameters={**scoped, **parameters}).result_rows[0][0])
    sql, scoped = ScopedQuery(", ".join(ALERT_COLUMNS), "alerts FINAL", where=where,
                              tail="ORDER BY severity != 'red', event_time DESC, alert_id "
                                   "LIMIT {limit:UInt32} OFFSET {offset:UInt64}").sql(scope)
    rows = [_alert_record(row, tz) for row in client.query(
        sql, parameters={**scoped, **parameters, "limit": limit, "offset": offset}).result_rows]
    return rows, total


def alerts_by_rule_and_department(client, scope: Scope) -> list[tuple[str, str, int]]:
    query = ScopedQuery("rule, department, count()", "alerts FINAL", where="status != 'withdrawn'",
                        tail="GROUP BY rule, department ORDER BY rule, department")
    return [tuple(r) for r in query.run(client, scope)]


EVENT_COLUMNS = ("event_id", "case_id", "item_code", "type", "occurred_at", "recorded_at", "node", "officer_id",
                 "department", "region", "channel", "attrs", "department_named")


def stored_events(client, scope: Scope, case_ids: list[str] | None = None,
                  types: tuple[str, ...] | None = None) -> Iterator[dict[str, Any]]:
    """Every stored case event in scope (of some cases, with `case_ids`; of some event types, with
    `types`), in the contract's JSON form (times in UTC), in event-time order."""
    conditions = [_OF_CASES] if case_ids is not None else []
    parameters = _of_cases(case_ids)
    if types is not None:
        conditions.append("type IN {types:Array(String)}")
        parameters["types"] = list(types)
    query = ScopedQuery(", ".join(EVENT_COLUMNS), "case_events FINAL", where=" AND ".join(conditions),
                        tail="ORDER BY occurred_at, recorded_at, event_id")
    for row in query.run(client, scope, parameters):
        yield _event_json(dict(zip(EVENT_COLUMNS, row)))


def _event_json(record: dict[str, Any]) -> dict[str, Any]:
    utc = ZoneInfo("UTC")
    event = {k: record[k] for k in ("event_id", "case_id", "item_code", "type")}
    event["occurred_at"] = _time(record["occurred_at"], utc)
    event["recorded_at"] = _time(record["recorded_at"], utc)
    for name in ("node", "officer_id", "department", "region", "channel"):
        if record[name]:
            event[name] = record[name]
    if record["department_named"] == 0:  # filed under its item's department: it named none
        event.pop("department", None)
    attrs = orjson.loads(record["attrs"]) if record["attrs"] else {}
    if attrs:
        event["attrs"] = attrs
    return event


def stored_case_count(client) -> int:
    """How many cases the store holds events of."""
    return int(client.command("SELECT uniqExact(case_id) FROM case_events") or 0)


def cases_with_events(client, case_ids: list[str] | None = None) -> set[str]:
    """Which of `case_ids` (of every case, without) the store holds events of. Without FINAL:
    whether a case has rows does not depend on which version of them counts, and most cases
    asked of a live worker are new, for which this is all there is to read."""
    query = ScopedQuery("DISTINCT case_id", "case_events", where=_OF_CASES if case_ids is not None else "")
    return {row[0] for row in query.run(client, Scope.everything(), _of_cases(case_ids))}


def settled_cases(client, basis: str) -> list[str]:
    """The stored cases whose latest state had settled (`cases.settled_since`) under the judging
    `basis` in force (`cases.judged_under`: judged against the same items, calendar, thresholds and rules), when the
    store holds that state whole: as many events as the state counted, and no row of the case
    refused or dead-lettered. The pipeline's own state, not a user's view. A case row is written after the
    other rows of its batch (`sinks.writer.in_write_order`), so a settled row stands for them.
    The latest row: by revision, then by when it was written (a row written again keeps its
    revision, and replaces the one before as `FINAL` would); `argMax` over a tuple, since over a
    Nullable value it would skip the NULL of a newer row."""
    sql = """
        SELECT c.case_id FROM (
            SELECT case_id, argMax(tuple(settled_since, event_count, judged_under), (revision, updated_at))
                       AS latest, latest.1 AS settled, latest.2 AS counted, latest.3 AS basis
            FROM cases GROUP BY case_id
        ) AS c
        INNER JOIN (
            SELECT case_id, uniqExact(event_id) AS held FROM case_events GROUP BY case_id
        ) AS e ON c.case_id = e.case_id
        WHERE c.settled IS NOT NULL AND c.counted = e.held AND c.basis = {basis:String}
          AND c.case_id NOT IN (SELECT arrayJoin([ifNull(case_id, ''), ifNull(key, '')]) FROM dead_letters)
    """
    return [row[0] for row in client.query(sql, parameters={"basis": basis}).result_rows]


def cases_judged_otherwise(client, basis: str, item_codes: list[str]) -> list[str]:
    """The stored cases of these items whose latest state was judged under another `basis` than the
    one in force (`cases.judged_under`, `alerts.evaluate.judging_basis`): a catalog changed since, by
    a reload the cases did not meet (let go of the tables then) or while the workers were stopped.
    Only the catalog's items: a case whose item left it is no longer judged, so its row never
    changes basis, and it would be asked for at every start (found by a review).

    Asked at every assignment on a Kafka cluster, so sized for a province: first whether any row
    of a catalog item was judged under another basis at all (a scan of two low-cardinality
    columns), then the latest row of each case by `FINAL` (the table is a ReplacingMergeTree by
    revision, ordered by case id: the latest revision, a row written again replacing the one
    before, as `settled_cases` reads it), merged in key order rather than every case id grouped
    in memory (`bench/stale_catalog_query.py`: at 2M cases, 0.01 s when every case is judged
    under the catalog in force, 0.21 s when all were judged again after a change, 0.52 and 0.91 s
    before)."""
    parameters = {"basis": basis, "items": item_codes}
    any_stale = """
        SELECT 1 FROM cases WHERE judged_under != {basis:String} AND item_code IN {items:Array(String)} LIMIT 1
    """
    if not client.query(any_stale, parameters=parameters).result_rows:
        return []
    sql = """
        SELECT case_id FROM cases FINAL
        WHERE judged_under != {basis:String} AND item_code IN {items:Array(String)}
        ORDER BY case_id
    """
    return [row[0] for row in client.query(sql, parameters=parameters).result_rows]


def stored_case_clocks(client, scope: Scope, case_ids: list[str] | None = None
                       ) -> dict[str, tuple[int, datetime | None, dict | None]]:
    """The latest stored revision of each case's state in scope (of some cases, with `case_ids`),
    the clock it was judged at, and the peer verdicts it held (None for a row written before
    migration 0013 kept them)."""
    query = ScopedQuery("case_id, max(revision), argMax(judged_at, revision), argMax(verdicts, revision)", "cases",
                        where=_OF_CASES if case_ids is not None else "", tail="GROUP BY case_id")
    out = {}
    for case_id, revision, judged_at, verdicts in query.run(client, scope, _of_cases(case_ids)):
        if judged_at is not None and judged_at.tzinfo is None:
            judged_at = judged_at.replace(tzinfo=timezone.utc)
        out[case_id] = (int(revision), judged_at, orjson.loads(verdicts) if verdicts else None)
    return out


# An open letter of a refused event that holds its case back (`alerts.letters.HOLDS_ITS_CASE`).
_HOLDING = ("status = 'open' AND reason IN {holding:Array(String)} AND case_id IS NOT NULL "
            "AND event_id IS NOT NULL")


def refused_case_events(client, case_ids: list[str] | None = None,
                        as_kept: bool = False) -> dict[str, dict[str, str]]:
    """The events each case waits for (of some cases, with `case_ids`): its open dead letters
    whose refusal holds it back (`alerts.letters.HOLDS_ITS_CASE`), event_id -> reason; with
    `as_kept`, as the case's state keeps it (`alerts.state.refusal`: with the type and the time its
    payload names), for a state restored from the store."""
    conditions = [_HOLDING]
    parameters: dict[str, Any] = {"holding": sorted(HOLDS_ITS_CASE), **_of_cases(case_ids)}
    if case_ids is not None:
        conditions.append(_OF_CASES)
    # The type and the time read from the payload here, by the very functions the pipeline read them
    # with when it refused the event (`alerts.letters.stored_refusal`): SQL's
    # JSON functions read no base64 (GBK), and took the first of two keys of one name, not the last.
    columns = "case_id, event_id, reason" + (", payload, payload_encoding" if as_kept else ", '', ''")
    query = ScopedQuery(columns, "dead_letters FINAL", where=" AND ".join(conditions),
                        tail="ORDER BY received_at, letter_id")
    out: dict[str, dict[str, str]] = {}
    for case_id, event_id, reason, payload, encoding in query.run(client, Scope.everything(), parameters):
        waits = out.setdefault(case_id, {})
        kept = stored_refusal(reason, payload, encoding) if as_kept else reason
        if event_id not in waits:
            waits[event_id] = kept
        elif as_kept:  # refused more than once: the record that holds more back
            waits[event_id] = cautious(waits[event_id], kept)
    return out


LETTER_COLUMNS = ("letter_id", "reason", "detail", "topic", "partition", "offset", "key", "case_id", "event_id",
                  "department", "region", "payload", "payload_encoding", "received_at", "status", "redriven_at",
                  "version", "closed_at", "closed_by", "closed_reason")


def dead_letters(client, scope: Scope, reason: str | None = None, include_done: bool = False,
                 letter_ids: list[str] | None = None, tz: ZoneInfo = ZoneInfo("Asia/Shanghai"),
                 payload_containing: str | None = None, topics: tuple[str, ...] | list[str] | None = None,
                 limit: int | None = None, case_id: str | None = None) -> Iterator[dict[str, Any]]:
    """The latest version of every open dead letter in scope (with `include_done`: also those
    redriven or closed), oldest first (with `payload_containing`:
    those whose payload holds that text; with `topics`: refused on those topics; with `case_id`:
    those naming that case; at most `limit`).
    A letter that names no department is seen only by an unrestricted scope (operators)."""
    conditions = []
    parameters: dict[str, Any] = {}
    if not include_done:
        conditions.append("status = 'open'")
    if reason:
        conditions.append("reason = {reason:String}")
        parameters["reason"] = reason
    if letter_ids is not None:
        conditions.append("letter_id IN {letter_ids:Array(String)}")
        parameters["letter_ids"] = list(letter_ids)
    if case_id is not None:
        conditions.append("case_id = {case_id:String}")
        parameters["case_id"] = case_id
    if payload_containing is not None:
        conditions.append("position(payload, {containing:String}) > 0")
        parameters["containing"] = payload_containing
    if topics is not None:
        conditions.insert(0, "topic IN {topics:Array(String)}")
        parameters["topics"] = list(topics)
    tail = "ORDER BY received_at, letter_id"
    if limit is not None:
        tail += " LIMIT {limit:UInt32}"
        parameters["limit"] = int(limit)
    query = ScopedQuery(", ".join(LETTER_COLUMNS), "dead_letters FINAL", where=" AND ".join(conditions), tail=tail)
    sql, scope_parameters = query.sql(scope)
    for row in client.query(sql, parameters={**parameters, **scope_parameters}).result_rows:
        record = dict(zip(LETTER_COLUMNS, row))
        record["received_at"] = _time(record["received_at"], tz)
        for moment in ("redriven_at", "closed_at"):
            if record[moment] is not None:
                record[moment] = _time(record[moment], tz)
        yield record


# Not a rating's letter: no rule reads one, so it holds no judgement back (`READ_BY_NO_RULE`; one
# kept as base64, GBK, is read by no SQL). The dashboards' 暂缓评判 panels use it too.
NOT_A_RATING = ("JSONExtractString(payload, 'type') NOT IN ("
                + ", ".join(f"'{t.value}'" for t in sorted(READ_BY_NO_RULE)) + ")")


REFUSED_EVENT_COLUMNS = ("letter_id", "reason", "detail", "case_id", "event_id", "department", "received_at")


def refused_events_page(client, scope: Scope, limit: int, offset: int = 0,
                        tz: ZoneInfo = ZoneInfo("Asia/Shanghai")) -> tuple[list[dict[str, Any]], int]:
    """The console's list of refused events in scope that hold their case back until corrected: the
    open letters of a reason that holds (`HOLDS_ITS_CASE`) whose event the case has not received
    since (corrected and pushed again under its id: as the dashboards' 暂缓评判的办件 reads them),
    newest first, `limit` from `offset`; and how many there are. A conflicting copy, a case too
    large, Sunlight's own failures and refused ticket actions hold no case: not listed."""
    where = (f"{_HOLDING} AND {NOT_A_RATING} AND (case_id, event_id) NOT IN (SELECT case_id, event_id FROM "
             f"case_events WHERE case_id IN (SELECT case_id FROM dead_letters FINAL WHERE {_HOLDING}))")
    parameters: dict[str, Any] = {"holding": sorted(HOLDS_ITS_CASE)}
    (total,), = ScopedQuery("count()", "dead_letters FINAL", where=where).run(client, scope, parameters)
    rows = ScopedQuery(", ".join(REFUSED_EVENT_COLUMNS), "dead_letters FINAL", where=where,
                       tail="ORDER BY received_at DESC, letter_id LIMIT {limit:UInt32} OFFSET {offset:UInt64}"
                       ).run(client, scope, {**parameters, "limit": limit, "offset": offset})
    found = []
    for row in rows:
        record = dict(zip(REFUSED_EVENT_COLUMNS, row))
        record["received_at"] = _time(record["received_at"], tz)
        found.append(record)
    return found, int(total)


def case_events_of(client, scope: Scope, case_id: str) -> list[dict[str, Any]]:
    """One case's stored events in scope, in the contract's JSON form (times in UTC)."""
    query = ScopedQuery(", ".join(EVENT_COLUMNS), "case_events FINAL", where="case_id = {case_id:String}",
                        tail="ORDER BY occurred_at, recorded_at, event_id")
    sql, parameters = query.sql(scope)
    rows = client.query(sql, parameters={**parameters, "case_id": case_id}).result_rows
    return [_event_json(dict(zip(EVENT_COLUMNS, row))) for row in rows]


def alerts_of_case(client, scope: Scope, case_id: str, tz: ZoneInfo = ZoneInfo("Asia/Shanghai")
                   ) -> list[dict[str, Any]]:
    """Every alert of one case in scope (withdrawn ones too), latest versions, by event time."""
    return [a for a in export_alerts(client, scope, include_withdrawn=True, tz=tz, case_id=case_id)]


def stored_event_keys(client, keys: list[tuple[str, str]]) -> set[tuple[str, str]]:
    """Which (case_id, event_id) of `keys` the store holds (the pipeline's own check, unscoped)."""
    if not keys:
        return set()
    rows = client.query("SELECT DISTINCT case_id, event_id FROM case_events WHERE (case_id, event_id) IN "
                        "{keys:Array(Tuple(String, String))}", parameters={"keys": keys}).result_rows
    return {(c, e) for c, e in rows}


TICKET_COLUMNS = ("ticket_id", "version", "case_id", "rule", "severity", "item_code", "department", "region",
                  "status", "resolution", "overdue", "escalation_level", "manual", "opened_at", "deadline",
                  "level_2_at", "alert_ids", "evidence", "changed_at", "actor", "kind", "text")


def _ticket_record(row, tz: ZoneInfo) -> dict[str, Any]:
    record = dict(zip(TICKET_COLUMNS, row))
    for key in ("opened_at", "deadline", "level_2_at", "changed_at"):
        if record[key] is not None:
            record[key] = _time(record[key], tz)
    record["evidence"] = orjson.loads(record["evidence"])
    record["overdue"] = bool(record["overdue"])
    record["manual"] = bool(record["manual"])
    record["alert_ids"] = list(record["alert_ids"])
    return record


def _latest_of(tickets: list[str]) -> str:
    """A ticket as it stands: its latest version; of the tickets that `tickets` (conditions true of
    every version of a ticket, or of none: its id, its case) pick, found among their rows alone (one
    case's tickets had been found by the latest version of every ticket ever stored: about 100 ms at
    10M events, for one case's page)."""
    where = f"WHERE {' AND '.join(tickets)} " if tickets else ""
    return f"(ticket_id, version) IN (SELECT ticket_id, max(version) FROM tickets {where}GROUP BY ticket_id)"


# A ticket as it stands, once anyone may see it (not while it settles).
_LATEST_VISIBLE = ("version > 0", _latest_of([]))


def stored_tickets(client, scope: Scope, status: str | None = None, ticket_id: str | None = None,
                   tz: ZoneInfo = ZoneInfo("Asia/Shanghai"), case_id: str | None = None,
                   ticket_ids: list[str] | None = None, settling: bool = False) -> list[dict[str, Any]]:
    """The latest version of every ticket in scope that anyone may see (not those still settling,
    unless `settling`: for an alert to say its ticket is on its way; then each also names the cards
    of its coming round, `coming`); of one case with `case_id`, of those named with `ticket_ids`."""
    parameters: dict[str, Any] = {}
    picked = []  # true of every version of a ticket, or of none
    if ticket_id is not None:
        picked.append("ticket_id = {ticket_id:String}")
        parameters["ticket_id"] = ticket_id
    if case_id is not None:
        picked.append("case_id = {case_id:String}")
        parameters["case_id"] = case_id
    if ticket_ids is not None:
        picked.append("ticket_id IN {ticket_ids:Array(String)}")
        parameters["ticket_ids"] = list(ticket_ids)
    conditions = [*picked, _latest_of(picked)] if settling else [*picked, "version > 0", _latest_of(picked)]
    if status is not None:  # of the latest version alone
        conditions.append("status = {status:String}")
        parameters["status"] = status
    columns = ", ".join(TICKET_COLUMNS) + (", pending_alert_ids" if settling else "")
    query = ScopedQuery(columns, "tickets FINAL", where=" AND ".join(conditions), tail="ORDER BY deadline, ticket_id")
    sql, scoped = query.sql(scope)
    rows = client.query(sql, parameters={**scoped, **parameters}).result_rows
    if settling:
        return [{**_ticket_record(row[:-1], tz), "coming": list(row[-1])} for row in rows]
    return [_ticket_record(row, tz) for row in rows]


def ticket_page(client, scope: Scope, status: str = "", overdue: bool = False, limit: int = 300, offset: int = 0,
                tz: ZoneInfo = ZoneInfo("Asia/Shanghai")) -> tuple[list[dict[str, Any]], int]:
    """The console's ticket list: the latest version of the tickets in scope anyone may see, of a
    `status` (all when none), only the overdue with `overdue` (not withdrawn); those waiting for the department
    first (open, returned), then for the inspector (replied), by deadline, then the ended, latest
    deadline first (the ticket id breaks ties, so pages do not overlap); at most `limit` after the first
    `offset`, and how many match (before, every ticket of every year on one page)."""
    conditions = list(_LATEST_VISIBLE)
    parameters: dict[str, Any] = {}
    if status:
        conditions.append("status = {status:String}")
        parameters["status"] = status
    if overdue:  # a withdrawn ticket's card never held: not counted as overdue (`alerts.scoring.COUNTED_TICKETS`)
        conditions.append("overdue AND status != 'withdrawn'")
    where = " AND ".join(conditions)
    sql, scoped = ScopedQuery("count()", "tickets FINAL", where=where).sql(scope)
    total = int(client.query(sql, parameters={**scoped, **parameters}).result_rows[0][0])
    # The ended (closed, withdrawn) latest first: page 1 of 已办结 is this year's, not the oldest.
    order = ("ORDER BY multiIf(status IN ('open', 'returned'), 0, status = 'replied', 1, 2), "
             "if(status IN ('closed', 'withdrawn'), -toUnixTimestamp64Micro(deadline), toUnixTimestamp64Micro(deadline)), "
             "ticket_id LIMIT {limit:UInt32} OFFSET {offset:UInt64}")
    sql, scoped = ScopedQuery(", ".join(TICKET_COLUMNS), "tickets FINAL", where=where, tail=order).sql(scope)
    rows = [_ticket_record(row, tz) for row in client.query(
        sql, parameters={**scoped, **parameters, "limit": limit, "offset": offset}).result_rows]
    return rows, total


def ticket_history(client, scope: Scope, ticket_id: str, tz: ZoneInfo = ZoneInfo("Asia/Shanghai")) -> list[dict]:
    """Every version of a ticket, oldest first, each with its round (a ticket closed or withdrawn
    and opened again starts a new one)."""
    query = ScopedQuery(", ".join((*TICKET_COLUMNS, TICKET_ROUND)), "tickets FINAL",
                        where="ticket_id = {ticket_id:String} AND version > 0", tail="ORDER BY version")
    sql, parameters = query.sql(scope)
    return [{**_ticket_record(row[:-1], tz), "round": int(row[-1])}
            for row in client.query(sql, parameters={**parameters, "ticket_id": ticket_id}).result_rows]


def stored_ticket_states(client, case_ids: list[str] | None = None) -> list[tuple[str, str]]:
    """(case_id, state) of the latest stored form of every ticket, or of these cases' tickets: the
    pipeline's own view, settling tickets included."""
    # FINAL: a settling ticket's version 0 is written again as its bundle changes (the last one holds).
    where = "" if case_ids is None else "WHERE case_id IN {case_ids:Array(String)} "
    return client.query(f"SELECT case_id, argMax(state, version) FROM tickets FINAL {where}GROUP BY ticket_id, case_id",
                        parameters={} if case_ids is None else {"case_ids": list(case_ids)}).result_rows


def ticket_state(client, ticket_id: str) -> dict[str, Any] | None:
    """A ticket's latest stored form (the pipeline's own view: which actions it has applied)."""
    rows = client.query("SELECT argMax(state, version) FROM tickets FINAL WHERE ticket_id = {t:String} "
                        "GROUP BY ticket_id", parameters={"t": ticket_id}).result_rows
    return orjson.loads(rows[0][0]) if rows else None


def whole_case_events(client, scope: Scope, case_id: str, in_scope: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Every stored event of a case whose events in `scope` are `in_scope` (`case_events_of`): the
    whole case, when another department registered some of its events (`alerts.casefile.shown_part`)."""
    return in_scope if scope.unrestricted or not in_scope else case_events_of(client, Scope.everything(), case_id)


def change_of_action(client, ticket_id: str, action_id: str) -> dict[str, str] | None:
    """The change an applied action made to its ticket (`kind`, `actor`, `text`): that of the first
    version whose stored form lists the action among those applied (each version lists every action
    applied until then). None when no version does."""
    rows = client.query("SELECT kind, actor, text FROM tickets FINAL WHERE ticket_id = {t:String} AND version > 0 "
                        "AND has(JSONExtract(state, 'actions', 'Array(String)'), {a:String}) ORDER BY version LIMIT 1",
                        parameters={"t": ticket_id, "a": action_id}).result_rows
    return dict(zip(("kind", "actor", "text"), rows[0])) if rows else None


NOTICE_COLUMNS = ("notice_id", "ticket_id", "step", "recipient_role", "recipient_name", "recipient_email",
                  "subject", "body", "department", "region", "due_at", "status", "attempts", "last_error",
                  "message_id", "version", "updated_at")


def stored_notices(client, scope: Scope, ticket_id: str | None = None,
                   tz: ZoneInfo = ZoneInfo("Asia/Shanghai")) -> list[dict[str, Any]]:
    """The notice log: each notice as it stands (recorded, sent or failed)."""
    if ticket_id:
        return _notices(client, scope, "ticket_id = {ticket_id:String}", {"ticket_id": ticket_id}, tz)
    return _notices(client, scope, "", {}, tz)


def notice_statuses(client, notice_ids: list[str]) -> dict[str, tuple[str, int]]:
    """The status and row version each of these notices has in the notice log (those it holds):
    what the notifier reads back for a notice its table let go once the notice's finished row was
    written (the version says which resend round it stands at)."""
    rows = client.query("SELECT notice_id, status, version FROM notices FINAL WHERE notice_id IN {ids:Array(String)}",
                        parameters={"ids": list(notice_ids)}).result_rows
    return {notice_id: (status, int(version)) for notice_id, status, version in rows}


def cases_of_several_items(client, case_ids: Iterable[str], chunk: int = 10_000) -> dict[str, list[str]]:
    """The cases among `case_ids` whose stored events name more than one item, with those items:
    a case id two sources both use (the contract makes one unique across sources). Each such case
    is judged under one item and waits (`alerts.evaluate.judge_case`), what an import says."""
    ids, out = sorted(set(case_ids)), {}
    for start in range(0, len(ids), chunk):
        out.update((case_id, sorted(items)) for case_id, items in client.query(
            f"SELECT case_id, groupUniqArray(item_code) FROM case_events WHERE {_OF_CASES} "
            "GROUP BY case_id HAVING uniqExact(item_code) > 1",
            parameters={"case_ids": ids[start:start + chunk]}).result_rows)
    return out


def failed_notices(client, ticket_ids: list[str] | None = None) -> list[dict[str, Any]]:
    """The notices whose latest outcome is `failed` (of these tickets, or all), as `stored_notices`
    gives them, each with its row version: what `sunlight notices resend` delivers again."""
    where, parameters = "status = 'failed'", {}
    if ticket_ids:
        where += " AND ticket_id IN {tickets:Array(String)}"
        parameters["tickets"] = list(ticket_ids)
    return _notices(client, Scope.everything(), where, parameters, ZoneInfo("Asia/Shanghai"))


def failed_notices_and_their_tickets(client, ticket_ids: list[str] | None = None
                                     ) -> tuple[list[dict[str, Any]], dict[str, str]]:
    """The notices whose latest outcome is `failed` (`failed_notices`), and the status of each of
    their tickets as it stands now, by ticket id: what a resend, asked or by the clock, decides on.
    Each record also carries `of_round`, the round it was sent in, `ticket_status`, its ticket's
    status now, and `ticket_round`, the round its ticket stands in now (`alerts.notices.no_longer_news`,
    `alerts.notices.resent`)."""
    failed = failed_notices(client, ticket_ids)
    if not failed:
        return [], {}
    ids = sorted({r["ticket_id"] for r in failed})
    # Each ticket's latest visible version (as `stored_tickets` takes it): its status and its round.
    standing = {ticket_id: (status, int(round_)) for ticket_id, status, round_ in client.query(
        f"SELECT ticket_id, status, {TICKET_ROUND} FROM tickets FINAL WHERE ticket_id IN {{tickets:Array(String)}} "
        f"AND version > 0 AND {_latest_of(['ticket_id IN {tickets:Array(String)}'])}",
        parameters={"tickets": ids}).result_rows}
    # Each one's `later_steps`: the ladder's steps its ticket went through after it was due, in its
    # round (step -> when the first notice of that step was due), which its resend tells
    # (`alerts.notices.resent`). Of every round, a notice of the first round resent in the second
    # told the second's escalations as its own, and one of the second missed its own (found by review).
    steps: dict[tuple[str, int], dict[str, datetime]] = {}
    for ticket_id, step, notice_id, due_at in client.query(
            "SELECT ticket_id, step, notice_id, due_at FROM notices FINAL WHERE ticket_id IN {tickets:Array(String)}",
            parameters={"tickets": ids}).result_rows:
        due_at = due_at if due_at.tzinfo else due_at.replace(tzinfo=timezone.utc)
        first = steps.setdefault((ticket_id, notice_round(notice_id)), {})
        if step not in first or due_at < first[step]:
            first[step] = due_at
    for record in failed:
        due = datetime.fromisoformat(record["due_at"])
        record["of_round"] = notice_round(record["notice_id"])
        record["ticket_status"], record["ticket_round"] = standing.get(record["ticket_id"], (None, record["of_round"]))
        of_its_round = steps.get((record["ticket_id"], record["of_round"]), {})
        record["later_steps"] = {step: at for step, at in of_its_round.items() if at > due}
    return failed, {ticket_id: status for ticket_id, (status, _) in standing.items()}


def unfinished_notices(client, finished: tuple[str, ...]) -> list[dict[str, Any]]:
    """The notices recorded and not finished (`finished`: the statuses that finish one), as
    `stored_notices` gives them: what the notifier was to handle when the last process stopped."""
    return _notices(client, Scope.everything(), "status NOT IN {finished:Array(String)}",
                    {"finished": list(finished)}, ZoneInfo("Asia/Shanghai"))


def _notices(client, scope: Scope, where: str, parameters: dict[str, Any], tz: ZoneInfo) -> list[dict[str, Any]]:
    query = ScopedQuery(", ".join(NOTICE_COLUMNS), "notices FINAL", where=where, tail="ORDER BY due_at, notice_id")
    out = []
    for row in query.run(client, scope, parameters):
        record = dict(zip(NOTICE_COLUMNS, row))
        record["due_at"] = _time(record["due_at"], tz)
        record["updated_at"] = _time(record["updated_at"], tz)  # when it was sent, failed or recorded
        out.append(record)
    return out


SILENCE_COLUMNS = ("silence_id", "item_code", "department", "until", "reason", "created_by", "created_at",
                   "expired_at", "version")


def stored_silences(client, tz: ZoneInfo = ZoneInfo("Asia/Shanghai")) -> list[dict[str, Any]]:
    """Every silence, as it stands (an expired one with its `expired_at`). Not scoped: silences are
    the operators' and inspectors' record, of items and departments alike."""
    rows = client.query(f"SELECT {', '.join(SILENCE_COLUMNS)} FROM silences FINAL ORDER BY created_at, silence_id"
                        ).result_rows
    out = []
    for row in rows:
        record = dict(zip(SILENCE_COLUMNS, row))
        for key in ("until", "created_at", "expired_at"):
            if record[key] is not None:
                record[key] = _time(record[key], tz)
        out.append(record)
    return out


def pending_tickets(client, scope: Scope) -> list[tuple[str, int, int, int]]:
    """Pending work (待处置), counted from the tickets, by department: (department, waiting for the
    department's answer (open or returned), replied and waiting for the inspector, of which overdue)."""
    query = ScopedQuery(
        "department, countIf(status IN ('open', 'returned')), countIf(status = 'replied'), "
        "countIf(overdue AND status IN ('open', 'returned'))",
        "tickets FINAL",
        where="version > 0 AND (ticket_id, version) IN (SELECT ticket_id, max(version) FROM tickets GROUP BY ticket_id)"
              " AND status IN ('open', 'returned', 'replied')",
        tail="GROUP BY department ORDER BY department")
    return [tuple(row) for row in query.run(client, scope)]
