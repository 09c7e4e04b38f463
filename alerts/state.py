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
from datetime import datetime
from typing import Any, Mapping

from alerts.events import CaseEvent, EventType, parse_event
from alerts.model import Alert


@dataclass(frozen=True, slots=True)
class CaseState:
    case_id: str
    events: tuple[CaseEvent, ...] = ()
    alerts: Mapping[str, Alert] = field(default_factory=dict)
    # When the clock should next look at this case (a deadline, a node limit ...).
    next_due: datetime | None = None
    # Increases with every change, so a store keyed by case keeps the newest row.
    revision: int = 0

    @property
    def item_code(self) -> str | None:
        return self.events[0].item_code if self.events else None

    def has(self, event_id: str) -> bool:
        return any(e.event_id == event_id for e in self.events)

    @property
    def status(self) -> str:
        """open, suspended, closed or withdrawn, as the events in hand show it."""
        suspended = False
        for event in self.events:
            if event.type is EventType.CLOSED:
                return "closed"
            if event.type is EventType.WITHDRAWN:
                return "withdrawn"
            if event.type is EventType.SUSPENDED:
                suspended = True
            elif event.type is EventType.RESUMED:
                suspended = False
        return "suspended" if suspended else "open"

    def to_json(self) -> dict[str, Any]:
        return {
            "case_id": self.case_id,
            "events": [e.to_json() for e in self.events],
            "alerts": {k: a.to_json() for k, a in self.alerts.items()},
            "next_due": self.next_due.isoformat() if self.next_due else None,
            "revision": self.revision,
        }

    @classmethod
    def from_json(cls, obj: Mapping[str, Any]) -> "CaseState":
        return cls(
            case_id=obj["case_id"],
            events=tuple(parse_event(e) for e in obj.get("events") or ()),
            alerts={k: Alert.from_json(a) for k, a in (obj.get("alerts") or {}).items()},
            next_due=datetime.fromisoformat(obj["next_due"]) if obj.get("next_due") else None,
            revision=int(obj.get("revision", 0)),
        )


def apply(state: CaseState | None, event: CaseEvent) -> tuple[CaseState, bool]:
    """Add `event` to the case. Returns the new state and whether the event was new."""
    if state is None:
        state = CaseState(case_id=event.case_id)
    if event.case_id != state.case_id:
        raise ValueError(f"event {event.event_id} is for case {event.case_id}, not {state.case_id}")
    if state.has(event.event_id):
        return state, False
    events = list(state.events)
    insort(events, event, key=lambda e: e.order_key)
    return replace(state, events=tuple(events), revision=state.revision + 1), True
