"""Processors in the snuba sense: a domain object becomes a table row, no I/O."""

from __future__ import annotations

from datetime import datetime
from typing import Any

import orjson
import pyarrow as pa

from alerts.describe import evidence_words
from alerts.events import CaseEvent, EventType, ends_undone
from alerts.letters import DeadLetter
from alerts.model import Alert, AlertStatus
from alerts.retention import settled_since
from alerts.state import CaseState
from alerts.notices import RenderedNotice
from alerts.tickets import Ticket

_TS = pa.timestamp("ms", tz="UTC")  # when Sunlight did something
_BT = pa.timestamp("us", tz="UTC")  # business times: to the microsecond, as sources state them
_STR = pa.string()

SCHEMAS: dict[str, pa.Schema] = {
    "case_events": pa.schema([
        ("case_id", _STR), ("event_id", _STR), ("item_code", _STR), ("type", _STR),
        ("occurred_at", _BT), ("recorded_at", _BT), ("node", _STR), ("officer_id", _STR),
        ("department", _STR), ("region", _STR), ("channel", _STR), ("attrs", _STR), ("ingested_at", _TS),
        ("department_named", pa.uint8()),
    ]),
    "cases": pa.schema([
        ("case_id", _STR), ("item_code", _STR), ("department", _STR), ("region", _STR), ("status", _STR),
        ("accepted_at", _BT), ("ended_at", _BT), ("deadline", _BT), ("event_count", pa.uint32()),
        ("open_alerts", pa.uint32()), ("revision", pa.uint64()), ("updated_at", _TS), ("judged_at", _BT),
        ("settled_since", _BT), ("judged_under", _STR), ("verdicts", _STR),
        ("undone_ends", pa.list_(_BT)), ("reopened_at", pa.list_(_BT)),
    ]),
    "alerts": pa.schema([
        ("alert_id", _STR), ("rule", _STR), ("severity", _STR), ("case_id", _STR), ("item_code", _STR),
        ("department", _STR), ("region", _STR), ("officer_id", _STR), ("node", _STR), ("raised_at", _TS),
        ("event_time", _BT), ("evidence", _STR), ("status", _STR), ("version", pa.uint64()), ("title", _STR),
        ("withdrawn_reason", _STR), ("evidence_text", _STR),
    ]),
    "tickets": pa.schema([
        ("ticket_id", _STR), ("version", pa.uint32()), ("case_id", _STR), ("rule", _STR), ("severity", _STR),
        ("item_code", _STR), ("department", _STR), ("region", _STR), ("status", _STR), ("resolution", _STR),
        ("overdue", pa.uint8()), ("escalation_level", pa.uint8()), ("manual", pa.uint8()), ("opened_at", _BT),
        ("deadline", _BT), ("level_2_at", _BT), ("alert_ids", pa.list_(_STR)), ("evidence", _STR),
        ("changed_at", _BT), ("actor", _STR), ("kind", _STR), ("text", _STR), ("written_at", _TS),
        ("state", _STR),
    ]),
    "notices": pa.schema([
        ("notice_id", _STR), ("ticket_id", _STR), ("step", _STR), ("recipient_role", _STR),
        ("recipient_name", _STR), ("recipient_email", _STR), ("subject", _STR), ("body", _STR),
        ("department", _STR), ("region", _STR), ("due_at", _BT), ("status", _STR), ("attempts", pa.uint32()),
        ("last_error", _STR), ("message_id", _STR), ("version", pa.uint64()), ("updated_at", _TS),
    ]),
    "dead_letters": pa.schema([
        ("letter_id", _STR), ("reason", _STR), ("detail", _STR), ("topic", _STR), ("partition", pa.int32()),
        ("offset", pa.int64()), ("key", _STR), ("case_id", _STR), ("event_id", _STR), ("department", _STR),
        ("region", _STR), ("payload", _STR), ("payload_encoding", _STR), ("received_at", _TS), ("status", _STR),
        ("redriven_at", _TS), ("version", pa.uint64()), ("closed_at", _TS), ("closed_by", _STR),
        ("closed_reason", _STR),
    ]),
}


def _json(value: Any) -> str:
    return orjson.dumps(value, option=orjson.OPT_SORT_KEYS).decode()


def event_row(event: CaseEvent, department: str, ingested_at: datetime) -> dict[str, Any]:
    return {
        "case_id": event.case_id, "event_id": event.event_id, "item_code": event.item_code,
        # StrEnums are text (Arrow takes them as strings) without enum's `.value` property
        "type": event.type, "occurred_at": event.occurred_at, "recorded_at": event.recorded_at,
        "node": event.node, "officer_id": event.officer_id, "department": event.department or department,
        "region": event.region or "", "channel": event.channel or "",
        "attrs": _json(dict(event.attrs)), "ingested_at": ingested_at,
        "department_named": 1 if event.department else 0,  # filed under `department` (its item's) when 0
    }


def case_row(state: CaseState, item_code: str, department: str, region: str | None,
             deadline: datetime | None, updated_at: datetime, judged_under: str = "") -> dict[str, Any]:
    """`judged_under`: the basis the state was judged under (`alerts.evaluate.judging_basis`)."""
    accepted = next((e.occurred_at for e in state.events if e.type is EventType.ACCEPTED), None)
    end = state.ended_by
    ended = end.occurred_at if end is not None else None
    # Closings a return undid since, and the returns: a past day reads the case as closed then
    undone = ends_undone((e.type, e.occurred_at) for e in state.events)
    open_alerts = sum(1 for a in state.alerts.values() if a.status is not AlertStatus.WITHDRAWN)
    return {
        "case_id": state.case_id, "item_code": item_code, "department": department, "region": region or "",
        "status": state.status, "accepted_at": accepted, "ended_at": ended, "deadline": deadline,
        "event_count": len(state.events), "open_alerts": open_alerts, "revision": state.revision,
        "updated_at": updated_at, "judged_at": state.judged_at, "settled_since": settled_since(state),
        "judged_under": judged_under, "verdicts": _json(dict(state.verdicts)),
        "undone_ends": [closed for closed, _ in undone], "reopened_at": [returned for _, returned in undone],
    }


def alert_row(alert: Alert) -> dict[str, Any]:
    """An alert version, with its evidence in words for the screens (`evidence_text`)."""
    data = alert.to_json()
    return {**data, "raised_at": alert.raised_at, "event_time": alert.event_time,
            "evidence": _json(data["evidence"]), "withdrawn_reason": alert.withdrawn_reason,
            "evidence_text": _in_words(data["rule"], data["evidence"], data["status"])}


def _in_words(rule: str, evidence: dict, status: str) -> str:
    """The evidence in words for the screens (a withdrawn alert's as when it was raised); empty
    (the panel shows its JSON) for evidence the sentences cannot read, which must not keep the
    alert itself from being written."""
    try:
        return evidence_words(rule, evidence, status)
    except (KeyError, TypeError, ValueError, AttributeError):
        return ""


def dead_letter_row(letter: DeadLetter, received_at: datetime) -> dict[str, Any]:
    row = letter.to_json()
    del row["error"]
    return {**row, "received_at": received_at, "status": letter.status, "redriven_at": letter.redriven_at,
            "version": letter.version, "closed_at": letter.closed_at, "closed_by": letter.closed_by,
            "closed_reason": letter.closed_reason}


def stored_letter(letter: dict[str, Any]) -> DeadLetter:
    """A letter as `sinks.queries.dead_letters` reads it (its times as text, not carried: what is
    judged of it needs none: `alerts.letters.why_not_closed`)."""
    fields = {k: letter[k] for k in DeadLetter.__dataclass_fields__ if k in letter}
    return DeadLetter(**{**fields, "redriven_at": None, "closed_at": None})


# A ticket row's round, in ClickHouse: its stored state names it from round 2 on
# (`streams.ticket_codec`), and the column `round` keeps it (migration 0017, computed from the state
# as the row is written). The 督办完成率 counts rounds, in `sunlight score` and on the wall screen.
TICKET_ROUND = "round"


def ticket_row(ticket: Ticket, written_at: datetime, state: str) -> dict[str, Any]:
    """A ticket version: the ticket as it stood after its latest change (`ticket.last`), with its
    stored form (`state`, JSON). A ticket still settling is version 0 (kept for a restart; no
    one is shown it)."""
    change = ticket.last
    return {
        "ticket_id": ticket.ticket_id, "version": change.version if change else 0, "case_id": ticket.case_id,
        "rule": ticket.rule.value, "severity": ticket.severity.value, "item_code": ticket.item_code,
        "department": ticket.department, "region": ticket.region or "",
        "status": change.status.value if change else ticket.status.value,
        "resolution": ticket.resolution.value if ticket.resolution else "", "overdue": int(ticket.overdue),
        "escalation_level": ticket.escalation_level, "manual": int(ticket.manual), "opened_at": ticket.opened_at,
        "deadline": ticket.deadline, "level_2_at": ticket.level_2_at, "alert_ids": sorted(ticket.alerts),
        "evidence": _json({alert_id: {"status": a.status.value, "node": a.node, "event_time": a.event_time.isoformat(),
                                      "evidence": dict(a.evidence)} for alert_id, a in sorted(ticket.alerts.items())}),
        "changed_at": change.at if change else (ticket.opens_at or written_at), "actor": change.actor if change else "",
        "kind": change.kind if change else "settling", "text": change.text if change else "",
        "written_at": written_at, "state": state,
    }


def notice_row(notice: RenderedNotice, updated_at: datetime, status: str = "recorded", attempts: int = 0,
               last_error: str = "", version: int = 1) -> dict[str, Any]:
    """A notice in the notice log: recorded (version 1) before anything sends it, then held, sent or
    failed (`streams.notices.HELD_VERSION`, `FINISHED_VERSION`)."""
    return {
        "notice_id": notice.notice_id, "ticket_id": notice.ticket_id, "step": notice.step.value,
        "recipient_role": notice.recipient_role, "recipient_name": notice.recipient_name,
        "recipient_email": notice.recipient_email, "subject": notice.subject, "body": notice.body,
        "department": notice.department, "region": notice.region, "due_at": notice.due_at, "status": status,
        "attempts": attempts, "last_error": last_error, "message_id": notice.message_id, "version": version,
        "updated_at": updated_at,
    }


def to_arrow(table: str, rows: list[dict[str, Any]]) -> pa.Table:
    return pa.Table.from_pylist(rows, schema=SCHEMAS[table])
