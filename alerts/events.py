"""Case events (办件过程事件): the domain's view of the contract's input format.

`parse_event` turns one decoded JSON object into a `CaseEvent` or raises
`InvalidEvent` with a reason an operator can act on. The checks mirror
`case-event.schema.json` of the contract (a unit test holds the two together)
and add what a schema cannot say: times must carry a UTC offset, lie in a
plausible range, and an event cannot be registered before it happened.
"""

from __future__ import annotations

import enum
import json
import math
import sys
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone, tzinfo
from typing import Any, Iterable, Mapping, Sequence

import orjson


class EventType(enum.StrEnum):
    ACCEPTED = "accepted"
    NODE_COMPLETED = "node_completed"
    RETURNED = "returned"
    SUSPENDED = "suspended"
    RESUMED = "resumed"
    DECIDED = "decided"
    CLOSED = "closed"
    WITHDRAWN = "withdrawn"
    RATED = "rated"


class Channel(enum.StrEnum):
    ONLINE = "online"
    WINDOW = "window"
    IMPORT = "import"


DECISIONS = frozenset({"approve", "reject", "penalize", "no_penalty"})
RATINGS = frozenset({"satisfied", "basically_satisfied", "dissatisfied"})
NODE_EVENTS = frozenset({EventType.NODE_COMPLETED, EventType.RETURNED})
# The events that cannot move a case's deadline nor end it (its acceptance, suspensions and end
# can): a case that waits only for refused events of these is judged on its deadline.
OFF_THE_DEADLINE = frozenset({EventType.NODE_COMPLETED, EventType.DECIDED, EventType.RATED, EventType.RETURNED})
# The events no rule reads: a case's ratings (好差评) are scored, never judged; one refused, or of
# another item, holds nothing back (`alerts.evaluate.judge_case`).
READ_BY_NO_RULE = frozenset({EventType.RATED})
# The events that end a case (办结, 撤回), unless a return stated after them reopens it (`end_in_force`).
ENDING = frozenset({EventType.CLOSED, EventType.WITHDRAWN})

# Times outside this window are treated as impossible, not as facts.
EARLIEST_TIME = datetime(1990, 1, 1, tzinfo=timezone.utc)
LATEST_TIME = datetime(2100, 1, 1, tzinfo=timezone.utc)
# A handling system's clock may run a little ahead of the online system's.
CLOCK_SKEW = timedelta(minutes=5)

_MAX_ID = 128
# The facts of one event are a few short fields; a case's state holds all its events, so one
# oversized event could make the state too large to store. Long texts are cut to fit
# (`TEXT_KEPT_CHARS`); attrs over it otherwise are refused.
MAX_ATTRS_BYTES = 16 * 1024
# orjson, which writes states and rows, nests no deeper than 254 levels, attrs inside them.
MAX_ATTRS_DEPTH = 200
FIELD_LIMITS = {"event_id": _MAX_ID, "case_id": _MAX_ID, "item_code": _MAX_ID, "node": _MAX_ID,
           "officer_id": _MAX_ID, "department": _MAX_ID, "region": 32}


class Refused(ValueError):
    """A message refused, with `reason` (a short machine-readable class, the dead letter's) and
    `detail` (for people)."""

    def __init__(self, reason: str, detail: str):
        super().__init__(f"{reason}: {detail}")
        self.reason = reason
        self.detail = detail


class InvalidEvent(Refused):
    """The message is not a valid case event."""


@dataclass(frozen=True, slots=True)
class CaseEvent:
    event_id: str
    case_id: str
    item_code: str
    type: EventType
    occurred_at: datetime
    recorded_at: datetime
    node: str | None = None
    officer_id: str | None = None
    department: str | None = None
    region: str | None = None
    channel: Channel | None = None
    attrs: Mapping[str, Any] = field(default_factory=dict)
    # attrs.deadline, parsed once here (the attrs keep the text as it came).
    stated_deadline: datetime | None = None
    # The event's stored form, once encoded (see streams.codec): a case's state is written
    # after every change, and its events, once stored, do not change.
    stored: bytes | None = field(default=None, compare=False, repr=False)

    @property
    def order_key(self) -> tuple[datetime, datetime, str]:
        """Event-time order: what happened first, then what was registered first."""
        return (self.occurred_at, self.recorded_at, self.event_id)

    def to_json(self) -> dict[str, Any]:
        """The contract's JSON form (times keep their original offset)."""
        out: dict[str, Any] = {
            "event_id": self.event_id, "case_id": self.case_id, "item_code": self.item_code,
            "type": self.type.value, "occurred_at": self.occurred_at.isoformat(),
            "recorded_at": self.recorded_at.isoformat(),
        }
        for name in ("node", "officer_id", "department", "region"):
            value = getattr(self, name)
            if value is not None:
                out[name] = value
        if self.channel is not None:
            out["channel"] = self.channel.value
        if self.attrs:
            out["attrs"] = dict(self.attrs)
        return out


# At one moment: a return first, then a closing, then a withdrawal (`alerts.timeline.process_order`).
_AT_ONE_MOMENT = {EventType.RETURNED: 0, EventType.CLOSED: 1, EventType.WITHDRAWN: 2}


def suspended_at_last(steps: Iterable[tuple[str, datetime | str]]) -> bool:
    """Of a case's events in event-time order, given as (type, occurred_at) pairs (a time as a
    datetime or as ISO text, parsed only where it matters), whether a suspension still stops its
    clock after the last: one not resumed since, nor ended by an end, nor by the first acceptance
    when it was stated before it (the case clock starts at the acceptance, `alerts.timeline`; one
    stated at the acceptance's very moment is the case's own: the acceptance comes first). The
    status the dashboards and the metrics read (`CaseState.status`, `streams.codec`), as the case
    file and the deadline read the timeline."""
    running: datetime | str | None = None  # when the latest suspension still running was stated
    accepted = False
    for kind, at in steps:
        if kind == EventType.SUSPENDED:
            running = at
        elif kind == EventType.RESUMED or kind in ENDING:
            running = None
        elif kind == EventType.ACCEPTED and not accepted:
            accepted = True
            if running is not None and _moment(running) < _moment(at):
                running = None
    return running is not None


def _moment(at: datetime | str) -> datetime:
    return at if isinstance(at, datetime) else datetime.fromisoformat(at)


def end_in_force(steps: Iterable[tuple[str, datetime]]) -> int | None:
    """Of a case's events in event-time order, given as (type, occurred_at) pairs, the position of
    the one that ends the case as they stand: its closing or withdrawal, unless a return (退回)
    stated after a closing sent the case back to be redone, which opens the case again until it
    ends again (a withdrawal, 撤回/作废, is final). None: the case has not ended. (A return stated at the very moment of the closing does
    not reopen it: the case was closed then. One stated at the moment of a later closing reopens
    the earlier end, and that closing ends the case again: at one moment a return comes first,
    as `alerts.timeline.process_order` reads it, whatever the registration times. A closing and a
    withdrawal at one moment: the closing, whatever their ids; the withdrawal then changes nothing.)"""
    steps = list(steps)
    if not any(kind == EventType.RETURNED for kind, _ in steps):  # the common case: the first end
        first = next((position for position, (kind, _) in enumerate(steps) if kind in ENDING), None)
        if first is None or steps[first][0] == EventType.CLOSED:
            return first
        at = steps[first][1]  # a closing at the moment of the withdrawal comes first
        return next((position for position, (kind, moment) in enumerate(steps)
                     if kind == EventType.CLOSED and moment == at), first)
    return _ends(steps)[0]


def ends_undone(steps: Iterable[tuple[str, datetime]]) -> list[tuple[datetime, datetime]]:
    """Of a case's events as (type, occurred_at) pairs, each closing that a return (退回) stated
    after it undid, with that return's moment: when the case was closed before it was opened
    again, as `end_in_force` reads them. A past day's screens read a case closed then as closed,
    though it is open again now (`dashboards.queries`)."""
    steps = list(steps)
    if not any(kind == EventType.RETURNED for kind, _ in steps):
        return []
    return _ends(steps)[1]


def _ends(steps: list[tuple[str, datetime]]) -> tuple[int | None, list[tuple[datetime, datetime]]]:
    """(`end_in_force`, `ends_undone`) of a case's (type, occurred_at) pairs, in one reading."""
    end: int | None = None
    ended_at: datetime | None = None
    ended_by: str | None = None
    undone: list[tuple[datetime, datetime]] = []
    ordered = sorted(enumerate(steps), key=lambda s: (s[1][1], _AT_ONE_MOMENT.get(s[1][0], 3)))
    for position, (kind, occurred_at) in ordered:
        if end is None:
            if kind in ENDING:
                end, ended_at, ended_by = position, occurred_at, kind
        elif (kind == EventType.RETURNED and ended_by == EventType.CLOSED and ended_at is not None
              and occurred_at > ended_at):  # a withdrawal (撤回/作废) is final
            undone.append((_moment(ended_at), _moment(occurred_at)))
            end = ended_at = ended_by = None
    return end, undone


def parse_time(value: Any, name: str) -> datetime:
    if not isinstance(value, str):
        raise InvalidEvent("schema", f"{name} must be an RFC 3339 string, got {_kind(value)}")
    text = value.strip()
    if len(text) > 40:
        raise InvalidEvent("bad_time", f"{name} is not an RFC 3339 time: {text[:40]!r}...")
    try:
        parsed = datetime.fromisoformat(text.replace("z", "Z") if "z" in text else text)
    except ValueError:
        raise InvalidEvent("bad_time", f"{name} is not an RFC 3339 time: {text!r}") from None
    offset = parsed.utcoffset()
    if offset is None:
        raise InvalidEvent("bad_time", f"{name} has no UTC offset: {text!r}")
    if not EARLIEST_TIME <= parsed < LATEST_TIME:
        raise InvalidEvent("impossible_time", f"{name} {text!r} is outside 1990..2099")
    return stored_moment(parsed, offset)


def to_the_millisecond(moment: datetime) -> datetime:
    """An event's time as precise as the store keeps it (`alerts.model.store_time`): the rules
    judge what a case read back from the store, or a copy compared with the event held
    (`alerts.state.content_differences`), says. Judged to the microsecond, two copies 400 µs apart,
    one event to the store, gave a red `backfill` card or none by which came first (found by a
    black-box test)."""
    micro = moment.microsecond
    return moment if not micro % 1000 else moment.replace(microsecond=micro - micro % 1000)


_ZONES: dict[timedelta, tzinfo] = {timedelta(0): timezone.utc}


def shared_time(text: str) -> datetime:
    """A time written by Sunlight itself (ISO 8601 with an offset), read without checks."""
    return shared_zone(datetime.fromisoformat(text))


def shared_zone(parsed: datetime, offset: timedelta | None = None) -> datetime:
    """The time with one shared tzinfo per UTC offset (`fromisoformat` makes a new one each time,
    about 100 bytes for every time a worker holds)."""
    if offset is None:
        offset = parsed.utcoffset()
    zone = _ZONES.get(offset)  # type: ignore[arg-type]
    if zone is None:  # offsets are whole minutes within a day: at most 2,879 of them
        zone = _ZONES.setdefault(offset, timezone(offset))  # type: ignore[arg-type]
    if parsed.tzinfo is zone:
        return parsed
    # What `parsed.replace(tzinfo=zone)` gives (fromisoformat never sets fold), in under half its time.
    return datetime(parsed.year, parsed.month, parsed.day, parsed.hour, parsed.minute, parsed.second,
                    parsed.microsecond, zone)


def stored_moment(parsed: datetime, offset: timedelta | None = None) -> datetime:
    """`to_the_millisecond(shared_zone(parsed, offset))`, in at most one new datetime (each of the two
    makes one: a time read from an event needs both, and this is its cost twice per event)."""
    if offset is None:
        offset = parsed.utcoffset()
    zone = _ZONES.get(offset)  # type: ignore[arg-type]
    if zone is None:
        zone = _ZONES.setdefault(offset, timezone(offset))  # type: ignore[arg-type]
    micro = parsed.microsecond
    kept = micro - micro % 1000
    if parsed.tzinfo is zone and kept == micro:
        return parsed
    return datetime(parsed.year, parsed.month, parsed.day, parsed.hour, parsed.minute, parsed.second, kept, zone)


def _string(obj: Mapping[str, Any], name: str, required: bool, shared: bool = False) -> str | None:
    """A string field; `shared` for the catalog's and the administration's vocabulary (items,
    nodes, officers, departments, regions), kept once per process however many events hold it."""
    if name not in obj:
        if required:
            raise InvalidEvent("schema", f"missing required field {name!r}")
        return None
    value = obj[name]
    if not isinstance(value, str):
        raise InvalidEvent("schema", f"{name} must be a string, got {_kind(value)}")
    if required and not value:
        raise InvalidEvent("schema", f"{name} must not be empty")
    if len(value) > FIELD_LIMITS[name]:
        raise InvalidEvent("schema", f"{name} is longer than {FIELD_LIMITS[name]} characters")
    return sys.intern(value) if shared else value


def _kind(value: Any) -> str:
    """A decoded JSON value's type, as JSON names it (a message whose body was `null` was told "got
    NoneType": found by a black-box test)."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, (int, float)):
        return "number"
    return {str: "string", list: "array", dict: "object"}.get(type(value), type(value).__name__)


def read_attrs(obj: Mapping[str, Any]) -> dict[str, Any]:
    if "attrs" not in obj:
        return {}
    value = obj["attrs"]
    if not isinstance(value, dict):
        raise InvalidEvent("schema", f"attrs must be an object, got {_kind(value)}")
    days = value.get("promised_days")
    if isinstance(days, float) and days.is_integer():  # 3.0 is an integer to JSON Schema (2020-12) too
        value = {**value, "promised_days": int(days)}
        days = value["promised_days"]
    if days is not None and (isinstance(days, bool) or not isinstance(days, int) or not 0 <= days <= 3650):
        raise InvalidEvent("schema", f"attrs.promised_days must be an integer 0..3650, got {days!r}")
    for name in ("reason", "opinion", "violation_code", "discretion_tier"):
        if name in value and not isinstance(value[name], str):
            raise InvalidEvent("schema", f"attrs.{name} must be a string")
    # Text first: a list or an object is not hashable, and `in` a frozenset would raise TypeError.
    if "decision" in value and (not isinstance(value["decision"], str) or value["decision"] not in DECISIONS):
        raise InvalidEvent("schema", f"attrs.decision must be one of {sorted(DECISIONS)}")
    if "rating" in value and (not isinstance(value["rating"], str) or value["rating"] not in RATINGS):
        raise InvalidEvent("schema", f"attrs.rating must be one of {sorted(RATINGS)}")
    amount = value.get("penalty_amount")
    if isinstance(amount, int) and not isinstance(amount, bool) and amount >= 2**63:
        try:  # past what the store's JSON writer keeps as a whole number: kept as a float
            value = {**value, "penalty_amount": float(amount)}
            amount = value["penalty_amount"]
        except OverflowError:
            raise InvalidEvent("schema", f"attrs.penalty_amount is past any number a float holds "
                                         f"({amount.bit_length()} bits)") from None
    if amount is not None and (isinstance(amount, bool) or not isinstance(amount, (int, float))
                               or not (0 <= amount and math.isfinite(amount))):
        # Any amount the contract allows (a number, at least 0), however absurd: one of 10^20 yuan is
        # the fine most outside its benchmark, and refused (below 10^13 before), it held its case back
        # and raised no card (found by a black-box test with other clients).
        raise InvalidEvent("schema", f"attrs.penalty_amount must be a finite number, at least 0 (yuan), "
                                     f"got {amount!r}")
    try:
        written = orjson.dumps(value, default=str)
    except TypeError:
        written = None
    # Nested too deeply, the event could not be stored: orjson writes states and rows, and nests
    # no deeper than 254 levels, attrs inside them (the brackets counted first, cheaply).
    if (written is None or written.count(b"[") + written.count(b"{") > MAX_ATTRS_DEPTH) \
            and _depth(value) > MAX_ATTRS_DEPTH:
        raise InvalidEvent("schema", f"attrs is nested more than {MAX_ATTRS_DEPTH} levels deep")
    size = len(written) if written is not None else _json_size(value)
    if size > MAX_ATTRS_BYTES:
        # Long text (an opinion of thousands of characters) is cut, not refused: a refused event holds
        # its case back, and the case's true red cards with it, for words no rule reads.
        cut = _long_texts_cut(value)
        if cut is None or _json_size(cut) > MAX_ATTRS_BYTES:
            raise InvalidEvent("schema", f"attrs is {size} bytes of JSON, more than {MAX_ATTRS_BYTES}"
                               + (" with its long text cut" if cut is not None else ""))
        return cut
    return value


# How much of a long text attribute an event keeps (an opinion, a reason, any other text), in
# characters; the rest is cut and the cut said in the text itself (`_long_texts_cut`).
TEXT_KEPT_CHARS = 1000


def _json_size(value: dict) -> int:
    """The bytes of `value` as JSON."""
    try:
        return len(orjson.dumps(value, default=str))
    except TypeError:  # text orjson refuses (lone surrogates): measured as the JSON module writes it
        return len(json.dumps(value, ensure_ascii=False, default=str).encode("utf-8", "surrogatepass"))


def _long_texts_cut(attrs: dict) -> dict | None:
    """`attrs` with each text value longer than TEXT_KEPT_CHARS cut to that many characters and a
    note of how many were cut, in the language of the people who read it; None when none is that long.
    No rule reads such a text: the ones rules read (decision, violation, tier, rating) are
    a word each. The same attrs are always cut alike, so a copy of the event is the same event."""
    if not any(isinstance(v, str) and len(v) > TEXT_KEPT_CHARS for v in attrs.values()):
        return None
    return {name: (f"{text[:TEXT_KEPT_CHARS]}……［原文过长，其后 {len(text) - TEXT_KEPT_CHARS} 字已截去］"
                   if isinstance(text, str) and len(text) > TEXT_KEPT_CHARS else text)
            for name, text in attrs.items()}


def _depth(value: Any) -> int:
    """How deeply lists and objects nest in `value` (1 for an object of plain values), without
    recursion."""
    deepest, stack = 0, [(value, 1)]
    while stack:
        item, level = stack.pop()
        if isinstance(item, dict):
            item = item.values()
        elif not isinstance(item, list):
            continue
        deepest = max(deepest, level)
        stack.extend((child, level + 1) for child in item)
    return deepest


# The contract's required fields of a case event, in its order.
REQUIRED_FIELDS = ("event_id", "case_id", "item_code", "type", "occurred_at", "recorded_at")


def parse_event(obj: Any) -> CaseEvent:
    """Validate one decoded JSON value and build a `CaseEvent`."""
    if not isinstance(obj, dict):
        raise InvalidEvent("schema", f"a case event must be a JSON object, got {_kind(obj)}")
    missing = [name for name in REQUIRED_FIELDS if name not in obj]
    if missing:  # said first and all at once ({} read "type must be one of ..., got 'None'": found by a black-box test)
        raise InvalidEvent("schema", "missing required field" + ("s " if len(missing) > 1 else " ")
                           + ", ".join(repr(name) for name in missing) + " (a case event has "
                           + ", ".join(REQUIRED_FIELDS) + ")")
    try:
        event_type = EventType(obj.get("type"))
    except ValueError:
        raise InvalidEvent("schema", f"type must be one of {[t.value for t in EventType]}, "
                                     f"got {str(obj.get('type'))[:40]!r}") from None
    channel_value = obj.get("channel")
    try:
        channel = Channel(channel_value) if "channel" in obj else None
    except ValueError:
        raise InvalidEvent("schema", f"channel must be online, window or import, "
                                     f"got {str(channel_value)[:40]!r}") from None
    node = _string(obj, "node", required=False, shared=True)
    if event_type in NODE_EVENTS and not node:
        raise InvalidEvent("schema", f"a {event_type.value} event must name its node")
    attrs = read_attrs(obj)
    # Added to the contract: a deadline the source system states itself. Parsed once, here,
    # so that what passes validation is what the rules read.
    stated_deadline = parse_time(attrs["deadline"], "attrs.deadline") if "deadline" in attrs else None
    occurred_at = parse_time(obj.get("occurred_at"), "occurred_at")
    recorded_at = parse_time(obj.get("recorded_at"), "recorded_at")
    if recorded_at + CLOCK_SKEW < occurred_at:
        raise InvalidEvent("impossible_time", f"recorded_at {recorded_at.isoformat()} is before "
                                              f"occurred_at {occurred_at.isoformat()}")
    return CaseEvent(
        event_id=_string(obj, "event_id", required=True),  # type: ignore[arg-type]
        case_id=_string(obj, "case_id", required=True),  # type: ignore[arg-type]
        item_code=_string(obj, "item_code", required=True, shared=True),  # type: ignore[arg-type]
        type=event_type,
        occurred_at=occurred_at,
        recorded_at=recorded_at,
        node=node,
        officer_id=_string(obj, "officer_id", required=False, shared=True),
        department=_string(obj, "department", required=False, shared=True),
        region=_string(obj, "region", required=False, shared=True),
        channel=channel,
        attrs=attrs,
        stated_deadline=stated_deadline,
    )


def case_item_code(events: Sequence[CaseEvent]) -> str:
    """The item a case is judged under: the one most of its events name (ratings aside: no rule
    reads them); of items named as often, the one its acceptance registered first names (else its
    event registered first). Not the earliest stated acceptance's: one of another item, back-dated
    and registered after the case closed, made it the case's item and withdrew its true red
    skipped_node card; nor the first registered acceptance's alone, whose registration time a
    source states too (both found, by a black-box test and by review)."""
    counts: dict[str, int] = {}
    for event in events:
        if event.type not in READ_BY_NO_RULE:
            counts[event.item_code] = counts.get(event.item_code, 0) + 1
    if len(counts) == 1:
        return next(iter(counts))
    most = max(counts.values(), default=0)
    named = [e for e in events if counts.get(e.item_code, 0) == most] or list(events)
    acceptances = [e for e in named if e.type is EventType.ACCEPTED]
    return registered_first(acceptances or named).item_code


def registered_first(events: Sequence[CaseEvent]) -> CaseEvent:
    """The event registered first; of those registered at one moment, the one stated first, then
    by event_id: the one order every "registered first" of a case reads (its item, its deadline's
    acceptance, whether it came by import)."""
    return min(events, key=lambda e: (e.recorded_at, e.occurred_at, e.event_id))


def acceptance_registered(events: Sequence[CaseEvent]) -> datetime | None:
    """When the first of `events`' acceptances was registered; None when they hold none."""
    return min((e.recorded_at for e in events if e.type is EventType.ACCEPTED), default=None)


def registered_after(stated: datetime, registered: datetime | None) -> bool:
    """Whether an event stated at `stated` was registered after `registered` whatever it says of its
    registration: an event is registered no earlier than `CLOCK_SKEW` before it says it happened
    (`parse_event`). A refused event of no known type may be an acceptance, whose terms count
    when it was registered first (`alerts.timeline._terms_from`)."""
    return registered is not None and stated > registered + CLOCK_SKEW


def own_events(events: Sequence[CaseEvent], item_code: str) -> Sequence[CaseEvent]:
    """The case's events that name its item; the others are set aside (`judge_case`)."""
    if all(e.item_code == item_code for e in events):
        return events
    return tuple(e for e in events if e.item_code == item_code)
