"""Case events off the wire, decoded and type-checked in compiled code (msgspec).

`alerts.events.parse_event` is the contract's parser: it checks a decoded JSON object field by
field in Python and explains what is wrong. That costs about twice the fast path's time
(`bench/decode_cost.py`). Nearly every event on the wire is valid, so `wire_event` first decodes the bytes
straight into a typed struct (JSON, field types, string lengths, the event type and channel in
msgspec's C code), then makes the checks a struct cannot (times, attrs, node events) with the
parser's own helpers.

It is a fast path, never a second parser. It returns a `CaseEvent` only for input the contract's
parser would accept and build the same way, and `None` whenever it is in any doubt: then the
caller asks `parse_event`, which accepts the message or gives the reason it is refused. So what
is accepted, what is refused and why, and the event built are the same with or without it
(tests/unit/test_event_wire.py holds the two together). In particular:

- a field that is null, of another type, too long, or (when required) empty fails the struct,
  and so does a field the contract does not name;
- times are read as text and parsed by the same `datetime.fromisoformat`; a time with spaces
  around it or a lower-case "z", which the parser repairs, goes to the parser;
- `attrs` is kept as raw JSON and decoded by orjson, as the parser's caller decodes it (msgspec
  keeps integers beyond 64 bits exact where orjson makes them floats), then checked by the
  parser's own `read_attrs`.
"""

from __future__ import annotations

import sys
from datetime import datetime
from typing import Annotated

import msgspec
import orjson

from alerts.events import (
    CLOCK_SKEW, EARLIEST_TIME, FIELD_LIMITS, LATEST_TIME, NODE_EVENTS, CaseEvent, Channel, EventType, InvalidEvent,
    parse_time, read_attrs, stored_moment,
)

_UNSET = msgspec.UNSET
_Unset = msgspec.UnsetType
_Required = Annotated[str, msgspec.Meta(min_length=1, max_length=FIELD_LIMITS["event_id"])]
_Name = Annotated[str, msgspec.Meta(max_length=FIELD_LIMITS["node"])]
_Region = Annotated[str, msgspec.Meta(max_length=FIELD_LIMITS["region"])]
_TimeText = Annotated[str, msgspec.Meta(max_length=40)]  # the parser refuses longer times
assert len({FIELD_LIMITS[name] for name in ("event_id", "case_id", "item_code", "node", "officer_id",
                                       "department")}) == 1, "one length limit for ids and names"


class WireEvent(msgspec.Struct, forbid_unknown_fields=True):
    """The contract's case event as it travels (case-event.schema.json). A field the contract
    does not name sends the event to the parser, which ignores it: msgspec skips what it does not
    decode with fewer checks than orjson (a number too large for a double passes)."""

    event_id: _Required
    case_id: _Required
    item_code: _Required
    type: EventType
    occurred_at: _TimeText
    recorded_at: _TimeText
    node: _Name | _Unset = _UNSET
    officer_id: _Name | _Unset = _UNSET
    department: _Name | _Unset = _UNSET
    region: _Region | _Unset = _UNSET
    channel: Channel | _Unset = _UNSET
    attrs: msgspec.Raw | _Unset = _UNSET


_decode = msgspec.json.Decoder(WireEvent).decode
_fromisoformat = datetime.fromisoformat
_intern = sys.intern
_FIRST_YEAR, _LAST_YEAR = EARLIEST_TIME.year, LATEST_TIME.year
assert EARLIEST_TIME == datetime(_FIRST_YEAR, 1, 1, tzinfo=EARLIEST_TIME.tzinfo)
assert LATEST_TIME == datetime(_LAST_YEAR, 1, 1, tzinfo=LATEST_TIME.tzinfo)


def _time(text: str) -> datetime | None:
    """`alerts.events.parse_time` for a time that needs no repair, or None."""
    if "z" in text:
        return None
    try:
        parsed = _fromisoformat(text)
    except ValueError:
        return None
    # Surely inside the parser's [1990-01-01, 2100-01-01) UTC, whatever the offset (less than a
    # day); the years at either edge go to the parser.
    if not _FIRST_YEAR < parsed.year < _LAST_YEAR - 1:
        return None
    offset = parsed.utcoffset()
    if offset is None:
        return None
    return stored_moment(parsed, offset)


def _shared(value: str | _Unset) -> str | None:
    return None if value is _UNSET else _intern(value)  # type: ignore[arg-type]


def wire_event(raw: bytes) -> CaseEvent | None:
    """The case event in `raw`, built as `parse_event(orjson.loads(raw))` builds it, or None when
    the contract's parser must look at it (it may still be valid)."""
    try:
        wire = _decode(raw)
    except (msgspec.DecodeError, RecursionError):  # ValidationError too; attrs nested past the stack
        return None
    occurred_at = _time(wire.occurred_at)
    recorded_at = _time(wire.recorded_at)
    if occurred_at is None or recorded_at is None or recorded_at + CLOCK_SKEW < occurred_at:
        return None
    node = _shared(wire.node)
    if not node and wire.type in NODE_EVENTS:
        return None
    attrs: dict = {}
    stated_deadline = None
    if wire.attrs is not _UNSET:
        try:
            value = orjson.loads(memoryview(wire.attrs))  # type: ignore[arg-type]
            if value:  # an empty object needs no checks
                attrs = read_attrs({"attrs": value})
                if "deadline" in attrs:
                    stated_deadline = parse_time(attrs["deadline"], "attrs.deadline")
            elif isinstance(value, dict):
                attrs = value
            else:
                return None
        except (orjson.JSONDecodeError, InvalidEvent):
            return None
    channel = wire.channel
    return CaseEvent(
        event_id=wire.event_id, case_id=wire.case_id, item_code=_intern(wire.item_code), type=wire.type,
        occurred_at=occurred_at, recorded_at=recorded_at, node=node, officer_id=_shared(wire.officer_id),
        department=_shared(wire.department), region=_shared(wire.region),
        channel=None if channel is _UNSET else channel, attrs=attrs,  # type: ignore[arg-type]
        stated_deadline=stated_deadline,
    )
