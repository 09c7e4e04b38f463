"""Supervision tickets (督办件): what happens after a red card.

A ticket bundles one rule's alerts about one case (two skipped nodes of a case are one
ticket). It opens once its alerts have stood for a settling time, counted from the finding's
business time (the earliest `event_time` of its alerts), so that a red card late data
withdraws at once never reaches a department, and so that the same events give the same
tickets in any order. Live, a finding whose facts arrive late settles from when it reached the
tickets (`BundledAlert.stands_from`). From its opening the department has a number of working days to reply;
the inspector accepts the reply or returns it. Silence escalates along a ladder: at the
deadline to the department head (level 1, the ticket becomes `overdue`), some working days
later to the discipline-inspection office (level 2).

Pure: a ticket and a fact (an alert version, an action, the clock) in, the changed ticket and
its notices out. Every change is a new version with who acted, when and the text; the stream
stores the latest version and writes each change as a row.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta
from typing import Any, Mapping, Sequence

from alerts.calendar import WorkCalendar
from alerts.describe import moment
from alerts.detectors.deadlines import PASSED
from alerts.events import CaseEvent, EventType, Refused
from alerts.model import SEVERITY as SEVERITY_OF, SEVERITY_TITLE, Alert, AlertStatus, Rule, Severity

MAX_TEXT_CHARS = 2000
SYSTEM = "sunlight"  # the actor of the changes the clock and the alerts make
SYSTEM_TITLE = "电子监察系统"  # how people read SYSTEM as an actor (pages, `tickets show`)


def actor_title(actor: str) -> str:
    """An actor of a ticket's history as people read it: the system's changes by name in Chinese."""
    return SYSTEM_TITLE if actor == SYSTEM else actor


def rounds(history: list[dict]) -> list[tuple[int, list[dict]]]:
    """A ticket's history (`sinks.queries.ticket_history`, oldest first) by round, oldest first:
    (round, its versions)."""
    out: list[tuple[int, list[dict]]] = []
    for version in history:
        number = version.get("round", 1)
        if not out or out[-1][0] != number:
            out.append((number, []))
        out[-1][1].append(version)
    return out


def rounds_with_notices(history: list[dict], notices: list[dict]) -> list[tuple[int, list[dict], list[dict]]]:
    """`rounds`, each with the notices sent in it (`sinks.queries.stored_notices`), read from their
    ids (`notice_round`); a notice of a round whose versions are not in `history` goes with the last."""
    out = [(number, versions, []) for number, versions in rounds(history)] or [(1, [], [])]
    at = {number: sent for number, _, sent in out}
    for notice in notices:
        at.get(notice_round(notice["notice_id"]), out[-1][2]).append(notice)
    return out


def notice_round(notice_id: str) -> int:
    """The round of the ticket a notice was sent in, read from its id as `_notice` makes it."""
    head, slash, last = notice_id.rpartition("/r")
    return int(last) if slash and head and last.isdigit() else 1


INSPECTORS = "inspection"  # the department code an inspector's actions carry


class TicketStatus(enum.StrEnum):
    SETTLING = "settling"  # its alerts have not stood long enough: not yet a ticket anyone sees
    OPEN = "open"
    REPLIED = "replied"
    RETURNED = "returned"
    CLOSED = "closed"
    WITHDRAWN = "withdrawn"


class Resolution(enum.StrEnum):
    ACCEPTED = "accepted"  # the inspector accepted the department's reply
    CLOSED_BY_INSPECTOR = "closed_by_inspector"


class ActionKind(enum.StrEnum):
    OPEN = "open"  # an inspector opens a ticket by hand (from a yellow alert)
    REPLY = "reply"
    ACCEPT = "accept"
    RETURN = "return"
    CLOSE = "close"


class Step(enum.StrEnum):
    """A step of the ladder: each sends exactly one notice per ticket (a return may repeat)."""
    OPENED = "opened"  # to the department's contact
    RETURNED = "returned"  # to the department's contact
    LEVEL_1 = "level_1"  # to the department head
    LEVEL_2 = "level_2"  # to the discipline-inspection office
    WITHDRAWN = "withdrawn"  # to each the round's notices reached: its alerts were all withdrawn
    CLOSED = "closed"  # to the department's contact: an inspector accepted its reply, or closed the ticket


STATUS_TITLE: Mapping[TicketStatus, str] = {
    TicketStatus.SETTLING: "待生成", TicketStatus.OPEN: "待答复", TicketStatus.REPLIED: "已答复待审核",
    TicketStatus.RETURNED: "已退回重办", TicketStatus.CLOSED: "已办结", TicketStatus.WITHDRAWN: "已撤销",
}
KIND_TITLE: Mapping[str, str] = {
    "opened": "生成督办件", "reply": "部门答复", "accept": "审核通过", "return": "退回重办", "close": "督办办结",
    "open": "人工督办", "withdrawn": "撤销（预警已撤回）", "overdue": "逾期未答复", "level_1": "升级至部门负责人",
    "level_2": "升级至纪检监察机构", "alerts": "预警更新", "reopened": "重新生效", "held_sent": "静默结束补发通知",
}

STEP_TITLE: Mapping[str, str] = {
    "opened": "督办通知", "returned": "退回重办通知", "level_1": "升级至部门负责人", "level_2": "升级至纪检监察机构",
    "withdrawn": "撤销通知", "closed": "办结通知",
}
# A ticket's escalation level in words (0: with the department; 1: its head urged; 2: the
# discipline-inspection office told).
ESCALATION_TITLE: Mapping[int, str] = {0: "未升级", 1: "已升级至部门负责人", 2: "已升级至纪检监察机构"}
RESOLUTION_TITLE: Mapping[str, str] = {"accepted": "答复经审核通过", "closed_by_inspector": "督查人员办结"}
NOTICE_STATUS_TITLE: Mapping[str, str] = {
    "recorded": "待发送", "sent": "已发送", "held": "仅记录未发送", "failed": "发送失败",
}


def escalation_title(level: int, status: str) -> str:
    """A ticket's escalation level in words; a withdrawn one's as it stood before it was withdrawn
    (its card never held: it read as escalated now, found by a black-box test)."""
    title = ESCALATION_TITLE.get(level, str(level))
    return f"撤销前{title}" if status == TicketStatus.WITHDRAWN and level else title


def notice_outcome(status: str, at: str | None, attempts: int) -> str:
    """A notice's state in words, with when it was sent (or last failed) and after how many tries,
    as the notice log keeps it (`notices.updated_at`, `attempts`): its due time alone said "sent"
    of a mail that left two weeks later, and a notice sent on its third try showed no failure
    (found by a black-box test: a department's "we only got it on the 5th" could not be checked)."""
    title = NOTICE_STATUS_TITLE.get(status, status)
    when = moment(at) if at else ""
    if status == "sent" and when:
        return f"{title}（{when} 发出" + (f"，第 {attempts} 次尝试）" if attempts > 1 else "）")
    if status == "failed" and when:
        return f"{title}（{when}，已尝试 {attempts} 次）"
    return title


_VERB = {ActionKind.OPEN: "督办", ActionKind.REPLY: "答复", ActionKind.ACCEPT: "审核通过", ActionKind.RETURN: "退回重办",
         ActionKind.CLOSE: "办结"}
_DONE = {ActionKind.OPEN: "opened", ActionKind.REPLY: "replied to", ActionKind.ACCEPT: "accepted",
         ActionKind.RETURN: "returned", ActionKind.CLOSE: "closed"}


class ActionRefused(Refused):
    """An action that changes nothing, with the reason the dead-letter topic records."""


@dataclass(frozen=True, slots=True)
class Ladder:
    """Whether a rule and severity open tickets, and the times of their ladder."""
    settle: timedelta = timedelta(hours=1)
    reply_days: int = 3  # working days from the opening to the deadline (level 1 at the deadline)
    level_2_days: int = 2  # working days after the deadline to level 2


@dataclass(frozen=True, slots=True)
class TicketPolicy:
    """Which alerts open tickets (default: every red rule) and their ladders, by rule and severity."""
    rules: frozenset[tuple[Rule, Severity]] = frozenset(
        (rule, Severity.RED) for rule in (Rule.OVERDUE, Rule.SKIPPED_NODE, Rule.BACKFILL,
                                          Rule.RETROACTIVE_SUSPENSION, Rule.DISCRETION_OUT_OF_RANGE))
    default_ladder: Ladder = Ladder()
    ladders: Mapping[tuple[Rule, Severity], Ladder] = field(default_factory=dict)
    silences: tuple["Silence", ...] = ()

    def opens(self, rule: Rule, severity: Severity) -> bool:
        return (rule, severity) in self.rules

    def ladder(self, rule: Rule, severity: Severity) -> Ladder:
        return self.ladders.get((rule, severity), self.default_ladder)


@dataclass(frozen=True, slots=True)
class Silence:
    """Stops tickets and notices (never alerts) for an item or a department until a moment."""
    silence_id: str
    until: datetime
    reason: str
    item_code: str | None = None
    department: str | None = None

    @classmethod
    def from_record(cls, record: Mapping[str, Any]) -> "Silence":
        """From its stored form: an expired silence ends when it was expired."""
        def moment(value):
            return value if isinstance(value, datetime) else datetime.fromisoformat(value)

        until = moment(record["until"])
        if record.get("expired_at"):
            until = min(until, moment(record["expired_at"]))
        return cls(record["silence_id"], until, record["reason"], record.get("item_code"), record.get("department"))

    def covers(self, item_code: str, department: str, at: datetime) -> bool:
        if at >= self.until:
            return False
        return (self.item_code is not None and self.item_code == item_code) or (
            self.department is not None and self.department == department)


@dataclass(frozen=True, slots=True)
class BundledAlert:
    alert_id: str
    status: AlertStatus
    node: str | None
    event_time: datetime
    evidence: Mapping[str, Any]
    version: int
    # Live operation: when the finding first reached the tickets (None in a replay, which judges
    # each case with every fact it will get).
    seen_at: datetime | None = None

    @classmethod
    def of(cls, alert: Alert, seen_at: datetime | None = None) -> "BundledAlert":
        return cls(alert.alert_id, alert.status, alert.node, alert.event_time, dict(alert.evidence), alert.version,
                   seen_at)

    @property
    def stands_from(self) -> datetime:
        """From when the finding has stood for the settling time: its business time, or, live, when
        it reached the tickets if that is later (its facts arrived late)."""
        if self.seen_at is not None and self.seen_at > self.event_time:
            return self.seen_at
        return self.event_time


@dataclass(frozen=True, slots=True)
class Change:
    """One appended, versioned change of a ticket: who, when, what, and the status after it."""
    version: int
    at: datetime
    actor: str
    kind: str
    text: str
    status: TicketStatus


@dataclass(frozen=True, slots=True)
class Notice:
    """A notice to send, identified by its ticket and step (a return by its version). `made_at` is
    the version of its ticket that made it, the one its words are of (`streams.tickets` renders each
    notice of a unit with it: with the unit's last, a round's withdrawal read as the next round's,
    opened in the same unit, and a return's reason was lost to a level 2 taken after it; found by
    review); 0 when not known (the ticket as it stands)."""
    notice_id: str
    ticket_id: str
    step: Step
    recipient: str  # "contact", "head" or "inspection_office": resolved against the catalog when sent
    at: datetime
    made_at: int = field(default=0, compare=False)


@dataclass(frozen=True, slots=True)
class Ticket:
    ticket_id: str
    case_id: str
    rule: Rule
    severity: Severity
    item_code: str
    department: str
    region: str | None
    alerts: Mapping[str, BundledAlert]
    status: TicketStatus = TicketStatus.SETTLING
    version: int = 0  # 0 while settling: nothing is published before the ticket opens
    ladder: Ladder = Ladder()  # as it was when the ticket opened: an edited ladder changes new tickets only
    opens_at: datetime | None = None
    opened_at: datetime | None = None
    deadline: datetime | None = None
    level_2_at: datetime | None = None
    overdue: bool = False
    escalation_level: int = 0
    resolution: Resolution | None = None
    manual: bool = False
    silenced_by: str | None = None
    actions: frozenset[str] = frozenset()  # ids of the actions applied (a redelivered one changes nothing)
    last: Change | None = None
    # A closed (or withdrawn) ticket opened again by hand is a new round: its notices have ids of
    # their own (`_notice`), so that they are sent, each once, whatever the first round sent.
    round: int = 1
    # Made by a process that sends no notices (a replay or import without --notify): history. The
    # department was never told of it, so no later process tells anyone of its steps either (its
    # notices are recorded, held); an inspector who opens it again by hand starts a round that is.
    quiet: bool = False
    # Its level 1 (level 2) was reached within a silence: recorded, the head (the discipline-inspection
    # office) not told meanwhile; told when the silence ends, if the ticket is still waiting for the
    # department then (`held_until`: the end of the latest silence that held a step's notice).
    level_1_held: bool = False
    level_2_held: bool = False
    held_until: datetime | None = None
    held_by: str | None = None  # the silence whose end `held_until` is (it may end sooner: expired early)
    # Its level 2 fell due while a late reply waited for the inspector, and was taken when the
    # inspector returned that reply, at this moment: the level-2 notice says the department did
    # answer, late, and was returned (it said "仍未答复", found by a black-box test).
    level_2_on_return: datetime | None = None
    # A closed or withdrawn ticket's coming round: the cards its last round did not answer, settling
    # until `opens_at`; the ended round stays as it is meanwhile (its record, its rows). `pending_quiet`:
    # made by a process that sends nothing, the round is history (`quiet`).
    pending: frozenset[str] = frozenset()
    pending_quiet: bool = False

    @property
    def open_alerts(self) -> list[BundledAlert]:
        return [a for a in self.alerts.values() if a.status is not AlertStatus.WITHDRAWN]

    @property
    def active(self) -> bool:
        """Waiting for the department (open or returned): its deadline runs."""
        return self.status in (TicketStatus.OPEN, TicketStatus.RETURNED)

    @property
    def visible(self) -> bool:
        return self.status is not TicketStatus.SETTLING

    @property
    def pending_alerts(self) -> list[BundledAlert]:
        """The standing cards a coming round is for (those the last round did not answer)."""
        return [a for a in self.open_alerts if a.alert_id in self.pending]

    @property
    def next_due(self) -> datetime | None:
        """The next moment the clock changes this ticket, if any, as its record says."""
        return self.due_under(())

    def due_under(self, silences: Sequence["Silence"]) -> datetime | None:
        """The next moment the clock changes this ticket, with each wait on a silence ending when
        that silence ends as `silences` have it now: one expired early (`silences expire`) ends
        its tickets' waits then, not at the end they were told (found by a black-box test and by
        review: a restart, a rebalance or an expiry at a later moment left them the old end)."""
        if self.status is TicketStatus.SETTLING:
            return self._opening_under(silences) if self.open_alerts else None
        if self.status in (TicketStatus.CLOSED, TicketStatus.WITHDRAWN):
            return self._opening_under(silences) if self.pending_alerts else None  # a coming round's opening
        if not self.active:
            return None
        due = self.escalation_due
        if due is not None:  # taken once the clock is past it (`advance`)
            due += PASSED
        held = self.held_end(silences)
        if held is not None:  # the notices a silence held, sent when it ends
            due = held if due is None else min(due, held)
        return due

    def held_end(self, silences: Sequence["Silence"]) -> datetime | None:
        """When the silence that held a step's notice ends, as `silences` have it now."""
        if self.held_until is None:
            return None
        return _silence_end(silences, self.held_by, self.held_until)

    def _opening_under(self, silences: Sequence["Silence"]) -> datetime | None:
        """When a settling ticket (or a coming round) opens: a wait on a silence that ends sooner
        ends then, never before the ticket's cards have settled (nor the last round's end)."""
        if self.silenced_by is None or self.opens_at is None:
            return self.opens_at
        end = _silence_end(silences, self.silenced_by, self.opens_at)
        if end >= self.opens_at:
            return self.opens_at
        cards = self.open_alerts if self.status is TicketStatus.SETTLING else self.pending_alerts
        settled = min(a.stands_from for a in cards) + self.ladder.settle if cards else end
        if self.status is not TicketStatus.SETTLING and self.last is not None:
            settled = max(settled, self.last.at)
        return max(end, settled)

    @property
    def escalation_due(self) -> datetime | None:
        """When an active ticket's next escalation step falls due, if any."""
        if not self.overdue:
            return self.deadline
        return self.level_2_at if self.escalation_level < 2 else None


@dataclass(frozen=True, slots=True)
class Outcome:
    ticket: Ticket | None
    versions: tuple[Ticket, ...] = ()  # the ticket after each change, oldest first (`.last` is the change)
    notices: tuple[Notice, ...] = ()

    @property
    def changes(self) -> tuple[Change, ...]:
        return tuple(version.last for version in self.versions)

    @property
    def changed(self) -> bool:
        return bool(self.changes) or self.ticket is not None and self.ticket.status is TicketStatus.SETTLING


QUIET_NOTE = "历史数据生成的督办件，部门未收到督办通知，不发升级通知"


def facts_registered_at(alert: Alert, events: Sequence[CaseEvent]) -> datetime | None:
    """When the facts a finding rests on were registered online, as its case's events say: the
    case's acceptance (its first registered: a re-acceptance for 补正 weeks later is not when the
    case came) and the events stated at the finding's own moment (the one that went ahead of a
    skipped node, the decision judged, the suspension back-dated); None without either. A
    replay or an import settles the finding's ticket from then if it is later than its business
    time, as a live worker settles it from when the facts came (`BundledAlert.stands_from`): a
    month pushed late had its tickets opened on business times weeks past, escalated to the head
    and the inspection office and mailed in one second (found by a black-box test). Not the case's
    first registration (a rating pushed on time made a case pushed late look online: found by
    review), nor its last (a node's registration back-dated weeks later would hold an overdue
    card's ticket that stood meanwhile)."""
    moments = [e.recorded_at for e in events if e.occurred_at == alert.event_time]
    accepted = [e.recorded_at for e in events if e.type is EventType.ACCEPTED]
    if accepted:
        moments.append(min(accepted))
    return max(moments) if moments else None


def ticket_id(case_id: str, rule: Rule) -> str:
    """Readable and stable: the case and the rule (one ticket per case and rule)."""
    return f"{case_id}/{rule.value}"


def case_of(ticket_id_: str) -> str:
    return _parts(ticket_id_)[0]


def rule_of(ticket_id_: str) -> str:
    """The rule (its value) of a ticket id, as `ticket_id` writes it: a case's tickets are keyed by it."""
    return _parts(ticket_id_)[1]


def _parts(ticket_id_: str) -> tuple[str, str]:
    case_id, sep, rule = ticket_id_.rpartition("/")
    if not sep or not case_id or rule not in Rule.__members__.values():
        raise ActionRefused("unknown_ticket", f"{ticket_id_!r} is not a ticket id (case/rule)")
    return case_id, rule


def _change(ticket: Ticket, at: datetime, actor: str, kind: str, text: str, **updates: Any) -> tuple[Ticket, Change]:
    status = updates.get("status", ticket.status)
    change = Change(ticket.version + 1, at, actor, kind, text, status)
    return replace(ticket, version=change.version, last=change, **updates), change


def _notice(ticket: Ticket, step: Step, at: datetime, recipient: str | None = None) -> Notice:
    recipient = recipient or {Step.OPENED: "contact", Step.RETURNED: "contact", Step.LEVEL_1: "head",
                              Step.LEVEL_2: "inspection_office", Step.CLOSED: "contact"}[step]
    suffix = (f"@{ticket.version}" if step is Step.RETURNED else
              f"/{recipient}" if step is Step.WITHDRAWN or (step is Step.CLOSED and recipient != "contact") else "")
    round_ = f"/r{ticket.round}" if ticket.round > 1 else ""  # the first round's ids as they always were
    return Notice(f"{ticket.ticket_id}/{step.value}{suffix}{round_}", ticket.ticket_id, step, recipient, at,
                  ticket.version)


def told_in_round(ticket: Ticket) -> list[str]:
    """Whom the round's notices reached: the contact of its opening, the head of its level 1 (unless
    a silence held it), the discipline-inspection office of its level 2."""
    told = ["contact"]
    if ticket.escalation_level >= 1 and not ticket.level_1_held:
        told.append("head")
    if ticket.escalation_level >= 2 and not ticket.level_2_held:
        told.append("inspection_office")
    return told


def withdrawal_notices(ticket: Ticket, at: datetime) -> list[Notice]:
    """A ticket withdrawn (all its alerts withdrawn: the finding never held) after its round's
    notices went out: each they reached is told (`told_in_round`). An accusation made in writing is
    taken back in writing. A finding that stands again opens a new round (`on_alert`), told again
    from its opening."""
    if ticket.opened_at is None:
        return []
    return [_notice(ticket, Step.WITHDRAWN, at, recipient) for recipient in told_in_round(ticket)]


def closing_notices(ticket: Ticket, at: datetime) -> list[Notice]:
    """A ticket ended by an inspector (its answer accepted, or closed): each its round's notices
    reached learns how it ended (`told_in_round`), as of a withdrawal. Before, only the contact was told:
    the head and the inspection office kept a referral open in their inbox with no word of its
    end (found by a black-box test). The contact's notice keeps its id (`…/closed`)."""
    return [_notice(ticket, Step.CLOSED, at, recipient) for recipient in told_in_round(ticket)]


# What a withdrawal notice takes back from those the ladder escalated to: the notice of the step
# that reached them. The department's contact is always told: its round may have reached it by a
# return's or a closing's notice, or through its own answer, whatever came of the opening's.
_TOLD_BY = {"head": Step.LEVEL_1, "inspection_office": Step.LEVEL_2}


def taken_back(notice_id: str, ticket_id: str, recipient: str) -> str | None:
    """The id of the notice a withdrawal's or a closing's notice to the head or the office
    (`…/withdrawn/head`, `…/closed/inspection_office/r2`) follows up, of the same round
    (`_notice`): the one that reached them; None for another notice. A head or an office that
    notice never reached is not told of the end (nothing to take back or to close)."""
    step = _TOLD_BY.get(recipient)
    if step is None:
        return None
    for ending in (Step.WITHDRAWN, Step.CLOSED):
        prefix = f"{ticket_id}/{ending.value}/{recipient}"
        if notice_id.startswith(prefix):
            return f"{ticket_id}/{step.value}{notice_id[len(prefix):]}"
    return None


def returned_at(notice: Notice) -> int | None:
    """The ticket version a return's notice was made at, as `_notice` names it (`…/returned@4`,
    `…/returned@4/r2`); None for another step's."""
    if notice.step is not Step.RETURNED:
        return None
    version = notice.notice_id.rpartition("@")[2].split("/")[0]
    return int(version) if version.isdigit() else None


# -- alerts ---------------------------------------------------------------------------------------

def on_alert(ticket: Ticket | None, alert: Alert, policy: TicketPolicy, calendar: WorkCalendar,
             now: datetime, seen_at: datetime | None = None, quiet: bool = False, clock: bool = True) -> Outcome:
    """An alert version reaches the tickets of its case. Opens a settling ticket for a rule that
    opens tickets, updates the bundle, withdraws the ticket when all its alerts are withdrawn.

    `seen_at` (live operation: the wall clock): when the finding reached the tickets. A finding
    whose facts arrived late (a history pushed to a live worker) settles from then, not from its
    business time, long past: else its ticket would open and escalate at once, to the head and the
    inspection office, before the facts that take it away (arriving seconds later) could.

    `quiet`: the process sends no notices (history): a ticket it makes is `Ticket.quiet`.

    `clock`: a ticket still settling (or a closed one's coming round) is opened here if its moment has
    come; without it, by the caller's `advance` once every alert that came with this one is in the
    bundle: the stream, whose unit holds all the cards one event raised (opened at the first, a
    replay's ticket held one card of three, and the other two were "added" after its opening and
    escalations; found by a black-box test)."""
    if ticket is None:
        # A withdrawn version is kept too: an older version of the alert arriving after it is then
        # known to be older, whatever the order.
        if not policy.opens(alert.rule, alert.severity):
            return Outcome(None)
        ladder = policy.ladder(alert.rule, alert.severity)
        ticket = Ticket(ticket_id(alert.case_id, alert.rule), alert.case_id, alert.rule, alert.severity,
                        alert.item_code, alert.department, alert.region, {}, ladder=ladder, quiet=quiet)
    known = ticket.alerts.get(alert.alert_id)
    if known is not None and known.version >= alert.version:
        return Outcome(ticket)  # a redelivery, or an older version after a newer one
    # When the finding first reached the tickets; one withdrawn and standing again is a new finding
    # (kept from its first sighting, a card standing again weeks later settled from then: at once).
    again = known is not None and known.status is AlertStatus.WITHDRAWN and alert.status is not AlertStatus.WITHDRAWN
    seen = seen_at if known is None or again else known.seen_at
    alerts = {**ticket.alerts, alert.alert_id: BundledAlert.of(alert, seen)}
    ticket = replace(ticket, alerts=alerts)
    live = ticket.open_alerts
    opens_at = min(a.stands_from for a in live) + ticket.ladder.settle if live else None
    if ticket.status is TicketStatus.SETTLING:
        # Its opening settles from its cards again; a silence in force then holds it again
        # (`advance`). A silence it waited out before is no longer its wait (kept, a card standing
        # again weeks later opened at once, without its settling time: found by review).
        ticket = replace(ticket, opens_at=opens_at, silenced_by=None)
        return advance(ticket, policy, calendar, now) if clock else Outcome(ticket)
    at = max(now, ticket.last.at) if ticket.last else now
    if ticket.status in (TicketStatus.CLOSED, TicketStatus.WITHDRAWN):
        # A finding the last round did not answer (a card standing after the others were withdrawn,
        # a node skipped that the closed round's cards did not name, a card withdrawn and standing
        # again) starts a new round: it settles as a first one does, from that finding, never from
        # before the last round ended, and opens by the clock (`advance`), told to the department
        # from its opening; the ended round stays as it is meanwhile. Before, a closed record stayed
        # as it was (the red card reached no ticket and no one: a black-box test), then a new round
        # opened at once, backdated, escalating in the same breath (found by review). A round an
        # inspector opened by hand (a yellow card's) is opened again by hand.
        unanswered = alert.status is not AlertStatus.WITHDRAWN and (known is None or again)
        if unanswered and policy.opens(alert.rule, alert.severity):
            ticket = replace(ticket, pending=ticket.pending | {alert.alert_id}, pending_quiet=quiet)
        ticket = _coming_round(ticket)
        if ticket.status is TicketStatus.WITHDRAWN or (alert.alert_id in ticket.pending and live):
            return advance(ticket, policy, calendar, now) if clock else Outcome(ticket)
    if not live:
        # A closed ticket too: the department was told of a finding that never held; it is taken
        # back in writing, and the ticket no longer counts as supervision done (before, it stayed
        # closed, its card shown 有效 though withdrawn).
        # Escalation notices a silence held are not sent once it ends: said, as their holding said they
        # would be (the history read 静默结束后补发 to the end: found by a black-box test).
        held = [] if ticket.quiet else [STEP_TITLE[step.value] for step, was in (
            (Step.LEVEL_1, ticket.level_1_held), (Step.LEVEL_2, ticket.level_2_held)) if was]
        ticket, change = _change(ticket, at, SYSTEM, "withdrawn", "督办件所涉预警已全部撤回" + (
            f"；静默期间未发出的升级通知（{'、'.join(held)}）不再补发" if held else ""),
            status=TicketStatus.WITHDRAWN, pending=frozenset(), opens_at=None)
        return Outcome(ticket, (ticket,), tuple(withdrawal_notices(ticket, at)))
    if not ticket.manual and opens_at < ticket.opened_at and ticket.active:
        # A finding that arrived late but stood earlier: the ticket runs from when it would have
        # opened had the finding been on time, as live operation would have had it (the ladder's
        # steps then due follow at their own moments, each notified once).
        ticket, change = _change(ticket, at, SYSTEM, "alerts",
                                 f"预警 {alert.alert_id} 迟到，督办起始时间提前", **_times(ticket, calendar, opens_at))
        out = advance(ticket, policy, calendar, now)
        return Outcome(out.ticket, (ticket, *out.versions), out.notices)
    ticket, change = _change(ticket, at, SYSTEM, "alerts", _alert_change(alert, known))
    return Outcome(ticket, (ticket,))


# Where an alert's evidence names its node (skipped_node, node_overdue, a node's overrun covered).
_NODE_NAME_KEYS = ("skipped_node_name", "node_name", "covered_node_name")


def _alert_change(alert: Alert, known: BundledAlert | None) -> str:
    """An alert's change to a ticket's bundle in words: added, withdrawn or updated, and its node
    (before, each was "更新为第 N 版", a withdrawal included), by the node's name as its evidence
    gives it (the ticket's history named the node's id, which no head reads)."""
    card = _card_words(alert)
    if alert.status is AlertStatus.WITHDRAWN:
        return f"{card} 已撤回"
    if known is None:
        return f"新增{card}"
    if known.status is AlertStatus.WITHDRAWN:
        return f"{card} 重新成立"
    return f"{card} 更新为第 {alert.version} 版"


def _card_words(alert: Alert | BundledAlert) -> str:
    """预警 <id>, with its node by name where it has one."""
    name = next((alert.evidence.get(key) for key in _NODE_NAME_KEYS if alert.evidence.get(key)), alert.node)
    return f"预警 {alert.alert_id}" + (f"（环节“{name}”）" if alert.node else "")


def _coming_round(ticket: Ticket) -> Ticket:
    """A closed or withdrawn ticket's coming round: it opens once the earliest of its standing cards
    has stood for the settling time, never before the last round's end; none while none stands."""
    standing = ticket.pending_alerts
    if not standing:
        return replace(ticket, opens_at=None) if ticket.opens_at is not None else ticket
    opens_at = min(a.stands_from for a in standing) + ticket.ladder.settle
    if ticket.last is not None:
        opens_at = max(opens_at, ticket.last.at)
    if ticket.silenced_by is not None and ticket.opens_at is not None:  # waiting out a silence already
        opens_at = max(opens_at, ticket.opens_at)
    return replace(ticket, opens_at=opens_at)


# -- the clock -------------------------------------------------------------------------------------

def advance(ticket: Ticket, policy: TicketPolicy, calendar: WorkCalendar, now: datetime) -> Outcome:
    """Everything the clock does to a ticket by `now`: opening, becoming overdue, escalating.
    Each step happens at its own moment (not at `now`), so a late tick changes nothing."""
    versions: list[Ticket] = []
    notices: list[Notice] = []
    if ticket.status in (TicketStatus.CLOSED, TicketStatus.WITHDRAWN):
        due = ticket.due_under(policy.silences)
        if due is None or now < due:
            return Outcome(ticket)
        silence = _silenced(ticket, policy, due)
        if silence is not None:  # opens when the silence ends, if its cards still stand
            return Outcome(replace(ticket, silenced_by=silence.silence_id, opens_at=silence.until))
        # The round's history names the cards it is for (it said only 新的预警成立: found by a black-box test).
        cards = "、".join(_card_words(a) for a in ticket.pending_alerts)
        ticket = replace(ticket, round=ticket.round + 1, overdue=False, escalation_level=0, level_1_held=False,
                         level_2_held=False, held_until=None, held_by=None, level_2_on_return=None, resolution=None,
                         silenced_by=None, manual=False, quiet=ticket.pending_quiet, pending=frozenset(),
                         pending_quiet=False, opens_at=None)
        at = max(due, ticket.last.at) if ticket.last is not None else due
        ticket = _open(ticket, calendar, at, text=f"新的预警成立（{cards}），督办件重新生效" if cards else None)
        versions.append(ticket)
        notices.append(_notice(ticket, Step.OPENED, at))
    if ticket.status is TicketStatus.SETTLING:
        opens = ticket.due_under(policy.silences)  # a silence it waits out may have ended sooner
        if opens is None or now < opens:
            return Outcome(ticket)
        at = max(opens, ticket.last.at) if ticket.last is not None else opens
        silence = _silenced(ticket, policy, at)
        if silence is not None:  # opens when the silence ends, if its alerts still stand
            return Outcome(replace(ticket, silenced_by=silence.silence_id, opens_at=silence.until))
        ticket = _open(ticket, calendar, at)
        versions.append(ticket)
        notices.append(_notice(ticket, Step.OPENED, at))
    while ticket.active:
        due, ends = ticket.escalation_due, ticket.held_end(policy.silences)
        if ends is not None and now >= ends and (due is None or ends <= due):
            # The silence that held a step's notice ended (at its end, or sooner: expired early),
            # before the next step: the notices are sent, dated at its end.
            ticket, sent = _send_held(ticket, policy, ends)
            if sent:
                versions.append(ticket)
                notices.extend(sent)
            continue
        if due is None or now <= due:  # an answer at the deadline itself is in time (as a case's)
            break
        on_return = None
        if ticket.last is not None and due < ticket.last.at:
            # A step due before the ticket's last change is taken at that change, not dated before
            # it: a ticket's history never runs backwards. A step due while the ticket was not active
            # (its late answer waited for the inspector) is taken at the return; one due while the
            # worker was away, or while a second replay's alerts came first, when they were recorded
            # (a level 1 was dated two days before the alert updates above it: found by a black-box test).
            on_return = ticket.last.at if ticket.last.kind == ActionKind.RETURN.value else None
            due = ticket.last.at
        # A silence stops the step's notice, never the step: the ticket's record stays true.
        silence = _silenced(ticket, policy, due)
        unsent = (f"（{QUIET_NOTE}）" if ticket.quiet else
                  f"（静默 {silence.silence_id} 期间，暂不发通知，静默结束后补发：{silence.reason}）" if silence else "")
        held = {} if silence is None or ticket.quiet else (
            {"held_until": silence.until, "held_by": silence.silence_id}
            if ticket.held_until is None or silence.until > ticket.held_until else {})
        if not ticket.overdue:
            ticket, _ = _change(ticket, due, SYSTEM, "level_1", "答复期限已到，未答复，升级至部门负责人" + unsent,
                                overdue=True, escalation_level=1, level_1_held=silence is not None, **held)
            step = Step.LEVEL_1
        else:
            why = "逾期答复经审核退回" if on_return is not None else "逾期仍未答复"
            ticket, _ = _change(ticket, due, SYSTEM, "level_2", f"{why}，升级至纪检监察机构" + unsent,
                                escalation_level=2, level_2_on_return=on_return, level_2_held=silence is not None,
                                **held)
            step = Step.LEVEL_2
        versions.append(ticket)
        if silence is None:
            notices.append(_notice(ticket, step, due))
    return Outcome(ticket, tuple(versions), tuple(notices))


def _silence_end(silences: Sequence[Silence], silence_id: str | None, recorded: datetime) -> datetime:
    """A silence's end as `silences` have it now, if it ends sooner than `recorded` (the end a
    ticket was told when it began to wait); else `recorded`."""
    silence = next((s for s in silences if s.silence_id == silence_id), None) if silence_id else None
    return silence.until if silence is not None and silence.until < recorded else recorded


def ended_sooner(before: tuple[Silence, ...], after: tuple[Silence, ...]) -> bool:
    """Whether a silence of `before` ends sooner in `after` (expired early, or gone): the tickets
    that wait it out are to be looked at again now, not at its old end."""
    ends = {s.silence_id: s.until for s in after}
    return any(ends.get(s.silence_id) is None or ends[s.silence_id] < s.until for s in before)


def _silenced(ticket: Ticket, policy: TicketPolicy, at: datetime) -> "Silence | None":
    """The silence in force for the ticket's item or department at `at`, if any."""
    return next((s for s in policy.silences if s.covers(ticket.item_code, ticket.department, at)), None)


def _send_held(ticket: Ticket, policy: TicketPolicy, at: datetime) -> tuple[Ticket, list[Notice]]:
    """The escalation notices a silence held, sent when it ends, if the ticket still waits for the
    department: its head, its discipline-inspection office told then, as a change of its own.
    Before, a level 2 reached within a silence was never sent: nobody was told of an escalated
    ticket (found by a black-box test). A silence in force at its end (extended, or another one)
    holds them until that one ends."""
    silence = _silenced(ticket, policy, at)
    if silence is not None:  # (it covers `at`, so it ends later: the clock moves on)
        return replace(ticket, held_until=silence.until, held_by=silence.silence_id), []
    if ticket.last is not None and at < ticket.last.at:  # a ticket's history never runs backwards
        at = ticket.last.at
    steps = [step for step, held in ((Step.LEVEL_1, ticket.level_1_held), (Step.LEVEL_2, ticket.level_2_held)) if held]
    ticket, _ = _change(ticket, at, SYSTEM, "held_sent", "静默已结束，补发静默期间未发出的升级通知（" +
                        "、".join(STEP_TITLE[step.value] for step in steps) + "）",
                        level_1_held=False, level_2_held=False, held_until=None, held_by=None)
    return ticket, [_notice(ticket, step, at) for step in steps]


def _times(ticket: Ticket, calendar: WorkCalendar, at: datetime) -> dict[str, datetime]:
    """The ladder's moments for a ticket opened at `at`: the deadline counts working days after
    the day of opening and ends at 24:00 of the last one; level 2 as many more after that day."""
    deadline = calendar.deadline(at, ticket.ladder.reply_days)
    level_2_at = calendar.deadline(deadline - timedelta(microseconds=1), ticket.ladder.level_2_days)
    return {"opened_at": at, "deadline": deadline, "level_2_at": level_2_at}


def _open(ticket: Ticket, calendar: WorkCalendar, at: datetime, actor: str = SYSTEM, text: str | None = None) -> Ticket:
    """The ticket opens at `at`: by the system once its findings have settled (a later round's
    opening is `reopened`: a new finding after the last round), or by an inspector's hand."""
    if actor != SYSTEM:
        kind = "open"
    elif ticket.opened_at is not None:
        kind, text = "reopened", text or "新的预警成立，督办件重新生效"
    else:
        kind, text = "opened", text or f"{SEVERITY_TITLE[ticket.severity]}预警持续有效，生成督办件"
    ticket, _ = _change(ticket, at, actor, kind, text or "", status=TicketStatus.OPEN, **_times(ticket, calendar, at))
    return ticket


def standing_notices(ticket: Ticket) -> list[Notice]:
    """The notices a ticket's record says were due: its opening, the levels it reached, its latest
    return. Recorded again after a redelivery (the crash may have come before they were), and sent
    only if the notice log does not have them finished."""
    if not ticket.visible or ticket.opened_at is None:
        return []
    notices = [_notice(ticket, Step.OPENED, ticket.opened_at)]
    if ticket.escalation_level >= 1 and ticket.deadline is not None and not ticket.level_1_held:
        notices.append(_notice(ticket, Step.LEVEL_1, ticket.deadline))  # a silence held it: never due
    if ticket.escalation_level >= 2 and ticket.level_2_at is not None and not ticket.level_2_held:
        notices.append(_notice(ticket, Step.LEVEL_2, ticket.level_2_at))
    if ticket.last is not None and ticket.last.kind == ActionKind.RETURN.value:
        notices.append(_notice(ticket, Step.RETURNED, ticket.last.at))
    if ticket.last is not None and ticket.last.kind == "withdrawn":
        notices += withdrawal_notices(ticket, ticket.last.at)
    if ticket.last is not None and ticket.last.kind in (ActionKind.ACCEPT.value, ActionKind.CLOSE.value):
        notices += closing_notices(ticket, ticket.last.at)
    return notices


# -- actions ----------------------------------------------------------------------------------------

@dataclass(frozen=True, slots=True)
class Action:
    action_id: str
    ticket_id: str
    version: int | None  # the version acted on; None only for `open`
    actor: str
    department: str
    kind: ActionKind
    text: str
    at: datetime
    alert_id: str | None = None  # for `open`

    @classmethod
    def from_json(cls, obj: Any) -> "Action":
        """An action from its JSON form; ActionRefused (malformed) when it is not one."""
        if not isinstance(obj, dict):
            raise ActionRefused("malformed_action", "an action is a JSON object")
        missing = [k for k in ("action_id", "ticket_id", "actor", "department", "kind", "at") if not obj.get(k)]
        if missing:
            raise ActionRefused("malformed_action", f"missing {', '.join(missing)}")
        try:
            kind = ActionKind(obj["kind"])
        except ValueError:
            raise ActionRefused("malformed_action", f"unknown kind {obj['kind']!r}") from None
        version = obj.get("version")
        if kind is not ActionKind.OPEN and not isinstance(version, int):
            raise ActionRefused("malformed_action", "version (the ticket version acted on) must be an integer")
        text = obj.get("text") or ""
        if not isinstance(text, str):
            raise ActionRefused("malformed_action", "text must be a string")
        if len(text) > MAX_TEXT_CHARS:
            raise ActionRefused("text_too_long", f"{len(text)} characters, at most {MAX_TEXT_CHARS}")
        try:
            at = datetime.fromisoformat(str(obj["at"]))
        except ValueError:
            raise ActionRefused("malformed_action", f"at {obj['at']!r} is not an RFC 3339 time") from None
        if at.tzinfo is None:
            raise ActionRefused("malformed_action", "at needs a UTC offset")
        for key in ("action_id", "ticket_id", "actor", "department"):
            if not isinstance(obj[key], str) or len(obj[key]) > 200:
                raise ActionRefused("malformed_action", f"{key} must be a string of at most 200 characters")
        case_of(obj["ticket_id"])
        return cls(obj["action_id"], obj["ticket_id"], version, obj["actor"], obj["department"], kind, text, at,
                   obj.get("alert_id"))

    def to_json(self) -> dict[str, Any]:
        out = {"action_id": self.action_id, "ticket_id": self.ticket_id, "version": self.version,
               "actor": self.actor, "department": self.department, "kind": self.kind.value, "text": self.text,
               "at": self.at.isoformat()}
        if self.alert_id:
            out["alert_id"] = self.alert_id
        return out


_ALLOWED = {
    ActionKind.REPLY: (TicketStatus.OPEN, TicketStatus.RETURNED),
    ActionKind.ACCEPT: (TicketStatus.REPLIED,),
    ActionKind.RETURN: (TicketStatus.REPLIED,),
    ActionKind.CLOSE: (TicketStatus.OPEN, TicketStatus.REPLIED, TicketStatus.RETURNED),
}


def on_action(ticket: Ticket | None, action: Action, calendar: WorkCalendar, now: datetime,
              alert: Alert | None = None) -> Outcome:
    """Apply an action, or raise ActionRefused with the reason. A redelivered action (its id
    already applied) changes nothing. `alert` is the yellow alert a hand-opened ticket starts from."""
    if ticket is not None and action.action_id in ticket.actions:
        return Outcome(ticket)
    if action.kind is ActionKind.OPEN:
        return _open_by_hand(ticket, action, calendar, alert)
    if ticket is None or not ticket.visible:
        raise ActionRefused("unknown_ticket", f"no ticket {action.ticket_id}")
    if action.version != ticket.version:
        raise ActionRefused("stale_version", f"acts on version {action.version}, the ticket is at version "
                                             f"{ticket.version}")
    if action.kind is ActionKind.REPLY:
        if action.department != ticket.department:
            raise ActionRefused("wrong_department", f"{action.department} may not answer a ticket of "
                                                    f"{ticket.department}")
    elif action.department != INSPECTORS:
        raise ActionRefused("wrong_department", f"only inspectors ({INSPECTORS}) may {action.kind.value} a ticket")
    if ticket.status not in _ALLOWED[action.kind]:
        raise ActionRefused("not_allowed", f"督办件当前为“{STATUS_TITLE[ticket.status]}”，不能{_VERB[action.kind]}"
                                           f"（a ticket {ticket.status.value} cannot be {_DONE[action.kind]}）")
    if action.kind in (ActionKind.REPLY, ActionKind.RETURN, ActionKind.CLOSE) and not action.text.strip():
        raise ActionRefused("malformed_action", f"{action.kind.value} needs a text")
    at = max(action.at, ticket.last.at if ticket.last else action.at)  # a ticket's history never runs backwards
    updates: dict[str, Any] = {"actions": ticket.actions | {action.action_id}}
    notices: tuple[Notice, ...] = ()
    if action.kind is ActionKind.REPLY:
        updates["status"] = TicketStatus.REPLIED
    elif action.kind is ActionKind.ACCEPT:
        updates.update(status=TicketStatus.CLOSED, resolution=Resolution.ACCEPTED)
    elif action.kind is ActionKind.CLOSE:
        updates.update(status=TicketStatus.CLOSED, resolution=Resolution.CLOSED_BY_INSPECTOR)
    elif action.kind is ActionKind.RETURN:
        updates["status"] = TicketStatus.RETURNED
        if not ticket.overdue and ticket.deadline is not None and ticket.deadline <= at:  # (no time left)
            # Answered in time, and the deadline passed while the answer waited for the inspector:
            # the department's clock did not run then. It has the reply days again from the return
            # (before, the ladder took level 1 and level 2 at once, dated before the return, and told
            # the head and the inspection office it had not answered).
            deadline = calendar.deadline(at, ticket.ladder.reply_days)
            updates.update(deadline=deadline, level_2_at=calendar.deadline(deadline - timedelta(microseconds=1),
                                                                           ticket.ladder.level_2_days))
    ticket, change = _change(ticket, at, action.actor, action.kind.value, action.text, **updates)
    if action.kind is ActionKind.RETURN:
        notices = (_notice(ticket, Step.RETURNED, at),)
    elif action.kind in (ActionKind.ACCEPT, ActionKind.CLOSE):  # those it reached learn how it ended
        notices = tuple(closing_notices(ticket, at))
    return Outcome(ticket, (ticket,), notices)


def act(ticket: Ticket | None, action: Action, policy: TicketPolicy, calendar: WorkCalendar, now: datetime,
        alert: Alert | None = None) -> Outcome:
    """An action at its moment: first what the clock did to the ticket before the action's time (by
    `now` at the latest: an action's stated time never moves the clock), then the action. A reply
    that comes after the deadline finds the ticket overdue and escalated, as live, whichever
    process takes it first; its version is the one the actor saw if only those steps of the clock
    came between. Raises ActionRefused as `on_action` does (the clock's steps then come with the
    next `advance`)."""
    if ticket is None or action.kind is ActionKind.OPEN or action.action_id in ticket.actions:
        return on_action(ticket, action, calendar, now, alert)
    before = advance(ticket, policy, calendar, min(action.at, now))
    if not before.versions:
        return on_action(ticket, action, calendar, now, alert)
    seen = replace(action, version=before.ticket.version) if action.version == ticket.version else action
    out = on_action(before.ticket, seen, calendar, now, alert)
    return Outcome(out.ticket, before.versions + out.versions, before.notices + out.notices)


def _open_by_hand(ticket: Ticket | None, action: Action, calendar: WorkCalendar, alert: Alert | None) -> Outcome:
    if action.department != INSPECTORS:
        raise ActionRefused("wrong_department", f"only inspectors ({INSPECTORS}) may open a ticket")
    # An open ticket first: its alerts (a red card's) are its own, not among those a hand may open from.
    if ticket is not None and ticket.visible and ticket.status not in (TicketStatus.CLOSED, TicketStatus.WITHDRAWN):
        raise ActionRefused("not_allowed", f"督办件 {ticket.ticket_id} 已在办（{STATUS_TITLE[ticket.status]}）"
                                           f"（ticket {ticket.ticket_id} is already {ticket.status.value}）")
    # The alert a hand opens from: a yellow one, or one the closed ticket bundles (a red card's,
    # which stays the ticket's own), if it still stands.
    bundled = ticket.alerts.get(action.alert_id or "") if ticket is not None else None
    if alert is not None and alert.status is not AlertStatus.WITHDRAWN:
        bundled = BundledAlert.of(alert)
    elif bundled is None or bundled.status is AlertStatus.WITHDRAWN:
        raise ActionRefused("unknown_alert", f"no open alert {action.alert_id} for {action.ticket_id}")
    if ticket is None:
        assert alert is not None
        base = Ticket(ticket_id(alert.case_id, alert.rule), alert.case_id, alert.rule, alert.severity,
                      alert.item_code, alert.department, alert.region, {})
    else:  # opened before: a new round
        base = replace(ticket, round=ticket.round + 1) if ticket.opened_at is not None else ticket
    base = replace(base, alerts={**base.alerts, bundled.alert_id: bundled}, manual=True, quiet=False,
                   status=TicketStatus.SETTLING, overdue=False, escalation_level=0, level_1_held=False,
                   level_2_held=False, held_until=None, held_by=None, level_2_on_return=None, resolution=None,
                   pending=frozenset(), pending_quiet=False, opens_at=None, silenced_by=None,
                   actions=base.actions | {action.action_id})
    # At the later of the action's time and the ticket's last change, as every action (a round
    # opened again "on 05-10" of a ticket closed on 06-01 was dated before its closing: an
    # independent scorer saw version 5 dated before version 4).
    at = max(action.at, ticket.last.at) if ticket is not None and ticket.last is not None else action.at
    opened = _open(base, calendar, at, actor=action.actor, text=action.text or HAND_OPENED)
    return Outcome(opened, (opened,), (_notice(opened, Step.OPENED, at),))


# The history's words for a ticket an inspector opened without a note: not a 督办说明 of theirs.
HAND_OPENED = "人工发起督办"


# -- configuration ----------------------------------------------------------------------------------

def policy_from_config(raw: Any) -> TicketPolicy:
    """A ticket policy from its YAML form (docs/tickets.md)::

        settle_hours: 1          # defaults for every rule that opens tickets
        reply_days: 3
        level_2_days: 2
        rules:                   # which rules and severities open tickets (default: every red rule)
          - rule: overdue
          - rule: node_overdue
            severity: yellow
            reply_days: 5        # this rule's own ladder
    """
    if raw is None:
        return TicketPolicy()
    if not isinstance(raw, dict):
        raise ValueError("ticket policy: the document must be a mapping")

    def ladder(entry: dict, base: Ladder, where: str) -> Ladder:
        try:
            settle = float(entry.get("settle_hours", base.settle.total_seconds() / 3600))
            reply = int(entry.get("reply_days", base.reply_days))
            level_2 = int(entry.get("level_2_days", base.level_2_days))
        except (TypeError, ValueError) as exc:
            raise ValueError(f"ticket policy: {where}: {exc}") from None
        if settle < 0 or reply < 0 or level_2 < 0:
            raise ValueError(f"ticket policy: {where}: times cannot be negative")
        return Ladder(timedelta(hours=settle), reply, level_2)

    default = ladder(raw, Ladder(), "defaults")
    entries = raw.get("rules")
    if entries is None:
        return TicketPolicy(default_ladder=default)
    if not isinstance(entries, list):
        raise ValueError("ticket policy: rules must be a list")
    rules: set[tuple[Rule, Severity]] = set()
    ladders: dict[tuple[Rule, Severity], Ladder] = {}
    for index, entry in enumerate(entries):
        where = f"rules[{index}]"
        if not isinstance(entry, dict) or "rule" not in entry:
            raise ValueError(f"ticket policy: {where} needs a rule")
        try:
            rule = Rule(entry["rule"])
            severity = Severity(entry.get("severity", SEVERITY_OF[rule].value))
        except ValueError as exc:
            raise ValueError(f"ticket policy: {where}: {exc}") from None
        rules.add((rule, severity))
        ladders[(rule, severity)] = ladder(entry, default, where)
    return TicketPolicy(rules=frozenset(rules), default_ladder=default, ladders=ladders)
