"""A case's history read once, in event-time order, into the facts the rules judge.

The detectors share this reading so that every rule sees the same acceptance,
the same suspensions and the same node completions. The walk over node events
implements the process model of the catalog:

* `accepted` starts the case clock. It, and `closed`, complete a node only where the
  catalog says so on the node (`completed_by: accepted` or `completed_by: closed`, for a
  catalog whose first node is 受理 or whose last node is 办结); every other node completes
  only by its own `node_completed` event, so a case closed without its last step has
  skipped it.
* A node may complete only after the nodes it `requires` (and what they require); the decision (if the
  item names a decision node) only after every required node before that node;
  closing only after every required node. Anything else is a skip.
* `returned` sends the case back to a node: that node and everything that
  depends on it must be done again, and the node's own clock restarts.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Sequence

from alerts.calendar import Pause, WorkCalendar
from alerts.catalog import CompletedBy, Item
from alerts.events import CaseEvent, EventType


@dataclass(frozen=True, slots=True)
class Suspension:
    suspended: CaseEvent
    resumed: CaseEvent | None
    end: datetime | None  # the resumption, or the end of the case, or None (still suspended)

    @property
    def pause(self) -> Pause:
        return (self.suspended.occurred_at, self.end)


@dataclass(frozen=True, slots=True)
class Skip:
    node: str
    went_ahead: CaseEvent  # the node completion, decision or closing that did not wait
    what: str  # "node" | "decision" | "closing" | "acceptance"


@dataclass(frozen=True, slots=True)
class NodeCycle:
    """One run of a node: its clock started, and maybe it completed."""
    node: str
    clock_start: datetime
    completed: CaseEvent | None


@dataclass(slots=True)
class Timeline:
    events: Sequence[CaseEvent]
    accepted: CaseEvent | None = None
    end: CaseEvent | None = None  # closed or withdrawn
    suspensions: list[Suspension] = field(default_factory=list)
    skips: list[Skip] = field(default_factory=list)
    cycles: list[NodeCycle] = field(default_factory=list)
    decisions: list[CaseEvent] = field(default_factory=list)
    unknown_nodes: list[CaseEvent] = field(default_factory=list)
    promised_days: int = 0
    stated_deadline: datetime | None = None
    # The deadline with every suspension, once computed: detect, due and evaluate all need it.
    _deadline: tuple[WorkCalendar, datetime | None] | None = None

    @property
    def pauses(self) -> list[Pause]:
        return [s.pause for s in self.suspensions]

    @property
    def ended_at(self) -> datetime | None:
        return self.end.occurred_at if self.end else None

    def open_at(self, moment: datetime) -> bool:
        """Was the case accepted and not yet closed or withdrawn at `moment`?"""
        return (self.accepted is not None and self.accepted.occurred_at <= moment
                and (self.end is None or self.end.occurred_at > moment))

    def officer(self) -> str | None:
        for event in reversed(self.events):
            if event.officer_id:
                return event.officer_id
        return None

    def deadline(self, calendar: WorkCalendar, pauses: Sequence[Pause] | None = None) -> datetime | None:
        """The promised deadline: counted in working days from acceptance, suspended time added;
        or, when the acceptance states one (attrs.deadline), that moment as stated."""
        if self.accepted is None:
            return None
        if self.stated_deadline is not None:
            return self.stated_deadline
        if pauses is not None:
            return calendar.deadline(self.accepted.occurred_at, self.promised_days, pauses)
        if self._deadline is None or self._deadline[0] is not calendar:
            self._deadline = (calendar, calendar.deadline(self.accepted.occurred_at, self.promised_days,
                                                          self.pauses))
        return self._deadline[1]


def _dependents(item: Item, node_id: str) -> set[str]:
    """`node_id` and every node that requires it, directly or through others."""
    out = {node_id}
    for node in item.nodes:
        if any(r in out for r in node.requires):
            out.add(node.id)
    return out


def _prerequisites(item: Item, node_id: str) -> list[str]:
    """Every node `node_id` requires, directly or through the nodes it requires, earliest first."""
    index = {n.id: n for n in item.nodes}
    found: set[str] = set()
    stack = list(index[node_id].requires)
    while stack:
        current = stack.pop()
        if current not in found:
            found.add(current)
            stack.extend(index[current].requires)
    return [n.id for n in item.nodes if n.id in found]


def process_order(events: Sequence[CaseEvent], item: Item) -> list[CaseEvent]:
    """Event time first; events stated at the same moment in the order the process runs:
    acceptance, suspensions, then nodes and the decision where the catalog puts them (the
    decision at its decision node), then closing, then ratings; whatever their ids."""
    position = {n.id: i for i, n in enumerate(item.nodes)}
    last = len(item.nodes)
    decision_at = position.get(item.decision_node or "", last - 0.5)

    def stage(e: CaseEvent) -> float:
        if e.type is EventType.ACCEPTED:
            return -2
        if e.type in (EventType.SUSPENDED, EventType.RESUMED):
            return -1
        if e.type is EventType.RETURNED:
            return position.get(e.node or "", last) - 0.25
        if e.type is EventType.NODE_COMPLETED:
            return position.get(e.node or "", last)
        if e.type is EventType.DECIDED:
            return decision_at + 0.1
        if e.type in (EventType.CLOSED, EventType.WITHDRAWN):
            return last + 1
        return last + 2  # rated

    return sorted(events, key=lambda e: (e.occurred_at, stage(e), e.recorded_at, e.event_id))


def read_timeline(events: Sequence[CaseEvent], item: Item) -> Timeline:
    events = process_order(events, item)
    timeline = Timeline(events=events, promised_days=item.promised_days)
    node_index = {n.id: n for n in item.nodes}
    by_acceptance = [n.id for n in item.completed_by(CompletedBy.ACCEPTED)]
    by_closing = [n.id for n in item.completed_by(CompletedBy.CLOSED)]
    done: dict[str, datetime] = {}
    open_cycles: dict[str, NodeCycle] = {}
    skipped: set[str] = set()
    open_suspension: CaseEvent | None = None

    def start_ready_clocks(now: datetime) -> None:
        for node in item.nodes:
            if node.id in done or node.id in open_cycles:
                continue
            if node.requires and all(r in done for r in node.requires):
                open_cycles[node.id] = NodeCycle(node.id, now, None)

    def complete(node_id: str, event: CaseEvent) -> None:
        cycle = open_cycles.pop(node_id, None)
        if cycle is not None:
            timeline.cycles.append(NodeCycle(node_id, cycle.clock_start, event))
        if node_id not in done:
            done[node_id] = event.occurred_at
        start_ready_clocks(event.occurred_at)

    def check(required_nodes: Sequence[str], event: CaseEvent, what: str) -> None:
        for node_id in required_nodes:
            if node_id not in done and node_id not in skipped:
                skipped.add(node_id)
                timeline.skips.append(Skip(node_id, event, what))

    for event in events:
        if timeline.end is not None and event.type is not EventType.RATED:
            continue  # nothing after the end of the case changes how it was handled
        kind = event.type
        if kind is EventType.ACCEPTED:
            if timeline.accepted is None:
                timeline.accepted = event
                days = event.attrs.get("promised_days")
                if isinstance(days, int):
                    timeline.promised_days = days
                timeline.stated_deadline = event.stated_deadline
                for node in item.nodes:
                    if not node.requires:
                        open_cycles[node.id] = NodeCycle(node.id, event.occurred_at, None)
                for node_id in by_acceptance:
                    check(_prerequisites(item, node_id), event, "acceptance")
                    complete(node_id, event)
        elif kind is EventType.NODE_COMPLETED:
            node = node_index.get(event.node or "")
            if node is None:
                timeline.unknown_nodes.append(event)
                continue
            check(_prerequisites(item, node.id), event, "node")
            complete(node.id, event)
        elif kind is EventType.RETURNED:
            if event.node not in node_index:
                timeline.unknown_nodes.append(event)
                continue
            for node_id in _dependents(item, event.node):
                done.pop(node_id, None)
                open_cycles.pop(node_id, None)
            open_cycles[event.node] = NodeCycle(event.node, event.occurred_at, None)
        elif kind is EventType.SUSPENDED:
            if open_suspension is None:
                open_suspension = event
        elif kind is EventType.RESUMED:
            if open_suspension is not None:
                timeline.suspensions.append(Suspension(open_suspension, event, event.occurred_at))
                open_suspension = None
        elif kind is EventType.DECIDED:
            timeline.decisions.append(event)
            decision = item.decision_node
            if decision is not None and decision not in done:
                position = [n.id for n in item.nodes].index(decision)
                before = [n.id for n in item.nodes[:position] if n.required]
                check(before + _prerequisites(item, decision), event, "decision")
                complete(decision, event)
        elif kind in (EventType.CLOSED, EventType.WITHDRAWN):
            timeline.end = event
            if kind is EventType.CLOSED:
                check([n.id for n in item.nodes if n.required and n.id not in by_closing], event, "closing")
                for node_id in by_closing:
                    if node_id not in done:
                        complete(node_id, event)
    if open_suspension is not None:
        timeline.suspensions.append(Suspension(open_suspension, None, timeline.ended_at))
    # Nodes still running: their clocks are open cycles.
    timeline.cycles.extend(c for c in open_cycles.values() if c.node not in done)
    return timeline
