"""Read queries against the store: alert export and the demo's summaries.

Every query takes a `Scope` (required, no default): what it returns is limited to
the scope's departments and regions by `sinks.scope.ScopedQuery`, the one place
where the scope's condition is added to the SQL.
"""

from __future__ import annotations

from datetime import datetime, timezone
from typing import Any, Iterator
from zoneinfo import ZoneInfo

import orjson

from sinks.scope import Scope, ScopedQuery

ALERT_COLUMNS = ("alert_id", "rule", "severity", "case_id", "item_code", "department", "region",
                 "officer_id", "node", "raised_at", "event_time", "evidence", "status", "version", "title")


def _time(value: datetime, tz: ZoneInfo) -> str:
    if value.tzinfo is None:
        value = value.replace(tzinfo=timezone.utc)
    return value.astimezone(tz).isoformat()


def export_alerts(client, scope: Scope, include_withdrawn: bool = False,
                  tz: ZoneInfo = ZoneInfo("Asia/Shanghai")) -> Iterator[dict[str, Any]]:
    """The latest version of every alert in scope, in the contract's format (times in local business time)."""
    query = ScopedQuery(", ".join(ALERT_COLUMNS), "alerts FINAL",
                        where="" if include_withdrawn else "status != 'withdrawn'",
                        tail="ORDER BY event_time, alert_id")
    for row in query.run(client, scope):
        record = dict(zip(ALERT_COLUMNS, row))
        record["raised_at"] = _time(record["raised_at"], tz)
        record["event_time"] = _time(record["event_time"], tz)
        record["evidence"] = orjson.loads(record["evidence"])
        yield record


def alerts_by_rule_and_department(client, scope: Scope) -> list[tuple[str, str, int]]:
    query = ScopedQuery("rule, department, count()", "alerts FINAL", where="status != 'withdrawn'",
                        tail="GROUP BY rule, department ORDER BY rule, department")
    return [tuple(r) for r in query.run(client, scope)]


EVENT_COLUMNS = ("event_id", "case_id", "item_code", "type", "occurred_at", "recorded_at", "node", "officer_id",
                 "department", "region", "channel", "attrs")


def stored_events(client, scope: Scope) -> Iterator[dict[str, Any]]:
    """Every stored case event in scope, in the contract's JSON form (times in UTC), in event-time order."""
    query = ScopedQuery(", ".join(EVENT_COLUMNS), "case_events FINAL",
                        tail="ORDER BY occurred_at, recorded_at, event_id")
    utc = ZoneInfo("UTC")
    for row in query.run(client, scope):
        record = dict(zip(EVENT_COLUMNS, row))
        event = {k: record[k] for k in ("event_id", "case_id", "item_code", "type")}
        event["occurred_at"] = _time(record["occurred_at"], utc)
        event["recorded_at"] = _time(record["recorded_at"], utc)
        for name in ("node", "officer_id", "department", "region", "channel"):
            if record[name]:
                event[name] = record[name]
        attrs = orjson.loads(record["attrs"]) if record["attrs"] else {}
        if attrs:
            event["attrs"] = attrs
        yield event


def stored_revisions(client, scope: Scope) -> dict[str, int]:
    """The latest stored revision of each case's state in scope."""
    query = ScopedQuery("case_id, max(revision)", "cases", tail="GROUP BY case_id")
    return {case_id: int(revision) for case_id, revision in query.run(client, scope)}
