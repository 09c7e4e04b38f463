"""Read queries against the store: alert export and the demo's summaries."""

from __future__ import annotations

from datetime import datetime, timezone
from typing import Any, Iterator
from zoneinfo import ZoneInfo

import orjson

ALERT_COLUMNS = ("alert_id", "rule", "severity", "case_id", "item_code", "department", "region",
                 "officer_id", "node", "raised_at", "event_time", "evidence", "status", "version", "title")


def _time(value: datetime, tz: ZoneInfo) -> str:
    if value.tzinfo is None:
        value = value.replace(tzinfo=timezone.utc)
    return value.astimezone(tz).isoformat()


def export_alerts(client, include_withdrawn: bool = False,
                  tz: ZoneInfo = ZoneInfo("Asia/Shanghai")) -> Iterator[dict[str, Any]]:
    """The latest version of every alert, in the contract's format (times in local business time)."""
    where = "" if include_withdrawn else "WHERE status != 'withdrawn'"
    sql = (f"SELECT {', '.join(ALERT_COLUMNS)} FROM alerts FINAL {where} "
           f"ORDER BY event_time, alert_id")
    for row in client.query(sql).result_rows:
        record = dict(zip(ALERT_COLUMNS, row))
        record["raised_at"] = _time(record["raised_at"], tz)
        record["event_time"] = _time(record["event_time"], tz)
        record["evidence"] = orjson.loads(record["evidence"])
        yield record


def alerts_by_rule_and_department(client) -> list[tuple[str, str, int]]:
    sql = ("SELECT rule, department, count() FROM alerts FINAL WHERE status != 'withdrawn' "
           "GROUP BY rule, department ORDER BY rule, department")
    return [tuple(r) for r in client.query(sql).result_rows]


EVENT_COLUMNS = ("event_id", "case_id", "item_code", "type", "occurred_at", "recorded_at", "node", "officer_id",
                 "department", "region", "channel", "attrs")


def stored_events(client) -> Iterator[dict[str, Any]]:
    """Every stored case event, in the contract's JSON form (times in UTC), in event-time order."""
    sql = f"SELECT {', '.join(EVENT_COLUMNS)} FROM case_events FINAL ORDER BY occurred_at, recorded_at, event_id"
    utc = ZoneInfo("UTC")
    for row in client.query(sql).result_rows:
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


def stored_revisions(client) -> dict[str, int]:
    """The latest stored revision of each case's state."""
    sql = "SELECT case_id, max(revision) FROM cases GROUP BY case_id"
    return {case_id: int(revision) for case_id, revision in client.query(sql).result_rows}
