"""Processors in the snuba sense: a domain object becomes a table row, no I/O."""

from __future__ import annotations

from datetime import datetime
from typing import Any

import orjson
import pyarrow as pa

from alerts.events import CaseEvent
from alerts.letters import DeadLetter
from alerts.model import Alert, AlertStatus
from alerts.state import CaseState

_TS = pa.timestamp("ms", tz="UTC")  # when Sunlight did something
_BT = pa.timestamp("us", tz="UTC")  # business times: to the microsecond, as sources state them
_STR = pa.string()

SCHEMAS: dict[str, pa.Schema] = {
    "case_events": pa.schema([
        ("case_id", _STR), ("event_id", _STR), ("item_code", _STR), ("type", _STR),
        ("occurred_at", _BT), ("recorded_at", _BT), ("node", _STR), ("officer_id", _STR),
        ("department", _STR), ("region", _STR), ("channel", _STR), ("attrs", _STR), ("ingested_at", _TS),
    ]),
    "cases": pa.schema([
        ("case_id", _STR), ("item_code", _STR), ("department", _STR), ("region", _STR), ("status", _STR),
        ("accepted_at", _BT), ("ended_at", _BT), ("deadline", _BT), ("event_count", pa.uint32()),
        ("open_alerts", pa.uint32()), ("revision", pa.uint64()), ("updated_at", _TS), ("judged_at", _BT),
    ]),
    "alerts": pa.schema([
        ("alert_id", _STR), ("rule", _STR), ("severity", _STR), ("case_id", _STR), ("item_code", _STR),
        ("department", _STR), ("region", _STR), ("officer_id", _STR), ("node", _STR), ("raised_at", _TS),
        ("event_time", _BT), ("evidence", _STR), ("status", _STR), ("version", pa.uint64()), ("title", _STR),
        ("withdrawn_reason", _STR),
    ]),
    "dead_letters": pa.schema([
        ("letter_id", _STR), ("reason", _STR), ("detail", _STR), ("topic", _STR), ("partition", pa.int32()),
        ("offset", pa.int64()), ("key", _STR), ("case_id", _STR), ("event_id", _STR), ("department", _STR),
        ("region", _STR), ("payload", _STR), ("payload_encoding", _STR), ("received_at", _TS), ("status", _STR),
        ("redriven_at", _TS), ("version", pa.uint64()),
    ]),
}


def _json(value: Any) -> str:
    return orjson.dumps(value, option=orjson.OPT_SORT_KEYS).decode()


def event_row(event: CaseEvent, department: str, ingested_at: datetime) -> dict[str, Any]:
    return {
        "case_id": event.case_id, "event_id": event.event_id, "item_code": event.item_code,
        "type": event.type.value, "occurred_at": event.occurred_at, "recorded_at": event.recorded_at,
        "node": event.node, "officer_id": event.officer_id, "department": event.department or department,
        "region": event.region or "", "channel": event.channel.value if event.channel else "",
        "attrs": _json(dict(event.attrs)), "ingested_at": ingested_at,
    }


def case_row(state: CaseState, item_code: str, department: str, region: str | None,
             deadline: datetime | None, updated_at: datetime) -> dict[str, Any]:
    accepted = next((e.occurred_at for e in state.events if e.type.value == "accepted"), None)
    ended = next((e.occurred_at for e in state.events if e.type.value in ("closed", "withdrawn")), None)
    open_alerts = sum(1 for a in state.alerts.values() if a.status is not AlertStatus.WITHDRAWN)
    return {
        "case_id": state.case_id, "item_code": item_code, "department": department, "region": region or "",
        "status": state.status, "accepted_at": accepted, "ended_at": ended, "deadline": deadline,
        "event_count": len(state.events), "open_alerts": open_alerts, "revision": state.revision,
        "updated_at": updated_at, "judged_at": state.judged_at,
    }


def alert_row(alert: Alert) -> dict[str, Any]:
    data = alert.to_json()
    return {**data, "raised_at": alert.raised_at, "event_time": alert.event_time,
            "evidence": _json(data["evidence"]), "withdrawn_reason": alert.withdrawn_reason}


def dead_letter_row(letter: DeadLetter, received_at: datetime) -> dict[str, Any]:
    row = letter.to_json()
    del row["error"]
    return {**row, "received_at": received_at, "status": letter.status, "redriven_at": letter.redriven_at,
            "version": letter.version}


def to_arrow(table: str, rows: list[dict[str, Any]]) -> pa.Table:
    return pa.Table.from_pylist(rows, schema=SCHEMAS[table])
