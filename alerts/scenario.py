"""A generated city: catalog, cases and their events, with the violations injected known.

Used by `sunlight demo`, the integration tests and the benchmarks. Pure: a
seed and `now` in, plain data out. Every case is either clean (handled well
within every limit, registered as it happened) or carries exactly one injected
violation, recorded in `Scenario.truth` as the rule that must be found.

The city also exercises every part of the monthly scoring (`alerts.scoring`): its items publish
most but not all of the fields the rules require, each department has a suspended item, two
departments run self-built systems (`self_built`) and push the month two before `now` on the
import channel (市住房和城乡建设局 by the 5th of the next month, 市交通运输局 after it: those
cases are `backfill`), two districts (滨湖区, 梁溪区) have departments and cases of their own,
and ratings are mixed. These cases come from a random stream of their own, after the city's
cases: the city's cases and events for a seed are what they were before.
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from typing import Any
from zoneinfo import ZoneInfo

from alerts.calendar import WorkCalendar
from alerts.config import RuleConfig
from alerts.model import Rule

TZ = ZoneInfo("Asia/Shanghai")

DEPARTMENTS = [
    ("SCJG", "市市场监督管理局"), ("ZJJ", "市住房和城乡建设局"), ("ZRZYJ", "市自然资源和规划局"),
    ("JTJ", "市交通运输局"), ("WJW", "市卫生健康委员会"), ("STJ", "市生态环境局"),
]

LICENSING_NODES = [
    {"id": "accept", "name": "受理", "days": 1, "completed_by": "accepted"},
    {"id": "undertake", "name": "承办", "days": 4},
    {"id": "site_check", "name": "现场核查", "days": 3, "required": False},
    {"id": "review", "name": "审核", "days": 2, "requires": ["undertake"]},
    {"id": "approve", "name": "批准", "days": 1},
    {"id": "close", "name": "办结", "completed_by": "closed"},
]
PENALTY_NODES = [
    {"id": "file", "name": "立案", "days": 3, "completed_by": "accepted"},
    {"id": "investigate", "name": "调查取证", "days": 15},
    {"id": "legal_review", "name": "法制审核", "days": 3},
    {"id": "notify", "name": "告知", "days": 3},
    {"id": "decide", "name": "决定", "days": 3},
    {"id": "serve", "name": "送达", "days": 3},
    {"id": "close", "name": "结案", "completed_by": "closed"},
]
CONFIRMATION_NODES = [
    {"id": "accept", "name": "受理", "days": 1, "completed_by": "accepted"},
    {"id": "review", "name": "审核", "days": 2},
    {"id": "close", "name": "办结", "completed_by": "closed"},
]
TIERS = [{"tier": "light", "min": 5000, "max": 20000}, {"tier": "normal", "min": 20000, "max": 60000},
         {"tier": "heavy", "min": 60000, "max": 100000}]


def _stem(department: str, where: str = "市") -> str:
    """A department's name as its items' names begin, without where it is (`where`, 市 or a
    district's name): 市市场监督管理局 → 市场监督管理, 市卫生健康委员会 → 卫生健康委员会 (cutting a character
    off each end made 卫生健康委员: found by a black-box test)."""
    return department.removeprefix(where).removesuffix("局")


CITY_REGION = "320200"
# Districts (市(县)区) with departments of their own: (region code, name, departments).
DISTRICTS = [
    ("320211", "滨湖区", [("BHSCJG", "滨湖区市场监督管理局"), ("BHZJJ", "滨湖区住房和城乡建设局")]),
    ("320213", "梁溪区", [("LXSCJG", "梁溪区市场监督管理局"), ("LXWJW", "梁溪区卫生健康委员会")]),
]
# Departments that run their own system and push their cases (channel import): the first pushes
# on time, the second late (after the 5th of the next month).
SELF_BUILT = ("ZJJ", "JTJ")
LATE_PUSHER = "JTJ"

# The published fields (公示) of an item by category, as the Wuxi rules require them; `流程图` is
# the flowchart image (the rules' two "转换为图片格式" requirements).
PUBLIC_FIELDS = {
    "licensing": ["承诺时限", "联系电话", "受理条件", "法律法规", "服务指南", "申请材料", "公示流程", "实施主体名称", "流程图"],
    "penalty": ["监督电话", "办公地点", "法律法规", "处罚依据", "处罚标准", "公示流程", "实施主体名称", "流程图"],
}
PUBLIC_FIELDS["confirmation"] = PUBLIC_FIELDS["other"] = PUBLIC_FIELDS["licensing"]
# Fields some items leave unpublished, by (department index % 3, category): missing published data.
UNPUBLISHED = {(1, "licensing"): ["流程图"], (2, "penalty"): ["处罚标准", "监督电话"],
               (0, "confirmation"): ["服务指南"], (1, "other"): ["联系电话", "受理条件"]}


def _public(item: dict, index: int) -> dict[str, str]:
    left_out = UNPUBLISHED.get((index % 3, item["category"]), [])
    return {name: (f"{item['name']}流程图.png" if name == "流程图" else f"{item['name']}·{name}")
            for name in PUBLIC_FIELDS[item["category"]] if name not in left_out}


VIOLATIONS = [Rule.DEADLINE_NEAR, Rule.OVERDUE, Rule.NODE_OVERDUE, Rule.SKIPPED_NODE, Rule.BACKFILL,
              Rule.RETROACTIVE_SUSPENSION, Rule.DISCRETION_OUT_OF_RANGE, Rule.DISCRETION_OUTLIER]


def build_catalog(region: str = CITY_REGION, districts: bool = True) -> dict[str, Any]:
    """The city's catalog; with `districts`, also the districts' departments and items (whose
    cases only the scoring extras make)."""
    departments = []
    for index, (code, name) in enumerate(DEPARTMENTS):
        department = {"code": code, "name": name, "region": region,
                      "head": {"name": f"{name}负责人", "email": f"{code.lower()}-head@example.gov.cn"}}
        if index % 2:  # the others' tickets go to their heads (the contract's default)
            department["contact"] = {"name": f"{name}法规科", "email": f"{code.lower()}-office@example.gov.cn"}
        if code in SELF_BUILT:
            department["self_built"] = True
        departments.append(department)
    items = []
    for number, (code, name) in enumerate(DEPARTMENTS, start=1):
        items.append({"code": f"{region}-XK-{code}-{number:04d}", "name": f"{_stem(name)}许可",
                      "category": "licensing", "department": code, "promised_days": 10, "legal_days": 20,
                      "nodes": LICENSING_NODES})
        items.append({"code": f"{region}-CF-{code}-{number:04d}", "name": f"{_stem(name)}行政处罚",
                      "category": "penalty", "department": code, "promised_days": 45, "legal_days": 90,
                      "nodes": PENALTY_NODES, "discretion": {f"V-{code}-01": TIERS},
                      # Its 决定 step is the fining decision (`decided`), not a node_completed of its own.
                      "decision_node": "decide"})
        items.append({"code": f"{region}-QR-{code}-{number:04d}", "name": f"{_stem(name)}行政确认",
                      "category": "confirmation", "department": code, "promised_days": 5,
                      "nodes": CONFIRMATION_NODES})
        # A suspended item (挂起事项): in the catalog, not handled.
        items.append({"code": f"{region}-QT-{code}-{number:04d}", "name": f"{_stem(name)}其他权力事项",
                      "category": "other", "department": code, "promised_days": 5, "status": "suspended",
                      "nodes": CONFIRMATION_NODES})
    if districts:
        for district, district_name, members in DISTRICTS:
            for code, name in members:
                stem = _stem(name, district_name)
                departments.append({"code": code, "name": name, "region": district,
                                    "head": {"name": f"{name}负责人", "email": f"{code.lower()}-head@example.gov.cn"}})
                items.append({"code": f"{district}-XK-{code}-0001", "name": f"{stem}许可",
                              "category": "licensing", "department": code, "promised_days": 10,
                              "legal_days": 20, "nodes": LICENSING_NODES})
                items.append({"code": f"{district}-QR-{code}-0001", "name": f"{stem}行政确认",
                              "category": "confirmation", "department": code, "promised_days": 5,
                              "nodes": CONFIRMATION_NODES})
                items.append({"code": f"{district}-QT-{code}-0001", "name": f"{stem}其他权力事项",
                              "category": "other", "department": code, "promised_days": 5,
                              "status": "suspended", "nodes": CONFIRMATION_NODES})
    index_of = {d["code"]: i for i, d in enumerate(departments)}
    for item in items:
        item["public"] = _public(item, index_of[item["department"]])
    return {"departments": departments, "items": items,
            "inspection_office": {"name": "市纪委监委派驻纪检监察组", "email": "jijian@example.gov.cn"}}


@dataclass
class Scenario:
    catalog: dict[str, Any]
    events: list[dict[str, Any]]
    truth: dict[str, Rule | None] = field(default_factory=dict)  # case_id -> injected rule (None: clean)
    now: datetime = datetime(2026, 6, 1, tzinfo=timezone.utc)

    @property
    def clean_cases(self) -> list[str]:
        return [c for c, rule in self.truth.items() if rule is None]


class _Builder:
    def __init__(self, rng: random.Random, calendar: WorkCalendar, now: datetime):
        self.rng = rng
        self.calendar = calendar
        self.now = now
        self.events: list[dict[str, Any]] = []

    def workday_at(self, day, hour: float) -> datetime:
        while not self.calendar.is_workday(day):
            day += timedelta(days=1)
        return datetime(day.year, day.month, day.day, tzinfo=TZ) + timedelta(hours=hour)

    def after(self, moment: datetime, workdays: int, hour: float | None = None) -> datetime:
        day = moment.astimezone(TZ).date()
        if workdays > 0:
            day = self.calendar.nth_workday_after(day, workdays)
        at = self.workday_at(day, hour if hour is not None else self.rng.uniform(9, 16.5))
        return max(at, moment + timedelta(minutes=20))

    def emit(self, case: dict, kind: str, occurred: datetime, recorded: datetime | None = None,
             node: str | None = None, **attrs: Any) -> None:
        event = {
            "event_id": f"{case['case_id']}-{len(case['events']) + 1:02d}", "case_id": case["case_id"],
            "item_code": case["item"]["code"], "type": kind, "occurred_at": occurred.isoformat(),
            "recorded_at": (recorded or occurred + timedelta(minutes=self.rng.randint(1, 30))).isoformat(),
            "officer_id": case["officer"], "department": case["item"]["department"], "region": "320200",
            "channel": case["channel"],
        }
        if node:
            event["node"] = node
        if attrs:
            event["attrs"] = attrs
        case["events"].append(event)


def generate(cases: int = 500, violation_rate: float = 0.03, seed: int = 0,
             now: datetime = datetime(2026, 6, 1, 12, tzinfo=timezone.utc),
             calendar: WorkCalendar | None = None) -> Scenario:
    """A city's cases over the ~100 days before `now`, a few percent of each violation."""
    rng = random.Random(seed)
    calendar = calendar or WorkCalendar()
    catalog = build_catalog()
    city = {code for code, _ in DEPARTMENTS}
    by_category: dict[str, list[dict]] = {}
    for item in catalog["items"]:
        if item["department"] in city and item.get("status", "active") == "active":
            by_category.setdefault(item["category"], []).append(item)
    builder = _Builder(rng, calendar, now)
    truth: dict[str, Rule | None] = {}
    cases_made: list[dict] = []
    for index in range(cases):
        roll = rng.random()
        violation = None
        if roll < violation_rate * len(VIOLATIONS):
            violation = VIOLATIONS[int(roll / violation_rate) % len(VIOLATIONS)]
        if violation in (Rule.DISCRETION_OUT_OF_RANGE, Rule.DISCRETION_OUTLIER):
            category = "penalty"
        elif violation is None:
            # Half the clean cases are penalties, so that every penalty group has enough peers
            # for discretion_outlier to judge.
            category = rng.choice(["licensing", "penalty", "penalty", "confirmation"])
        else:
            category = rng.choice(["licensing", "confirmation"]) if violation is not Rule.SKIPPED_NODE \
                else "licensing"
        item = rng.choice(by_category[category])
        case = {"case_id": f"C{seed:02d}{index:06d}", "item": item, "events": [],
                "officer": f"{item['department']}-{rng.randint(1, 12):02d}",
                "channel": rng.choice(["online", "online", "window"])}
        _make_case(builder, case, violation)
        truth[case["case_id"]] = violation
        cases_made.append(case)
    # An outlier is judged against the fines decided before it: one decided before its group has
    # `outlier_min_peers` of them cannot be one, so that case is handled cleanly instead.
    for case in _unjudgeable_outliers(cases_made, truth):
        case["events"].clear()
        _make_case(builder, case, None)
        truth[case["case_id"]] = None
    cases_made.extend(_scoring_cases(catalog, calendar, now, seed, truth))
    for case in cases_made:
        builder.events.extend(case["events"])
    builder.events.sort(key=lambda e: (e["occurred_at"], e["event_id"]))
    return Scenario(catalog, builder.events, truth, now)


def _scoring_cases(catalog: dict, calendar: WorkCalendar, now: datetime, seed: int,
                   truth: dict[str, Rule | None]) -> list[dict]:
    """Cases that exercise the monthly scoring, from a random stream of their own: the self-built
    departments' pushes (on the import channel) of the month two before `now`, one on time and one
    late; the districts' cases; mixed ratings (dissatisfied ones too)."""
    rng = random.Random(f"scoring-{seed}")
    b = _Builder(rng, calendar, now)
    local_now = now.astimezone(TZ)
    first = local_now.date().replace(day=1)
    pushed_month = (first - timedelta(days=1)).replace(day=1)  # the month before now's
    scored_month = (pushed_month - timedelta(days=1)).replace(day=1)  # and the one before: pushed in full
    items = {i["code"]: i for i in catalog["items"] if i.get("status", "active") == "active"}
    made: list[dict] = []

    def case_of(prefix: str, number: int, item: dict, channel: str, accepted: datetime) -> dict:
        case = {"case_id": f"{prefix}{seed:02d}{number:05d}", "item": item, "events": [],
                "officer": f"{item['department']}-{rng.randint(1, 6):02d}", "channel": channel}
        _make_case(b, case, None, accepted=accepted)
        if rng.random() < 0.5 and case["events"][-1]["type"] == "closed":
            closed = datetime.fromisoformat(case["events"][-1]["occurred_at"])
            b.emit(case, "rated", closed + timedelta(hours=rng.randint(2, 20)),
                   rating=rng.choice(["satisfied", "satisfied", "basically_satisfied", "dissatisfied"]))
        truth[case["case_id"]] = None
        made.append(case)
        return case

    for code in SELF_BUILT:
        mine = [i for i in items.values() if i["department"] == code and i["category"] in ("licensing", "confirmation")]
        push_day = 8 if code == LATE_PUSHER else 3
        pushed_at = datetime(pushed_month.year, pushed_month.month, push_day, 10, tzinfo=TZ)
        for number in range(6):
            day = scored_month.replace(day=rng.randint(1, 12))
            case = case_of(f"I{code}", number, rng.choice(mine), "import", b.workday_at(day, rng.uniform(9, 15)))
            for offset, event in enumerate(case["events"]):  # the whole month pushed at once
                event["channel"] = "import"
                event["recorded_at"] = (pushed_at + timedelta(seconds=offset)).isoformat()
            if code == LATE_PUSHER:
                truth[case["case_id"]] = Rule.BACKFILL
    for district, _, members in DISTRICTS:
        for code, _ in members:
            mine = [i for i in items.values() if i["department"] == code]
            for number in range(5):
                start = now - timedelta(days=rng.randint(25, 70))
                case = case_of(f"D{code}", number, rng.choice(mine), rng.choice(["online", "window"]),
                               b.workday_at(start.astimezone(TZ).date(), rng.uniform(9, 15)))
                for event in case["events"]:
                    event["region"] = district
    return made


def _unjudgeable_outliers(cases: list[dict], truth: dict[str, Rule | None]) -> list[dict]:
    decisions: dict[str, list[tuple[str, dict]]] = {}
    for case in cases:
        for event in case["events"]:
            if event["type"] == "decided" and truth[case["case_id"]] is not Rule.DISCRETION_OUT_OF_RANGE:
                decisions.setdefault(case["item"]["code"], []).append((event["occurred_at"], case))
    out = []
    for group in decisions.values():
        group.sort(key=lambda pair: datetime.fromisoformat(pair[0]))
        peers = 0
        for _, case in group:
            if truth[case["case_id"]] is Rule.DISCRETION_OUTLIER and peers < RuleConfig().outlier_min_peers:
                out.append(case)
            peers += 1
    return out


def _node_plan(item: dict) -> list[dict]:
    return [n for n in item["nodes"][1:-1]]


def _make_case(b: _Builder, case: dict, violation: Rule | None, accepted: datetime | None = None) -> None:
    rng, now = b.rng, b.now
    item = case["item"]
    promised = item["promised_days"]
    # When the case was accepted: far enough back that it has closed, unless its story needs it open.
    if accepted is not None:
        pass
    elif violation is Rule.DEADLINE_NEAR:
        near_day = now.astimezone(TZ).date()  # today is its last working day
        while not b.calendar.is_workday(near_day):
            near_day -= timedelta(days=1)
        start_day = near_day
        for _ in range(promised):
            start_day -= timedelta(days=1)
            while not b.calendar.is_workday(start_day):
                start_day -= timedelta(days=1)
        accepted = b.workday_at(start_day, rng.uniform(9, 11))
        if accepted > now - timedelta(hours=1):
            accepted = now - timedelta(days=3)
    elif violation is Rule.OVERDUE:
        accepted = b.workday_at((now - timedelta(days=rng.randint(promised * 2 + 20, promised * 2 + 60))).astimezone(TZ).date(), 10)
    elif violation is Rule.DISCRETION_OUTLIER:
        # In the later half of the city's history: an outlier is judged against the fines decided
        # before it, so its group has peers by then.
        accepted = b.workday_at((now - timedelta(days=rng.randint(promised * 2 + 10, promised * 2 + 50))).astimezone(TZ).date(),
                                rng.uniform(9, 15))
    else:
        accepted = b.workday_at((now - timedelta(days=rng.randint(promised * 2 + 10, promised * 2 + 100))).astimezone(TZ).date(),
                                rng.uniform(9, 15))
    b.emit(case, "accepted", accepted)
    t = accepted
    nodes = _node_plan(item)
    penalty = item["category"] == "penalty"
    for node in nodes:
        if violation is Rule.SKIPPED_NODE and node["id"] == "review":
            continue
        if not node.get("required", True) and rng.random() < 0.5:
            continue
        days = node.get("days") or 1
        if violation is Rule.NODE_OVERDUE and node is nodes[0]:
            spend = days + 1
        elif violation in (Rule.DEADLINE_NEAR, Rule.OVERDUE):
            spend = 0
        else:
            spend = 0 if days <= 1 else rng.randint(0, max(0, days // 3))
        t = b.after(t, spend)
        if penalty and node["id"] == "decide":
            # Clean fines sit in the normal tier, around what the department usually imposes;
            # an injected outlier is a heavy-tier fine about three times that, above every peer.
            amount = round(rng.uniform(28000, 42000), -2)
            tier = "normal"
            if violation is Rule.DISCRETION_OUT_OF_RANGE:
                amount, tier = round(rng.uniform(120000, 200000), -2), "heavy"
            elif violation is Rule.DISCRETION_OUTLIER:
                amount, tier = round(rng.uniform(97000, 99500), -2), "heavy"
            b.emit(case, "decided", t, decision="penalize", violation_code=f"V-{item['department']}-01",
                   penalty_amount=amount, discretion_tier=tier)
        else:
            b.emit(case, "node_completed", t, node=node["id"])
        if violation in (Rule.DEADLINE_NEAR, Rule.OVERDUE) and node is nodes[0]:
            return  # the case stays open, stuck after its first step
    if violation is Rule.RETROACTIVE_SUSPENSION:
        # Handled late, then a suspension back-dated into the case and registered after the deadline.
        deadline_day = b.calendar.nth_workday_after(accepted.astimezone(TZ).date(), promised)
        registered = b.workday_at(b.calendar.nth_workday_after(deadline_day, 1), 10)
        suspended_at = b.after(accepted, 1, 11)
        resumed_at = b.after(suspended_at, 3, 11)
        b.emit(case, "suspended", suspended_at, registered, reason="supplement")
        b.emit(case, "resumed", resumed_at, registered + timedelta(minutes=2))
        b.emit(case, "closed", registered + timedelta(hours=1))
        return
    close_at = b.after(t, 0 if violation is not Rule.BACKFILL else 3)
    if violation is Rule.BACKFILL:
        # Handled offline: every step registered online within minutes, at closing time.
        base = close_at + timedelta(hours=2)
        for offset, event in enumerate(case["events"]):
            event["recorded_at"] = (base + timedelta(seconds=20 * offset)).isoformat()
        b.emit(case, "closed", close_at, base + timedelta(seconds=20 * len(case["events"])))
        return
    b.emit(case, "closed", close_at)
    if rng.random() < 0.3:
        b.emit(case, "rated", close_at + timedelta(days=1), rating=rng.choice(["satisfied", "basically_satisfied"]))
