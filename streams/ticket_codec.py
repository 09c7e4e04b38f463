"""The stored form of a case's tickets (the tickets table's values and its changelog records).

JSON objects, encoded with orjson by the caller (`streams.tickets.CaseTickets`); times as RFC 3339
strings. A case's tickets are one record (a case has a handful of rules at most), keyed by case
so that the table is co-partitioned with the alerts.
"""

from __future__ import annotations

import orjson

from datetime import datetime, timedelta
from typing import Any

from alerts.model import AlertStatus, Rule, Severity
from alerts.tickets import BundledAlert, Change, Ladder, Resolution, Ticket, TicketStatus


def _time(value: datetime | None) -> str | None:
    return value.isoformat() if value is not None else None


def _parse(value: str | None) -> datetime | None:
    return datetime.fromisoformat(value) if value is not None else None


def ticket_to_json(ticket: Ticket) -> dict[str, Any]:
    last = ticket.last
    return {
        "ticket_id": ticket.ticket_id, "case_id": ticket.case_id, "rule": ticket.rule.value,
        "severity": ticket.severity.value, "item_code": ticket.item_code, "department": ticket.department,
        "region": ticket.region, "status": ticket.status.value, "version": ticket.version,
        "ladder": [ticket.ladder.settle.total_seconds(), ticket.ladder.reply_days, ticket.ladder.level_2_days],
        "opens_at": _time(ticket.opens_at), "opened_at": _time(ticket.opened_at), "deadline": _time(ticket.deadline),
        "level_2_at": _time(ticket.level_2_at), "overdue": ticket.overdue, "escalation_level": ticket.escalation_level,
        "resolution": ticket.resolution.value if ticket.resolution else None, "manual": ticket.manual,
        "silenced_by": ticket.silenced_by, "actions": sorted(ticket.actions),
        "alerts": [[a.alert_id, a.status.value, a.node, a.event_time.isoformat(), dict(a.evidence), a.version,
                    *([a.seen_at.isoformat()] if a.seen_at is not None else [])]
                   for a in ticket.alerts.values()],
        "last": None if last is None else [last.version, last.at.isoformat(), last.actor, last.kind, last.text,
                                           last.status.value],
        **({"round": ticket.round} if ticket.round > 1 else {}),
        **({"quiet": True} if ticket.quiet else {}),
        **({"level_1_held": True} if ticket.level_1_held else {}),
        **({"level_2_held": True} if ticket.level_2_held else {}),
        **({"held_until": _time(ticket.held_until)} if ticket.held_until else {}),
        **({"held_by": ticket.held_by} if ticket.held_by else {}),
        **({"level_2_on_return": _time(ticket.level_2_on_return)} if ticket.level_2_on_return else {}),
        **({"pending": sorted(ticket.pending)} if ticket.pending else {}),
        **({"pending_quiet": True} if ticket.pending_quiet else {}),
    }


def ticket_from_json(obj: dict[str, Any]) -> Ticket:
    settle, reply_days, level_2_days = obj["ladder"]
    last = obj.get("last")
    return Ticket(
        ticket_id=obj["ticket_id"], case_id=obj["case_id"], rule=Rule(obj["rule"]), severity=Severity(obj["severity"]),
        item_code=obj["item_code"], department=obj["department"], region=obj.get("region"),
        alerts={a[0]: BundledAlert(a[0], AlertStatus(a[1]), a[2], datetime.fromisoformat(a[3]), a[4], a[5],
                                   datetime.fromisoformat(a[6]) if len(a) > 6 else None)
                for a in obj["alerts"]},
        status=TicketStatus(obj["status"]), version=obj["version"],
        ladder=Ladder(timedelta(seconds=settle), reply_days, level_2_days),
        opens_at=_parse(obj.get("opens_at")), opened_at=_parse(obj.get("opened_at")),
        deadline=_parse(obj.get("deadline")), level_2_at=_parse(obj.get("level_2_at")),
        overdue=obj["overdue"], escalation_level=obj["escalation_level"],
        resolution=Resolution(obj["resolution"]) if obj.get("resolution") else None, manual=obj["manual"],
        silenced_by=obj.get("silenced_by"), actions=frozenset(obj.get("actions") or ()),
        last=None if last is None else Change(last[0], datetime.fromisoformat(last[1]), last[2], last[3], last[4],
                                              TicketStatus(last[5])),
        round=int(obj.get("round", 1)),
        quiet=bool(obj.get("quiet", False)),
        level_1_held=bool(obj.get("level_1_held", False)),
        level_2_held=bool(obj.get("level_2_held", False)),
        held_until=_parse(obj.get("held_until")),
        held_by=obj.get("held_by"),
        level_2_on_return=_parse(obj.get("level_2_on_return")),
        pending=frozenset(obj.get("pending") or ()),
        pending_quiet=bool(obj.get("pending_quiet", False)),
    )


def tickets_to_json(tickets: dict[str, Ticket]) -> dict[str, Any]:
    """A case's tickets, by rule."""
    return {rule: ticket_to_json(t) for rule, t in tickets.items()}


def tickets_from_json(obj: dict[str, Any]) -> dict[str, Ticket]:
    return {rule: ticket_from_json(t) for rule, t in obj.items()}


def stored_ticket_statuses(data: bytes | None) -> tuple[str, ...]:
    """The statuses of a case's stored tickets (`CaseTickets` as the ticket table keeps it),
    without building them."""
    if not data:
        return ()
    return tuple(ticket["status"] for ticket in orjson.loads(data)["tickets"].values())
