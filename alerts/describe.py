"""Alerts in words: the evidence of each rule as Chinese sentences an inspector can check.

Used wherever people read an alert: `sunlight cases show`, notices, tickets, pages. Pure:
an alert's JSON form (or its parts) in, text out. Times are shown as the evidence states
them, in local business time, to the minute.
"""

from __future__ import annotations

import json
import math
import unicodedata
from datetime import datetime, timedelta
from typing import Any, Mapping, Sequence
from zoneinfo import ZoneInfo

from alerts.events import CaseEvent, EventType

EVENT_TITLE: Mapping[EventType, str] = {
    EventType.ACCEPTED: "受理",
    EventType.NODE_COMPLETED: "环节办结",
    EventType.RETURNED: "退回",
    EventType.SUSPENDED: "挂起",
    EventType.RESUMED: "恢复",
    EventType.DECIDED: "决定",
    EventType.CLOSED: "办结",
    EventType.WITHDRAWN: "撤回",
    EventType.RATED: "评议",
}
SUSPENSION_REASON = {"hearing": "听证", "inspection": "检验检测", "expert_review": "专家评审",
                     "supplement": "补正材料", "other": "其他"}
# An event's facts (the contract's attrs) in words: the field's title, and its value's where the
# contract names the values; a field the contract does not name keeps its own key.
ATTR_TITLE = {"reason": "原因", "opinion": "意见", "promised_days": "承诺时限（工作日）", "deadline": "办理期限",
              "decision": "决定", "violation_code": "违法行为", "penalty_amount": "罚款金额（元）",
              "discretion_tier": "裁量档次", "rating": "评价"}
ATTR_VALUE = {"reason": SUSPENSION_REASON,
              "decision": {"approve": "准予", "reject": "不予准予", "penalize": "给予处罚", "no_penalty": "不予处罚"},
              "rating": {"satisfied": "满意", "basically_satisfied": "基本满意", "dissatisfied": "不满意"}}


def attrs_in_words(attrs: Mapping[str, Any]) -> list[tuple[str, str]]:
    """(title, value) of each of an event's facts, for a person to read."""
    out = []
    for key, value in attrs.items():
        if key == "discretion_tier" and isinstance(value, str):
            words = tier_name(value)
        elif key == "penalty_amount" and isinstance(value, (int, float)) and not isinstance(value, bool):
            words = money(value)
        else:
            words = ATTR_VALUE.get(key, {}).get(value, value) if isinstance(value, str) else value
        out.append((ATTR_TITLE.get(key, key), words if isinstance(words, str) else json.dumps(words, ensure_ascii=False)))
    return out


WENT_AHEAD = {"node": "完成后续环节", "decision": "作出决定", "closing": "办结", "acceptance": "受理"}
STATUS_TITLE = {"open": "有效", "withdrawn": "已撤销", "acknowledged": "已确认", "resolved": "已处置"}


def display_width(text: str) -> int:
    """Columns `text` takes in a terminal: a Chinese character (wide, full-width) two."""
    return sum(2 if unicodedata.east_asian_width(ch) in "WF" else 1 for ch in text)


def table_lines(head: Sequence[str], rows: Sequence[Sequence[str]]) -> list[str]:
    """A text table whose columns line up in a terminal whatever Chinese they hold (padded by
    `display_width`: with Python's character counts, 已答复待审核 pushed the rest of its line out
    of line; found by a black-box test)."""
    widths = [max(display_width(r[i]) for r in [head, *rows]) for i in range(len(head))]
    return ["  ".join(c + " " * (w - display_width(c)) for c, w in zip(cells, widths)).rstrip()
            for cells in [head, *rows]]


def moment(value: str | datetime | None) -> str:
    """'2026-03-16 00:00' from an ISO time (kept in the offset it was written with)."""
    if value is None:
        return "—"
    text = value.isoformat() if isinstance(value, datetime) else str(value)
    return text[:16].replace("T", " ")


def deadline_moment(value: str | datetime | None) -> str:
    """A deadline as the contract words it: one that ends at midnight is '2026-03-13 24:00', the end
    of its last day (before, '2026-03-14 00:00': a deadline on a Friday read as on the Saturday,
    and a source's deadline of the 21st as the 22nd; found by a black-box test on a real log); one
    with seconds, as a source may state it, with them ('2026-03-13 23:59:59')."""
    if value is None:
        return moment(value)
    at = value if isinstance(value, datetime) else datetime.fromisoformat(str(value))
    if (at.hour, at.minute, at.second, at.microsecond) == (0, 0, 0, 0):
        return f"{(at - timedelta(days=1)).date().isoformat()} 24:00"
    if at.second or at.microsecond:  # a source's 23:59:59 read as 23:59: a step done at 23:59:30 in time
        return at.isoformat(sep=" ", timespec="seconds")[:19]
    return moment(value)


def local_moment(value: str | None, tz: ZoneInfo) -> str:
    """`moment`, with the offset when the local time is one `tz` shows twice (the hour repeated
    when summer time ends): '2026-10-25 02:30+01:00'."""
    if value is None:
        return moment(value)
    wall = datetime.fromisoformat(value).replace(tzinfo=None)
    if wall.replace(tzinfo=tz, fold=0).utcoffset() == wall.replace(tzinfo=tz, fold=1).utcoffset():
        return moment(value)
    return moment(value) + value[19:].lstrip(".0123456789")


def days(value: float | int | None) -> str:
    if value is None:
        return "—"
    return f"{value:g}" if isinstance(value, int) or float(value).is_integer() else f"{value:.2f}"


def hours(value: float | int | None) -> str:
    """A lag in hours, to a tenth, with the days it makes when it is two days or more."""
    if value is None:
        return "—"
    text = f"{float(value):.1f}".removesuffix(".0") + " 小时"
    return text + (f"（约 {float(value) / 24:.1f} 天）".replace(".0 天", " 天") if value >= 48 else "")


def money(value: float | int | None) -> str:
    """An amount in yuan, to the fen; an amount finer than that as given (¥4,999.999 shown as
    ¥5,000 read as inside a tier that starts at ¥5,000, beside a finding that it is outside)."""
    if value is None:
        return "—"
    if round(float(value), 2) == float(value) or not math.isfinite(float(value)):
        return f"¥{value:,.2f}".replace(".00", "")
    whole, _, fraction = repr(float(value)).partition(".")
    if "e" in fraction or "e" in whole:
        return f"¥{float(value):,.10f}".rstrip("0")
    return f"¥{int(whole):,}.{fraction}" if whole.lstrip("-").isdigit() else f"¥{value}"


def tier_span(tier: Mapping[str, Any]) -> str:
    """A benchmark tier's amounts in words: ¥5,000–¥20,000; open-ended, ¥8,000 以上 (or 以下)."""
    low, high = tier.get("min"), tier.get("max")
    if low is not None and isinstance(low, float) and math.isinf(low):
        low = None
    if high is None or (isinstance(high, float) and math.isinf(high)):
        return f"{money(low)} 以上" if low is not None else "不限金额"
    if low is None:
        return f"{money(high)} 以下"
    return f"{money(low)}–{money(high)}"


def event_cause(event: CaseEvent, tz: ZoneInfo, node_names: Mapping[str, str] | None = None) -> str:
    """The event that changed a judgement, in words, at local business time: `2026-03-20 10:00 的
    “办结”事件（C1-05）` (before, in the offset the source wrote it in: a closing written in UTC read
    as done at 01:30 at night, registered eight hours later; found by an independent oracle)."""
    name = (node_names or {}).get(event.node or "")
    node = f"（环节 {name or event.node}）" if event.node else ""  # by its name, as the case's events are shown
    at = moment(event.occurred_at.astimezone(tz))
    return f"{at} 的“{EVENT_TITLE[event.type]}”事件{node}（{event.event_id}）"


def withdrawal_reason(cause: str) -> str:
    return f"{cause}表明该情形不成立"


REJUDGED = "重新评判时，已到达的事实不再支持该情形"


def rejudged_reason(events: "list[CaseEvent]", judged_at: datetime | None, tz: ZoneInfo,
                    arrived: "tuple[str, ...]" = (), shown: int = 3, node_names: Mapping[str, str] | None = None) -> str:
    """Why an alert was withdrawn when a case was judged once for several new facts (the end of a
    replay or an import on a store that had judged it before): the events that arrived since the
    last judgement (`arrived`, as the state recorded them, whatever registration time they claim:
    a cover-up back-dates it; found by a black-box test), else those registered after its clock
    (`judged_at`); when neither names any, only that the facts no longer support it. (Saying then
    that the facts claim a registration before a judgement that did not have them would accuse
    every honest history: a replay's clock, `--now`, is after all of its events: found by review.)"""
    if judged_at is None:
        return REJUDGED
    judged = moment(judged_at.astimezone(tz))
    came = set(arrived)
    since = sorted((e for e in events if e.event_id in came or (not came and e.recorded_at > judged_at)),
                   key=lambda e: (e.recorded_at, e.event_id))
    if not since:
        # No fact came since: the case was judged again under another catalog (or other rules),
        # and says so (before, "the facts no longer support it" alone, for a red card a catalog
        # edit withdrew: found by a black-box test). What changed in a deadline: `deadline_change`.
        return f"{REJUDGED}：上次评判 {judged} 之后没有登记新的事件，按现行事项目录、工作日历和评判规则重新评判"
    named = "、".join(f"{event_cause(e, tz, node_names)}（登记于 {moment(e.recorded_at.astimezone(tz))}）"
                     for e in since[:shown])
    more = f"等 {len(since)} 个事件" if len(since) > shown else ""
    what = "到达" if came else "登记"
    return f"{REJUDGED}：上次评判 {judged} 之后{what}的{named}{more}"


def deadline_change(evidence: Mapping[str, Any], deadline: datetime | None, promised_days: int | None,
                    tz: ZoneInfo) -> str:
    """What became of a withdrawn deadline card's deadline (`overdue`, `deadline_near`), appended to
    its reason: '；承诺时限由 1 个工作日改为 10 个工作日，办理时限截止由 … 变为 …'; '' when neither
    changed. The card's evidence keeps what it was raised on; this says what the case is judged on
    now (a catalog's limit lengthened, a suspension stated back, a deadline the source restated)."""
    parts = []
    was_days = evidence.get("promised_days")
    if isinstance(was_days, int) and promised_days is not None and was_days != promised_days:
        parts.append(f"承诺时限由 {was_days} 个工作日改为 {promised_days} 个工作日")
    was = evidence.get("deadline")
    if isinstance(was, str) and deadline is not None:
        try:
            moved = datetime.fromisoformat(was) != deadline
        except ValueError:
            moved = False
        if moved:
            parts.append(f"办理时限截止由 {deadline_moment(was)} 变为 {deadline_moment(deadline.astimezone(tz))}")
    return "；" + "，".join(parts) if parts else ""


def _suspension_event(evidence: Mapping[str, Any]) -> str:
    """'挂起事件 E5（专家评审）': a backdated suspension and its reason, when it states one (it was
    left out: found by a black-box test)."""
    reason = evidence.get("reason")
    why = f"（{SUSPENSION_REASON.get(reason, reason)}）" if reason else ""
    return f"挂起事件 {evidence.get('event_id')}{why or ' '}"


def _suspensions(evidence: Mapping[str, Any]) -> str:
    items = evidence.get("suspensions") or []
    if not items:
        return "无挂起"
    parts = [f"{moment(s.get('suspended_at'))} 至 {moment(s.get('resumed_at')) if s.get('resumed_at') else '未恢复'}"
             f"（{SUSPENSION_REASON.get(s.get('reason') or '', s.get('reason') or '未说明')}）" for s in items]
    return "挂起 " + "；".join(parts) + "，挂起期间不计时"


def _deadline(evidence: Mapping[str, Any]) -> str:
    if evidence.get("deadline_source") == "stated by the source system":
        basis = "办理系统给定的办理时限"
    elif evidence.get("promised_days") == 0:
        basis = "即办件（当日办结，截止于受理当日 24:00，受理日不是工作日的顺延至其后第一个工作日）"
    else:
        basis = f"承诺时限 {evidence.get('promised_days')} 个工作日（受理当日不计，截止于最后一个工作日 24:00）"
    earlier = evidence.get("earliest_acceptance_at")
    other = (f"（另一受理事件所述受理时间为 {moment(earlier)}，登记在后，时限不从其起算）" if earlier else "")
    return (f"{moment(evidence.get('accepted_at'))} 受理{other}，{basis}，{_suspensions(evidence)}，"
            f"时限截止 {deadline_moment(evidence.get('deadline'))}")


def _reopened(evidence: Mapping[str, Any]) -> str:
    """How a case that ended was sent back to be redone (evidence `reopened`), as a clause."""
    return "".join(f"{deadline_moment(r.get('ended_at'))} {'办结' if r.get('ended_by') == 'closed' else '撤回'}后，"
                   f"又于 {moment(r.get('returned_at'))} 退回至“{r.get('returned_to_node_name') or r.get('returned_to_node')}”重办；"
                   for r in evidence.get("reopened") or ())


def _ended(evidence: Mapping[str, Any]) -> str:
    if not evidence.get("ended_at"):
        return _reopened(evidence) + "至今未办结"
    how = "办结" if evidence.get("ended_by") == "closed" else "撤回"
    used = evidence.get("working_days_used")
    return (_reopened(evidence) + f"于 {deadline_moment(evidence['ended_at'])} {how}"
            + (f"，实际用时 {days(used)} 个工作日" if used is not None else ""))


def describe_evidence(rule: str, evidence: Mapping[str, Any]) -> str:
    """The evidence of an alert of `rule`, as sentences."""
    e = evidence
    if rule == "deadline_near":
        return (f"{_deadline(e)}。{moment(e.get('last_day_started_at'))} 进入最后一个工作日时案件仍在办理；"
                f"{_ended(e)}。")
    if rule == "overdue":
        if e.get("ended_before_acceptance"):
            first = e["ended_before_acceptance"]
            how = "撤回" if isinstance(first, Mapping) and first.get("ended_by") == "withdrawn" else "办结"
            return f"{_deadline(e)}。案件{how}之后才登记受理，{how}时已超过该时限；{_ended(e)}。"
        if e.get("accepted_after_deadline"):
            return f"{_deadline(e)}。案件受理时已超过该时限；{_ended(e)}。"
        if e.get("open_again_from"):
            return f"{_deadline(e)}。案件曾在时限内办结，时限届满后又退回重办、重新在办；{_ended(e)}。"
        return f"{_deadline(e)}。时限届满时案件仍未办结；{_ended(e)}。"
    if rule == "node_overdue":
        done = (f"于 {moment(e['completed_at'])} 完成，用时 {days(e.get('working_days_used'))} 个工作日"
                if e.get("completed_at") else
                # a run a return stopped after its limit (found by a black-box test: it read "至今未完成")
                f"未完成，{moment(e['stopped_at'])} 因案件退回至前置环节重办而中止" if e.get("stopped_at") else "至今未完成")
        return (f"环节“{e.get('node_name')}”限时 {e.get('node_days')} 个工作日，自 {moment(e.get('clock_started_at'))} "
                f"起算，{_suspensions(e)}，应于 {deadline_moment(e.get('node_deadline'))} 前完成；实际{done}。")
    if rule == "skipped_node":
        what = WENT_AHEAD.get(e.get("went_ahead") or "", e.get("went_ahead") or "")
        name = e.get("went_ahead_node_name") or e.get("went_ahead_node")
        node = f"“{name}”" if name and e.get("went_ahead") == "node" else f"（环节“{name}”）" if name else ""
        kind = "前置环节" if e.get("skipped_node_optional") else "必经环节"
        skipped = f"{kind}“{e.get('skipped_node_name') or e.get('skipped_node')}”"
        if e.get("returned_event_id"):  # done once, then undone by a return, and not done again
            skipped += (f"已于 {moment(e.get('returned_at'))} 被退回（事件 {e['returned_event_id']}）"
                        f"须重新办理，尚未重新完成")
        else:
            skipped += "尚未完成"
        # A closing at midnight is the end of the day before (a date-only end column closes the case at
        # 24:00 of its date: "2010-12-02 00:00 即已办结" was a day late; found by a black-box test).
        went = deadline_moment if e.get("went_ahead") == "closing" else moment
        return (f"{skipped}，{went(e.get('went_ahead_at'))} 即已{what}{node}，事件 {e.get('went_ahead_event_id')}。")
    if rule == "backfill":
        parts = []
        burst = e.get("burst")
        if burst:
            parts.append(f"从受理到办结的 {burst['events']} 个事件在 {moment(burst['registered_from'])} 至 "
                         f"{moment(burst['registered_to'])} 的 {days(burst['registered_within_minutes'])} 分钟内集中登记，"
                         f"而其所述办理时间跨度 {days(burst['stated_span_hours'])} 小时"
                         f"（{moment(burst['stated_from'])} 至 {moment(burst['stated_to'])}）")
        late = e.get("late_registrations") or []
        if late:
            first = late[0]
            count = e.get('late_registration_count', len(late))
            which = f"，如 {first['event_id']}" if count > 1 else f"：{first['event_id']}"
            parts.append(f"{count} 个事件滞后登记{which}，"
                         f"{moment(first['occurred_at'])} 发生，{moment(first['recorded_at'])} 才登记"
                         f"（滞后 {hours(first['lag_hours'])}）")
        return "疑似网下运行、网上补录：" + "；".join(parts) + "。"
    if rule == "retroactive_suspension" and e.get("deadline_as_registered"):
        ended = f"于 {deadline_moment(e['ended_at'])} 办结" if e.get("ended_at") else "至今仍在办理"
        return (f"{_suspension_event(e)}所述挂起时间为 {moment(e.get('suspension_occurred_at'))}，"
                f"但直到 {moment(e.get('suspension_recorded_at'))} 才登记，倒签 {days(e.get('backdated_hours'))} 小时；"
                f"若自登记时起挂起，办理时限为 {deadline_moment(e.get('deadline_as_registered'))}，案件{ended}即已超期；"
                f"按倒签的挂起时间，时限延至 {deadline_moment(e.get('deadline_as_stated'))}，其间的超期因此被掩盖。")
    if rule == "retroactive_suspension" and e.get("node_deadline_as_registered"):
        done = f"于 {moment(e['node_completed_at'])} 才完成" if e.get("node_completed_at") else "至今未完成"
        return (f"{_suspension_event(e)}所述挂起时间为 {moment(e.get('suspension_occurred_at'))}，"
                f"但直到 {moment(e.get('suspension_recorded_at'))} 才登记，倒签 {days(e.get('backdated_hours'))} 小时；"
                f"环节“{e.get('covered_node_name') or e.get('covered_node')}”限时 {e.get('node_days')} 个工作日，"
                f"若自登记时起挂起，应于 {deadline_moment(e.get('node_deadline_as_registered'))} 前完成，实际{done}；"
                + (f"按倒签的挂起时间，时限延至 {deadline_moment(e.get('node_deadline_as_stated'))}，环节超时因此被掩盖。"
                   if e.get("node_deadline_as_stated") else
                   "按倒签的挂起时间，环节时限自所述挂起时起停止计算（至今未恢复办理），环节超时因此被掩盖。"))
    if rule == "retroactive_suspension" and e.get("pushed"):
        return (f"{_suspension_event(e)}由自建系统于 {moment(e.get('suspension_recorded_at'))} 推送，"
                f"所述挂起时间为 {moment(e.get('suspension_occurred_at'))}，此时不计该挂起的办理时限"
                f"（{deadline_moment(e.get('deadline_without_suspension'))}）已过。")
    if rule == "retroactive_suspension":
        return (f"{_suspension_event(e)}所述挂起时间为 {moment(e.get('suspension_occurred_at'))}，"
                f"但直到 {moment(e.get('suspension_recorded_at'))} 才登记，此时不计该挂起的办理时限"
                f"（{deadline_moment(e.get('deadline_without_suspension'))}）已过，倒签 {days(e.get('backdated_hours'))} 小时。")
    if rule == "discretion_out_of_range":
        tiers = "、".join(f"{tier_name(t['tier'])} {tier_span(t)}" for t in e.get("tiers") or [])
        claimed = f"，自称适用“{tier_name(e['claimed_tier'])}”档" if e.get("claimed_tier") else ""
        return (f"{moment(e.get('decided_at'))} 对违法行为 {e.get('violation_code')} 处罚 {money(e.get('penalty_amount'))}"
                f"{claimed}；自由裁量基准为 {tiers}；问题：{_problem(e)}。")
    if rule == "discretion_outlier":
        low, high = (e.get("usual_range") or [None, None])[:2]
        direction = "高于" if e.get("direction") == "above" else "低于"
        return (f"{moment(e.get('decided_at'))} 对违法行为 {e.get('violation_code')} 处罚 {money(e.get('penalty_amount'))}；"
                f"同类处罚 {e.get('peers')} 件{_peers_span(e)}，通常在 {money(e.get('peer_low'))}–{money(e.get('peer_high'))} 之间"
                f"（中位数 {money(e.get('peer_median'))}），放宽后的合理范围为 {money(low)}–{money(high)}，"
                f"本案{direction}该范围。")
    return "；".join(f"{k}: {v}" for k, v in e.items())


def _problem(evidence: Mapping[str, Any]) -> str:
    """What is wrong with a fine (`alerts.detectors.discretion`), in Chinese: two of the three
    problems name the tier claimed, and were shown in English in the notice mailed to the head."""
    problem = str(evidence.get("problem") or "")
    claimed = tier_name(evidence.get("claimed_tier"))
    if problem == "outside every tier":
        return "超出全部裁量档次"
    if problem.startswith("claims tier"):
        return f"自称适用的“{claimed}”档不在该违法行为的裁量基准中"
    if problem.startswith("outside the claimed tier"):
        return f"处罚金额不在自称适用的“{claimed}”档范围内"
    return problem
# Benchmark tiers (自由裁量基准档次) a catalog may name by an English code, as the contract's example
# does; a tier named otherwise (in Chinese) is shown as named.
TIER_TITLE = {"light": "从轻", "lighter": "减轻", "mitigated": "减轻", "normal": "一般", "general": "一般",
              "standard": "一般", "heavy": "从重", "severe": "从重", "aggravated": "从重", "exempt": "不予处罚"}


def tier_name(tier: Any) -> str:
    """A benchmark tier in words: 从重（heavy） for a code the catalog gives in English, else as named."""
    title = TIER_TITLE.get(str(tier).strip().lower()) if tier is not None else None
    return f"{title}（{tier}）" if title else str(tier)


def _peers_span(evidence: Mapping[str, Any]) -> str:
    """When the peers were decided: before the case, or (a case among a group's first) also after it."""
    start, end = evidence.get("peers_decided_from"), evidence.get("peers_decided_to")
    if not start or not end:
        return ""
    return f"（决定于 {moment(start)} 至 {moment(end)}）"


def describe_alert(alert: Mapping[str, Any]) -> str:
    """One alert (its JSON form): title, status and evidence in words; a withdrawn one with why."""
    status = STATUS_TITLE.get(alert.get("status") or "", alert.get("status"))
    return f"【{alert.get('title')}】{status}。{alert_text(alert)}"


def evidence_words(rule: str, evidence: Mapping[str, Any], status: str) -> str:
    """An alert's evidence in words as a screen shows it beside the alert's status: a withdrawn
    one's as what the card said when raised (the 预警证据 panel showed it as current, "至今未办结"
    beside a case closed since: found by a black-box test)."""
    text = describe_evidence(rule, evidence)
    return f"预警生成时的情况：{text}" if status == "withdrawn" else text


def alert_text(alert: Mapping[str, Any]) -> str:
    """An alert's evidence in words; a withdrawn one says why first, and its evidence as what the
    card said when raised (before, "实际至今未完成" stood beside a reason saying it was done, and
    the alert list showed the stale evidence alone: found by a black-box test)."""
    words = evidence_words(alert["rule"], alert.get("evidence") or {}, alert.get("status") or "")
    reason = alert.get("withdrawn_reason") if alert.get("status") == "withdrawn" else None
    return (f"撤销原因：{reason}。" if reason else "") + words
