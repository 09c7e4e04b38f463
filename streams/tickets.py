"""The ticket agent's steps: alerts, actions and ticks in; tickets, their rows and notices out.

The ticket agent takes units (`streams.steps.Unit`) of two co-partitioned topics keyed by case:
``alerts`` (every alert version, published once its row is written) and
``sunlight-ticket-ticks`` (internal: a timer asking for a case's tickets to be advanced, or an
action routed there from ``ticket-actions``). Per unit:

1. **decode**: alert versions, actions and ticks, grouped by case; what cannot be read becomes a
   dead letter with its reason;
2. **apply**: per case, its alert versions (`alerts.tickets.on_alert`), its actions
   (`act`: the clock's steps due before it, then the action; a refused one goes to the dead
   letters with its reason and changes nothing),
   then the clock (`advance`), all at the partition's clock;
3. **write**: the case's tickets, one record, into the table and its changelog; each new ticket
   version as a row of ``tickets``; each notice recorded in ``notices`` before anything sends it;
4. **commit**: as the case agent does, once the rows are written.

The router agent reads ``ticket-actions`` (any key: an OA system need not know the case) and
sends each readable action to the ticket-ticks partition of its case.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Callable

import orjson

from alerts.model import Alert
from alerts.notices import NoticeText, render_notice, told_once
from alerts.tickets import (Action, ActionKind, ActionRefused, Notice, Resolution, Step, Ticket, TicketPolicy,
                            TicketStatus, act, advance, case_of, on_alert, rule_of, standing_notices)
from sinks.rows import notice_row, ticket_row
from streams import metrics
from streams.internal_wire import is_nudge, routed_action
from streams.notices import FINISHED_VERSION, HELD, HELD_VERSION, QUIET_HELD, UNSENT, notice_to_json
from streams.clock import wall_now
from streams.codec import exact
from streams.steps import Letter, Unit
from streams.store import InStoreOnly, TableStore
from streams.ticket_codec import ticket_to_json, tickets_from_json, tickets_to_json

MAX_ACTION_BYTES = 64 * 1024
_AT_REST = (TicketStatus.CLOSED, TicketStatus.WITHDRAWN)


@dataclass
class CaseTickets:
    """A case's tickets by rule, and the latest version of its alerts that open none (an
    inspector may open a ticket from one by hand)."""
    case_id: str
    tickets: dict[str, Ticket] = field(default_factory=dict)
    others: dict[str, Alert] = field(default_factory=dict)

    def encode(self) -> bytes:
        """The table's value: of its own size, as a case's state is (`streams.codec.exact`)."""
        return exact(orjson.dumps({"tickets": tickets_to_json(self.tickets),
                                   "others": [a.to_json() for a in self.others.values()]}))

    @property
    def at_rest(self) -> bool:
        """Nothing more will happen to these tickets by the clock or by a department: each is
        closed, withdrawn, or settling with nothing left to open it. (An alert or an inspector may
        still wake them: then they are read back from the store.)"""
        return all((t.status in _AT_REST or t.status is TicketStatus.SETTLING) and t.next_due is None
                   for t in self.tickets.values())  # a closed ticket's coming round is due: not at rest

    @classmethod
    def decode(cls, case_id: str, raw: bytes) -> "CaseTickets":
        obj = orjson.loads(raw)
        return cls(case_id, tickets_from_json(obj["tickets"]),
                   {a["alert_id"]: Alert.from_json(a) for a in obj["others"]})

    def due_under(self, silences) -> datetime | None:
        """The next moment the clock changes one of its tickets, under the silences in force now
        (`alerts.tickets.Ticket.due_under`)."""
        return min((due for t in self.tickets.values() if (due := t.due_under(silences)) is not None), default=None)


class TicketStore(TableStore):
    """Cases' tickets, kept in a Faust table (one encoded record per case); a case with none has an
    empty record. A case's tickets at rest are let go with the case (`evict`), and read back from
    the store when anything about them arrives (`bring_back`)."""

    def __init__(self, table, write: Callable[[str, bytes, int], None], cache_size: int,
                 delete: Callable[[str, int], None] | None = None):
        super().__init__(table, write, cache_size, CaseTickets.decode, CaseTickets.encode)
        self.delete = delete  # (case_id, partition): out of the table's data, a tombstone in its changelog
        self.written: dict[str, int] = {}  # case -> partition, since the pipeline last indexed
        # Reading cases' tickets back: async (case_ids) -> {case_id: CaseTickets} of those the store holds.
        self.load: Callable | None = None
        self.in_store = InStoreOnly()
        self.in_hand: set[str] = set()  # the cases of the unit being applied: never let go meanwhile
        self.evicted = 0
        self.brought_back = 0

    def seed(self, cases: dict[str, CaseTickets], in_store) -> None:
        """Seed the table from the store (a fresh embedded broker): these cases' tickets, and the
        ids of the cases whose tickets are at rest there (read back only if needed)."""
        self.seeds = dict(cases)
        self.in_store.seed(in_store)

    def _held(self, case_id: str) -> bool:
        return case_id in self.cache or case_id in self.seeds or bool(self.table.data.get(case_id))

    def get(self, case_id: str, partition: int) -> CaseTickets:
        if case_id in self.seeds and case_id not in self.cache and not self.table.data.get(case_id):
            # A seed becomes the table's record at once: held only in the cache, it would be lost
            # once the cache let it go, and the case's next alert would start its tickets anew.
            tickets = self.seeds.pop(case_id)
            self.put(tickets, partition)
            return tickets
        return super().get(case_id) or CaseTickets(case_id)

    def put(self, tickets: CaseTickets, partition: int) -> None:
        self.put_value(tickets.case_id, tickets, partition)
        self.written[tickets.case_id] = partition

    async def bring_back(self, case_ids) -> None:
        """Read back from the store the tickets of a unit's cases that were let go, so that a late
        alert or an action meets them (as seeds: see `get`)."""
        self.in_hand = set(case_ids)
        if self.load is None:
            return
        asked = self.in_store.to_ask(case_ids, self._held)
        if not asked:
            return
        for case_id, tickets in (await self.load(asked)).items():
            if not self._held(case_id):  # nothing new came meanwhile
                self.seeds[case_id] = tickets
                self.brought_back += 1

    def evict(self, case_id: str, partition: int) -> bool:
        """Let a case's tickets go with the case (its rows are in the store), if they are at rest
        and no unit has them in hand: out of the table, its cache and its changelog. False: they
        stay (or there were none)."""
        if self.delete is None or case_id in self.in_hand:
            return False
        stored = self.table.data.get(case_id)
        held = self.cache.get(case_id) or (CaseTickets.decode(case_id, stored) if stored else self.seeds.get(case_id))
        if held is None or not held.at_rest:
            return False
        if stored:
            self.delete(case_id, partition)
        self.cache.pop(case_id, None)
        self.seeds.pop(case_id, None)
        self.written.pop(case_id, None)
        self.in_store.add(case_id)
        self.evicted += 1
        return True

    def stored(self, silences=()):
        """(case_id, next due) of every case in the table this worker holds, under `silences`."""
        for case_id, stored in list(self.table.data.items()):
            if stored:
                yield case_id, CaseTickets.decode(case_id, stored).due_under(silences)


@dataclass
class TicketWork:
    alerts: list[Alert] = field(default_factory=list)
    # When the facts of each alert were registered (its record's `facts_registered_at`), by alert_id
    registered: dict[str, datetime] = field(default_factory=dict)
    actions: list[tuple[Any, Action]] = field(default_factory=list)  # (record, action)
    tick: bool = False


def decode_ticket_unit(unit: Unit, ticks_topic: str) -> tuple[dict[str, TicketWork], list[Letter]]:
    cases: dict[str, TicketWork] = {}
    letters: list[Letter] = []
    for record in unit.records:
        try:
            value = orjson.loads(record.value)
            if unit.topic != ticks_topic:
                alert = Alert.from_json(value)
                registered = _aware_time(value.get("facts_registered_at"))
                work = cases.setdefault(alert.case_id, TicketWork())
                work.alerts.append(alert)
                if registered is not None:
                    work.registered[alert.alert_id] = registered
            elif is_nudge(value):
                continue
            elif "action" in value:
                action = Action.from_json(value["action"])
                cases.setdefault(case_of(action.ticket_id), TicketWork()).actions.append((record, action))
            else:
                cases.setdefault(str(value["case_id"]), TicketWork()).tick = True
        except ActionRefused as exc:  # routed already, so readable: kept, never fatal
            letters.append(Letter(record, unit.topic, unit.partition, exc.reason, exc.detail))
        except Exception as exc:
            letters.append(Letter(record, unit.topic, unit.partition, "internal_error",
                                  f"unreadable message on {unit.topic}: {exc}"))
    return cases, letters


def _aware_time(text: Any) -> datetime | None:
    """A time with its offset from an alert record's addition; None when absent or unreadable (the
    alert is taken as without it: settled from its business time)."""
    try:
        at = datetime.fromisoformat(text) if isinstance(text, str) else None
    except ValueError:
        return None
    return at if at is not None and at.tzinfo is not None else None


def route_action(raw: bytes | None) -> tuple[str, Action] | None:
    """The case an action record belongs to, and the action (None for a nudge, see
    `DeliveryWatch.retry`, streams/delivery.py); ActionRefused when it is not one."""
    if not raw or len(raw) > MAX_ACTION_BYTES:
        raise ActionRefused("malformed_action", f"an action of {len(raw or b'')} bytes")
    try:
        obj = orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        raise ActionRefused("invalid_json", str(exc)) from None
    if is_nudge(obj):
        return None
    action = Action.from_json(obj)
    return case_of(action.ticket_id), action


async def route_unit(unit: Unit, outputs, ticks_topic: str) -> None:
    """The router's step: each readable action to the ticket-ticks partition of its case (with
    the unit's other records, through the outbox); what is not an action to the dead letters."""
    for record in unit.records:
        try:
            routed = route_action(record.value)
        except ActionRefused as exc:
            await outputs.dead_letter(record, unit.topic, unit.partition, exc.reason, exc.detail)
            continue
        if routed is not None:
            case_id, action = routed
            outputs.outbox.add(ticks_topic, case_id.encode(), routed_action(action))


class TicketSteps:
    """Apply and write: what the ticket agent does with a decoded unit."""

    def __init__(self, store: TicketStore, catalog, clock, outputs, policy: Callable[[], TicketPolicy],
                 texts: Callable[[], NoticeText]):
        self.store = store
        self.catalog_source = catalog
        self.clock = clock
        self.out = outputs
        self.policy = policy
        self.texts = texts
        self.hold_back: Callable | None = None  # awaited after each case: backpressure, set by the pipeline

    async def process(self, unit: Unit, cases: dict[str, TicketWork], letters: list[Letter]) -> None:
        for letter in letters:
            await self.out.dead_letter(letter.record, letter.topic, letter.partition, letter.reason, letter.detail)
        now = self.clock.now(unit.partition)
        try:
            await self.store.bring_back(list(cases))
            for case_id, work in cases.items():
                await self.case(case_id, work, unit, now)
                if self.hold_back is not None:  # a unit of alert versions may hold many cases' tickets
                    await self.hold_back()
        finally:
            self.store.in_hand = set()

    async def case(self, case_id: str, work: TicketWork, unit: Unit, now: datetime) -> None:
        calendar = self.catalog_source.judge.calendar
        policy = self.policy()
        held = self.store.get(case_id, unit.partition)
        tickets = dict(held.tickets)
        others = dict(held.others)
        versions: list[Ticket] = []
        notices: list[Notice] = []
        for alert in work.alerts:
            if not policy.opens(alert.rule, alert.severity) and alert.rule.value not in tickets:
                known = others.get(alert.alert_id)
                if known is None or known.version < alert.version:
                    others[alert.alert_id] = alert
            ticket = tickets.get(alert.rule.value)
            if ticket is None and not policy.opens(alert.rule, alert.severity):
                continue
            # Live, a finding is seen when it comes; in a replay or an import, not before its facts
            # were registered: a history pushed late (a self-built system's month at once) had each
            # ticket opened, escalated and mailed to the contact, the head and the inspection office
            # in one second, its reply deadline weeks gone (found by a black-box test).
            seen = now if self.clock.findings_seen_now else work.registered.get(alert.alert_id)
            out = on_alert(ticket, alert, policy, calendar, now, seen_at=seen,
                           quiet=not self.out.settings.notify, clock=False)  # opened below, the unit's cards in
            if out.ticket is not None:
                tickets[alert.rule.value] = out.ticket
            versions += out.versions
            notices += out.notices
        for record, action in work.actions:
            rule = rule_of(action.ticket_id)
            alert = None
            if action.kind is ActionKind.OPEN:
                alert = others.get(action.alert_id or "")
                if alert is not None and alert.rule.value != rule:
                    alert = None
            try:
                out = act(tickets.get(rule), action, policy, calendar, self.clock.latest(), alert)
            except ActionRefused as exc:
                metrics.TICKET_ACTIONS.labels(action.kind.value, exc.reason).inc()
                await self.out.dead_letter(record, unit.topic, unit.partition, exc.reason, exc.detail)
                continue
            metrics.TICKET_ACTIONS.labels(action.kind.value, "applied").inc()
            tickets[rule] = out.ticket
            versions += out.versions
            notices += out.notices
        for rule, ticket in list(tickets.items()):
            out = advance(ticket, policy, calendar, now)
            tickets[rule] = out.ticket
            versions += out.versions
            notices += out.notices
        changed = tickets != held.tickets or others != held.others
        if not versions and (work.alerts or work.actions) and _redelivered(held, work):
            # Inputs this state has taken already: a redelivery after a crash, which may have come
            # after the state's changelog record but before its rows were written. Write the rows
            # and record the notices its record stands for again (keyed rows; the notifier sends
            # only what its log does not have finished).
            versions = [t for t in tickets.values() if t.visible]
            notices = [n for t in versions for n in standing_notices(t)]
        if changed:
            self.store.put(CaseTickets(case_id, tickets, others), unit.partition)
        elif work.tick or work.alerts:
            self.store.written[case_id] = unit.partition  # its next moment is indexed again
        written_at = wall_now()
        versions += [t for rule, t in tickets.items() if not t.visible and t != held.tickets.get(rule)]
        for version in versions:
            self.out.writer.add("tickets", ticket_row(version, written_at, orjson.dumps(ticket_to_json(version)).decode()))
            metrics.TICKET_CHANGES.labels(version.last.kind if version.last else "settling").inc()
        texts = self.texts()
        topic = self.out.settings.notices_topic
        # Each notice in the words of the version that made it (`Notice.made_at`), not the unit's last.
        made = {(t.ticket_id, t.version): t for t in versions}

        def ticket_of(notice: Notice) -> Ticket:
            return made.get((notice.ticket_id, notice.made_at)) or tickets[rule_of(notice.ticket_id)]

        notices = told_once(notices, ticket_of, self.catalog_source.judge.catalog)
        for notice in notices:
            ticket = ticket_of(notice)
            rendered = render_notice(notice, ticket, self.catalog_source.judge.catalog, texts,
                                     latest=tickets[rule_of(notice.ticket_id)])
            answers_reply = notice.step is Step.RETURNED or (
                notice.step is Step.CLOSED and ticket.resolution is Resolution.ACCEPTED)
            notify = self.out.settings.notify
            if ticket.quiet and not answers_reply:
                # The ticket was made by a process that sends nothing (history: its department never
                # heard of it, `Ticket.quiet`; only a return or an acceptance, which answer its reply,
                # reach it): held as it is recorded, never handed to a notifier, so that no later
                # process with a channel sends it either. Above a recorded row (a later process's, of
                # the same notice), below the notifier's outcome (a notice sent before, recorded again).
                self.out.writer.add("notices", notice_row(rendered, written_at, status="held",
                                                          last_error=HELD if not notify else QUIET_HELD,
                                                          version=HELD_VERSION))
                metrics.NOTICES.labels(notice.step.value, "held").inc()
                continue
            if not notify:
                # Sending is off here (`replay`, `import` without --notify), but the ticket's department
                # was told of it: its escalation must reach the head all the same. Recorded as failed,
                # for `sunlight notices resend` or a worker's resend; held, it was lost for good (found by
                # a black-box test: a routine import of another department's push took the level 1 and
                # level 2 of a live ticket, and neither the head nor the office was ever told).
                self.out.writer.add("notices", notice_row(rendered, written_at, status="failed", last_error=UNSENT,
                                                          version=FINISHED_VERSION))  # as a notifier's failure
                metrics.NOTICES.labels(notice.step.value, "unsent").inc()
                continue
            # Recorded first; to the notifier only once that row is written.
            self.out.writer.add("notices", notice_row(rendered, written_at))
            payload = orjson.dumps(notice_to_json(rendered))
            self.out.writer.batch.after_write.append(
                lambda k=case_id.encode(), v=payload: self.out.send(topic, k, v, None))
            metrics.NOTICES.labels(notice.step.value, "recorded").inc()


def _redelivered(held: CaseTickets, work: TicketWork) -> bool:
    """Does the unit bring an alert version or an action the case's tickets have taken already?"""
    for alert in work.alerts:
        ticket = held.tickets.get(alert.rule.value)
        bundled = ticket.alerts.get(alert.alert_id) if ticket else None
        if bundled is not None and bundled.version >= alert.version:
            return True
    return any(action.action_id in t.actions for _, action in work.actions for t in held.tickets.values())


def tickets_from_store(rows, alerts: dict[str, list[Alert]], policy: TicketPolicy, tz=None
                       ) -> tuple[dict[str, CaseTickets], list[tuple[bytes, bytes]]]:
    """Cases' tickets from the store: the latest stored state of each ticket (`rows` of case_id
    and `tickets.state`), with each case's stored alerts (latest versions) that open no ticket
    (an inspector may open one from them by hand). Also the alert versions the tickets have not
    taken (written, but the process died before the ticket agent had them), to hand to it again."""
    from streams.ticket_codec import ticket_from_json

    cases: dict[str, CaseTickets] = {}
    for case_id, state in rows:
        ticket = ticket_from_json(orjson.loads(state))
        cases.setdefault(case_id, CaseTickets(case_id)).tickets[ticket.rule.value] = ticket
    untaken = []
    for case_id, case_alerts in alerts.items():
        tickets = cases.get(case_id)
        others: dict[str, Alert] = {}
        for alert in case_alerts:
            if not policy.opens(alert.rule, alert.severity):
                known = others.get(alert.alert_id)
                if known is None or known.version < alert.version:
                    others[alert.alert_id] = alert
                continue
            ticket = tickets.tickets.get(alert.rule.value) if tickets else None
            bundled = ticket.alerts.get(alert.alert_id) if ticket else None
            if bundled is None or bundled.version < alert.version:
                untaken.append((case_id.encode(), orjson.dumps(alert.to_json(tz))))  # as published, less facts_registered_at
        if others:
            cases.setdefault(case_id, CaseTickets(case_id)).others.update(others)
    return cases, untaken


def tickets_in_store(client, case_ids: list[str], policy: TicketPolicy) -> dict[str, CaseTickets]:
    """The tickets the store holds of these cases (let go earlier), as `tickets_from_store` builds them."""
    from sinks.case_history import stored_case_alerts
    from sinks.queries import stored_ticket_states

    cases, _ = tickets_from_store(stored_ticket_states(client, case_ids), stored_case_alerts(client, case_ids),
                                  policy)
    return cases
