"""A case file (案卷): one case's events, deadline and alerts, laid out for an inspector to check
a red card by hand. Pure: the stored events and alerts, the catalog item and the calendar in,
a JSON-able record and its text out (`sunlight cases show`)."""

from __future__ import annotations

from datetime import date, timedelta
from typing import Any, Mapping, Sequence
from zoneinfo import ZoneInfo

from alerts.calendar import WorkCalendar
from alerts.catalog import Item
from alerts.describe import (EVENT_TITLE, SUSPENSION_REASON, attrs_in_words, days, deadline_moment, describe_alert,
                             local_moment, moment)
from alerts.evaluate import department_of
from alerts.events import READ_BY_NO_RULE, CaseEvent, EventType, acceptance_registered, own_events
from alerts.letters import REASON_TITLE
from alerts.state import holds_back, last_node_after_the_end, refused_type, set_aside_events
from alerts.timeline import process_order, read_timeline


def case_file(events: Sequence[CaseEvent], alerts: Sequence[Mapping[str, Any]], item: Item,
              calendar: WorkCalendar, department_name: str | None = None,
              waiting: Mapping[str, str] | None = None, conflicting: Sequence[str] = (),
              shown: Sequence[CaseEvent] | None = None, its_department: bool = True) -> dict[str, Any]:
    """`shown`: the events the reader's scope holds, when not all of `events` (every event of the
    case: another department registered some); `its_department`: whether that scope holds the
    case's department. The file lists the events shown only; its status and deadline are the whole
    case's, told to the case's department and to no other: a file of part of a case told another
    department's head that the case was not accepted, had no alert and no deadline running (found
    by a black-box test).
    `conflicting`: the event ids of the case's open `conflicting_duplicate` letters, versions it
    refused of events it holds (what it is judged on is the version that came first: said, since
    the other version could change its cards; found by a black-box test).
    `waiting`: the case's refused events (event_id -> the letter's reason, with the type its
    payload names as the case's state keeps it: `sinks.queries.refused_case_events(as_kept=True)`);
    those it does not hold since, it waits for: until they come corrected the case is not judged,
    but when none holds it back (`alerts.state.holds_back`: ratings, which no rule reads, and nodes
    stated after the case's end)."""
    held = {event.event_id for event in events}
    waiting = {k: v for k, v in (waiting or {}).items() if k not in held}
    ordered = process_order(events, item)
    # The events of another item that hold its judgement back (a rating holds nothing back).
    timeline = read_timeline(own_events(events, item.code), item)  # its deadline, as it is judged
    last_node_at = last_node_after_the_end(timeline.events, timeline.ended_at)
    set_aside = set_aside_events(ordered, item.code, timeline.ended_at, last_node_at)
    local = calendar.local
    first = ordered[0] if ordered else None
    rows = []
    hidden = 0
    if shown is not None and len(shown) < len(events):
        listed = {event.event_id for event in shown}
        hidden = len(ordered) - sum(event.event_id in listed for event in ordered)
        ordered = [event for event in ordered if event.event_id in listed]
    for number, event in enumerate(ordered, start=1):
        node = item.node(event.node) if event.node else None
        rows.append({"seq": number, "event_id": event.event_id, "type": event.type.value,
                     "type_title": EVENT_TITLE[event.type], "node": event.node,
                     "node_name": node.name if node else None,
                     "occurred_at": local(event.occurred_at).isoformat(),
                     "recorded_at": local(event.recorded_at).isoformat(),
                     "officer_id": event.officer_id, "channel": event.channel.value if event.channel else None,
                     "attrs": dict(event.attrs), "attrs_text": attrs_in_words(event.attrs)})
    status = "未受理"
    ended = None if timeline.end is None else "已办结" if timeline.end.type is EventType.CLOSED else "已撤回"
    late_acceptance = _accepted_after_the_end(timeline)
    if late_acceptance is not None:  # the end came first: the case is not one still to be accepted
        status = f"{ended}（受理登记在其后）"
    elif timeline.accepted is not None:
        status = "在办"
        if ended is not None:
            status = ended
        elif timeline.suspensions and timeline.suspensions[-1].end is None:
            status = "挂起中"
    deadline = (_deadline(timeline, item, calendar) if late_acceptance is None
                else _deadline_after_the_end(timeline, late_acceptance, calendar))
    department = department_of(events, item)  # (its own item's, not another's: `labels_of`)
    partial_text = None
    if hidden:
        partial_text = PARTIAL_TEXT.format(n=hidden)
        if not its_department:
            partial_text = OTHERS_CASE_TEXT.format(department=department_name or department, item=item.code,
                                                   shown=len(ordered), total=len(ordered) + hidden)
            status, deadline = OTHERS_CASE_STATUS, {"text": OTHERS_CASE_DEADLINE}
    if hidden and not its_department:  # nor how the case is judged (found by review)
        waiting, set_aside, conflicting = {}, [], ()
    return {
        "case_id": first.case_id if first else None, "item_code": item.code, "item_name": item.name,
        "department": department, "department_name": department_name, "status": status,
        "timezone": calendar.tz.key, "events": rows, "deadline": deadline,
        "partial_text": partial_text, "its_department": its_department or not hidden,
        "alerts": [{**alert, "text": describe_alert(alert)} for alert in alerts],
        "waiting_for": [{"event_id": event_id, "reason": reason, "reason_title": REASON_TITLE.get(reason, reason)}
                        for event_id, reason in ((k, kept.partition("@")[0]) for k, kept in waiting.items())],
        "waiting_text": _waiting_text(waiting, timeline.ended_at, last_node_at,
                                      acceptance_registered(timeline.events) if waiting else None),
        "mixed_items_text": (MIXED_ITEMS_TEXT.format(
            items="、".join(sorted({e.item_code for e in events})), item=item.code,
            others="、".join(e.event_id for e in set_aside)) if set_aside else None),
        "conflicting_text": (CONFLICTING_TEXT.format(n=len(conflicting), ids="、".join(sorted(set(conflicting))))
                             if conflicting else None),
    }


def shown_part(events: Sequence[CaseEvent], shown: set[str], its_department: bool) -> dict[str, Any]:
    """`case_file`'s arguments for a reader whose scope holds the events `shown` (ids) of `events`,
    all of a case's, and holds its department or not: none when it holds them all."""
    if all(event.event_id in shown for event in events):
        return {}
    return {"shown": [event for event in events if event.event_id in shown], "its_department": its_department}


def _waiting_text(waiting: Mapping[str, str], ended_at, last_node_at=None, accepted_registered=None) -> str | None:
    """What the file says of the refused events the case waits for (`alerts.state.holds_back`)."""
    if not waiting:
        return None
    if any(holds_back(kept, ended_at, last_node_at, accepted_registered) for kept in waiting.values()):
        return WAITING_TEXT
    return RATINGS_ONLY_TEXT if all(refused_type(kept) in READ_BY_NO_RULE for kept in waiting.values()) \
        else NOT_HOLDING_TEXT


# What the file of a case says when some of its events are outside the reader's scope (registered
# by another department): to the case's department, which sees the whole case's status and cards;
# to another, which sees the events it registered and nothing it could misread as the whole case.
PARTIAL_TEXT = ("本办件另有 {n} 个事件由其他部门登记（或未注明部门），不在您的查看范围内，未列出；"
                "办件状态、办理时限和预警按办件的全部事件评判。")
OTHERS_CASE_TEXT = ("本办件属{department}（事项 {item}），您的查看范围内只有本部门登记的 {shown} 个事件（共 {total} 个），"
                    "仅列出这些事件。办件状态、办理时限、预警和督办件以主办部门的记录为准，本页不作显示。")
OTHERS_CASE_STATUS = "由主办部门办理（本页不作判断）"
OTHERS_CASE_DEADLINE = "办理时限以主办部门的记录为准。"


# What a case with open `conflicting_duplicate` letters is told: the version judged is the first.
CONFLICTING_TEXT = ("该办件有 {n} 条事件以已入库事件的编号（{ids}）再次发送而内容不同，已被拒收（同一事件内容不一致）："
                    "本办件按先入库的版本评判，预警可能因此不同。请核实哪一版本属实：更正的事实须以新的事件编号发送，"
                    "误发的由运维人员注明原因关闭（sunlight dlq list 查看）。")


# What a case whose events name two items is told (`alerts.evaluate.judge_case`).
MIXED_ITEMS_TEXT = ("该办件的事件分属不同事项（{items}）：按多数事件所属事项 {item} 的办理流程和时限评判，"
                    "其他事项的事件（{others}）暂不计入，暂缓评判：除事件登记迟延（网下运行、网上登记）和事项 {item} 的处罚金额超出裁量基准外"
                    "不新发预警（其他事项事件中的处罚金额暂不评判）；"
                    "这些事件仅为环节、决定或退回，或为所述时间在办理期限届满之后的挂起、办结或撤回时，临近到期、超时预警及涉及办理时限的"
                    "事后补挂起预警照常发出；已发的预警在该事项的事实不再支持时撤销，临近到期、超时预警因事后补登的挂起而撤销时，"
                    "同时发出事后补挂起预警。请核实事项编码并更正来源系统的数据。")


# What a case whose only refused events are ratings is told: it is judged as any case.
RATINGS_ONLY_TEXT = ("该办件有评议（好差评）事件因数据不符合规范被系统拒收，请在来源系统更正并重新推送；"
                     "评议不影响预警，办件照常评判。")


# What a case is told whose refused events are ratings, or nodes, suspensions or resumptions stated
# after its end (办结后才完成的环节), none of which changes how it was handled
# (`alerts.state.holds_back`): it is judged as any case.
NOT_HOLDING_TEXT = ("该办件有事件因数据不符合规范被系统拒收，请在来源系统更正并重新推送；"
                    "被拒收的仅为评议，或所述时间在办结（撤回）之后的环节、挂起或恢复计时事件，不影响对办理过程的评判，办件照常评判。")


# What a case that waits for refused events is told to the people who read its file.
# In the words of an inspector or a head, who cannot run the CLI: who corrects it, not how (the
# operators' commands, `sunlight dlq list` and `redrive`, read as instructions to them before; found
# by a black-box test).
WAITING_TEXT = ("该办件有事件因数据不符合规范被系统拒收，事实不完整，暂缓评判：在来源系统更正并重新推送这些事件"
                "（由运维人员在死信队列中核对、重新提交）之前，除事件登记迟延（网下运行、网上登记）和处罚金额超出裁量基准外不新发预警；"
                "被拒收的仅为环节、决定或退回事件，或为所述时间在办理期限届满之后的挂起、办结或撤回事件，"
                "或为从未挂起的办件的恢复计时事件时，"
                "临近到期、超时预警及涉及办理时限的事后补挂起预警照常发出；"
                "已发的预警在已到达的事实不再支持时撤销，临近到期、超时预警因事后补登的挂起而撤销时，同时发出事后补挂起预警。")


def _accepted_after_the_end(timeline) -> CaseEvent | None:
    """The acceptance of a case whose closing or withdrawal came before it, and stands (not one
    reopened by a return and ended again since): the case file says so, not "not yet accepted" nor
    "in progress"."""
    return timeline.accepted if timeline.ended_before_acceptance else None


def _deadline_after_the_end(timeline, late_acceptance: CaseEvent, calendar: WorkCalendar) -> dict[str, Any]:
    """What the file says of the time limit of a case accepted after it ended: none counted from the
    acceptance; the one its source states, and whether the end kept it (`deadlines.late_from`)."""
    local = calendar.local
    ended = "办结" if timeline.end.type is EventType.CLOSED else "撤回"
    text = f"受理（{moment(local(late_acceptance.occurred_at))}）登记在{ended}（{moment(local(timeline.end.occurred_at))}）之后"
    deadline = timeline.deadline(calendar) if timeline.stated_deadline is not None else None
    if deadline is None:
        return {"text": text + "，按承诺工作日计算的办理时限无从起算。"}
    kept = "已超过" if timeline.end.occurred_at > deadline else "未超过"
    moved = "顺延挂起时间后" if timeline.suspensions else ""
    return {"text": text + f"；来源系统载明的办理时限{moved}为 {deadline_moment(local(deadline))}，{ended}时{kept}该时限。",
            "deadline": local(deadline).isoformat(), "stated_deadline": local(timeline.stated_deadline).isoformat(),
            "stated_by_source": True}


def _reason(reason: str | None) -> str:
    return SUSPENSION_REASON.get(reason or "", reason or "未说明")


def _inside(inner: list[dict[str, Any]]) -> str:
    """Suspensions stated while another ran, in words: the clock stayed stopped until each was resumed
    too (a pause listed alone, with its first reason, hid the expert review that kept it going)."""
    if not inner:
        return ""
    stated = "、".join(f"{moment(i['from'])} {_reason(i['reason'])}" for i in inner)
    return f"；其间另行挂起：{stated}"


def _deadline(timeline, item: Item, calendar: WorkCalendar) -> dict[str, Any]:
    accepted = timeline.clock_accepted  # of several acceptances, the one registered first
    if accepted is None:
        return {"text": "案件尚未受理，办理时限未起算。"}
    deadline = timeline.deadline(calendar)
    pauses = [{"from": calendar.local(s.suspended.occurred_at).isoformat(),
               "to": calendar.local(s.end).isoformat() if s.end else None,
               "reason": s.suspended.attrs.get("reason"),
               # before the case clock started (a 补正 before 受理, ended by the acceptance at the
               # latest: `alerts.timeline`): it stops nothing
               "before_acceptance": s.end is not None and s.end <= accepted.occurred_at,
               "inner": [{"from": calendar.local(e.occurred_at).isoformat(), "reason": e.attrs.get("reason")}
                         for e in s.inner]} for s in timeline.suspensions]
    out: dict[str, Any] = {
        "accepted_at": calendar.local(accepted.occurred_at).isoformat(),
        "promised_days": None if timeline.stated_deadline else timeline.promised_days,
        "catalog_promised_days": item.promised_days,
        "stated_by_source": timeline.stated_deadline is not None,
        "suspensions": pauses,
        "deadline": calendar.local(deadline).isoformat() if deadline else None,
    }
    if timeline.stated_deadline is not None:
        # As stated: the deadline a suspension moved is said apart, below (the moved one was given as
        # stated by the source: found by a black-box test).
        out["stated_deadline"] = calendar.local(timeline.stated_deadline).isoformat()
        basis = f"办理系统在受理时给定的办理时限：{deadline_moment(out['stated_deadline'])}。"
    else:
        source = "（受理事件另行约定）" if timeline.promised_days != item.promised_days else "（事项目录）"
        basis = (f"承诺时限 {timeline.promised_days} 个工作日{source}，自 {moment(out['accepted_at'])} 受理，"
                 f"受理当日不计，自次日起按中国法定工作日计算（周末、法定节假日及调休放假日不计，调休上班日计入），"
                 f"截止于最后一个工作日 24:00。" if timeline.promised_days else
                 f"即办件{source}，{moment(out['accepted_at'])} 受理，当日办结，截止于受理当日 24:00"
                 f"（受理日不是工作日的，截止于其后第一个工作日 24:00）。")
    lines = [basis]
    if timeline.deadline_from is not None:
        out["earliest_acceptance_at"] = calendar.local(timeline.accepted.occurred_at).isoformat()
        lines.append(f"另有受理事件所述受理时间为 {moment(out['earliest_acceptance_at'])}，但登记在后："
                     f"时限按最先登记的受理（{moment(out['accepted_at'])}）及其承诺时限计算。")
    if pauses:
        spans = "；".join(f"{moment(p['from'])} 至 {moment(p['to']) if p['to'] else '未恢复'}"
                         f"（{_reason(p['reason'])}{_inside(p['inner'])}"
                         f"{'；在受理之前，不计入时限' if p['before_acceptance'] else ''}）" for p in pauses)
        lines.append(f"挂起 {len(pauses)} 次：{spans}；挂起期间的工作时间不计入，时限相应顺延。")
    if deadline is None:
        lines.append("案件挂起中，时限暂停计算。")
    else:
        if timeline.stated_deadline is None:
            start = calendar.local(accepted.occurred_at).date() + timedelta(days=1)
            end = calendar.local(deadline).date() - timedelta(days=1)
            off, extra = _calendar_exceptions(calendar, start, end)
            if off:
                lines.append(f"期间不计的工作日（法定节假日及调休放假）：{_dates(off)}。")
            if extra:
                lines.append(f"期间计入的周末（调休上班）：{_dates(extra)}。")
        lines.append(f"办理时限截止：{deadline_moment(out['deadline'])}。")
    for r in timeline.reopenings:
        node = item.node(r.returned.node or "")
        out.setdefault("reopened", []).append({"ended_at": calendar.local(r.ended.occurred_at).isoformat(),
                                               "returned_at": calendar.local(r.returned.occurred_at).isoformat(),
                                               "returned_to_node": r.returned.node})
        lines.append(f"曾于 {moment(calendar.local(r.ended.occurred_at).isoformat())} "
                     f"{'办结' if r.ended.type is EventType.CLOSED else '撤回'}，"
                     f"又于 {moment(calendar.local(r.returned.occurred_at).isoformat())} 退回至"
                     f"“{node.name if node else r.returned.node}”重办，案件自此重新在办；"
                     f"其间案件不在办，此后仍按原时限计算。")
    if timeline.end is not None:
        used = calendar.working_days_between(accepted.occurred_at, timeline.end.occurred_at, timeline.pauses,
                                             limit=deadline)
        out["ended_at"] = calendar.local(timeline.end.occurred_at).isoformat()
        out["working_days_used"] = used
        how = "办结" if timeline.end.type is EventType.CLOSED else "撤回"
        late = deadline is not None and timeline.end.occurred_at > deadline
        # Counted from the acceptance, as the deadline is: a reopened case's time out of hand between
        # its ends is in it (its deadline stays), and says so (it read as a contradiction of "其间案件
        # 不在办" above: found by a black-box test).
        gap = "（自受理起算，含其间不在办的时间）" if timeline.reopenings else ""
        lines.append(f"实际于 {moment(out['ended_at'])} {how}，用时 {days(used)} 个工作日{gap}，"
                     f"{'超过' if late else '未超过'}时限。")
    out["text"] = "\n".join(lines)
    return out


def _calendar_exceptions(calendar: WorkCalendar, start: date, end: date) -> tuple[list[date], list[date]]:
    """Weekdays that are holidays, and weekend days that are working days (调休), in [start, end]."""
    off, extra = [], []
    day = start
    while day <= end and (day - start).days <= 3700:
        workday = calendar.is_workday(day)
        if day.weekday() < 5 and not workday:
            off.append(day)
        elif day.weekday() >= 5 and workday:
            extra.append(day)
        day += timedelta(days=1)
    return off, extra


def _dates(values: list[date]) -> str:
    return "、".join(d.isoformat() for d in values[:40]) + (f" 等 {len(values)} 天" if len(values) > 40 else "")


def render(file: Mapping[str, Any]) -> str:
    """The case file as text for a terminal."""
    department = file["department"] + (f" {file['department_name']}" if file.get("department_name") else "")
    out = [f"办件 {file['case_id']} · 事项 {file['item_code']} {file['item_name']} · 部门 {department} · "
           f"状态：{file['status']}", "", "事件（按办理顺序）："]
    out.append(f"  {'#':>3}  {'发生时间':<16}  {'登记时间':<16}  {'事件':<6}  {'环节':<14}  {'承办人':<10}  事件编号")
    tz = ZoneInfo(file["timezone"])
    for row in file["events"]:
        node = row["node_name"] or row["node"] or ""  # whole, the columns after it pushed (a name cut to 14
        # characters, "T02 Check conf", was no name an inspector could look up: found on a real log)
        out.append(f"  {row['seq']:>3}  {local_moment(row['occurred_at'], tz):<16}  "
                   f"{local_moment(row['recorded_at'], tz):<16}  "
                   f"{row['type_title']:<6}  {node:<14}  {row['officer_id'] or '':<10}  {row['event_id']}")
    if file.get("partial_text"):
        out += ["", f"查看范围：{file['partial_text']}"]
    out += ["", "办理时限：", *("  " + line for line in file["deadline"]["text"].splitlines()), ""]
    if file.get("waiting_for"):
        out += ["暂缓评判：", f"  {file['waiting_text']}",
                *(f"  被拒收的事件 {w['event_id']}：{w['reason_title']}" for w in file["waiting_for"]), ""]
    if file.get("mixed_items_text"):
        out += ["暂缓评判：", f"  {file['mixed_items_text']}", ""]
    if file.get("conflicting_text"):
        out += ["内容冲突：", f"  {file['conflicting_text']}", ""]
    out.append("预警：")
    if not file["alerts"]:
        out.append("  无" if file.get("its_department", True) else "  以主办部门的记录为准")
    for alert in file["alerts"]:
        out.append(f"  {alert['text']}")
        out.append(f"    预警编号 {alert['alert_id']} · 第 {alert.get('version', 1)} 版 · "
                   f"发生于 {local_moment(alert['event_time'], tz)}")
    return "\n".join(out) + "\n"
