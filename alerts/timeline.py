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
  item names a decision node) only after what that node requires, as that node itself;
  closing only after every required node. Anything else is a skip.
* `returned` sends the case back to a node: that node must be done again, its own
  clock restarting; the nodes waiting for it stop their clocks, which start again from
  the start once it is done (a new run, as the contract starts a node's clock when what
  it requires has completed), a run late before the return staying late.
"""

from __future__ import annotations

from bisect import bisect_left
from dataclasses import dataclass, field
from datetime import datetime
from typing import Sequence

from alerts.calendar import Pause, WorkCalendar
from alerts.catalog import Item
from alerts.events import ENDING, CaseEvent, EventType, registered_first


@dataclass(frozen=True, slots=True)
class Suspension:
    suspended: CaseEvent
    resumed: CaseEvent | None
    # the resumption, or the end of the case, or the acceptance (of one stated before it), or None
    # (still suspended)
    end: datetime | None
    inner: tuple[CaseEvent, ...] = ()  # suspensions stated while this one ran (its clock stop covers them)

    @property
    def pause(self) -> Pause:
        return (self.suspended.occurred_at, self.end)


@dataclass(frozen=True, slots=True)
class Skip:
    node: str
    went_ahead: CaseEvent  # the node completion, decision or closing that did not wait
    what: str  # "node" | "decision" | "closing" | "acceptance"
    # The return (退回) that undid the node's earlier completion, when it had completed before.
    undone_by: CaseEvent | None = None


@dataclass(frozen=True, slots=True)
class NodeCycle:
    """One run of a node: its clock started, and maybe it completed, or was stopped (`stopped_at`)
    when a node it requires was returned to, the case waiting for that node again."""
    node: str
    clock_start: datetime
    completed: CaseEvent | None
    stopped_at: datetime | None = None


@dataclass(frozen=True, slots=True)
class Reopening:
    """A case closed and then sent back to a node to be redone: open again from the return until
    it ends again (a withdrawal, 撤回/作废, is final)."""
    ended: CaseEvent
    returned: CaseEvent


@dataclass(slots=True)
class Timeline:
    events: Sequence[CaseEvent]
    accepted: CaseEvent | None = None
    end: CaseEvent | None = None  # closed or withdrawn (and not reopened since)
    # The acceptance was registered only after the case had ended (none before it): it starts no
    # node's clock and completes no node (nothing after the end changes how the case was handled),
    # but it is the case's acceptance, for its deadline and for a return that reopens the case.
    accepted_after_end: bool = False
    reopenings: list[Reopening] = field(default_factory=list)  # ends a later return undid
    suspensions: list[Suspension] = field(default_factory=list)
    skips: list[Skip] = field(default_factory=list)
    cycles: list[NodeCycle] = field(default_factory=list)
    decisions: list[CaseEvent] = field(default_factory=list)
    unknown_nodes: list[CaseEvent] = field(default_factory=list)
    promised_days: int = 0
    stated_deadline: datetime | None = None
    # Of several acceptances, the one the deadline counts from, with its terms, when that is not
    # `accepted` (the earliest stated): the one registered first (`_terms_from`).
    deadline_from: CaseEvent | None = None
    # The deadline with every suspension, once computed: detect, due and evaluate all need it.
    _deadline: tuple[WorkCalendar, datetime | None] | None = None
    _pauses: tuple[Pause, ...] | None = None
    # Each node cycle's time limit, once computed (node_overdue and due both need them).
    _limits: dict = field(default_factory=dict)
    # (calendar, deadline, its near moment, the moment the case is late from), once computed
    # (`alerts.detectors.deadlines.case_moments`: detect and due both need them).
    _moments: tuple | None = None

    @property
    def pauses(self) -> tuple[Pause, ...]:
        if self._pauses is None:
            self._pauses = tuple(s.pause for s in self.suspensions)
        return self._pauses

    def node_limit(self, cycle: "NodeCycle", days: int, calendar: WorkCalendar) -> datetime | None:
        """When a node cycle's own time limit runs out (suspensions added)."""
        key = (cycle.node, cycle.clock_start)
        if key not in self._limits:
            self._limits[key] = calendar.deadline(cycle.clock_start, days, self.pauses)
        return self._limits[key]

    @property
    def clock_accepted(self) -> CaseEvent | None:
        """The acceptance the deadline counts from, at its moment and on its terms (`deadline_from`,
        else `accepted`)."""
        return self.deadline_from or self.accepted

    @property
    def ended_at(self) -> datetime | None:
        return self.end.occurred_at if self.end else None

    def end_by_acceptance(self) -> CaseEvent | None:
        """The end (closing or withdrawal) in force at the acceptance: the last one at or before it,
        not undone by a return before it (a case finished and registered accepted only afterwards,
        or at that very moment, online all at once). None for a case accepted before it ended."""
        if self.accepted is None:
            return None
        at = self.clock_accepted.occurred_at  # the acceptance the deadline counts from
        if not self.reopenings:  # (the common case, without the lists below)
            return self.end if self.end is not None and self.end.occurred_at <= at else None
        ends = [r.ended for r in self.reopenings if r.ended.occurred_at <= at < r.returned.occurred_at]
        if self.end is not None and self.end.occurred_at <= at:
            ends.append(self.end)
        return max(ends, key=lambda e: e.occurred_at, default=None)

    def open_at(self, moment: datetime) -> bool:
        """Was the case accepted and not yet closed or withdrawn at `moment` (nor between an end and
        the return that reopened it)?"""
        if self.accepted is None or self.accepted.occurred_at > moment:
            return False
        if self.reopenings and any(r.ended.occurred_at <= moment < r.returned.occurred_at
                                   for r in self.reopenings):
            return False
        return self.end is None or self.end.occurred_at > moment

    def open_from(self, moment: datetime) -> datetime | None:
        """The first moment at or after `moment` at which the case is open: `moment` itself, or the
        return that reopened it afterwards; None if neither. A return reopens the case even when
        what is redone and the closing that ends it again come at its very moment (stamped to the
        minute or the day): the return comes first (`stage`), so the case was open then (found by a
        black-box test: a minute later it was late, at the same minute it was not)."""
        if self.open_at(moment):
            return moment
        return next((r.returned.occurred_at for r in self.reopenings if r.returned.occurred_at > moment), None)

    def officer(self) -> str | None:
        for event in reversed(self.events):
            if event.officer_id:
                return event.officer_id
        return None

    def deadline(self, calendar: WorkCalendar, pauses: Sequence[Pause] | None = None) -> datetime | None:
        """The promised deadline: counted in working days from acceptance, suspended time added;
        or, when the acceptance states one (attrs.deadline), that moment moved by the suspended
        working time before it (`WorkCalendar.stated_deadline`)."""
        if self.accepted is None:
            return None
        if pauses is not None:
            return self._deadline_with(calendar, pauses)
        if self._deadline is None or self._deadline[0] is not calendar:
            self._deadline = (calendar, self._deadline_with(calendar, self.pauses))
        return self._deadline[1]

    @property
    def ended_before_acceptance(self) -> bool:
        """Accepted after its end, and that end stands (not reopened by a return and ended again)."""
        return (self.accepted_after_end and self.end is not None and self.accepted is not None
                and self.end.occurred_at <= self.accepted.occurred_at)

    def stored_deadline(self, calendar: WorkCalendar) -> datetime | None:
        """The deadline the case's row stores (the wall's 按时办结率 reads it): none for a case that
        ended before its acceptance was registered whose deadline would count from that acceptance
        (no clock ran: "无从起算", as its file says; it was stored as after its end, on time)."""
        if self.ended_before_acceptance and self.stated_deadline is None:
            return None
        return self.deadline(calendar)

    def _deadline_with(self, calendar: WorkCalendar, pauses: Sequence[Pause]) -> datetime | None:
        assert self.accepted is not None
        if self.stated_deadline is not None:
            # The case clock starts at the acceptance (the contract), and suspensions before it stop
            # nothing (a 补正 before 受理, as real feeds have them, gave a stated deadline its time
            # back for every case: found by review). But a case accepted only after its end had no
            # clock at all: the deadline its source states is read from its first event, its
            # suspensions before the acceptance counted (from the acceptance, a hearing that kept a
            # case closed in time counted for nothing: a false red card, found by an oracle).
            start = (min(e.occurred_at for e in self.events) if self.accepted_after_end
                     else self.clock_accepted.occurred_at)
            return calendar.stated_deadline(start, self.stated_deadline, pauses)
        return calendar.deadline(self.clock_accepted.occurred_at, self.promised_days, pauses)


def process_order(events: Sequence[CaseEvent], item: Item) -> list[CaseEvent]:
    """Event time first; events stated at the same moment in the order the process runs:
    acceptance, suspensions, then nodes and the decision where the catalog puts them (the
    decision at its decision node), then closing, then returns (after what the node that sent
    the case back did at that moment, a node's first completion included; before the node
    returned to is done again), then ratings; whatever their ids. A suspension and a resumption
    stated at one moment: the one that changes the clock first (a running case is suspended, then
    resumed; a suspended one resumed, then suspended again), whatever their ids."""
    if all(a.occurred_at < b.occurred_at for a, b in zip(events, events[1:])):
        return list(events)  # the common case: a case's history, in event-time order, no two at once
    position = item.plan.position
    last = len(item.nodes)
    decision_at = position.get(item.decision_node or "", last - 0.5) + 0.1
    reopening = _reopening_returns(events)
    reopened_at = {e.occurred_at for e in events if e.event_id in reopening}
    redos = _redos(events, item, reopening)
    closed_at = {e.occurred_at for e in events if e.type is EventType.CLOSED}
    by_closing = item.plan.by_closing

    def stage(e: CaseEvent) -> float:
        kind = e.type
        if e.event_id in reopening:
            # Reopening a case ended earlier: before what is done again, and ended again, at its moment.
            return -0.5
        if e.event_id in redos:
            return last + 1.75  # done again after the return to it stated at the same moment
        if kind is EventType.NODE_COMPLETED:
            if e.node in by_closing and e.occurred_at in closed_at:
                # A node the closing completes (`completed_by: closed`), its own event at the closing's
                # moment: done with the closing, after it (the closing completes it). Read before it,
                # it went ahead of another node the closing completes, a false red card (found by a
                # black-box test).
                return last + 1.05
            return position.get(e.node or "", last)
        if kind is EventType.ACCEPTED:
            # Accepted again at the moment a return reopened the case to 受理: after that return
            # (read first, it came while the case was closed and was dropped: a false red card).
            return -0.25 if e.occurred_at in reopened_at else -2
        if kind is EventType.SUSPENDED or kind is EventType.RESUMED:
            return -1
        if kind is EventType.RETURNED:
            return last + 1.5  # after the closing too: a case closed at that moment was closed
        if kind is EventType.DECIDED:
            return decision_at
        if kind is EventType.CLOSED:
            return last + 1
        if kind is EventType.WITHDRAWN:
            return last + 1.1  # after a closing at that moment, whatever their ids: that closing is the end
        return last + 2  # rated

    ordered = sorted(events, key=lambda e: (e.occurred_at, stage(e), e.recorded_at, e.event_id))
    return _clock_changes_first(ordered)


def _reopening_returns(events: Sequence[CaseEvent]) -> set[str]:
    """The event ids of the returns that reopen an ended case: stated after its end in force, as
    the case stands before their moment (a return at the very moment of a closing reopens nothing:
    the case was open until then, and it is read after that closing; one at the moment of a later
    closing reopens the earlier end, and comes first). By moment, as `alerts.events.end_in_force`."""
    if not any(e.type is EventType.RETURNED for e in events):
        return set()
    by_moment: dict[datetime, list[CaseEvent]] = {}
    for e in events:
        by_moment.setdefault(e.occurred_at, []).append(e)
    reopening: set[str] = set()
    ended_by: EventType | None = None
    for moment in sorted(by_moment):
        at_moment = by_moment[moment]
        returns = [e for e in at_moment if e.type is EventType.RETURNED]
        if ended_by is not None and returns:
            reopening.update(e.event_id for e in returns)  # after a withdrawal they change nothing
            if ended_by is EventType.CLOSED:
                ended_by = None
        if ended_by is None:  # a closing before a withdrawal at one moment (`process_order`)
            ended = {e.type for e in at_moment} & ENDING
            ended_by = EventType.CLOSED if EventType.CLOSED in ended else next(iter(ended), None)
    return reopening


def _redos(events: Sequence[CaseEvent], item: Item, reopening: set[str] = frozenset()) -> set[str]:
    """The event ids of the completions that redo a node returned to at the same moment: every
    completion of that node then (its own event, an acceptance for a node acceptance completes, a
    decision for the decision node the decision completes) but its first one, when the node had
    not been done before (by time, then registration, then id). A decision made again at the
    moment of the return to its node was read before that return (a false red skipped_node: found
    by a black-box test)."""
    returned_at = {(e.occurred_at, e.node) for e in events if e.type is EventType.RETURNED
                   and e.event_id not in reopening}  # a reopening comes first anyway (`stage`)
    if not returned_at:
        return set()
    by_acceptance = item.plan.by_acceptance
    by_decision = item.decision_node if item.decided_completes else None
    completions: dict[str | None, list[CaseEvent]] = {}
    for e in events:
        if e.type is EventType.NODE_COMPLETED:
            completions.setdefault(e.node, []).append(e)
        elif e.type is EventType.ACCEPTED:
            for node in by_acceptance:
                completions.setdefault(node, []).append(e)
        elif e.type is EventType.DECIDED and by_decision is not None:
            completions.setdefault(by_decision, []).append(e)
    redos: set[str] = set()
    for moment, node in returned_at:
        done = sorted(completions.get(node, ()), key=lambda e: (e.occurred_at, e.recorded_at, e.event_id))
        at_moment = [e for e in done if e.occurred_at == moment]
        first_is_here = bool(done) and done[0].occurred_at == moment
        redos.update(e.event_id for e in (at_moment[1:] if first_is_here else at_moment))
    return redos


_CLOCK = (EventType.SUSPENDED, EventType.RESUMED)


def _clock_changes_first(events: list[CaseEvent]) -> list[CaseEvent]:
    """`events` with each run of suspensions and resumptions stated at one moment put in the
    order in which each changes the clock, if it can: resumed while suspended, suspended while
    running (by ids, a resumption could come first and resume nothing, and the suspension stated
    with it stop the clock for good; or a new suspension be dropped inside the one it follows)."""
    out: list[CaseEvent] = []
    suspended = False
    i = 0
    while i < len(events):
        event = events[i]
        if event.type not in _CLOCK:
            out.append(event)
            i += 1
            continue
        j = i
        while j < len(events) and events[j].type in _CLOCK and events[j].occurred_at == event.occurred_at:
            j += 1
        run = events[i:j]
        while run:
            wanted = EventType.RESUMED if suspended else EventType.SUSPENDED
            pick = next((e for e in run if e.type is wanted), run[0])
            run.remove(pick)
            out.append(pick)
            if pick.type is wanted:
                suspended = not suspended
        i = j
    return out


def _inner_resumptions(events: Sequence[CaseEvent]) -> set[int]:
    """The resumptions (by `id`) followed, before the case's next end, by another resumption with
    no suspension between: each can only be resuming a suspension stated inside another. The next
    end, not the first: a case closed and sent back is open again, and its suspensions after the
    return are read as in a case never closed (found by an independent oracle: a close-and-return
    on the day of acceptance made a nested suspension's first resumption restart the clock)."""
    ends = sorted(e.occurred_at for e in events if e.type in ENDING)
    clock = [e for e in events if e.type is EventType.SUSPENDED or e.type is EventType.RESUMED]
    inner = set()
    for a, b in zip(clock, clock[1:]):
        if a.type is EventType.RESUMED and b.type is EventType.RESUMED:
            following = bisect_left(ends, a.occurred_at)  # the first end at or after `a`
            if following == len(ends) or b.occurred_at <= ends[following]:
                inner.add(id(a))
    return inner


def _terms_from(events: Sequence[CaseEvent]) -> CaseEvent | None:
    """Of several acceptances, the one the case's deadline counts from, at its moment and on its
    terms (`promised_days`, a stated deadline): the one registered first. A second acceptance,
    back-dated and registered after the deadline with 300 promised days, withdrew a true red
    `overdue` (found by a black-box test); the moment of one and the terms of the other made a
    deadline neither states, and a false red card (found by review). The case is accepted at the
    earliest stated one all the same (its nodes' clocks, whether it was open). None for one
    acceptance."""
    acceptances = [e for e in events if e.type is EventType.ACCEPTED]
    if len(acceptances) < 2:
        return None
    return registered_first(acceptances)


def read_timeline(events: Sequence[CaseEvent], item: Item) -> Timeline:
    events = process_order(events, item)
    timeline = Timeline(events=events, promised_days=item.promised_days)
    plan = item.plan
    index, waiting_on, requires = plan.index, plan.waiting_on, plan.requires
    done: dict[str, datetime] = {}
    open_cycles: dict[str, datetime] = {}  # the nodes whose clocks run: when each started
    skipped: set[str] = set()
    undone: dict[str, CaseEvent] = {}  # completed nodes a return undid, and that return
    done_after_the_end: set[str] = set()  # nodes completed while the case had ended
    open_suspension: CaseEvent | None = None
    # Suspensions stated while one runs (a hearing, then an expert review before the hearing is
    # over): a resumption resumes only the inner one when the next change of the clock before the
    # case's end is another resumption; else it resumes the case (a suspension sent twice must
    # neither stop the clock for good nor stretch to a later, unrelated suspension's resumption).
    nested = 0
    inside: list[CaseEvent] = []  # the suspensions stated while the open one runs
    inner_resumptions = _inner_resumptions(events)
    cycles, skips = timeline.cycles, timeline.skips

    def complete(node_id: str, event: CaseEvent) -> None:
        now = event.occurred_at
        started = open_cycles.pop(node_id, None)
        if started is not None:
            cycles.append(NodeCycle(node_id, started, event))
        if node_id not in done:
            done[node_id] = now
            undone.pop(node_id, None)
        # The clocks of the nodes now ready (all they require done) start: the next ones, and
        # further ones whose clocks a return to this node stopped.
        for other in waiting_on[node_id]:
            if other not in done and other not in open_cycles and done.keys() >= requires[other]:
                open_cycles[other] = now

    terms = _terms_from(events)

    def take_acceptance(event: CaseEvent) -> None:
        timeline.accepted = event
        promise = terms or event
        days = promise.attrs.get("promised_days")
        if isinstance(days, int):
            timeline.promised_days = days
        timeline.stated_deadline = promise.stated_deadline
        timeline.deadline_from = promise if promise is not event else None

    def check(required_nodes: Sequence[str], event: CaseEvent, what: str) -> None:
        for node_id in required_nodes:
            if node_id not in done and node_id not in skipped:
                skipped.add(node_id)
                skips.append(Skip(node_id, event, what, undone.get(node_id)))

    for event in events:
        kind = event.type
        if timeline.end is not None:
            if (kind is EventType.RETURNED and timeline.end.type is EventType.CLOSED
                    and event.occurred_at > timeline.end.occurred_at):
                # Sent back to be redone after it ended: the case is open again (`end_in_force`).
                timeline.reopenings.append(Reopening(timeline.end, event))
                # The case was not open between: the clocks of the nodes still running at the
                # closing stopped there (a node limit falling in between was no one's to keep: a
                # yellow card counted the closed week, found by a black-box test) and start anew at
                # the return, but for the nodes that wait for the node returned to.
                returned_to = event.node or ""
                for node_id in [n for n in open_cycles if n not in done]:
                    started = open_cycles.pop(node_id)
                    cycles.append(NodeCycle(node_id, started, None, timeline.end.occurred_at))
                    if node_id not in waiting_on.get(returned_to, ()):
                        open_cycles[node_id] = event.occurred_at
                timeline.end = None
            elif kind is EventType.ACCEPTED and timeline.accepted is None:
                take_acceptance(event)
                timeline.accepted_after_end = True
                continue
            elif kind is EventType.DECIDED:
                # Dated after the end, a penalty still answers to its benchmark (the discretion
                # rules): dating the decision after 结案 must not take it out of review.
                timeline.decisions.append(event)
                continue
            elif kind is EventType.NODE_COMPLETED and timeline.end.type is EventType.CLOSED:
                # Completed after the closing, a node runs no clock and completes nothing the case
                # needed, but it still went ahead of what it requires and was not done, nor done
                # after the end before it (the closing found the required ones: an optional one it
                # requires is skipped by it). Before, a card for that optional node, raised while the
                # closing had not come, was withdrawn once it came (found by a black-box test). Not
                # after a withdrawal, which is final: nothing after it is read.
                node_id = event.node or ""
                if node_id in index:
                    check([n for n in plan.prerequisites[node_id] if n not in done_after_the_end], event, "node")
                    done_after_the_end.add(node_id)
                continue
            elif kind is not EventType.RATED:
                continue  # nothing else after the end of the case changes how it was handled
        if kind is EventType.NODE_COMPLETED:
            node_id = event.node or ""
            if node_id not in index:
                timeline.unknown_nodes.append(event)
                continue
            check(plan.prerequisites[node_id], event, "node")
            complete(node_id, event)
        elif kind is EventType.ACCEPTED:
            if timeline.accepted is None:
                take_acceptance(event)
                if open_suspension is not None:
                    # A suspension stated before the acceptance (a 补正 before 受理) ends at it: the
                    # case clock starts at the acceptance (the contract), and a clock not started was
                    # not stopped. One never resumed stopped the clock for good, and the case raised
                    # no deadline alert however late it ended (found by a black-box test).
                    timeline.suspensions.append(
                        Suspension(open_suspension, None, event.occurred_at, tuple(inside)))
                    open_suspension, nested, inside = None, 0, []
                # No node's clock runs before the case's (the contract: "accepted: the case clock
                # starts"): a node whose prerequisites were stated done before the acceptance starts
                # its clock at it, and a run over before it was not timed (an oracle found a yellow
                # card dated two weeks before the case was accepted, for a node done at acceptance).
                cycles.clear()
                for node_id in list(open_cycles):
                    open_cycles[node_id] = event.occurred_at
                for node_id in plan.roots:
                    open_cycles[node_id] = event.occurred_at
                for node_id in plan.by_acceptance:
                    check(plan.prerequisites[node_id], event, "acceptance")
                    complete(node_id, event)
            else:  # accepted again (returned to 受理 for 补正): redoes the nodes acceptance completes
                for node_id in plan.by_acceptance:
                    if node_id not in done:
                        check(plan.prerequisites[node_id], event, "acceptance")
                        complete(node_id, event)
        elif kind is EventType.RETURNED:
            node_id = event.node or ""
            if node_id not in index:
                timeline.unknown_nodes.append(event)
                continue
            # Sent back to `node` to be redone (the contract): that node must be done again, its
            # clock starting anew at the return (one still running keeps its clock: a return must
            # not give a late node new time); what was done after it stands. The nodes that
            # require it (directly or not) and are not done wait for it again: their clocks stop
            # until it is done.
            # A node whose clock had not started (what it requires not done) starts it when they are.
            was_done = done.pop(node_id, None) is not None
            if was_done:
                undone[node_id] = event
            for waiting in waiting_on[node_id]:
                started = open_cycles.pop(waiting, None) if waiting not in done else None
                if started is not None:  # its run so far stays (late already, it was late)
                    cycles.append(NodeCycle(waiting, started, None, event.occurred_at))
            if was_done and node_id not in open_cycles:
                open_cycles[node_id] = event.occurred_at
        elif kind is EventType.SUSPENDED:
            if open_suspension is None:
                open_suspension = event
            else:
                nested += 1
                inside.append(event)
        elif kind is EventType.RESUMED:
            if open_suspension is not None and nested and id(event) in inner_resumptions:
                nested -= 1  # resumes the suspension stated inside: the outer one still runs
            elif open_suspension is not None:
                timeline.suspensions.append(Suspension(open_suspension, event, event.occurred_at, tuple(inside)))
                open_suspension, nested, inside = None, 0, []
        elif kind is EventType.DECIDED:
            timeline.decisions.append(event)
            decision = item.decision_node
            if decision is not None and decision not in done:
                check(plan.before_decision, event, "decision")
                if item.decided_completes:
                    complete(decision, event)
            elif decision is not None:
                # Decided again while a return has sent a node before the decision back to be
                # redone (法制审核 returned, the penalty decided before it was redone): the decision
                # went ahead of it, as a node completed then would (missed: found by a black-box test).
                check([n for n in plan.before_decision if n in undone], event, "decision")
        elif kind is EventType.CLOSED or kind is EventType.WITHDRAWN:
            timeline.end = event
            if open_suspension is not None:  # its end ends a suspension still running
                timeline.suspensions.append(Suspension(open_suspension, None, event.occurred_at, tuple(inside)))
                open_suspension, nested, inside = None, 0, []
            if kind is EventType.CLOSED:
                check(plan.before_closing, event, "closing")
                for node_id in plan.by_closing:
                    if node_id not in done:
                        complete(node_id, event)
    if open_suspension is not None:
        timeline.suspensions.append(Suspension(open_suspension, None, timeline.ended_at, tuple(inside)))
    # Nodes still running: their clocks are open cycles.
    timeline.cycles.extend(NodeCycle(node_id, started, None) for node_id, started in open_cycles.items()
                           if node_id not in done)
    return timeline
