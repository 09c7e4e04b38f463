"""The scoring domain: the rulebook as data (checked against the rules' text), each part's
formula, caps and "no data", ranking, and the month's input file."""

from __future__ import annotations

import copy
import re
from datetime import datetime
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest
import yaml

from alerts.catalog import load_catalog
from alerts.scoring import (CaseFact, LetterFact, MonthFacts, PushFact, RatingFact, ScoringError, TicketFact,
                            basis, load_inputs, load_rulebook, push_deadline, score_month)
from alerts.catalog import Category
from tests.unit.helpers import broken

ROOT = Path(__file__).resolve().parents[2]
RULEBOOK_RAW = yaml.safe_load((ROOT / "alerts" / "rulebooks" / "wuxi.yaml").read_text(encoding="utf-8"))
RULES_TEXT = (ROOT / "tests" / "data" / "reference" / "wuxi-scoring-rules.txt").read_text(encoding="utf-8")
TZ = ZoneInfo("Asia/Shanghai")
MONTH = "2026-04"

FULL_LICENSING = {"承诺时限": "5个工作日", "联系电话": "1", "受理条件": "x", "法律法规": "x", "服务指南": "x",
                  "申请材料": "x", "公示流程": "x", "实施主体名称": "x", "流程图": "flow.png"}
NODES = [{"id": "accept", "name": "受理", "completed_by": "accepted"}, {"id": "close", "name": "办结",
                                                                       "completed_by": "closed"}]


def item(code, department, category="licensing", public=None, status="active"):
    return {"code": code, "name": code, "category": category, "department": department, "promised_days": 5,
            "nodes": NODES, "status": status, "public": FULL_LICENSING if public is None else public}


CATALOG = load_catalog({
    "departments": [
        {"code": "A", "name": "市甲局", "region": "320200"},
        {"code": "B", "name": "市乙局", "region": "320200", "self_built": True},
        {"code": "C", "name": "市丙局", "region": "320200"},
        {"code": "D1", "name": "滨湖区甲局", "region": "320211"},
    ],
    "items": [
        item("A-1", "A"), item("A-2", "A", public={k: v for k, v in FULL_LICENSING.items() if k != "流程图"}),
        item("A-3", "A", status="suspended"), item("A-4", "A"), item("A-5", "A", "penalty", public={}),
        item("B-1", "B"), item("C-1", "C"), item("D1-1", "D1"),
    ],
})


def rulebook(raw=None):
    return load_rulebook(raw or RULEBOOK_RAW)


def part(scores, code, key):
    subject = next(s for s in scores.all if s.code == code)
    return next(p for p in subject.parts if p.key == key)


def cases(department, n, item_code=None, region="320200", prefix="c"):
    return tuple(CaseFact(f"{prefix}{department}{i}", item_code or f"{department}-1", department, region)
                 for i in range(n))


# --- the rulebook ------------------------------------------------------------------------------------

def _rule_of(attachment: str, title: str) -> tuple[int, str]:
    """(points, the 得分 formula) of a part in the rules' text of one attachment."""
    start = RULES_TEXT.index("附件1:" if attachment == "region" else "附件2:")
    end = RULES_TEXT.index("附件2:") if attachment == "region" else len(RULES_TEXT)
    text = RULES_TEXT[start:end]
    heading = re.search(rf"\)\s*{title}(?:方面)?\((\d+)分\)", text)
    assert heading, title
    formula = re.search(r"得分=([^\n]*)", text[heading.end():])
    return int(heading.group(1)), formula.group(1) if formula else ""


@pytest.mark.parametrize("attachment", ["region", "department"])
def test_the_rulebook_transcribes_the_rules_text(attachment):
    """Every part's points, and each formula's factor or base, as they stand in the rules."""
    parts = rulebook().attachments[attachment].parts
    titles = {"region": ["部门覆盖", "权力公开", "权力运行", "权力库维护", "操作规范", "督办及落实", "其他"],
              "department": ["权力公开", "权力运行", "数据对接", "权力库维护", "操作规范", "行政相对人评议", "督办及落实",
                             "其他"]}[attachment]
    assert [p.title for p in parts] == titles
    for p in parts:
        worth, formula = _rule_of(attachment, p.title)
        assert p.points == worth, p.title
        if "factor" in p.params:
            compact = formula.replace(" ", "")
            factor = p.params["factor"]
            assert compact.startswith(f"{factor}×") or compact.endswith(f"×{factor}"), (p.title, formula)
        elif p.key in ("publication", "maintenance"):
            base, per = re.match(r"(\d+)-\(?([\d.]+)×", formula.replace(" ", "")).groups()
            assert (p.params["base"], float(p.params["per"])) == (int(base), float(per))
    if attachment == "department":
        assert "未及时推送、填报或导入,扣5分" in RULES_TEXT and "不符合规范,扣5分" in RULES_TEXT
        exchange = next(p for p in parts if p.key == "data_exchange")
        assert (exchange.params["late"], exchange.params["nonstandard"]) == (5, 5)


def test_the_requirement_counts_match_the_rules():
    """10, 9, 7, 7 and 10 requirements per group, as the rules count them."""
    counts = {g.name: len(g.requirements) for g in rulebook().field_groups}
    assert counts == {"许可": 10, "处罚": 9, "征收": 7, "强制": 7, "其他": 10}
    for group, number in (("行政许可", 10), ("行政处罚", 9), ("行政征收", 7), ("行政强制", 7), ("其他", 10)):
        assert re.search(rf"{group}事项:.*?{number}个要求", RULES_TEXT)
    names = [r.name for g in rulebook().field_groups for r in g.requirements]
    assert "公式流程" not in names  # the rules' typo, read as 公示流程


def test_the_inconsistent_formulas_are_flagged():
    flagged = rulebook().inconsistencies()
    assert len(flagged) == 2
    assert "操作规范: worth 20 points" in flagged[0] and "gives at most 10" in flagged[0]
    assert "督办及落实: worth 10 points" in flagged[1] and "gives at most 5" in flagged[1]
    assert rulebook().inconsistencies("department") == []


@pytest.mark.parametrize("path, value, message", [
    (("attachments", "region", "parts", 0, "points"), 11, "add up to 101, not 100"),
    (("attachments", "region", "parts", 1, "per"), -1, "part publication: per: must not be negative"),
    (("attachments", "region", "parts", 1, "per"), KeyError, "part publication: missing per"),
    (("attachments", "department", "parts", 0, "key"), "coverage", "a department has none"),
    (("attachments", "department", "parts", 0, "key"), "speed", "key must be one of"),
    (("attachments", "region", "parts", 2, "bonus"), 3, "unknown field(s) bonus"),
    (("field_groups", "其他", "categories"), ["other"], "cover no group for category(ies) confirmation"),
    (("field_groups", "处罚", "categories"), ["penalty", "licensing"], "already in group '许可'"),
    (("push_day",), 31, "push_day must be a day of the month"),
    (("attachments", "region", "parts", 1, "per"), float("inf"), "part publication: per: must be a number, got inf"),
])
def test_a_bad_rulebook_is_refused_clearly(path, value, message):
    with pytest.raises(ScoringError, match=re.escape(message)):
        load_rulebook(broken(RULEBOOK_RAW, path, value))


# --- the parts ---------------------------------------------------------------------------------------

def test_each_department_part_from_the_facts():
    facts = MonthFacts(
        MONTH,
        cases=cases("A", 8, "A-1") + cases("A", 2, "A-2", prefix="d") + cases("B", 4),
        irregular_cases=frozenset({"cA0", "cA1", "cB0", "elsewhere"}),
        tickets=(TicketFact("t1", "A", "320200", "replied"), TicketFact("t2", "A", "320200", "closed"),
                 TicketFact("t3", "A", "320200", "open"), TicketFact("t4", "A", "320200", "returned"),
                 TicketFact("t5", "A", "320200", "withdrawn"), TicketFact("t6", "A", "320200", "settling")),
        ratings=(RatingFact("r1", "A", "320200", "satisfied"), RatingFact("r2", "A", "320200", "basically_satisfied"),
                 RatingFact("r3", "A", "320200", "dissatisfied")),
        pushes=(PushFact("B", 12, datetime(2026, 5, 5, 23, 59, tzinfo=TZ)),),
        letters=(LetterFact("l1", "B", "320200"),),
    )
    inputs = load_inputs({"month": MONTH, "departments": {"A": {"spot_checks": 5, "unapplied_changes": 2, "complaints": [
        {"points": 1.5, "reason": "暗访"}]}}}, CATALOG, MONTH)
    scores = score_month(rulebook(), "department", CATALOG, facts, inputs)
    # A: 5 items; A-2 lacks the flowchart (2 requirements), A-5 (penalty) publishes nothing (9).
    assert part(scores, "A", "publication").inputs["missing"] == 11
    assert part(scores, "A", "publication").points == 8.9
    # 2 items with cases of 5 − 1 suspended: 30 × 2/4 − 0.2 × 5 = 14.
    assert part(scores, "A", "operation").points == 14
    assert part(scores, "A", "maintenance").points == 6
    assert part(scores, "A", "conformity").points == 8  # 10 × (1 − 2/10)
    assert part(scores, "A", "rating").points == 6.67  # 10 × 2/3, half-up to 0.01
    assert part(scores, "A", "supervision").points == 5  # 2 of 4 (withdrawn, settling not counted)
    assert part(scores, "A", "other").points == 8.5
    assert part(scores, "A", "data_exchange").points == 10 and part(scores, "A", "data_exchange").note.startswith("不适用")
    # B pushed by 5 May 24:00 (on time) but one of its events went to the DLQ.
    exchange = part(scores, "B", "data_exchange")
    assert (exchange.points, exchange.inputs["late"], exchange.inputs["dead_letters"]) == (5, False, 1)
    assert part(scores, "B", "conformity").points == 7.5
    a = next(s for s in scores.ranked if s.code == "A")
    assert a.total == 8.9 + 14 + 10 + 6 + 8 + 6.67 + 5 + 8.5
    # C has no case: scored, not ranked (单独列出); its counted parts are "no data", full points.
    assert [s.code for s in scores.unranked] == ["C"]
    assert part(scores, "C", "rating").no_data and part(scores, "C", "rating").points == 10
    assert part(scores, "C", "conformity").no_data and part(scores, "C", "supervision").note == "无数据"
    # Only the city's departments are scored by department.
    assert {s.code for s in scores.all} == {"A", "B", "C"}


def test_a_late_push_and_floors_and_caps():
    late = MonthFacts(MONTH, cases=cases("B", 1), pushes=(PushFact("B", 3, datetime(2026, 5, 6, 0, 0, 1, tzinfo=TZ)),),
                      letters=(LetterFact("l1", "B", "320200"),))
    inputs = load_inputs({"month": MONTH, "departments": {"B": {"spot_checks": 200, "unapplied_changes": 9,
                                                                "complaints": [{"points": 30, "reason": "x"}]}}},
                         CATALOG, MONTH)
    scores = score_month(rulebook(), "department", CATALOG, late, inputs)
    assert part(scores, "B", "data_exchange").points == 0  # 10 − 5 − 5
    assert part(scores, "B", "operation").points == 0  # 30 − 40: 累计扣分不超过30分
    assert part(scores, "B", "maintenance").points == 0 and part(scores, "B", "other").points == 0
    assert push_deadline(MONTH, 5, TZ) == datetime(2026, 5, 6, tzinfo=TZ)
    assert push_deadline("2026-12", 5, TZ) == datetime(2027, 1, 6, tzinfo=TZ)
    # Publication floors at 0: an item of 110 missing requirements would be −1.
    many = load_catalog({"departments": [{"code": "A", "name": "甲", "region": "320200"}],
                         "items": [item(f"A-{i}", "A", public={}) for i in range(11)]})
    assert part(score_month(rulebook(), "department", many, MonthFacts(MONTH)), "A", "publication").points == 0


def test_a_late_push_refused_whole_is_late_and_not_to_the_standard():
    """A self-built department whose only push of the month came after the 5th and was refused
    whole lost 5 (不符合规范), as one that pushed bad data on time: its lateness was read from its
    stored pushes alone (found by an independent scorer)."""
    def exchange(letter: LetterFact):
        facts = MonthFacts(MONTH, cases=cases("B", 1), letters=(letter,), as_of=datetime(2026, 6, 1, tzinfo=TZ))
        return part(score_month(rulebook(), "department", CATALOG, facts), "B", "data_exchange")

    late = exchange(LetterFact("l1", "B", "320200", datetime(2026, 5, 20, 10, tzinfo=TZ)))
    assert (late.points, late.inputs["late"], late.inputs["dead_letters_late"]) == (0, True, 1)
    assert "不规范 1（逾期推送 1）" in basis(late)
    on_time = exchange(LetterFact("l1", "B", "320200", datetime(2026, 5, 5, 23, 59, tzinfo=TZ)))
    assert (on_time.points, on_time.inputs["late"]) == (5, False)
    unknown = exchange(LetterFact("l1", "B", "320200"))  # no time known: not counted late
    assert unknown.points == 5
    # A push on time beside a late refused one: the part is late, the push it names is not (found
    # by a black-box test: "末次 05-03（逾期）" read as a contradiction).
    both = MonthFacts(MONTH, cases=cases("B", 1), pushes=(PushFact("B", 1, datetime(2026, 5, 3, 10, tzinfo=TZ)),),
                      letters=(LetterFact("l1", "B", "320200", datetime(2026, 5, 20, 10, tzinfo=TZ)),),
                      as_of=datetime(2026, 6, 1, tzinfo=TZ))
    mixed = part(score_month(rulebook(), "department", CATALOG, both), "B", "data_exchange")
    assert mixed.inputs["late"] and basis(mixed) == "推送 1 末次 05-03 不规范 1（逾期推送 1）"


def test_a_case_rated_in_an_earlier_month_is_not_counted_again():
    """一事一评: one rating per case. A case rated satisfied in April and dissatisfied in May counted
    in both months (the first of each month), so May scored 0 on it (found by an independent scorer)."""
    facts = MonthFacts(MONTH, cases=cases("A", 2), ratings=(
        RatingFact("r1", "A", "320200", "dissatisfied", "K1", rated_before=True),
        RatingFact("r2", "A", "320200", "satisfied", "K2")))
    rating = part(score_month(rulebook(), "department", CATALOG, facts), "A", "rating")
    assert (rating.points, rating.inputs["ratings"], rating.inputs["repeated"]) == (10, 1, 1)


def test_the_cases_of_a_suspended_item_do_not_count_as_an_item_that_ran_online():
    """事项在线运行率 = 在线办件事项数/(总静态事项数−挂起事项数): both over the items that are to
    run. Counted among all items, the cases of a suspended item made up for an item that never
    ran online (3/(5−1) with A-3 suspended, capped at 1: 30 points for a department one of whose
    four running items had no case)."""
    facts = MonthFacts(MONTH, cases=sum((cases("A", 1, f"A-{n}", prefix=f"s{n}") for n in (1, 2, 3, 4)), ()))
    inputs = load_inputs({"month": MONTH, "departments": {"A": {"spot_checks": 5}}}, CATALOG, MONTH)
    operation = part(score_month(rulebook(), "department", CATALOG, facts, inputs), "A", "operation")
    assert (operation.inputs["items_with_cases"], operation.inputs["static_items"],
            operation.inputs["suspended_items"]) == (3, 5, 1)
    assert operation.points == 21.5  # 30 × 3/4 − 0.2 × 5
    three = load_catalog({"departments": [{"code": "A", "name": "市甲局", "region": "320200"}],
                          "items": [item(f"A-{n}", "A") for n in (1, 2, 3)]})
    two_of_three = part(score_month(rulebook(), "department", three, MonthFacts(MONTH, cases=sum(
        (cases("A", 1, f"A-{n}", prefix=f"t{n}") for n in (1, 2)), ()))), "A", "operation")
    assert two_of_three.inputs["rate"] == 0.6667  # not 0.6667000000000001 in the jsonl
    every = MonthFacts(MONTH, cases=sum((cases("A", 1, f"A-{n}", prefix=f"s{n}") for n in range(1, 6)), ()))
    assert part(score_month(rulebook(), "department", CATALOG, every), "A", "operation").points == 30


def test_a_department_without_a_region_is_a_city_department():
    """The contract makes a department's region optional; such a department was in neither
    ranking, without a word. No district holds it: it is scored with the city's departments."""
    from alerts.scoring import subjects

    raw = {"departments": [{"code": "A", "name": "市甲局", "region": "320200"}, {"code": "M", "name": "市某局"},
                           {"code": "D1", "name": "滨湖区甲局", "region": "320211"}],
           "items": [item("A-1", "A"), item("M-1", "M"), item("D1-1", "D1")]}
    catalog = load_catalog(raw)
    assert [s.code for s in subjects(catalog, rulebook(), "department")] == ["A", "M"]
    assert [s.code for s in subjects(catalog, rulebook(), "region")] == ["320211"]
    scores = score_month(rulebook(), "department", catalog, MonthFacts(MONTH, cases=cases("M", 1, "M-1")))
    assert "M" in {s.code for s in scores.all}


def test_inputs_no_attachment_would_use_are_refused():
    """A 滨湖区 department's spot checks under departments, or the city's own region under regions,
    were accepted and used by neither attachment: the deduction was lost without a word."""
    from alerts.scoring import check_inputs_scored

    for raw, says in (({"departments": {"D1": {"spot_checks": 1}}}, "give its inputs under regions: 320211"),
                      ({"regions": {"320200": {"spot_checks": 1}}}, "region 320200 is not scored")):
        inputs = load_inputs({"month": MONTH, **raw}, CATALOG, MONTH)
        with pytest.raises(ScoringError, match=says):
            check_inputs_scored(inputs, CATALOG, rulebook())
    used = load_inputs({"month": MONTH, "departments": {"A": {"spot_checks": 1}},
                        "regions": {"320211": {"spot_checks": 1}}}, CATALOG, MONTH)
    check_inputs_scored(used, CATALOG, rulebook())


def test_a_month_outside_the_years_of_online_operation_is_a_typo():
    from alerts.scoring import parse_month

    assert parse_month("2026-04") == "2026-04"
    for typo in ("1900-01", "2206-04", "2026-13", "2026-4", "2026-04\n", "２０２６-04", " 2026-04"):
        with pytest.raises(ScoringError):
            parse_month(typo)


def test_only_the_known_ratings_count():
    """A `rated` event without a rating (or with another value) is neither satisfied nor
    dissatisfied: it is not counted."""
    facts = MonthFacts(MONTH, cases=cases("A", 1),
                       ratings=(RatingFact("r1", "A", "320200", "satisfied"),
                                RatingFact("r2", "A", "320200", "dissatisfied"),
                                RatingFact("r3", "A", "320200", ""), RatingFact("r4", "A", "320200", "None"),
                                RatingFact("r5", "A", "320200", "excellent")))
    rating = part(score_month(rulebook(), "department", CATALOG, facts), "A", "rating")
    assert (rating.points, rating.inputs["satisfied"], rating.inputs["ratings"]) == (5, 1, 2)  # 10 × 1/2
    assert rating.inputs["not_counted"] == 3
    only_unknown = MonthFacts(MONTH, cases=cases("A", 1), ratings=(RatingFact("r3", "A", "320200", ""),))
    rating = part(score_month(rulebook(), "department", CATALOG, only_unknown), "A", "rating")
    assert rating.no_data and rating.points == 10


def test_one_rating_per_case_its_first():
    """一事一评 (the rules' 行政相对人评议): a case rated twice in the month (a dissatisfied rating, then
    a satisfied one pushed later) counts once, by its first rating; before, every rating counted,
    and a case's second rating could outweigh its first (found by a black-box test)."""
    from alerts.scoring import basis

    facts = MonthFacts(MONTH, cases=cases("A", 2),
                       ratings=(RatingFact("r1", "A", "320200", "", "C1"),  # no rating: not the case's rating
                                RatingFact("r2", "A", "320200", "dissatisfied", "C1"),
                                RatingFact("r3", "A", "320200", "satisfied", "C1"),
                                RatingFact("r4", "A", "320200", "satisfied", "C2")))
    rating = part(score_month(rulebook(), "department", CATALOG, facts), "A", "rating")
    assert (rating.points, rating.inputs["satisfied"], rating.inputs["ratings"]) == (5, 1, 2)  # 10 × 1/2
    assert (rating.inputs["not_counted"], rating.inputs["repeated"]) == (1, 1)
    assert basis(rating) == "满意 1/2 未计 1 重复评议 1"


@pytest.mark.parametrize("last, late, said", [
    (datetime(2026, 5, 5, 23, 59, 59, 999999, tzinfo=TZ), False, "末次 05-05"),  # the last moment of the 5th
    # 24:00 of the 5th itself: the deadline, on time; it read 末次 05-06, late to a person reading
    # "每月5日前" (found by a black-box test)
    (datetime(2026, 5, 6, 0, 0, tzinfo=TZ), False, "末次 05-05 24:00"),
    (datetime(2026, 5, 6, 0, 0, 0, 1, tzinfo=TZ), True, "末次 05-06（逾期）"),  # after it
    (datetime(2026, 5, 5, 16, 0, 0, 1, tzinfo=ZoneInfo("UTC")), True, "末次 05-06（逾期）"),  # the same, in UTC
    (datetime(2026, 5, 5, 15, 59, 59, tzinfo=ZoneInfo("UTC")), False, "末次 05-05"),
])
def test_the_push_deadline_is_24_00_of_push_day(last, late, said):
    """"By the 5th" ends at 24:00 of the 5th, on time as the backfill rule and the contract's
    deadlines count it; late is after it."""
    facts = MonthFacts(MONTH, cases=cases("B", 1), pushes=(PushFact("B", 1, last),))
    exchange = part(score_month(rulebook(), "department", CATALOG, facts), "B", "data_exchange")
    assert (exchange.inputs["late"], exchange.points) == (late, 5 if late else 10)
    assert basis(exchange) == f"推送 1 {said}"


def test_region_parts_as_written_and_as_a_city_corrects_them():
    facts = MonthFacts(MONTH, cases=cases("D1", 4, "D1-1", region="320211"),
                       irregular_cases=frozenset({"cD10"}),
                       tickets=(TicketFact("t1", "D1", "320211", "replied"), TicketFact("t2", "D1", "320211", "open")))
    inputs = load_inputs({"month": MONTH, "regions": {"320211": {"coverage": {"in_scope": 20, "vertical": 4,
                                                                              "online": 12}}}}, CATALOG, MONTH)
    written = score_month(rulebook(), "region", CATALOG, facts, inputs)
    assert [s.code for s in written.all] == ["320211"]  # the city's own region is not a 市(县)区
    assert written.ranked[0].name == "滨湖区"
    assert part(written, "320211", "coverage").points == 7.5  # 10 × 12/16
    assert part(written, "320211", "conformity").points == 7.5  # 10 × (1 − 1/4), of 20
    assert part(written, "320211", "supervision").points == 2.5  # 5 × 1/2, of 10
    corrected = copy.deepcopy(RULEBOOK_RAW)
    for p in corrected["attachments"]["region"]["parts"]:
        if p["key"] == "conformity":
            p["factor"] = 20
        if p["key"] == "supervision":
            p["factor"] = 10
    city = load_rulebook(corrected)
    assert city.inconsistencies() == []
    fixed = score_month(city, "region", CATALOG, facts, inputs)
    assert part(fixed, "320211", "conformity").points == 15 and part(fixed, "320211", "supervision").points == 5
    assert fixed.ranked[0].total == written.ranked[0].total + 7.5 + 2.5
    # No coverage supplied: full points, marked.
    bare = score_month(rulebook(), "region", CATALOG, facts)
    assert part(bare, "320211", "coverage").no_data and part(bare, "320211", "coverage").points == 10


def test_ties_share_a_rank():
    catalog = load_catalog({"departments": [{"code": c, "name": c, "region": "320200"} for c in "PQR"],
                            "items": [item(f"{c}-1", c) for c in "PQR"]})
    facts = MonthFacts(MONTH, cases=cases("P", 2) + cases("Q", 2) + cases("R", 2),
                       irregular_cases=frozenset({"cR0"}))
    scores = score_month(rulebook(), "department", catalog, facts)
    assert [(s.code, s.rank) for s in scores.ranked] == [("P", 1), ("Q", 1), ("R", 3)]


# --- the month's input file --------------------------------------------------------------------------

@pytest.mark.parametrize("raw, message", [
    ({"month": "2026-05"}, "the file is for month '2026-05', but 2026-04 is being scored"),
    ({"departments": {}}, "missing month"),
    ({"month": MONTH, "departments": {"Z": {}}}, "department Z: unknown department; the catalog has A, B, C, D1"),
    ({"month": MONTH, "regions": {"999999": {}}}, "region 999999: unknown region"),
    ({"month": MONTH, "departments": {"A": {"spot_checks": -1}}}, "department A: spot_checks: must be a whole number from 0"),
    # Before: a traceback (an integer past 64 bits when stored, Fraction('inf'), Fraction('nan')).
    ({"month": MONTH, "departments": {"A": {"spot_checks": 10 ** 32}}}, "spot_checks: must be a whole number from 0 "
                                                                       "to 1,000,000,000, got 1000"),
    ({"month": MONTH, "departments": {"A": {"complaints": [{"points": float("inf"), "reason": "x"}]}}},
     "complaint #1: points: must be a number, got inf"),
    ({"month": MONTH, "departments": {"A": {"complaints": [{"points": float("nan"), "reason": "x"}]}}},
     "complaint #1: points: must be a number, got nan"),
    ({"month": MONTH, "departments": {"A": {"unapplied_changes": 1.5}}}, "unapplied_changes: must be a whole number"),
    ({"month": MONTH, "departments": {"A": {"spotchecks": 1}}}, "unknown field(s) spotchecks"),
    ({"month": MONTH, "departments": {"A": {"coverage": {}}}}, "unknown field(s) coverage"),
    ({"month": MONTH, "departments": {"A": {"complaints": [{"points": 2}]}}}, "complaint #1: a deduction needs its reason"),
    # A blank reason is none (found by a black-box test: it was deducted, said nowhere why).
    ({"month": MONTH, "departments": {"A": {"complaints": [{"points": 2, "reason": "   "}]}}},
     "complaint #1: a deduction needs its reason"),
    ({"month": MONTH, "departments": {"A": {"complaints": [{"points": -2, "reason": "x"}]}}}, "must not be negative"),
    ({"month": MONTH, "regions": {"320211": {"coverage": {"in_scope": 5, "vertical": 1, "online": 6}}}},
     "online (6) is more than in_scope − vertical (4)"),
    ({"month": MONTH, "regions": {"320211": {"coverage": {"in_scope": 5, "online": 1}}}},
     "coverage: vertical: missing: a whole number"),  # (before, "must be ..., got None": a black-box test)
    ([1, 2], "the document must be a mapping"),
])
def test_a_bad_input_file_is_refused_with_where_and_why(raw, message):
    with pytest.raises(ScoringError, match=re.escape(message)):
        load_inputs(raw, CATALOG, MONTH)


def test_a_good_input_file():
    inputs = load_inputs({"month": MONTH, "departments": {"A": {"spot_checks": 2}},
                          "regions": {"320211": {"coverage": {"in_scope": 5, "vertical": 1, "online": 4},
                                                 "complaints": [{"points": 0.5, "reason": "投诉"}]}}}, CATALOG, MONTH)
    assert inputs.of("department", "A").spot_checks == 2 and inputs.of("department", "B").spot_checks == 0
    # 1.0, as a spreadsheet writes a whole number, is one (found by a black-box test: refused as not whole)
    assert load_inputs({"month": MONTH, "departments": {"A": {"spot_checks": 1.0}}}, CATALOG,
                       MONTH).of("department", "A").spot_checks == 1
    assert inputs.of("region", "320211").coverage.online == 4
    assert str(inputs.of("region", "320211").complaints[0].points) == "1/2"


def test_text_that_begins_with_an_equals_sign_is_text_in_the_workbook():
    # Found by a black-box test: a department named "=SUM(1,2)" was written as a formula.
    import io

    from openpyxl import load_workbook

    from alerts.scoring_report import xlsx_bytes

    catalog = load_catalog({"departments": [{"code": "A", "name": "=SUM(1,2)", "region": "320200"}],
                            "items": [item("A-1", "A")]})
    book = load_workbook(io.BytesIO(xlsx_bytes(score_month(rulebook(), "department", catalog,
                                                           MonthFacts(MONTH, cases=cases("A", 1))))))
    cells = [c for r in book.active.iter_rows() for c in r if c.value == "=SUM(1,2)"]
    assert cells and all(c.data_type == "s" for c in cells)


@pytest.mark.parametrize("as_of, points, late, not_pushed", [
    (None, 10, False, []),  # when the store was read is not known: no data, as before
    (datetime(2026, 5, 5, 12, 0, tzinfo=TZ), 10, False, []),  # the push day has not passed yet
    (datetime(2026, 5, 6, 0, 0, 1, tzinfo=TZ), 5, True, ["B"]),  # it has: 未及时推送
])
def test_a_self_built_department_that_pushes_nothing_does_not_score_better_than_a_late_one(
        as_of, points, late, not_pushed):
    """Found by a black-box test: a self-built department that pushed nothing of the month got
    full marks for 数据对接, more than one that pushed late (−5): "未及时推送、填报或导入，扣5分"."""
    silent = MonthFacts(MONTH, cases=cases("B", 2), as_of=as_of)
    exchange = part(score_month(rulebook(), "department", CATALOG, silent), "B", "data_exchange")
    assert (exchange.points, exchange.inputs["late"], exchange.inputs["not_pushed"]) == (points, late, not_pushed)
    assert exchange.no_data is (not late)
    if late:
        assert exchange.note == "截至 2026-05-05 24:00 未推送当月数据：B" and "未推送 B（逾期）" in basis(exchange)
    pushed_late = MonthFacts(MONTH, cases=cases("B", 2), as_of=as_of,
                             pushes=(PushFact("B", 2, datetime(2026, 5, 7, tzinfo=TZ)),))
    late_part = part(score_month(rulebook(), "department", CATALOG, pushed_late), "B", "data_exchange")
    if as_of is not None and as_of > datetime(2026, 5, 6, tzinfo=TZ):
        assert exchange.points <= late_part.points


def test_expropriation_items_are_held_to_the_other_items_ten_requirements():
    """The rules name only 行政征收事项 (7 requirements); 行政征用 (`expropriation`) is none of the
    named kinds, so it is one of 其他事项 (10)."""
    book = rulebook()
    assert book.group_of(Category.EXPROPRIATION).name == "其他"
    assert book.group_of(Category.LEVY).name == "征收"
    assert len(book.group_of(Category.EXPROPRIATION).requirements) == 10


def test_a_catalog_of_city_departments_only_has_no_region_to_rank_and_a_foreign_city_region_is_said():
    """Found by a black-box test: `--by region` over a catalog of city departments ranked the city
    itself under 附件1 (市(县)区), and a rulebook's wrong `city_region` scored every department,
    district ones included, as a city department without a word."""
    from alerts.scoring import city_region_unknown

    city_only = load_catalog({"departments": [{"code": "A", "name": "市甲局", "region": "320200"}],
                              "items": [item("A-1", "A")]})
    with pytest.raises(ScoringError, match="no 市\\(县\\)区 to score by region"):
        score_month(rulebook(), "region", city_only, MonthFacts(MONTH, cases=cases("A", 1)))
    assert score_month(rulebook(), "department", city_only, MonthFacts(MONTH, cases=cases("A", 1))).ranked
    assert city_region_unknown(CATALOG, rulebook()) is None
    foreign = copy.deepcopy(RULEBOOK_RAW)
    foreign["city_region"] = "999999"
    assert "city_region 999999 is no region of the catalog (320200, 320211)" in city_region_unknown(
        CATALOG, rulebook(foreign))
    # As the warning says, every department is scored then: also when one has no region (before,
    # only that one was, and the others were left out without a word: found by a black-box test).
    districts = load_catalog({"departments": [{"code": "A", "name": "甲局"},
                                              {"code": "B", "name": "滨湖区乙局", "region": "320211"},
                                              {"code": "C", "name": "某区丙局", "region": "320299"}],
                              "items": [item("A-1", "A"), item("B-1", "B"), item("C-1", "C")]})
    assert "every department is scored as a city department" in city_region_unknown(districts, rulebook())
    scored = score_month(rulebook(), "department", districts, MonthFacts(MONTH, cases=cases("B", 1)))
    assert sorted(s.code for s in scored.all) == ["A", "B", "C"]


def test_a_part_with_no_data_scores_what_a_perfect_record_scores_never_more():
    """Found by a black-box test: as the rules are written, 督办及落实 of a region is 5 × 督办完成率
    (of 10 points) and 操作规范 10 × (1 − 不规范率) (of 20); a region with no ticket got 10 and one
    that completed every ticket 5: silence outscored a perfect record."""
    perfect = MonthFacts(MONTH, cases=cases("D1", 2, "D1-1", region="320211"),
                         tickets=(TicketFact("t1", "D1", "320211", "closed"),))
    silent = MonthFacts(MONTH)
    for key in ("supervision", "conformity"):
        done = part(score_month(rulebook(), "region", CATALOG, perfect), "320211", key)
        none = part(score_month(rulebook(), "region", CATALOG, silent), "320211", key)
        assert none.no_data and none.points == done.points < none.max, (key, none, done)


def test_a_month_read_as_a_date_and_categories_written_as_one_word_are_refused_in_words():
    """Found by a black-box test: `month: 2026-04-01` was refused as "datetime.date(2026, 4, 1)", and
    `categories: licensing` as "category 'l' is not one of ..."."""
    from datetime import date

    with pytest.raises(ScoringError, match=r"month '2026-04-01', but 2026-04 is being scored \(write the month as YYYY-MM\)"):
        load_inputs({"month": date(2026, 4, 1)}, CATALOG, MONTH)
    raw = copy.deepcopy(RULEBOOK_RAW)
    raw["field_groups"]["许可"]["categories"] = "licensing"
    with pytest.raises(ScoringError, match=r"categories must be a list \(e.g. \[licensing\]\), got 'licensing'"):
        load_rulebook(raw)


def test_a_field_written_no_or_false_is_not_published():
    """Found by an independent scorer: YAML reads `流程图: no` as false, and false counted as a
    published flowchart (two requirements met); 0 and text stay what they say."""
    from alerts.scoring import missing_requirements

    def missing(**public):
        catalog = load_catalog({"departments": [{"code": "A", "name": "市甲局", "region": "320200"}],
                                "items": [item("A-1", "A", public={**FULL_LICENSING, **public})]})
        return missing_requirements(catalog.item("A-1"), rulebook())

    assert missing() == []
    assert len(missing(**yaml.safe_load("流程图: no"))) == 2
    assert len(missing(流程图=False, 联系电话="")) == 3
    assert missing(联系电话=0, 流程图="no") == []  # a number, and the text "no", are what was published


def test_a_month_scored_before_it_ends_or_without_its_inputs_says_so_in_its_title():
    """Found by a black-box test: a month not over, or scored without --inputs, was said to be so
    only on standard error, in English; the workbook's title, pasted into a 通报, read as final."""
    import dataclasses

    from alerts.scoring_report import table_text, title

    facts = MonthFacts(MONTH, cases=cases("A", 2), irregular_cases=frozenset(), tickets=(), ratings=(), pushes=(),
                       letters=())
    inputs = load_inputs({"month": MONTH}, CATALOG, MONTH)
    final = score_month(rulebook(), "department", CATALOG,
                        dataclasses.replace(facts, as_of=datetime(2026, 5, 6, 9, tzinfo=TZ)), inputs)
    assert title(final) == "2026年4月 市级部门绩效考核（附件2） 得分"
    # Over, but before its push day ended: a self-built department may still push it (found by a
    # black-box test: titled as final, and its CSV rows 月度已结束).
    awaiting = score_month(rulebook(), "department", CATALOG,
                           dataclasses.replace(facts, as_of=datetime(2026, 5, 2, tzinfo=TZ)), inputs)
    assert title(awaiting) == ("2026年4月 市级部门绩效考核（附件2） 得分（暂计，截至 2026-05-02 00:00，"
                               "自建系统部门推送本月数据的期限 2026-05-05 24:00 未到）")
    not_self_built = dataclasses.replace(CATALOG, departments={
        code: dataclasses.replace(d, self_built=False) for code, d in CATALOG.departments.items()})
    assert title(score_month(rulebook(), "department", not_self_built,
                             dataclasses.replace(facts, as_of=datetime(2026, 5, 2, tzinfo=TZ)), inputs)
                 ) == "2026年4月 市级部门绩效考核（附件2） 得分"
    early = score_month(rulebook(), "department", CATALOG,
                        dataclasses.replace(facts, as_of=datetime(2026, 4, 20, 15, 30, tzinfo=TZ)))
    assert title(early) == ("2026年4月 市级部门绩效考核（附件2） 得分（暂计，截至 2026-04-20 15:30；"
                            "未提供考核输入：抽查、未落实变更、投诉及暗访扣分按 0 计）")
    # The rules' 部门覆盖率, said where the rulebook scores it (a region's, 附件1; found by an
    # independent scorer: "事项覆盖率" on the departments' ranking, which has no such part)
    by_region = score_month(rulebook(), "region", CATALOG,
                            dataclasses.replace(facts, as_of=datetime(2026, 4, 20, tzinfo=TZ)))
    assert title(by_region).endswith("投诉及暗访扣分按 0 计，部门覆盖率未提供）")
    assert table_text(early).startswith(title(early) + "\n")
    from alerts.scoring_report import jsonl_records

    assert {(r["provisional_as_of"], r["inputs_given"]) for r in jsonl_records(early)} == {
        ("2026-04-20T15:30:00+08:00", False)}
    assert {(r["provisional_as_of"], r["inputs_given"]) for r in jsonl_records(final)} == {(None, True)}
    # A CSV has no title: each of its rows says it (found by a black-box test: it carried neither).
    import csv
    import io

    from alerts.scoring_report import csv_text

    said_early = "暂计，截至 2026-04-20 15:30；未提供考核输入：抽查、未落实变更、投诉及暗访扣分按 0 计"
    for scores, status in ((early, said_early), (final, "月度已结束，考核输入已提供")):
        head, *rows = list(csv.reader(io.StringIO(csv_text(scores))))
        assert head[-1] == "计分状态" and rows and {r[-1] for r in rows} == {status}
