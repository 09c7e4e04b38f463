"""Per-case state: the case's events, once each, in event-time order.

`apply(state, event)` is pure. It drops an event whose `event_id` the case
already holds (a redelivery), and otherwise inserts it where its occurred_at
puts it, so events that arrive late or out of order land where they belong.
The detectors read the whole ordered history, which is what makes the alerts a
function of the set of events rather than of their arrival order.

The state also remembers the alerts last published for the case, so that the
next evaluation can tell what is new, what changed and what must be withdrawn.
"""

from __future__ import annotations

from bisect import insort
from dataclasses import dataclass, field, replace
from datetime import datetime, timezone
from typing import Any, Mapping, Sequence

import orjson

from alerts.events import (OFF_THE_DEADLINE, READ_BY_NO_RULE, CaseEvent, Channel, EventType, case_item_code,
                           end_in_force, parse_event, registered_after, suspended_at_last)
from alerts.catalog import violation_key
from alerts.model import Alert, AlertStatus, Rule, store_time


_SAME: Any = object()  # a field `CaseState.evolve` leaves as it is (never stored)
_new, _set = object.__new__, object.__setattr__


@dataclass(frozen=True, slots=True)
class CaseState:
    case_id: str
    events: tuple[CaseEvent, ...] = ()
    alerts: Mapping[str, Alert] = field(default_factory=dict)
    # The peer groups' verdicts on the case's fining decisions that are outliers:
    # event_id -> evidence (alerts/peers.py). Facts about the case, like its events.
    verdicts: Mapping[str, Mapping[str, Any]] = field(default_factory=dict)
    # When the clock should next look at this case (a deadline, a node limit ...).
    next_due: datetime | None = None
    # The clock of the judgement behind `alerts`: a case is never judged at an earlier moment
    # (time does not run backwards for a case; a late tick or a restarted clock cannot undo it).
    judged_at: datetime | None = None
    # Events of the case the pipeline refused (dead letters whose payload names the case and the
    # event: event_id -> the letter's reason), until an event under that id arrives (the corrected
    # one, redriven). While any is missing the case raises no alert (`alerts.evaluate.judge_case`):
    # its facts are incomplete, and judged without them it may look late or skipped.
    refused: Mapping[str, str] = field(default_factory=dict)
    # The events taken since the case was last judged (while a replay's input is incomplete,
    # `alerts.evaluate.awaiting_judgement`): what a withdrawal at the next judgement names, whatever
    # registration time they claim (`alerts.describe.rejudged_reason`). Empty once judged.
    arrived: tuple[str, ...] = ()
    # Increases with every change, so a store keyed by case keeps the newest row.
    revision: int = 0
    # `ended_by`'s answer, found once per tuple of events (a judgement, its rows and the retention
    # each ask for it); not a fact of the case: never compared, copied only while the events stay.
    # False: not asked yet (a singleton, so a pickled or deep-copied state reads it as such; a
    # sentinel object() came back from a copy as another object, taken for the end: found by review).
    _end: CaseEvent | None | bool = field(default=False, init=False, compare=False, repr=False)

    def evolve(self, *, events: Any = _SAME, alerts: Any = _SAME, verdicts: Any = _SAME, next_due: Any = _SAME,
               judged_at: Any = _SAME, refused: Any = _SAME, arrived: Any = _SAME,
               revision: Any = _SAME) -> "CaseState":
        """This state with some fields changed, its case the same (dataclasses.replace, without its
        cost: this is done for every event taken). Every other field is named here
        (a unit test checks it)."""
        new = _new(CaseState)
        _set(new, "case_id", self.case_id)
        _set(new, "events", self.events if events is _SAME else events)
        _set(new, "alerts", self.alerts if alerts is _SAME else alerts)
        _set(new, "verdicts", self.verdicts if verdicts is _SAME else verdicts)
        _set(new, "next_due", self.next_due if next_due is _SAME else next_due)
        _set(new, "judged_at", self.judged_at if judged_at is _SAME else judged_at)
        _set(new, "refused", self.refused if refused is _SAME else refused)
        _set(new, "arrived", self.arrived if arrived is _SAME else arrived)
        _set(new, "revision", self.revision if revision is _SAME else revision)
        _set(new, "_end", self._end if events is _SAME else False)
        return new

    @property
    def item_code(self) -> str | None:
        """The item the case is judged under (`alerts.events.case_item_code`)."""
        return case_item_code(self.events) if self.events else None

    def has(self, event_id: str) -> bool:
        for e in self.events:  # (not `any` over a generator: this is asked of every event taken)
            if e.event_id == event_id:
                return True
        return False

    def event_of(self, event_id: str) -> CaseEvent | None:
        return next((e for e in self.events if e.event_id == event_id), None)

    @property
    def status(self) -> str:
        """open, suspended, closed or withdrawn, as the events in hand show it (a case sent back to
        be redone after it ended is open again: `end_in_force`)."""
        end = self.ended_by
        if end is not None:
            return end.type.value
        return "suspended" if suspended_at_last((e.type, e.occurred_at) for e in self.events) else "open"

    @property
    def ended_by(self) -> CaseEvent | None:
        """The closing or withdrawal that ends the case as its events stand (`end_in_force`)."""
        end = self._end
        if end is False:
            position = end_in_force((e.type, e.occurred_at) for e in self.events)
            end = None if position is None else self.events[position]
            object.__setattr__(self, "_end", end)
        return end

    def to_json(self) -> dict[str, Any]:
        return {
            "case_id": self.case_id,
            "events": [e.to_json() for e in self.events],
            "alerts": {k: a.to_json() for k, a in self.alerts.items()},
            "verdicts": {k: dict(v) for k, v in self.verdicts.items()},
            "next_due": self.next_due.isoformat() if self.next_due else None,
            "judged_at": self.judged_at.isoformat() if self.judged_at else None,
            "refused": dict(self.refused),
            "arrived": list(self.arrived),
            "revision": self.revision,
        }

    @classmethod
    def from_json(cls, obj: Mapping[str, Any]) -> "CaseState":
        return cls(
            case_id=obj["case_id"],
            events=tuple(parse_event(e) for e in obj.get("events") or ()),
            alerts={k: Alert.from_json(a) for k, a in (obj.get("alerts") or {}).items()},
            verdicts=dict(obj.get("verdicts") or {}),
            next_due=datetime.fromisoformat(obj["next_due"]) if obj.get("next_due") else None,
            judged_at=datetime.fromisoformat(obj["judged_at"]) if obj.get("judged_at") else None,
            refused=dict(obj.get("refused") or {}),
            arrived=tuple(obj.get("arrived") or ()),
            revision=int(obj.get("revision", 0)),
        )



def _content(event: CaseEvent) -> dict[str, Any]:
    """What an event says, in a canonical form, as precise as the store keeps it (times to the
    millisecond, an empty node or officer as none): two copies of one event_id that differ in it
    are two versions of the fact. The labels and the channel are compared apart
    (`content_differences`): a copy may leave them out."""
    attrs = _same_numbers(event.attrs)
    if event.stated_deadline is not None:  # a moment, in whatever offset it was written
        attrs = {**attrs, "deadline": store_time(event.stated_deadline)}
    code = attrs.get("violation_code")
    if isinstance(code, str):  # `157.0` is `157`, as the benchmarks read it (a CSV and an XES of one log)
        attrs = {**attrs, "violation_code": violation_key(code)}
    return {"type": event.type.value, "item_code": event.item_code, "occurred_at": store_time(event.occurred_at),
            "recorded_at": store_time(event.recorded_at), "node": event.node or None,
            "officer_id": event.officer_id or None, "attrs": attrs}


def _same_numbers(value: Any) -> Any:
    """`value` with every JSON number as a float: 30000 and 30000.0 are one number, whichever a
    client wrote (integers beyond a float's exact range stay as they are)."""
    if isinstance(value, bool):
        return value
    if isinstance(value, int):
        return float(value) if abs(value) <= 2 ** 53 else value
    if isinstance(value, Mapping):
        return {key: _same_numbers(item) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [_same_numbers(item) for item in value]
    return value


def content_differences(held: CaseEvent, copy: CaseEvent, pushes: bool = True) -> list[tuple[str, Any, Any]]:
    """What two versions of one event say differently (field, held, copy), in `_content`'s terms,
    and the channel and the department when both state one, not the same. `pushes`: whether the
    case pushes its cases (its department, or either copy's, is `self_built`); where it does not,
    `import` against another channel is the same event (below).

    A copy that leaves its channel, department or region out is the event held, silently: an
    import states `import` for events that name no channel, and files them under their item's
    department, so the ordinary onboarding (a history imported, then the same events sent again
    live, by a source that names its channel or its district) must not make each one another
    fact. Which department and region a case holds then depends on which came first
    (docs/faults.md: the department a card is filed under). Two stated and different are two facts
    (a channel: found by a black-box test; a department: found by another), whichever came first.
    But `import` against another channel, where the case does not push: there `import` is what an
    import states for a history that names no channel, and a history imported, then sent again
    live stating `online`, made nearly every event a letter (found by a black-box test); the case
    holds the other copy's channel (`restated`). Where it pushes (a self-built system), the same
    event pushed and sent online is two facts (found by another)."""
    mine, theirs = _content(held), _content(copy)
    differences = [(name, value, theirs[name]) for name, value in mine.items()
                   if orjson.dumps(value, option=orjson.OPT_SORT_KEYS)
                   != orjson.dumps(theirs[name], option=orjson.OPT_SORT_KEYS)]
    if (held.channel and copy.channel and held.channel != copy.channel
            and (pushes or Channel.IMPORT not in (held.channel, copy.channel))):
        differences.append(("channel", held.channel.value, copy.channel.value))
    if held.department and copy.department and held.department != copy.department:
        differences.append(("department", held.department, copy.department))
    return differences


def restated(held: CaseEvent, copy: CaseEvent, pushes: bool) -> CaseEvent | None:
    """The event the case holds, with the channel of a later copy of it (one of the same content),
    where the one held says `import` and the case does not push its cases (`pushes` false: neither
    its department nor either copy's is `self_built`); else None.

    There `import` is what an import states for a history that names no channel, and says nothing
    of where the event was registered; the copy says it (`online`, `window`), or leaves it out,
    which there reads as `online` does. So the case holds that, whichever came first, and is judged
    as if the copy had come first. Before, the version held was the first: a history imported,
    then sent live, was judged as a push (against the push deadline, a month later) and had no red
    `backfill` card for a case registered online days late, which the live copies alone gave it
    (found by a black-box test of the documented onboarding). The judgement is the copy's either
    way: a card that only the import's reading raised (a burst of registrations that leaves the
    import's events out, a suspension judged at the moment it states) is withdrawn, as when any
    later fact shows a card never held, its reason naming the copy."""
    if pushes or held.channel is not Channel.IMPORT or copy.channel is Channel.IMPORT:
        return None
    return replace(held, channel=copy.channel, stored=None)


def with_event(state: CaseState, event: CaseEvent) -> CaseState:
    """The state with the event it holds under `event.event_id` replaced by `event` (its place in
    event-time order is the same: `restated` changes only the channel)."""
    events = tuple(event if e.event_id == event.event_id else e for e in state.events)
    return state.evolve(events=events, revision=state.revision + 1)


def apply(state: CaseState | None, event: CaseEvent) -> tuple[CaseState, bool]:
    """Add `event` to the case. Returns the new state and whether the event was new; an event the
    case holds (its event_id), in whatever version, changes nothing (see `content_differences`)."""
    if state is None:
        state = CaseState(case_id=event.case_id)
    if event.case_id != state.case_id:
        raise ValueError(f"event {event.event_id} is for case {event.case_id}, not {state.case_id}")
    if state.has(event.event_id):
        return state, False
    refused = state.refused
    if event.event_id in refused:  # the event a dead letter held back, corrected
        refused = {k: v for k, v in refused.items() if k != event.event_id}
    events = state.events
    if not events or events[-1].occurred_at < event.occurred_at or events[-1].order_key <= event.order_key:
        # the common case: in order (stated later than the last, or after it in `order_key`)
        events = (*events, event)
    else:
        ordered = list(events)
        insort(ordered, event, key=lambda e: e.order_key)
        events = tuple(ordered)
    return state.evolve(events=events, refused=refused, revision=state.revision + 1), True


def refusal(reason: str, event_type: str | None = None, stated: datetime | None = None) -> str:
    """What `CaseState.refused` keeps of a refused event: its letter's reason, and `@type` when the
    event names one of the contract's types (what it could have changed: `refused_type`), then, for
    the types whose time decides what they could change (`_TIMED`), `@time` when it states a readable
    time (`stated`: when it happened, `refused_time`). An event of no known type (none, or one
    outside the contract) that states a readable time keeps it with no type (`@@time`): it may be of
    any type, and after its case's deadline it could move that deadline only as few types could
    (`alerts.evaluate.off_the_deadline`).
    Not for an import's rows held back with an unreadable one (`UNTYPED_REASONS`): the unreadable
    row, which names no event, may be the closing."""
    if reason in UNTYPED_REASONS:
        return reason
    if event_type not in _EVENT_TYPES:
        return reason if stated is None else f"{reason}@@{stated.astimezone(timezone.utc).isoformat()}"
    if stated is None or event_type not in _TIMED:
        return f"{reason}@{event_type}"
    return f"{reason}@{event_type}@{stated.astimezone(timezone.utc).isoformat()}"


def catalog_refusal(reason: str, event: CaseEvent) -> str:
    """`refusal` of an event read whole and then refused (by the catalog): its type and its time."""
    return refusal(reason, event.type.value, event.occurred_at)


# The refused events whose time is kept: those whose time decides whether they hold their case back
# (`after_the_end`), or whether they could move its deadline (`alerts.evaluate.off_the_deadline`).
_TIMED = frozenset({EventType.NODE_COMPLETED.value, EventType.SUSPENDED.value, EventType.RESUMED.value,
                    EventType.CLOSED.value, EventType.WITHDRAWN.value, EventType.RETURNED.value,
                    EventType.DECIDED.value})


UNTYPED_REASONS = frozenset({"case_incomplete", "unreadable_row"})


def cautious(kept: str, other: str) -> str:
    """Of two records of one event refused twice (sent again, refused again, as another type), the
    one that holds more back (`_holding`), whichever came first: untyped, or of a type that can move
    the case's deadline, before one that cannot, before a rating, which holds nothing back (kept
    first, a rating refused again as a node let the case raise false skipped_node cards: found by
    review); of events of a type whose time is kept (`_TIMED`), one with no time before one with a
    time (which may be after the case's end or deadline, `after_the_end`), and of two times the
    earlier (found by review: the copy stated after the closing, come first, let the case raise red
    cards the other copy could undo)."""
    return max(kept, other, key=_holding)


def _holding(value: str) -> tuple:
    kind = refused_type(value)
    stated = refused_time(value)
    group = 0 if kind in READ_BY_NO_RULE else 1 if kind in OFF_THE_DEADLINE else 2
    return (group, stated is None, -stated.timestamp() if stated is not None else 0.0, value)


def refused_type(kept: str) -> EventType | None:
    """The type of a refused event as `refusal` kept it; None when it named none (or an unknown one)."""
    parts = kept.split("@", 2)
    return EventType(parts[1]) if len(parts) > 1 and parts[1] in _EVENT_TYPES else None


def refused_time(kept: str) -> datetime | None:
    """When a refused event states it happened, as `refusal` kept it; None when unknown."""
    parts = kept.split("@", 2)
    return datetime.fromisoformat(parts[2]) if len(parts) > 2 else None


def holds_back(kept: str, ended_at: datetime | None, last_node_at: datetime | None = None,
               accepted_registered: datetime | None = None) -> bool:
    """Whether a refused event, as `refusal` kept it, holds its case's judgement back
    (`alerts.evaluate.judge_case`): not a rating (`READ_BY_NO_RULE`), nor one that changes nothing
    of how the case was handled (`after_the_end`). One of no known type may be of any: it holds
    nothing back when stated after the end as a node would have to be (`last_node_at`) and
    registered after the case's first acceptance was (`accepted_registered`, `registered_after`: an
    acceptance registered first gives the case's terms). Before, one such event stated after the
    closing kept a replay from the skipped last node's card the live feed had raised (found by
    review)."""
    kind = refused_type(kept)
    stated = refused_time(kept)
    if kind is None:
        return not (after_the_end(EventType.NODE_COMPLETED, stated, ended_at, last_node_at)
                    and registered_after(stated, accepted_registered))  # type: ignore[arg-type]
    return kind not in READ_BY_NO_RULE and not after_the_end(kind, stated, ended_at, last_node_at,
                                                             _NOTHING_REFUSED_AFTER_THE_END)


def set_aside_events(events: Sequence[CaseEvent], item_code: str, ended_at: datetime | None,
                     last_node_at: datetime | None = None) -> list[CaseEvent]:
    """The events of a case judged under `item_code` that name another item and hold its judgement
    back as refused events would (`alerts.evaluate.judge_case`; the case file lists them): not its
    ratings (no rule reads one), nor its nodes stated after its end (`after_the_end`)."""
    return [e for e in events if e.item_code != item_code and e.type not in READ_BY_NO_RULE
            and not after_the_end(e.type, e.occurred_at, ended_at, last_node_at)]


def last_node_after_the_end(events: Sequence[CaseEvent], ended_at: datetime | None) -> datetime | None:
    """When the last node of `events` (a case's own) completed after its end in force (`ended_at`), a
    closing (`read_timeline` reads nothing after a withdrawal); None if none did (`after_the_end`)."""
    if ended_at is None or not any(e.type is EventType.CLOSED and e.occurred_at == ended_at for e in events):
        return None
    return max((e.occurred_at for e in events if e.type is EventType.NODE_COMPLETED and e.occurred_at > ended_at),
               default=None)


def after_the_end(kind: EventType | None, stated: datetime | None, ended_at: datetime | None,
                  last_node_at: datetime | None = None, kinds: frozenset | None = None) -> bool:
    """A node completed, a suspension, a resumption, a closing, a withdrawal, a return or a decision
    after the end in force of its case (`ended_at`): it takes down no card the case's events raise
    (`alerts.timeline.read_timeline` reads none after the end; the end ends a suspension still
    running; the first end stands, `alerts.events.end_in_force`, and only a return stated between
    opens the case again, which moves `ended_at`; a return after it opens the case again from its
    moment, a decision after it is judged for its fine alone, a closing after it may close a burst,
    `backfill`: each can only add a card), so the case waits for no such event (a junk node event
    stated after the closing kept a case closed without its last node from its red card; a junk
    suspension of another item stated after the closing withdrew a true red overdue and kept back
    the card of the back-dated suspension that moved it; a closing, a withdrawal, a return or a
    decision sent again after the closing by a channel outside the contract kept back a skipped
    last node's card in one replay, while the live feed, judging before it came, kept it: all found
    by black-box tests). A node only after the case's own nodes completed after the end, if any
    (`last_node_at`, `last_node_after_the_end`): each still goes ahead of what it requires and was
    not done (`read_timeline`), and a node before it may be one of those. `kinds`: the types so
    read: `_NOTHING_REFUSED_AFTER_THE_END` for a refused event (a copy of one of the case's own);
    by default `_NOTHING_AFTER_THE_END`, for an event of another item, set aside, which the case
    file names while it holds the case (a closing, a return or a decision of another item may be
    another source's case under the same id)."""
    if kind not in (kinds or _NOTHING_AFTER_THE_END) or stated is None or ended_at is None or stated <= ended_at:
        return False
    return kind is not EventType.NODE_COMPLETED or last_node_at is None or stated > last_node_at


_NOTHING_AFTER_THE_END = frozenset({EventType.NODE_COMPLETED, EventType.SUSPENDED, EventType.RESUMED})
_NOTHING_REFUSED_AFTER_THE_END = _NOTHING_AFTER_THE_END | {EventType.CLOSED, EventType.WITHDRAWN, EventType.RETURNED,
                                                           EventType.DECIDED}


_EVENT_TYPES = frozenset(t.value for t in EventType)


def refuse(state: CaseState | None, case_id: str, event_id: str, reason: str) -> tuple[CaseState, bool]:
    """Record that an event of the case was refused (a dead letter, `reason`, as `refusal` makes it):
    the case waits for it. Returns the new state and whether anything changed: an event the case
    holds already (a bad copy of it) changes nothing, nor does one recorded as refused, but that
    the more cautious of the two records stands (`cautious`)."""
    if state is None:
        state = CaseState(case_id=case_id)
    if state.case_id != case_id:
        raise ValueError(f"refused event {event_id} is for case {case_id}, not {state.case_id}")
    if state.has(event_id):
        return state, False
    if event_id in state.refused:  # refused again: the more cautious record stands
        kept = cautious(state.refused[event_id], reason)
        if kept == state.refused[event_id]:
            return state, False
        return state.evolve(refused={**state.refused, event_id: kept}, revision=state.revision + 1), True
    return state.evolve(refused={**state.refused, event_id: reason}, revision=state.revision + 1), True


def release(state: CaseState, event_id: str) -> CaseState:
    """An operator closed the letter of a refused event the case waits for, saying it is no event of
    the case (a status ping, junk that named the case): the case no longer waits for it, and is
    judged on its other events (`sunlight dlq close --judge-without`). A revision either way: the
    case is judged again even if a state read back from the store no longer waits for it."""
    refused = {k: v for k, v in state.refused.items() if k != event_id}
    return state.evolve(refused=refused, revision=state.revision + 1)


def apply_verdict(state: CaseState, event_id: str, evidence: Mapping[str, Any] | None) -> tuple[CaseState, bool]:
    """Record a peer group's verdict on one of the case's decisions (None: not an outlier).
    Returns the new state and whether anything changed."""
    current = state.verdicts.get(event_id)
    if current == evidence:
        return state, False
    verdicts = {k: v for k, v in state.verdicts.items() if k != event_id}
    if evidence is not None:
        verdicts[event_id] = dict(evidence)
    return state.evolve(verdicts=verdicts, revision=state.revision + 1), True


def verdicts_of(alerts: list[Alert]) -> dict[str, dict[str, Any]]:
    """The peer verdicts the open outlier alerts came from."""
    verdicts = {}
    for alert in alerts:
        event_id = alert.evidence.get("event_id")
        if alert.rule is Rule.DISCRETION_OUTLIER and alert.status is not AlertStatus.WITHDRAWN and event_id:
            evidence = {k: v for k, v in alert.evidence.items() if k != "decided_at"}
            for key in ("peers_decided_from", "peers_decided_to"):  # the verdict states them in UTC
                if isinstance(evidence.get(key), str):
                    evidence[key] = datetime.fromisoformat(evidence[key]).astimezone(timezone.utc).isoformat()
            verdicts[str(event_id)] = evidence
    return verdicts


def restored(case_id: str, events: list[CaseEvent], alerts: list[Alert], revision: int = 0,
             judged_at: datetime | None = None, verdicts: Mapping[str, Mapping[str, Any]] | None = None,
             refused: Mapping[str, str] | None = None) -> CaseState:
    """A case's state rebuilt from what a store holds: its events, its published alerts, its
    revision and clock, its peer verdicts (`verdicts`; None: a store that did not keep them, and
    the open outlier alerts give back the verdicts they came from), and its events still refused
    (the open dead letters that hold it, `refused`)."""
    verdicts = verdicts_of(alerts) if verdicts is None else {k: dict(v) for k, v in verdicts.items()}
    unique = {e.event_id: e for e in events}
    return CaseState(case_id=case_id, events=tuple(sorted(unique.values(), key=lambda e: e.order_key)),
                     alerts={a.alert_id: a for a in alerts}, verdicts=verdicts, revision=revision,
                     judged_at=judged_at,
                     refused={k: v for k, v in (refused or {}).items() if k not in unique})
