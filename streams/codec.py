"""How a case's state is stored: the table value and its changelog record.

A compact JSON array, trusted when read back: Sunlight wrote it, after validating every
event once on the way in, so decoding builds the events without checking them again.

    [2, case_id, partition, revision, next_due, judged_at, [event rows], {alert_id: alert},
     {event_id: verdict evidence}, {}, {event_id: refusal reason}, [event_id arrived]]

The last two elements are there only when the case has refused events (`CaseState.refused`) or
events taken since its last judgement (`CaseState.arrived`; refused is written, empty, before
them).

The tenth element is always written empty. It held the withdrawals a replay once kept back until
its input was complete ({alert_id: cause}); a replay now judges nothing before then
(`alerts.evaluate.awaiting_judgement`). The slot stays so that a record keeps its layout for a
worker of either version. A record written before that change whose slot is not empty still
reads: its case is due at once (`JUDGE_AT_ONCE`), so the judgement those withdrawals waited for
is made (at the end of a replay, at the next tick live), with the reason any re-judgement gives.

An event row is [event_id, item_code, type, occurred_at, recorded_at, node, officer_id,
department, region, channel, attrs]. Each event and each alert keeps its encoded form once
made (`stored`), so writing a state after a change encodes only what changed and joins the
rest. States written by earlier versions (the JSON object of `CaseState.to_json`) are still
read.
"""

from __future__ import annotations

import sys
from datetime import datetime, timezone
from typing import Any

import orjson

from alerts.evaluate import JUDGE_AT_ONCE
from alerts.events import (ENDING, Channel, CaseEvent, EventType, end_in_force, shared_time, stored_moment,
                           suspended_at_last)
from alerts.model import Alert
from alerts.peers import Decision, PeerGroup
from alerts.retention import settled_since
from alerts.state import CaseState

FORMAT = 2


def exact(data: bytes) -> bytes:
    """orjson's output keeps its whole write buffer (about 4 KiB, whatever the length; orjson 3.12
    on, as measured with 3.13.0); a copy of the right size is what a table holding a million of
    them can afford. Whatever keeps orjson's output for long (a table's value, a list of messages)
    keeps this copy."""
    return bytes(memoryview(data))


_TYPES = {t.value: t for t in EventType}
_CHANNELS = {c.value: c for c in Channel}
_intern = sys.intern


def _iso(moment: datetime | None) -> datetime | str | None:
    """The moment as `isoformat` writes it: by orjson, when its zone allows (`_as_isoformat`)."""
    if moment is None:
        return None
    return moment if _as_isoformat(moment.tzinfo) else moment.isoformat()


def _kept(obj, to_json) -> bytes:
    """The object's encoded form, made once and kept on it (`stored`)."""
    stored = obj.stored
    if stored is None:
        stored = exact(orjson.dumps(to_json(obj)))
        object.__setattr__(obj, "stored", stored)
    return stored


# The fixed-offset zones whose times orjson writes as `isoformat` does, to the character: a whole
# number of minutes (orjson rounds an offset of +08:05:43, a valid input, to +08:06). Equal
# `timezone`s hash alike, so the few offsets a city's events carry are each asked once.
_WRITTEN_AS_ISOFORMAT: dict[Any, bool] = {}


def _as_isoformat(zone) -> bool:
    exact = _WRITTEN_AS_ISOFORMAT.get(zone)
    if exact is None:
        offset = zone.utcoffset(None) if isinstance(zone, timezone) else None
        exact = _WRITTEN_AS_ISOFORMAT[zone] = offset is not None and not offset.seconds % 60 and not offset.microseconds
    return exact


def _event_list(event: CaseEvent) -> list:
    # The type and channel are StrEnums, text themselves: orjson writes their values (`.value`
    # goes through enum's Python property, once per event). The times are written by orjson, in
    # the text `isoformat` gives (a tenth of its cost), when their zone allows (`_as_isoformat`).
    occurred, recorded = event.occurred_at, event.recorded_at
    if not (_as_isoformat(occurred.tzinfo) and _as_isoformat(recorded.tzinfo)):
        occurred, recorded = occurred.isoformat(), recorded.isoformat()
    return [event.event_id, event.item_code, event.type, occurred, recorded, event.node, event.officer_id,
            event.department, event.region, event.channel, dict(event.attrs) if event.attrs else None]


def event_row(event: CaseEvent) -> bytes:
    return _kept(event, _event_list)


def alert_json(alert: Alert) -> bytes:
    return _kept(alert, Alert.to_json)


def encode_state(state: CaseState, partition: int) -> bytes:
    """The stored form of a state (its size is what a changelog record must hold)."""
    fragment = orjson.Fragment
    return exact(orjson.dumps([
        FORMAT, state.case_id, partition, state.revision, _iso(state.next_due), _iso(state.judged_at),
        fragment(b"[" + b",".join([e.stored or event_row(e) for e in state.events]) + b"]"),
        {k: fragment(alert_json(a)) for k, a in state.alerts.items()},
        state.verdicts, {}, *_tail(state),
    ]))


def _tail(state: CaseState) -> tuple:
    """The optional last fields of a stored state: refused (10), arrived (11), left out when empty."""
    if state.arrived:
        return dict(state.refused), list(state.arrived)
    return (state.refused,) if state.refused else ()


def decode_state(data: bytes) -> tuple[CaseState, int]:
    """A stored state and the partition it was stored for."""
    obj = orjson.loads(data)
    if isinstance(obj, dict):  # written by a version before FORMAT 2
        state = CaseState.from_json(obj)
        if obj.get("held_withdrawals"):
            state = state.evolve(next_due=JUDGE_AT_ONCE)
        return state, int(obj.get("partition", 0))
    _, case_id, partition, revision, next_due, judged_at, rows, alerts, verdicts, held = obj[:10]
    events = tuple(_event(case_id, row) for row in rows)
    return CaseState(
        case_id=case_id, events=events, alerts={k: Alert.from_json(a) for k, a in alerts.items()},
        verdicts=verdicts, next_due=JUDGE_AT_ONCE if held else shared_time(next_due) if next_due else None,
        judged_at=shared_time(judged_at) if judged_at else None,
        refused=obj[10] if len(obj) > 10 else {}, arrived=tuple(obj[11]) if len(obj) > 11 else (),
        revision=revision,
    ), partition


def stored_index_entry(data: bytes) -> tuple[int, str | None, datetime | None]:
    """(partition, next_due, settled since) of a stored state, for rebuilding the deadline and
    eviction indexes without building the state (`alerts.retention`); `decode_state`'s answers."""
    obj = orjson.loads(data)
    if isinstance(obj, dict):
        state, partition = decode_state(data)
        return partition, state.next_due.isoformat() if state.next_due else None, settled_since(state)
    partition, next_due, judged_at, rows, held = obj[2], obj[4], obj[5], obj[6], obj[9]
    if held:  # held withdrawals of an earlier version: due at once (see above)
        return partition, JUDGE_AT_ONCE.isoformat(), None
    settled = None
    if (next_due is None and len(obj) <= 10 and judged_at is not None
            and _stored_end(rows) is not None
            and (rows[0][7] is not None or not any(row[7] for row in rows))):  # alerts.retention: departments
        settled = max(datetime.fromisoformat(row[3]) for row in rows)
    return partition, next_due, settled


def stored_case_status(data: bytes | None) -> tuple[int, str] | None:
    """(partition, status) of a stored state, without building the state: the status follows the
    case's event rows (closed or withdrawn ends it; suspended as `alerts.events.suspended_at_last`)."""
    if not data:
        return None
    obj = orjson.loads(data)
    if isinstance(obj, dict):  # an earlier format
        state, partition = decode_state(data)
        return partition, state.status
    rows = obj[6]  # event rows: [event_id, item_code, type, occurred_at, ...]
    end = _stored_end(rows)
    if end is not None:
        return obj[2], rows[end][2]
    return obj[2], "suspended" if suspended_at_last((row[2], row[3]) for row in rows) else "open"


def _stored_end(rows: list[list[Any]]) -> int | None:
    """`alerts.events.end_in_force` of stored event rows (a time parsed only where it matters)."""
    first = next((i for i, row in enumerate(rows) if row[2] in ENDING), None)
    if first is None or not any(row[2] == "returned" or (row[2] == "closed" and rows[first][2] != "closed")
                                for row in rows[first:]):
        return first
    return end_in_force((row[2], datetime.fromisoformat(row[3])) for row in rows)


def _stored(text: str) -> datetime:
    """A time Sunlight wrote, as an event holds it (`alerts.events.stored_moment`)."""
    return stored_moment(datetime.fromisoformat(text))


def _event(case_id: str, row: list[Any]) -> CaseEvent:
    event_id, item_code, kind, occurred, recorded, node, officer, department, region, channel, attrs = row
    attrs = attrs or {}
    deadline = attrs.get("deadline")
    return CaseEvent(
        event_id=event_id, case_id=case_id, item_code=_intern(item_code), type=_TYPES[kind],
        # To the millisecond, as `parse_time` reads them (a state written before it, and the
        # deadline its attrs keep as written: read back to the microsecond, a stated deadline
        # republished every open card of a case read from the table; found by review).
        occurred_at=_stored(occurred), recorded_at=_stored(recorded),
        node=_intern(node) if node else node, officer_id=_intern(officer) if officer else officer,
        department=_intern(department) if department else department, region=_intern(region) if region else region,
        channel=_CHANNELS[channel] if channel else None, attrs=attrs,
        stated_deadline=(_stored(deadline.replace("z", "Z")) if isinstance(deadline, str)
                         else None),
    )


def decision_row(decision: Decision) -> bytes:
    return _kept(decision, Decision.to_json)


def encode_group(group: PeerGroup) -> bytes:
    """A peer group's stored form: the JSON of `PeerGroup.to_json`, its decision rows kept encoded."""
    rows = orjson.Fragment(b"[" + b",".join(decision_row(d) for d in group.decisions) + b"]")
    return exact(orjson.dumps({"key": group.key, "decisions": rows, "trimmed": group.trimmed}))


def decode_group(data: bytes) -> PeerGroup:
    return PeerGroup.from_json(orjson.loads(data))
