"""Notices in words: a ticket's ladder step as a Chinese notice from a city's templates.

Pure: the notice, its ticket, the catalog (who receives it) and the templates in, the text out.
Templates are `str.format` texts with the named fields of `fields` (files a city can edit,
read by the stream: `sinks/templates/`, or `SUNLIGHT_NOTICE_TEMPLATES`). A notice's
Message-ID is a function of its id, so a notice sent twice (a crash between the server's
acceptance and the record of it) carries the same Message-ID, and its webhook the same
idempotency key.
"""

from __future__ import annotations

import hashlib
import re
import string
from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from typing import Any, Callable, Mapping

from alerts.catalog import Catalog, Person
from alerts.describe import deadline_moment, describe_evidence, moment
from alerts.model import RULE_TITLE, SEVERITY_TITLE, Rule
from alerts.tickets import HAND_OPENED, STEP_TITLE, Notice, Step, Ticket, TicketStatus, returned_at, told_in_round

FIELDS = ("recipient", "department", "department_code", "case_id", "item", "item_code", "rule", "severity",
          "ticket_id", "version", "evidence", "opened_at", "deadline", "level_2_at", "how_to_reply", "reply_link",
          "return_reason", "level_1_note", "reply_by", "instructions", "resolution", "if_unanswered",
          "level_2_why", "level_2_what", "round_note", "round_line", "voided", "unanswered", "level_2_promise")
RECIPIENT_TITLE = {"contact": "部门联系人", "head": "部门负责人", "inspection_office": "纪检监察机构"}


class TemplateError(ValueError):
    pass


@dataclass(frozen=True, slots=True)
class NoticeText:
    """Subject and body templates by ladder step, and (set by the stream, which holds the key)
    what makes a ticket's reply link: `links(ticket, notice)`, a `ReplyLink` or None."""
    templates: Mapping[Step, tuple[str, str]]
    links: Callable[[Ticket, Notice], "ReplyLink | None"] | None = None

    def with_links(self, links: Callable[[Ticket, Notice], "ReplyLink | None"] | None) -> "NoticeText":
        return NoticeText(self.templates, links)

    @classmethod
    def of(cls, templates: Mapping[Step, tuple[str, str]]) -> "NoticeText":
        for step in Step:
            if step not in templates:
                raise TemplateError(f"no notice template for step {step.value}")
            for text in templates[step]:
                for _, name, _, _ in string.Formatter().parse(text):
                    if name is not None and name not in FIELDS:
                        raise TemplateError(f"notice template for {step.value}: unknown field {{{name}}}; "
                                            f"known: {', '.join(FIELDS)}")
        return cls(dict(templates))


@dataclass(frozen=True, slots=True)
class RenderedNotice:
    notice_id: str
    ticket_id: str
    step: Step
    recipient_role: str
    recipient_name: str
    recipient_email: str  # "" when the catalog names nobody: recorded, and failed with that reason
    subject: str
    body: str
    department: str
    region: str
    due_at: datetime
    message_id: str


ENDED = ("closed", "withdrawn")


def no_longer_news(step: str, ticket_status: str | None, of_round: int = 1, ticket_round: int = 1) -> bool:
    """A notice of a ticket closed or withdrawn since is not news any more (an escalation to the
    inspection office of a ticket since closed), but for the closing or withdrawal itself; nor a
    return (退回重办) the department has answered since (found by review): not sent again, by hand
    or by the clock. Nor one of a round (`of_round`, `notice_round`) that ended before the ticket
    opened again (`ticket_round`), but for that round's closing or withdrawal: a head was urged of
    the first round's silence while the second ran (found by review)."""
    if of_round < ticket_round:
        return step not in ENDED
    if ticket_status in ENDED:
        return step != ticket_status
    return step == Step.RETURNED.value and ticket_status not in (None, TicketStatus.RETURNED.value)


@dataclass(frozen=True, slots=True)
class ResendPolicy:
    """When a worker sends a failed notice again by itself (`streams.notice_resend`): `first_wait`
    after it failed, then after twice as long at each later round, at most `longest_wait` apart,
    for at most `rounds` rounds in all (`sunlight notices resend` rounds count too). Before, a
    mail server down for longer than the notifier's two minutes of attempts lost every notice due
    meanwhile until an operator asked, and `sunlight serve` on the embedded defaults held the store
    that `notices resend` needs (found by a black-box test)."""
    first_wait: timedelta
    rounds: int
    longest_wait: timedelta = timedelta(hours=6)

    def due(self, failed_at: datetime, rounds_taken: int, now: datetime) -> bool:
        """Whether a notice that failed at `failed_at`, after `rounds_taken` resend rounds, is sent
        again at `now`."""
        if rounds_taken >= self.rounds or self.first_wait <= timedelta(0):
            return False
        return now - failed_at >= self.wait(rounds_taken)

    def wait(self, rounds_taken: int) -> timedelta:
        """The wait after a failure in its round `rounds_taken` (0: the first failure): in seconds,
        capped before it becomes a timedelta (a day doubled 30 times overflowed one: found by
        review), and never capped below the first wait."""
        return timedelta(seconds=min(self.first_wait.total_seconds() * 2.0 ** min(rounds_taken, 64),
                                     max(self.longest_wait, self.first_wait).total_seconds()))


def message_id(notice_id: str, domain: str = "sunlight.local") -> str:
    digest = hashlib.blake2b(notice_id.encode("utf-8"), digest_size=16).hexdigest()
    return f"<{digest}@{domain}>"


def recipient(notice: Notice, ticket: Ticket, catalog: Catalog) -> Person | None:
    department = catalog.departments.get(ticket.department)
    if notice.recipient == "inspection_office":
        return catalog.inspection_office
    if department is None:
        return None
    return department.head if notice.recipient == "head" else department.ticket_contact


def readdressed(notice: RenderedNotice, catalog: Catalog) -> RenderedNotice:
    """A recorded notice addressed as the catalog gives its recipient now (the same role of the same
    department), for a resend: a notice that failed because the catalog had no address fails
    again for good unless the corrected catalog is read (found by a black-box test). The text is
    the recorded one; its salutation names the person now addressed. Unchanged when the catalog
    gives no address for that role now."""
    if notice.recipient_role == "inspection_office":
        person = catalog.inspection_office
    else:
        department = catalog.departments.get(notice.department)
        person = None if department is None else (
            department.head if notice.recipient_role == "head" else department.ticket_contact)
    if person is None or not person.email or (person.email, person.name) == (notice.recipient_email,
                                                                            notice.recipient_name):
        return notice
    body = notice.body
    salutation = f"{notice.recipient_name or RECIPIENT_TITLE.get(notice.recipient_role, '')}："
    if body.startswith(salutation):
        body = f"{person.name}：" + body[len(salutation):]
    # What no answer leads to, as said to the one now addressed (a contact added since was told
    # what was said to the head: found by review).
    if notice.recipient_role != "inspection_office":
        said = if_unanswered(person, catalog.departments.get(notice.department))
        for sentence in (UNANSWERED_TO_CONTACT, UNANSWERED_TO_HEAD):
            if sentence != said:
                body = body.replace(sentence, said)
    return replace(notice, recipient_name=person.name, recipient_email=person.email, body=body)


# The first line after a resent notice's salutation (`resent`): when it was due, and what the
# ticket went through since.
RESENT_MARK = "（本通知原定于 "


def resent(notice: RenderedNotice, later_steps: Mapping[str, datetime], catalog: Catalog,
           later_round: int | None = None, answered: bool = False) -> RenderedNotice:
    """A notice sent again after it failed, saying so after its salutation: when it was due, and
    the ladder's steps its ticket went through since (`later_steps`: step -> when its notice was
    due, of the same ticket): an opening's or a return's recipient reads that the head was urged
    (level 1) and the case referred to the discipline-inspection office (level 2), a level 1's
    that it was referred. Its promise of those steps ("逾期未答复的，将按规定提请……") is taken out
    once they were taken: a department told weeks later read a referral promised that had been
    made (found by review). A notice resent again says it once, as of the last resend. A round's
    closing or withdrawal resent once its ticket was opened again (`later_round`, the round it is
    in now) says so: the department read 已办结 of a ticket open again (found by review). An
    escalation (which says the department has not answered) resent once the department has answered
    (`answered`: the ticket stands replied, its answer awaiting review) says that too: a head read
    仍未答复 of a department that had answered meanwhile (found by a black-box test)."""
    head, _, rest = notice.body.partition("\n")
    rest = rest.lstrip("\n")
    if rest.startswith(RESENT_MARK):  # resent before: said again as of now
        rest = rest.partition("\n")[2].lstrip("\n")
    rank = {Step.OPENED: 0, Step.RETURNED: 0, Step.LEVEL_1: 1, Step.LEVEL_2: 2}.get(Step(notice.step), 3)
    since = []
    level_1, level_2 = later_steps.get(Step.LEVEL_1.value), later_steps.get(Step.LEVEL_2.value)
    if rank < 1 and level_1 is not None:
        since.append(f"该督办件逾期未答复，已于 {moment(_local(level_1, catalog))} 提请部门负责人督促办理")
        rest = rest.replace(UNANSWERED_TO_CONTACT, "")
    if rank < 2 and level_2 is not None:
        since.append(f"已于 {moment(_local(level_2, catalog))} 提交纪检监察机构")
        rest = _PROMISED_REFERRAL.sub("", rest.replace(UNANSWERED_TO_HEAD, ""))
    if answered and rank in (1, 2):
        since.append("该部门已作出答复，答复正在审核")
    if later_round is not None:
        since.append(f"该督办件已重新生效，现为第 {later_round} 轮督办（另行通知）")
    said = (f"{RESENT_MARK}{moment(_local(notice.due_at, catalog))} 发出，因投递失败现重新发送"
            + (f"。此后，{'，'.join(since)}" if since else "") + "。）")
    return replace(notice, body=f"{head}\n{said}\n\n{rest}")


def told_once(notices: list[Notice], ticket_of: Callable[[Notice], Ticket], catalog: Catalog) -> list[Notice]:
    """`notices` with each ticket's withdrawal or closing told once to each person: a department
    without a contact of its own has its head receive new tickets (`Department.ticket_contact`),
    and the head was told of a withdrawal twice, as the contact and as the head. The first (the
    contact's) stands for both."""
    out, told = [], set()
    for notice in notices:
        if notice.step in (Step.WITHDRAWN, Step.CLOSED):
            person = recipient(notice, ticket_of(notice), catalog)
            if person is not None:
                who = (notice.ticket_id, notice.step, person.email or person.name)
                if who in told:
                    continue
                told.add(who)
        out.append(notice)
    return out


@dataclass(frozen=True, slots=True)
class ReplyLink:
    """The signed, expiring address at which the department answers a ticket without an account
    (made by the stream, which holds the key: `streams.console.links`)."""
    url: str
    expires_at: datetime


NO_LINK = "（未配置在线答复链接）"


def link_valid_until(expires_at: datetime, catalog: Catalog) -> str:
    """How a notice says until when its reply link is valid (`how_to_reply`)."""
    return f"{moment(_local(expires_at, catalog))} 前有效"


def how_to_reply(ticket: Ticket, link: ReplyLink | None, catalog: Catalog) -> str:
    if link is not None:
        return (f"请通过以下链接在线答复（无需登录，仅限本督办件，{link_valid_until(link.expires_at, catalog)}）："
                f"\n{link.url}")
    # Said to a department head: no command line (it named `sunlight tickets reply`, an operator's
    # tool, in an official notice: found by a black-box test); the ticket is named in the notice.
    return f"请经 OA 系统提交答复，或请督办人员代为录入（督办件 {ticket.ticket_id}）"


def render_notice(notice: Notice, ticket: Ticket, catalog: Catalog, texts: NoticeText,
                  link: ReplyLink | None = None, latest: Ticket | None = None) -> RenderedNotice:
    """The notice in words, of `ticket`, the version that made it (`Notice.made_at`). `link` is the
    reply link of a step the department answers (opened, returned, level 1); without one the
    notice says how to reply otherwise. `latest`, the ticket as it stands when the notice goes out
    (its unit's last version), says what the level-1 notice can no longer promise."""
    if link is None and texts.links is not None:
        link = texts.links(ticket, notice)
    if notice.step in (Step.LEVEL_2, Step.WITHDRAWN, Step.CLOSED):
        link = None  # to the discipline-inspection office, who do not answer the ticket; or nothing to answer
    person = recipient(notice, ticket, catalog)
    department = catalog.departments.get(ticket.department)
    item = catalog.item(ticket.item_code)
    # One sentence per alert of the bundle, each ending as written (joined by "；" they read "。；").
    evidence = "".join(describe_evidence(ticket.rule.value, a.evidence) for a in ticket.open_alerts) \
        or "（所涉预警已撤回）"
    values: dict[str, Any] = {
        "recipient": person.name if person else RECIPIENT_TITLE[notice.recipient],
        "department": department.name if department else ticket.department,
        "department_code": ticket.department, "case_id": ticket.case_id,
        "item": item.name if item else ticket.item_code, "item_code": ticket.item_code,
        "rule": RULE_TITLE[Rule(ticket.rule)], "severity": SEVERITY_TITLE[ticket.severity],
        "ticket_id": ticket.ticket_id, "version": ticket.version, "evidence": evidence,
        "opened_at": moment(_local(ticket.opened_at, catalog)), "deadline": deadline_moment(_local(ticket.deadline, catalog)),
        "level_2_at": deadline_moment(_local(ticket.level_2_at, catalog)),
        "how_to_reply": how_to_reply(ticket, link, catalog), "reply_link": link.url if link else NO_LINK,
        "return_reason": return_reason(notice, ticket),
        "level_1_note": level_1_note(ticket, department),
        **level_2_reason(ticket, catalog),
        "reply_by": reply_by(notice, ticket, catalog),
        "instructions": instructions(notice, ticket),
        "resolution": resolution(ticket),
        "if_unanswered": if_unanswered(person, department),
        **round_words(ticket),
        "voided": voided(ticket, department),
        "unanswered": unanswered(ticket),
        "level_2_promise": level_2_promise(ticket, catalog, latest),
    }
    subject, body = texts.templates[notice.step]
    return RenderedNotice(notice.notice_id, notice.ticket_id, notice.step, notice.recipient,
                          person.name if person else "", person.email if person and person.email else "",
                          subject.format(**values), body.format(**values), ticket.department, ticket.region or "",
                          notice.at, message_id(notice.notice_id))


def round_words(ticket: Ticket) -> dict[str, str]:
    """Which round of its ticket a notice is of, for the subject (`round_note`) and the body
    (`round_line`); empty in the first round. A second round's opening notice read as the first's,
    under the ticket id the department had just been told was closed (found by a black-box test)."""
    if ticket.round <= 1:
        return {"round_note": "", "round_line": ""}
    return {"round_note": f"（第 {ticket.round} 轮）",
            "round_line": f"本件为该督办件的第 {ticket.round} 轮督办，此前各轮已结束。"}


def voided(ticket: Ticket, department) -> str:
    """What a withdrawal takes back, for its notice: the round's notices that went out
    (`told_in_round`), its escalations named only when one was sent: to the discipline-inspection
    office, or to a head the catalog has an address for (not one a silence held). It said
    督办及升级通知 of every ticket, one never escalated too (found by a black-box test)."""
    told = told_in_round(ticket)
    head = department.head if department is not None else None
    escalated = "inspection_office" in told or ("head" in told and head is not None and bool(head.email))
    notices = "督办及升级通知" if escalated else "督办通知"
    return f"第 {ticket.round} 轮{notices}" if ticket.round > 1 else notices


def unanswered(ticket: Ticket) -> str:
    """What the department has not done, for the level-1 notice to its head: not answered; or
    answered, and the answer returned (退回重办) with no new one since. It said 仍未答复 of a
    department that had answered (found by review)."""
    return "其答复经审核退回重办后仍未重新答复" if ticket.status is TicketStatus.RETURNED else "仍未答复"


def level_2_promise(ticket: Ticket, catalog: Catalog, latest: Ticket | None = None) -> str:
    """What comes next, for the level-1 notice: the referral to the discipline-inspection office
    by the level-2 moment; or, when it goes out with the referral (a silence held both levels, or
    a late clock took both in one unit: `latest`, of the same round, is at level 2, told), that
    the referral is made, and why, as the level-2 notice says it. It promised a referral by a day
    already past (found by review)."""
    now = latest if latest is not None and latest.round == ticket.round else ticket
    if now.escalation_level >= 2 and not now.level_2_held:
        why = ("逾期答复经审核退回" if now.level_2_on_return is not None
               else f"至 {deadline_moment(_local(now.level_2_at, catalog))} 仍未答复")
        return f"因{why}，该督办件已同时提交纪检监察机构。"
    return LEVEL_2_PROMISE.format(at=deadline_moment(_local(ticket.level_2_at, catalog)))


LEVEL_2_PROMISE = "至 {at} 仍未答复的，将提交纪检监察机构。"
# The promise in a rendered notice, taken out of a level 1 resent after the referral (`resent`).
_PROMISED_REFERRAL = re.compile(re.escape(LEVEL_2_PROMISE).replace(re.escape("{at}"), "[^，。\n]+?"))


def level_2_reason(ticket: Ticket, catalog: Catalog) -> dict[str, str]:
    """Why the ticket goes to the discipline-inspection office, for the level-2 notice's subject
    (`level_2_why`) and body (`level_2_what`): no answer by the level-2 moment, or an answer given
    late and returned by the inspector after that moment (the notice said "仍未答复" of a department
    that had answered: found by a black-box test)."""
    if ticket.level_2_on_return is not None:
        returned = moment(_local(ticket.level_2_on_return, catalog))
        return {"level_2_why": "逾期答复经审核退回",
                "level_2_what": f"部门逾期后作出答复，该答复于 {returned} 经审核退回重办"}
    at = deadline_moment(_local(ticket.level_2_at, catalog))
    # Answered, returned, and not answered again by the level-2 moment (found by review): as the
    # version that took level 2 then says; a held notice sent later is made by a later version.
    if ticket.status is TicketStatus.RETURNED and ticket.last is not None and ticket.last.kind == "level_2":
        return {"level_2_why": "答复退回后逾期仍未重新答复",
                "level_2_what": f"其答复经审核退回重办后，至 {at} 仍未重新答复"}
    return {"level_2_why": "逾期仍未答复", "level_2_what": f"至 {at} 仍未答复"}


def level_1_note(ticket: Ticket, department) -> str:
    """What came of level 1, for the level-2 notice to the discipline-inspection office: said as
    it was, never a head urged who was not told."""
    if ticket.quiet:  # made from history (`Ticket.quiet`): its notices are held, never sent
        # (its held level-2 notice, in the notice log, said the head had been urged: found by a
        # black-box test)
        return "该督办件由历史数据生成，未向部门发出督办通知及升级通知，"
    contact = department.ticket_contact if department is not None else None
    never_told = ("职权目录未登记该部门联系人及负责人的邮箱，督办通知未能送达该部门，"
                  if contact is None or not contact.email else "")
    if ticket.level_1_held:
        return never_told + "升级至部门负责人时处于静默期，未通知部门负责人，"
    head = department.head if department is not None else None
    if head is None or not head.email:
        return never_told + ("" if never_told else "职权目录未登记部门负责人邮箱，") + "升级通知未能送达部门负责人，"
    last = ticket.last
    if last is not None and last.kind == "held_sent" and STEP_TITLE[Step.LEVEL_1.value] in last.text:
        # Both levels held by a silence and sent at its end: the head is told with the office, not
        # before (it read as urged before the referral: found by review).
        return "升级至部门负责人时处于静默期，静默结束后向部门负责人发出的督促通知与本通知同时发出，"
    # What the system did, not what came of it: whether the mail reached the head is in the
    # notice log (a failed level 1 was said before as "经提请部门负责人督促后": found by a black-box test).
    return "已向部门负责人发出督促通知（送达情况见通知记录），"


def if_unanswered(person, department) -> str:
    """What comes of no answer by the deadline, told to `person`, whom the notice reaches: a
    department's contact, that the head will be asked to urge it; the head themself (the catalog
    gives no contact with an address), not that they will be reported to themselves (found by a
    black-box test), but another urging and then the discipline-inspection office."""
    head = department.head if department is not None else None
    if person is None or head is None or person != head:
        return UNANSWERED_TO_CONTACT
    return UNANSWERED_TO_HEAD


UNANSWERED_TO_CONTACT = "逾期未答复的，将按规定提请部门负责人督促办理。"
UNANSWERED_TO_HEAD = "逾期未答复的，将再次发出督促通知；仍未答复的，将按规定提交纪检监察机构。"


def reply_by(notice: Notice, ticket: Ticket, catalog: Catalog) -> str:
    """How the notice asks for the answer: by the deadline, or, once it has passed (a reply returned
    after it: the ticket keeps its deadline), at once."""
    deadline = deadline_moment(_local(ticket.deadline, catalog))
    if ticket.deadline is not None and notice.at >= ticket.deadline:
        return f"答复期限 {deadline} 已过，请立即"
    return f"请于 {deadline} 前"


def instructions(notice: Notice, ticket: Ticket) -> str:
    """An inspector's note on a ticket opened by hand (督办说明), for its opening notice; none for
    the history's words of one opened without a note (they read as the inspector's: found by review)."""
    last = ticket.last
    if (notice.step is not Step.OPENED or last is None or last.kind != "open" or not last.text.strip()
            or last.text == HAND_OPENED):
        return ""
    return f"\n\n督办说明：{last.text.strip()}"


def resolution(ticket: Ticket) -> str:
    """How a closed ticket ended, for its closing notice: its reply accepted, or closed by an
    inspector with their reason."""
    last = ticket.last
    if last is None or last.kind not in ("accept", "close"):
        return ""
    if last.kind == "accept":
        return "该部门的答复经审核通过，督办件办结。" + (f"审核意见：{last.text.strip()}" if last.text.strip() else "")
    return f"督查人员已将督办件办结。办结理由：{last.text.strip()}"


def return_reason(notice: Notice, ticket: Ticket) -> str:
    """Why the inspector returned the reply, for a return's notice: the text of the return that
    made it (`returned_at`), while that is still the ticket's last change."""
    last = ticket.last
    if last is None or last.kind != "return" or returned_at(notice) != last.version or not last.text:
        return "（见督办记录）"
    return last.text


def _local(value: datetime | None, catalog: Catalog) -> datetime | None:
    if value is None:
        return None
    from zoneinfo import ZoneInfo

    return value.astimezone(ZoneInfo(catalog.timezone))
