"""One case, judged: the state change and the detectors, put together.

`step` is what the stream does with every case event and every timer tick:

    state' = apply(state, event)               (pure)
    findings = detect(state', now)             (pure, every rule family)
    alerts, changed = reconcile(state'.alerts, findings)

The result depends on the catalog, the set of events and the clock only.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, fields, is_dataclass
from datetime import datetime, timezone

from alerts.calendar import WorkCalendar
from alerts.catalog import Catalog, Item
from alerts.config import RuleConfig
from alerts.describe import deadline_change, event_cause, rejudged_reason, withdrawal_reason
from alerts.detectors import CaseView, deadlines, discretion, process
from alerts.events import (NODE_EVENTS, OFF_THE_DEADLINE, READ_BY_NO_RULE, CaseEvent, Channel, EventType,
                           acceptance_registered, case_item_code, own_events, registered_after, registered_first)
from alerts.lifecycle import Labels, reconcile
from alerts.model import Alert, AlertStatus, Finding, Rule
from alerts.peers import Verdict
from alerts.state import (CaseState, apply, apply_verdict, catalog_refusal, content_differences, holds_back,
                          last_node_after_the_end, refuse, refused_time, refused_type, release, restated,
                          set_aside_events, with_event)
from alerts.timeline import read_timeline

RULE_FAMILIES = (deadlines, process, discretion)


class NotInCatalog(LookupError):
    """An event the catalog refuses (`known`): kept as a dead letter with `reason`."""
    reason = ""


class UnknownItem(NotInCatalog):
    reason = "unknown_item"

    def __init__(self, item_code: str):
        super().__init__(f"item code {item_code!r} is not in the catalog")
        self.item_code = item_code


class UnknownNode(NotInCatalog):
    reason = "unknown_node"

    def __init__(self, item_code: str, node: str):
        super().__init__(f"node {node!r} is not a node of item {item_code!r} in the catalog")


class UnknownDepartment(NotInCatalog):
    """An event that names a department the catalog lacks: its case would be no department's (no
    region, no one to send its tickets to, counted in no score)."""
    reason = "unknown_department"

    def __init__(self, department: str):
        super().__init__(f"department {department!r} is not in the catalog, which names its departments by "
                         f"their code; an event without a department is its item's")


@dataclass(frozen=True, slots=True)
class Judge:
    """What every case is judged against: the catalog, the working-day calendar and the thresholds."""
    catalog: Catalog
    calendar: WorkCalendar
    config: RuleConfig = RuleConfig()

    def item(self, code: str) -> Item:
        item = self.catalog.item(code)
        if item is None:
            raise UnknownItem(code)
        return item


def judged_against(judge: Judge) -> tuple:
    """What a case's alerts depend on besides its events and the clock: the items, the departments'
    regions and self-built flags, the time zones, the calendar's overrides and the thresholds. Not a
    contact's address, a department's name or the inspection office: those reach the tickets and
    their notices, never a card."""
    departments = {code: (d.region, d.self_built) for code, d in judge.catalog.departments.items()}
    return (judge.catalog.items, departments, judge.catalog.timezone, judge.calendar.overrides,
            str(judge.calendar.tz), judge.config)


def node_names(judge: Judge, item_code: str) -> dict[str, str]:
    """An item's node names by id, for words an inspector reads (none for an item not in the catalog)."""
    item = judge.catalog.item(item_code)
    return {node.id: node.name for node in item.nodes} if item is not None else {}


def cause_of(events: Sequence[CaseEvent], judge: Judge, shown: int = 3) -> str:
    """The events that changed a judgement, in words: at local time, their nodes by name (under
    each event's own item). All the new events of a judgement but ratings, which no rule reads;
    not the last one alone: which of them showed a card never held is not known (a withdrawal
    named a node event that came with the acceptance that took the card down: found by a
    black-box test with other clients, which batch as they please)."""
    read = [e for e in events if e.type not in READ_BY_NO_RULE] or events  # a rating shows nothing
    named = "、".join(event_cause(e, judge.calendar.tz, node_names(judge, e.item_code)) for e in read[:shown])
    return named + (f"等 {len(read)} 个事件" if len(read) > shown else "")


def judges_otherwise(before: Judge, after: Judge) -> bool:
    """Whether cases may be judged otherwise under `after` than under `before` (`judged_against`):
    a reload of a contact's address judges no case again (it would republish every card a worker
    holds)."""
    return judged_against(before) != judged_against(after)


def judging_basis(judge: Judge, rules: str = "") -> str:
    """A digest of what a case was judged against (`judged_against`) and `rules` (what stands for the
    rules' own code and the calendar's holiday tables: `streams.catalog_source`). A case judged
    under another basis may be judged otherwise now; one judged under this basis before a
    contact's address changed is judged alike (before, the digest took the whole catalog, and such
    an edit had the next start judge every stored case again). Canonical, so the same in every
    process: fields in order, mappings and sets sorted."""
    text = repr(_canonical((judged_against(judge), rules)))
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def _canonical(value):
    """`value` as nested tuples of text, whatever the hash seed: a dataclass as its compared fields
    (a cache such as `Item._plan` is not one), a mapping or a set sorted."""
    if is_dataclass(value) and not isinstance(value, type):
        return (type(value).__name__, tuple((f.name, _canonical(getattr(value, f.name)))
                                            for f in fields(value) if f.compare))
    if isinstance(value, Mapping):
        return ("map", tuple(sorted(((_canonical(k), _canonical(v)) for k, v in value.items()), key=repr)))
    if isinstance(value, (set, frozenset)):
        return ("set", tuple(sorted((_canonical(v) for v in value), key=repr)))
    if isinstance(value, (list, tuple)):
        return tuple(_canonical(v) for v in value)
    return repr(value)


@dataclass(frozen=True, slots=True)
class Evaluation:
    findings: list[Finding]
    next_due: datetime | None
    labels: Labels
    deadline: datetime | None
    promised_days: int | None = None  # the working days the deadline counts (None: stated by the source)
    ended_at: datetime | None = None  # when the end in force ended the case (`Timeline.end`)


@dataclass(frozen=True, slots=True)
class Outcome:
    """A case after one step: its new state and the alerts whose publication changed."""
    state: CaseState
    changed: list[Alert]
    labels: Labels | None
    deadline: datetime | None
    is_new: bool = True


def item_of(state: CaseState, judge: Judge) -> Item:
    return judge.item(case_item_code(state.events))


def labels_of(state: CaseState, item: Item, judge: Judge, events: Sequence[CaseEvent] | None = None) -> Labels:
    """The case's department and region: those its first handling event of its item (`events`, as
    `own_events` gives them) that names one states, else its item's department's. Not a rating's
    (`READ_BY_NO_RULE`): the applicant's, not the department's handling; a rating that named
    another department took the case there, its card, its ticket and its count (found by an
    independent scorer). Not another item's event's: two sources that used one case id filed the
    cards of one item under the other's department (found by a black-box test: 44 cards of one
    department moved into another's scope, their item unchanged)."""
    department, region = stated_labels(own_events(state.events, item.code) if events is None else events)
    department = department or item.department
    if region is None:
        known = judge.catalog.departments.get(department)
        region = known.region if known else None
    return Labels(item.code, department, region)


def department_of(events: Sequence[CaseEvent], item: Item) -> str:
    """The department a case of `item` is filed under (`labels_of`): the one its first handling
    event of that item names, else the item's: what its case file says too."""
    return stated_labels(own_events(events, item.code))[0] or item.department


def stated_labels(events) -> tuple[str | None, str | None]:
    """(department, region) the case's first handling events that name them state (`labels_of`)."""
    handling = [e for e in events if e.type not in READ_BY_NO_RULE]
    return (next((e.department for e in handling if e.department), None),
            next((e.region for e in handling if e.region), None))


def pushes_its_cases(department: str | None, judge: Judge) -> bool:
    """Whether the department runs its own system and pushes its cases (the catalog's `self_built`)."""
    known_department = judge.catalog.departments.get(department or "")
    return bool(known_department and known_department.self_built)


def came_by_import(events) -> bool:
    """Whether the case came by import: its acceptance registered first did (or none has come yet).
    Not the earliest stated one: an acceptance sent as import weeks later, stated earlier, made an
    online case's import events pushes; nor every one: a later online re-acceptance (补正) made a
    history imported on time late (both found by review)."""
    acceptances = [e for e in events if e.type is EventType.ACCEPTED]
    return not acceptances or registered_first(acceptances).channel is Channel.IMPORT


def evaluate(state: CaseState, judge: Judge, now: datetime) -> Evaluation:
    """The findings on a case at `now`, judged on the events that name its item (`own_events`)."""
    item = item_of(state, judge)
    events = own_events(state.events, item.code)
    labels = labels_of(state, item, judge, events)
    others = () if events is state.events else tuple(
        e for e in state.events if e.item_code != item.code and e.type not in READ_BY_NO_RULE)
    view = CaseView(read_timeline(events, item), item, judge.calendar, judge.config, state.verdicts,
                    self_built=pushes_its_cases(labels.department, judge),
                    imported=came_by_import(events), others=others)
    findings: list[Finding] = []
    for family in RULE_FAMILIES:
        findings.extend(family.detect(view, now))
    upcoming = deadlines.due(view, now)
    timeline = view.timeline
    return Evaluation(findings, min(upcoming) if upcoming else None, labels, timeline.stored_deadline(judge.calendar),
                      None if timeline.stated_deadline else timeline.promised_days, timeline.ended_at)


def case_clock(state: CaseState, now: datetime) -> datetime:
    """The moment a case is judged at: `now`, or the clock of its last judgement if that is later.

    Time never runs backwards for a case. The time rules only add findings as the clock moves on
    (a deadline passed stays passed), so judging at the later clock withdraws nothing that an
    event did not remove; a tick handled late, or a clock that starts again after a restart,
    cannot take back a red card.
    """
    return now if state.judged_at is None or now >= state.judged_at else state.judged_at


# Raised while a case waits for refused events (`judge_case`, `raised_while_waiting`): late
# registration, which judges each event's registration against its own time; and, while it waits
# only for events that cannot move its deadline nor end it (`OFF_THE_DEADLINE`; its acceptance,
# suspensions and end can), the rules of that deadline, with a suspension registered after it or
# back-dated to cover the case's overrun. Not a suspension covering a node's overrun: node runs
# change with a missing node event (a false red card, found by review).
REGISTRATION_RULES = frozenset({Rule.BACKFILL})
# Said of a card withdrawn by facts among which some were registered late (`judge_case`).
BACKFILLED_TEXT = "；其中有事件系事后补登，已另发红牌“网下运行、网上登记”"
DEADLINE_RULES = frozenset({Rule.OVERDUE, Rule.DEADLINE_NEAR})


# Events of these types stated after the case's deadline cannot move it (time after a deadline is
# not counted, and a case suspended through its deadline has none yet) nor make the case not open
# until then (`off_the_deadline`). Not a resumption: read with one stated later, an earlier one may
# resume only a suspension stated inside another (`alerts.timeline._inner_resumptions`), and the
# case stays suspended until the later one.
_NOT_BACK_AFTER_THE_DEADLINE = frozenset({EventType.SUSPENDED, EventType.CLOSED, EventType.WITHDRAWN})


def off_the_deadline(kind: EventType | None, stated: datetime | None, deadline: datetime | None,
                     suspended: bool = True, accepted_registered: datetime | None = None) -> bool:
    """Whether an event the case waits for (refused, or of another item: `judge_case`), of type
    `kind` and stated at `stated` (None: unknown), leaves the case's deadline (`deadline`, as its
    own events give it) and whether it was open until then as they are: a node, a decision, a
    rating or a return (`OFF_THE_DEADLINE`); or a suspension, closing or withdrawal stated after
    the deadline; or a resumption of a case with no suspension (`suspended`: one among its events or
    those it waits for), which resumes nothing. Before, a closing of another item stated a week
    after the deadline kept the case from its overdue card in one replay, and left the card standing
    when the events came in two; and a refused resumption of a case never suspended kept it from
    its overdue card for good (each found by a black-box test).
    A refused event of no known type (`kind` None) may be of any: stated after the deadline, of a
    case with no suspension, and registered after the case's first acceptance was
    (`accepted_registered`, `registered_after`), it is off the deadline whatever it was. Before, one
    such event kept a replay from the overdue card the live feed had raised before it came (found
    by review)."""
    if kind in OFF_THE_DEADLINE or (kind is EventType.RESUMED and not suspended):
        return True
    if not _stated_after(stated, deadline):
        return False
    if kind is None:
        return not suspended and registered_after(stated, accepted_registered)
    return kind in _NOT_BACK_AFTER_THE_DEADLINE


def _stated_after(stated: datetime | None, deadline: datetime | None) -> bool:
    return stated is not None and deadline is not None and stated > deadline


def replaces_a_deadline_card(finding: Finding) -> bool:
    """A suspension that moved the case's deadline after the fact (`retroactive_suspension`, of the
    case's deadline, not a node's): the card the facts that take a deadline card down raise in its
    place, raised with that withdrawal by a waiting case (`judge_case`)."""
    return finding.rule is Rule.RETROACTIVE_SUSPENSION and "covered_node" not in finding.evidence


def raised_while_waiting(finding: Finding, deadline_known: bool) -> bool:
    """Whether a case that waits for refused events, or sets aside events of another item, raises
    `finding` all the same (`judge_case`): a late registration; a fine outside the benchmark of the
    item its decision names, which no other event changes (found by a black-box test: one junk
    event kept a fine of 8,000 against a maximum of 5,000 from its card); and, with its deadline
    known (it waits only for events that cannot move it), its deadline's rules and a suspension
    that moved that deadline after the fact (else a suspension registered after the deadline, with
    one junk node event, withdrew a true red overdue and raised nothing: found by a black-box test)."""
    rule = finding.rule
    if rule in REGISTRATION_RULES or rule is Rule.DISCRETION_OUT_OF_RANGE:
        return True
    if not deadline_known:
        return False
    return rule in DEADLINE_RULES or replaces_a_deadline_card(finding)


def judge_case(state: CaseState, judge: Judge, now: datetime, raised_at: datetime,
               cause: str | Callable[[], str] | None = None) -> Outcome:
    """Re-evaluate a case at `now` (or at its last judgement's clock, if that is later).

    `cause`: what led to this judgement, in words (the new events), recorded as the reason of
    any withdrawal; or what says it, called only then.

    A case that waits for refused events (`CaseState.refused`) raises nothing new, but for the
    exceptions below: judged without them it may look late, or its nodes
    skipped (a refused acceptance made every closed case a red `skipped_node`). Its published
    alerts are judged as any case's, so one that the facts it has no longer support is withdrawn
    (a finding raised on part of its events, before the rest came), and nothing is due for it:
    the corrected event has it judged in full. Four exceptions (`raised_while_waiting`,
    `replaces_a_deadline_card`), all found by black-box tests:
    * an event registered long after it happened is `backfill` whatever else the case holds: else
      a department sent one junk event, then its handling back-dated weeks late, and its red card
      was withdrawn with no card for the back-dating;
    * a fine outside its item's benchmark is `discretion_out_of_range`, whatever else it holds;
    * when every event it waits for is of a type that cannot move its deadline nor end it
      (`OFF_THE_DEADLINE`: a node, a decision, a rating, a return), or a suspension, closing or
      withdrawal stated after that deadline (`off_the_deadline`), its deadline's rules
      (`DEADLINE_RULES`: overdue, deadline_near), and a suspension that moved that deadline after
      the fact, are judged and due as any case's: else one junk node event sent before the
      deadline kept the case from ever being overdue;
    * a deadline card its own facts take down comes down with the card they raise in its place
      (`replaces_a_deadline_card`): else a back-dated suspension withdrew a true red overdue while
      one junk event kept back the card of the back-dating.
    """
    if not state.events:  # known only by refused events: nothing to judge
        if state.next_due is None:
            return Outcome(state, [], None, None)
        return Outcome(state.evolve(next_due=None, revision=state.revision + 1), [], None, None)
    now = case_clock(state, now)
    result = evaluate(state, judge, now)
    findings, next_due = result.findings, result.next_due
    item_code = result.labels.item_code  # `case_item_code`, as `evaluate` found it
    # Ratings aside: no rule reads one, so a refused rating, or one naming another item, holds
    # nothing back (a junk rating kept a case closed without its last node from its red card: found
    # by a black-box test).
    # Nor does a node, a suspension or a resumption stated after the case's end (`holds_back`).
    ended_at = result.ended_at
    last_node_at = last_node_after_the_end(own_events(state.events, item_code), ended_at) \
        if ended_at is not None and (state.refused or any(e.item_code != item_code for e in state.events)) else None
    accepted_registered = acceptance_registered(own_events(state.events, item_code)) if state.refused else None
    holding = [kept for kept in state.refused.values() if holds_back(kept, ended_at, last_node_at, accepted_registered)]
    set_aside = set_aside_events(state.events, item_code, ended_at, last_node_at)
    standing = {k: a for k, a in state.alerts.items() if a.status is not AlertStatus.WITHDRAWN}  # published
    if holding or set_aside:
        # A case whose events name two items (one of them mistyped, or a case number reused) is
        # judged under the item most of its events name (`case_item_code`) on the events
        # that name it; those that name another are set aside, and the case waits for them as for
        # refused events of their types, whatever the order its events came in (`casefile` says
        # why). Judged with them, the other item's nodes unknown to it, its nodes looked skipped
        # (false red cards); judged on nothing, one event of another item withdrew its true red
        # cards, and one node event of another item kept an open case from ever being overdue
        # (each found by a black-box test).
        deadline = result.deadline
        # A refused event of no known type may be a suspension, but not one of before the deadline
        # when it is stated after it (`off_the_deadline`).
        suspended = (any(e.type is EventType.SUSPENDED for e in state.events)
                     or any(refused_type(kept) is EventType.SUSPENDED
                            or (refused_type(kept) is None and not _stated_after(refused_time(kept), deadline))
                            for kept in holding))
        deadline_known = (all(off_the_deadline(refused_type(kept), refused_time(kept), deadline, suspended,
                                               accepted_registered)
                              for kept in holding)
                          and all(off_the_deadline(e.type, e.occurred_at, deadline, suspended)
                                  for e in set_aside))
        findings = [f for f in findings if f.alert_id in standing or raised_while_waiting(f, deadline_known)]
        next_due = next_due if deadline_known else None
    judged_elsewhere = under_their_own_item(state, standing, findings, item_code, judge, now)
    findings = findings + [finding for finding, _ in judged_elsewhere]
    supported = {f.alert_id for f in findings}
    if (holding or set_aside) and any(a.rule in DEADLINE_RULES and k not in supported for k, a in standing.items()):
        # A deadline card the waiting case's own facts take down, and the card those same facts
        # raise in its place (`replaces_a_deadline_card`): both or neither. Before, a back-dated
        # suspension withdrew a true red overdue while one junk event held its own card back: a
        # cover-up (found by a black-box test).
        findings = findings + [f for f in result.findings
                               if f.alert_id not in supported and replaces_a_deadline_card(f)]
        supported = {f.alert_id for f in findings}
    unsupported: dict[str, str] = {}
    lost = [k for k in standing if k not in supported]
    if lost:
        reason = withdrawal_reason(cause() if callable(cause) else cause) if cause else rejudged_reason(
            state.events, state.judged_at, judge.calendar.tz, state.arrived,
            node_names=node_names(judge, item_code))
        unsupported = dict.fromkeys(lost, reason)
        # A back-dated suspension that moved the deadline now: its card raised by this judgement
        # (one standing from before did not take this card down: a catalog edit did, say).
        covered = any(f.rule is Rule.RETROACTIVE_SUSPENSION and f.alert_id not in standing for f in findings)
        # Late registrations among the facts that took it down: the backfill card this judgement
        # raised, or added to (a closing back-dated before the deadline and registered days later
        # withdrew the overdue, and its reason did not say the closing had a card of its own: found
        # by a black-box test).
        backfilled = any(f.rule is Rule.BACKFILL and (f.alert_id not in standing
                                                      or f.evidence != standing[f.alert_id].evidence)
                         for f in findings)
        for alert_id in lost:
            alert = standing[alert_id]
            if alert.rule in DEADLINE_RULES:  # what its deadline became, and why
                unsupported[alert_id] = reason + deadline_change(alert.evidence, result.deadline,
                                                                 result.promised_days, judge.calendar.tz) + (
                    "；所述挂起系事后补登，已另发红牌“事后补挂起”" if covered else "")
            if backfilled:
                unsupported[alert_id] += BACKFILLED_TEXT
    alerts, changed = reconcile(state.alerts, findings, result.labels, raised_at, unsupported,
                                {finding.alert_id: labels for finding, labels in judged_elsewhere})
    if changed or next_due != state.next_due or now != state.judged_at or state.arrived:
        # The clock is part of the state: an event that arrives later with an older clock is
        # judged at this one (the rules may need it: a deadline passed while the case waited).
        state = state.evolve(alerts=alerts, next_due=next_due, judged_at=now, arrived=(),
                             revision=state.revision + 1)
    return Outcome(state, changed, result.labels, result.deadline)


def under_their_own_item(state: CaseState, standing: Mapping[str, Alert], findings: list[Finding], item_code: str,
                         judge: Judge, now: datetime) -> list[tuple[Finding, Labels]]:
    """The findings that still support published cards raised under another item than `item_code`,
    the one the case is judged under now (`case_item_code`), each judged under its card's item on
    the events that name that item, with that item's labels. A card stands while the facts of its
    own item support it: before, events naming another item that outnumbered the case's own (five
    junk node events) made the case another item's, and its true red `skipped_node` card was
    withdrawn as if facts showed it never held (found by review). Only cards the judgement under
    `item_code` does not support already (`findings`) are looked at; none are raised here."""
    supported = {f.alert_id for f in findings}
    elsewhere = {a.item_code for k, a in standing.items() if a.item_code != item_code and k not in supported}
    out: list[tuple[Finding, Labels]] = []
    for code in sorted(elsewhere):
        events = tuple(e for e in state.events if e.item_code == code)
        if not events:
            continue
        own = state.evolve(events=events)
        try:
            result = evaluate(own, judge, now)
        except NotInCatalog:  # its item left the catalog: nothing of it is judged now
            continue
        out.extend((f, result.labels) for f in result.findings
                   if f.alert_id in standing and f.alert_id not in supported and standing[f.alert_id].item_code == code)
    return out


def pushes(event: CaseEvent, judge: Judge) -> bool:
    """Whether the event's department (its own, else its item's) pushes its cases from a self-built
    system (the catalog's `self_built`)."""
    item = judge.catalog.item(event.item_code)
    return pushes_its_cases(event.department or (item.department if item else None), judge)


def case_pushes(state: CaseState, judge: Judge) -> bool:
    """Whether the case's department, as the rules read it (`labels_of`, `CaseView.self_built`),
    pushes its cases; so too when its item is not in the catalog (nothing is known of it)."""
    try:
        return pushes_its_cases(labels_of(state, item_of(state, judge), judge).department, judge)
    except NotInCatalog:
        return True


def known(event: CaseEvent, judge: Judge) -> None:
    """NotInCatalog (UnknownItem, UnknownNode, UnknownDepartment) when the catalog lacks the event's
    item, its item the node, or the department the event names."""
    item = judge.item(event.item_code)
    if event.node is not None and event.type in NODE_EVENTS and item.node(event.node) is None:
        raise UnknownNode(item.code, event.node)
    if event.department and event.department not in judge.catalog.departments:
        raise UnknownDepartment(event.department)


def step(state: CaseState | None, event: CaseEvent, judge: Judge, now: datetime,
         raised_at: datetime, judging: bool = True) -> Outcome:
    """Apply one event and re-judge the case (without `judging`: `awaiting_judgement`).

    A redelivered event (its event_id is already in the case) changes nothing:
    the outcome has `is_new` False and the state as it was.
    """
    known(event, judge)  # unknown items and nodes are refused before they touch the state
    new_state, is_new = apply(state, event)
    if not is_new:
        return Outcome(new_state, [], None, None, is_new=False)
    if not judging:
        return awaiting_judgement(new_state, [event])
    return judge_case(new_state, judge, now, raised_at, lambda: cause_of([event], judge))


# When a case whose facts changed while a replay's input is incomplete is due to be judged: at
# once, as soon as anything is judged (the end of the input).
JUDGE_AT_ONCE = datetime(1970, 1, 1, tzinfo=timezone.utc)


def awaiting_judgement(state: CaseState, new: "list[CaseEvent]" = ()) -> Outcome:
    """A case whose facts changed while the input is incomplete (a replay): not judged yet, so
    that no alert is raised on a history whose later facts have not arrived (fed out of order, a
    case looks late, or its nodes skipped, until they do). Its alerts stand as last published; it
    is due at once (`JUDGE_AT_ONCE`), for the judgement at the end of the input, which sees every
    fact: an inspector sees only the final word."""
    # What came since its last judgement (none yet: nothing to withdraw, nothing kept).
    arrived = state.arrived if state.judged_at is None else state.arrived + tuple(
        e.event_id for e in new if e.event_id not in state.arrived)
    return Outcome(state.evolve(next_due=JUDGE_AT_ONCE, arrived=arrived, revision=state.revision + 1), [], None, None)


def judge_verdict(state: CaseState, verdict: Verdict, judge: Judge, now: datetime, raised_at: datetime) -> Outcome:
    """Take a peer group's verdict on one of the case's decisions, and re-judge the case."""
    new_state, changed = apply_verdict(state, verdict.event_id, verdict.evidence)
    if not changed:
        return Outcome(state, [], None, None, is_new=False)
    return judge_case(new_state, judge, now, raised_at, f"同类处罚比较结果的更新（决定事件 {verdict.event_id}）")


@dataclass(frozen=True, slots=True)
class CaseBatch:
    """A case after the events and verdicts of one unit: applied one by one, judged once."""
    state: CaseState | None
    outcome: Outcome | None  # the judgement, when anything changed
    new: list[CaseEvent]
    duplicates: list[CaseEvent]
    refused: list[tuple[CaseEvent, NotInCatalog]]  # unknown items, nodes and departments, with why
    # (the copy, the version the case holds, what they say differently) of events of this unit
    # that came again under an event_id the case holds, with other content
    # (`alerts.state.content_differences`): refused
    conflicts: list[tuple[CaseEvent, CaseEvent, list]] = field(default_factory=list)
    # The events the case held, as it holds them now that a copy of this unit stated their channel
    # (`alerts.state.restated`): counted among the duplicates, their rows written again
    restated: list[CaseEvent] = field(default_factory=list)


def step_many(state: CaseState | None, events: list[CaseEvent], verdicts: list[Verdict], judge: Judge,
              now: datetime, raised_at: datetime, judging: bool = True,
              refusals: list[tuple[str, str, str]] = (), releases: list[str] = ()) -> CaseBatch:
    """Apply a case's events (and its peer groups' verdicts) of one unit, then judge it once
    (without `judging`: `awaiting_judgement`). `refusals`: (event_id, case_id, reason) of the
    case's events the pipeline refused before they could be read as events (`refuse`); an event
    the catalog refuses here is recorded so too: the case waits for it (`judge_case`). `releases`:
    event ids of refused events an operator closed as no event of the case (`release`): the case
    stops waiting for them and is judged again.

    The result is the one `step` gives event by event: the detectors read the whole history and
    time never runs backwards for a case, so one judgement at the unit's clock is the last of
    theirs. Unknown items, nodes and departments are refused before they touch the state."""
    new: list[CaseEvent] = []
    duplicates: list[CaseEvent] = []
    refused: list[tuple[CaseEvent, NotInCatalog]] = []
    conflicts: list[tuple[CaseEvent, CaseEvent, list]] = []
    restated_events: dict[str, CaseEvent] = {}  # by event_id: the last restatement of each
    case_pushing: tuple[CaseState, bool] | None = None
    marked = False
    for event_id, case_id, reason in refusals:
        state, moved = refuse(state, case_id, event_id, reason)
        marked = marked or moved
    released = list(releases) if state is not None else []
    for event_id in released:
        state = release(state, event_id)
    for event in events:
        try:
            known(event, judge)
        except NotInCatalog as exc:
            refused.append((event, exc))
            state, moved = refuse(state, event.case_id, event.event_id, catalog_refusal(exc.reason, event))
            marked = marked or moved
            continue
        state, is_new = apply(state, event)
        if not is_new:
            held = state.event_of(event.event_id)
            if case_pushing is None or case_pushing[0] is not state:  # once per state: a redelivery is all copies
                case_pushing = (state, case_pushes(state, judge))
            # Either copy's department, or the case's: the same pair is one event or two whichever came first
            pushing = pushes(held, judge) or pushes(event, judge) or case_pushing[1]
            differences = content_differences(held, event, pushing)
            if differences:  # not the same event again: another fact under its id
                conflicts.append((event, held, differences))
                continue
            stated = restated(held, event, pushing)
            if stated is not None:
                state = with_event(state, stated)
                restated_events[stated.event_id] = stated
        (new if is_new else duplicates).append(event)
    restated_list = list(restated_events.values())
    taken = new + restated_list
    changed = bool(taken)
    cause = (lambda: cause_of(taken, judge)) if taken else None  # in words only for a withdrawal
    for verdict in verdicts:
        if state is None:
            break
        state, moved = apply_verdict(state, verdict.event_id, verdict.evidence)
        if moved:
            changed = True
            cause = cause or f"同类处罚比较结果的更新（决定事件 {verdict.event_id}）"
    changed = changed or marked  # an event refused: the case waits for it from now on
    if released:  # judged again without the events it waited for
        changed = True
        cause = cause or f"退信中的事件 {'、'.join(released)} 经人工关闭（不是本办件的事件），办件不再等待"
    if not changed or state is None:
        return CaseBatch(state, None, new, duplicates, refused, conflicts, restated_list)
    if not judging:
        return CaseBatch(state, awaiting_judgement(state, taken), new, duplicates, refused, conflicts, restated_list)
    return CaseBatch(state, judge_case(state, judge, now, raised_at, cause), new, duplicates, refused, conflicts,
                     restated_list)
