"""A case file an inspector can check by hand, and alerts in words."""

from dataclasses import replace

from alerts.casefile import case_file, render
from alerts.describe import deadline_moment, describe_alert
from alerts.model import RULE_TITLE, Rule
from tests.unit.helpers import LICENCE, at, ev, judge, run


def test_the_case_file_shows_events_in_process_order_the_deadline_and_every_alert():
    j = judge()
    # Accepted Friday before National Day 2026, suspended for two working days, closed late.
    events = [ev("closed", at(2026, 10, 20, 11), case="K1", event_id="e5"),
              ev("accepted", at(2026, 9, 25, 10), case="K1", event_id="e1"),
              ev("suspended", at(2026, 9, 28, 0), case="K1", event_id="e2", reason="supplement"),
              ev("resumed", at(2026, 9, 30, 0), case="K1", event_id="e3"),
              ev("node_completed", at(2026, 10, 9, 9), case="K1", node="undertake", event_id="e4")]
    state = run(events, at(2026, 11, 1), j)
    alerts = [a.to_json() for a in state.alerts.values()]
    file = case_file(events, alerts, j.catalog.item(LICENCE), j.calendar, "市市场监督管理局")
    assert [row["event_id"] for row in file["events"]] == ["e1", "e2", "e3", "e4", "e5"]
    deadline = file["deadline"]
    assert deadline["promised_days"] == 10 and len(deadline["suspensions"]) == 1
    text = deadline["text"]
    assert "受理当日不计" in text and "挂起 1 次" in text
    assert "2026-10-01" in text and "2026-10-10" in text  # the holidays it skipped, the make-up Saturday it counted
    assert deadline["deadline"].startswith("2026-10-20")  # 10 working days + 2 suspended, see the calendar tests
    assert "超过时限" in text
    shown = render(file)
    assert "K1" in shown and RULE_TITLE[Rule.OVERDUE] in shown and "办理时限截止" in shown
    # An event's facts in words (found by a black-box test: "reason：supplement" on the case page).
    assert file["events"][1]["attrs_text"] == [("原因", "补正材料")]


def test_a_withdrawn_alert_says_why():
    j = judge()
    events = [ev("accepted", at(2026, 3, 2, 10), case="K2"),
              ev("node_completed", at(2026, 3, 3), case="K2", node="approve")]
    state = run(events, at(2026, 3, 4), j)
    assert {a.node for a in state.alerts.values() if a.status.value == "open"} == {"undertake", "review"}
    late = [ev("node_completed", at(2026, 3, 2, 15), case="K2", node="undertake", event_id="U"),
            ev("node_completed", at(2026, 3, 2, 16), case="K2", node="review", event_id="R")]
    from alerts.evaluate import step
    for event in late:
        state = step(state, event, j, at(2026, 3, 4), at(2026, 3, 4)).state
    withdrawn = [a for a in state.alerts.values() if a.status.value == "withdrawn"]
    assert len(withdrawn) == 2
    assert all("表明该情形不成立" in a.withdrawn_reason for a in withdrawn)
    text = describe_alert(withdrawn[0].to_json())
    assert "已撤销" in text and "撤销原因" in text and "“环节办结”事件" in text
    # The event's time at local business time, whatever offset its source wrote (found by an
    # independent oracle: a completion written in UTC read as done at 07:00, not 15:00).
    from datetime import timezone

    state = run(events, at(2026, 3, 4), j)
    state = step(state, replace(late[0], occurred_at=late[0].occurred_at.astimezone(timezone.utc)), j,
                 at(2026, 3, 4), at(2026, 3, 4)).state
    (reason,) = [a.withdrawn_reason for a in state.alerts.values() if a.status.value == "withdrawn"]
    assert reason.startswith("2026-03-02 15:00 的“环节办结”事件（环节 承办）")  # the node by its name, as the events
    # A withdrawn card says why first, then what it said when raised (found by a black-box test:
    # "实际至今未完成" read beside a reason saying it was done, with nothing to tell them apart).
    text = describe_alert(withdrawn[0].to_json())
    assert text.index("撤销原因") < text.index("预警生成时的情况：")


def test_every_rule_reads_in_chinese():
    from tests.unit.test_detectors import CASES

    seen = set()
    for events, now, _ in CASES.values():
        for alert in run(events, now).alerts.values():
            text = describe_alert(alert.to_json())
            assert text.startswith("【") and "None" not in text, text
            seen.add(alert.rule)
    assert seen >= set(Rule) - {Rule.DISCRETION_OUT_OF_RANGE, Rule.DISCRETION_OUTLIER}


def test_a_case_accepted_after_it_closed_is_not_said_to_be_waiting_for_acceptance():
    """The receipt log's case-4024: closed 2010-12-01, its receipt registered 2010-12-20. Its file
    said 未受理 and 案件尚未受理 (found by a black-box test)."""
    j = judge()
    events = [ev("closed", at(2026, 3, 2, 10), case="K2", event_id="c"),
              ev("accepted", at(2026, 3, 20, 9), case="K2", event_id="a")]
    file = case_file(events, [], j.catalog.item(LICENCE), j.calendar)
    assert file["status"] == "已办结（受理登记在其后）"
    assert "尚未受理" not in file["deadline"]["text"] and "之后" in file["deadline"]["text"]
    assert "尚未受理" not in render(file)
    assert "无从起算" in file["deadline"]["text"]  # a deadline counted from its acceptance
    # Its source's deadline stands, and the file says whether its end kept it (the receipt log's
    # case-6147: five months late, its acceptance registered after its end).
    for closed, kept in ((at(2026, 3, 9, 10), "已超过"), (at(2026, 3, 4, 10), "未超过")):
        stated = case_file([ev("closed", closed, case="K4", event_id="c"),
                            ev("accepted", at(2026, 3, 20, 9), case="K4", event_id="a",
                               deadline="2026-03-05T00:00:00+08:00")], [], j.catalog.item(LICENCE), j.calendar)
        assert f"来源系统载明的办理时限为 2026-03-04 24:00，办结时{kept}该时限" in stated["deadline"]["text"]
        assert stated["deadline"]["stated_deadline"].startswith("2026-03-05T00:00")  # as any stated one is given
    # Reopened by a return and closed again after its acceptance, it is a case closed after its
    # acceptance like any (it read 已办结（受理登记在其后）, the later closing said to precede it: review).
    again = case_file(events + [ev("returned", at(2026, 3, 21, 9), case="K2", node="approve"),
                                ev("closed", at(2026, 3, 25, 9), case="K2")], [], j.catalog.item(LICENCE), j.calendar)
    assert again["status"] == "已办结" and "之后" not in again["deadline"]["text"]
    # The case's row stores no deadline counted from an acceptance registered after the end (the
    # wall's 按时办结率 counted such a case on time); a stated one, and one reopened since, it does.
    from alerts.evaluate import evaluate
    from tests.unit.helpers import run

    assert evaluate(run(events, at(2026, 5, 1), j), j, at(2026, 5, 1)).deadline is None
    stated_events = [events[0], ev("accepted", at(2026, 3, 20, 9), case="K2", event_id="a",
                                   deadline="2026-03-05T00:00:00+08:00")]
    assert evaluate(run(stated_events, at(2026, 5, 1), j), j, at(2026, 5, 1)).deadline == at(2026, 3, 5, 0)
    reopened = events + [ev("returned", at(2026, 3, 21, 9), case="K2", node="approve")]
    assert evaluate(run(reopened, at(2026, 5, 1), j), j, at(2026, 5, 1)).deadline is not None
    waiting = case_file([ev("node_completed", at(2026, 3, 2), case="K3", node="undertake")], [],
                        j.catalog.item(LICENCE), j.calendar)
    assert waiting["status"] == "未受理" and "尚未受理" in waiting["deadline"]["text"]


def test_a_time_in_the_repeated_hour_of_a_dst_change_is_shown_with_its_offset():
    """Europe/Rome, 25 October 2026: 02:30 comes twice (+02:00, then +01:00). The two events of
    that hour read the same without their offsets; every other time is shown as before."""
    from datetime import datetime, timezone

    from alerts.calendar import WorkCalendar

    j = judge()
    first = datetime(2026, 10, 25, 0, 30, tzinfo=timezone.utc)  # 02:30+02:00
    second = datetime(2026, 10, 25, 1, 30, tzinfo=timezone.utc)  # 02:30+01:00
    events = [ev("accepted", datetime(2026, 10, 23, 9, tzinfo=timezone.utc), case="K4", event_id="a"),
              ev("node_completed", first, case="K4", node="undertake", event_id="n1"),
              ev("node_completed", second, case="K4", node="review", event_id="n2")]
    file = case_file(events, [], j.catalog.item(LICENCE), WorkCalendar({}, "Europe/Rome"))
    lines = {line.split()[-1]: line for line in render(file).splitlines() if line.strip().startswith(("1 ", "2 ", "3 "))}
    assert "2026-10-25 02:30+02:00" in lines["n1"] and "2026-10-25 02:30+01:00" in lines["n2"], lines
    assert "2026-10-23 11:00  " in lines["a"] and "+0" not in lines["a"], lines


def test_a_case_that_waits_for_a_refused_event_says_so_and_why():
    j = judge()
    events = [ev("node_completed", at(2026, 3, 3), case="K5", node="undertake", event_id="u"),
              ev("closed", at(2026, 3, 20, 10), case="K5", event_id="c")]
    file = case_file(events, [], j.catalog.item(LICENCE), j.calendar, waiting={"a": "schema"})
    assert file["waiting_for"] == [{"event_id": "a", "reason": "schema", "reason_title": "字段不符合格式"}]
    text = render(file)
    assert "暂缓评判" in text and "被拒收的事件 a：字段不符合格式" in text and "来源系统更正并重新推送" in text
    assert "sunlight" not in text  # the operators' commands are not the reader's (found by a black-box test)
    assert "暂缓评判" not in render(case_file(events, [], j.catalog.item(LICENCE), j.calendar))
    # A letter of an event the case holds since (sent again, corrected, under its id) holds nothing:
    # it said 暂缓评判 of a case that had been judged (found by a black-box test).
    assert [w["event_id"] for w in case_file(events, [], j.catalog.item(LICENCE), j.calendar,
                                             waiting={"u": "schema", "a": "schema"})["waiting_for"]] == ["a"]
    judged = case_file(events, [], j.catalog.item(LICENCE), j.calendar, waiting={"u": "schema"})
    assert judged["waiting_for"] == [] and "暂缓评判" not in render(judged)


def test_benchmark_tiers_named_by_english_codes_are_read_in_chinese_and_peers_are_not_said_to_be_earlier():
    """Found by a black-box test: the evidence read "自称适用“heavy”档；自由裁量基准为 light ¥5,000–…"
    to inspectors and departments, and an outlier judged against a group's first peers, decided
    after it, said they were "此前" (earlier)."""
    from alerts.describe import describe_evidence, tier_name

    text = describe_evidence("discretion_out_of_range", {
        "decided_at": "2026-03-16T15:00:00+08:00", "violation_code": "V-1", "penalty_amount": 150000,
        "claimed_tier": "heavy", "problem": "outside every tier",
        "tiers": [{"tier": "light", "min": 5000, "max": 20000}, {"tier": "从重", "min": 50000, "max": 100000}]})
    assert "自称适用“从重（heavy）”档" in text and "从轻（light） ¥5,000–¥20,000" in text
    assert "从重 ¥50,000–¥100,000" in text and tier_name("其他档") == "其他档"
    outlier = describe_evidence("discretion_outlier", {
        "decided_at": "2026-06-10T10:00:00+08:00", "violation_code": "V-1", "penalty_amount": 900, "peers": 20,
        "peer_low": 5000, "peer_high": 9000, "peer_median": 7000, "usual_range": [2500, 18000],
        "direction": "below", "peers_decided_from": "2026-06-01T09:00:00+08:00",
        "peers_decided_to": "2026-09-02T09:00:00+08:00"})
    assert "此前" not in outlier and "同类处罚 20 件（决定于 2026-06-01 09:00 至 2026-09-02 09:00）" in outlier


def test_a_late_registration_reads_in_hours_to_a_tenth_with_the_days_and_one_event_is_not_an_example():
    """Found by a black-box test: '1 个事件滞后登记，如 …' (如 before the only one) and '滞后 382.67 小时'."""
    from alerts.describe import describe_evidence

    one = {"late_registration_count": 1, "late_registrations": [
        {"event_id": "E-1", "occurred_at": "2026-03-02T10:00:00+08:00", "recorded_at": "2026-03-18T08:40:00+08:00",
         "lag_hours": 382.6667}]}
    text = describe_evidence("backfill", one)
    assert "1 个事件滞后登记：E-1，2026-03-02 10:00 发生" in text and "滞后 382.7 小时（约 15.9 天）" in text and "如" not in text
    two = {**one, "late_registration_count": 2}
    assert "2 个事件滞后登记，如 E-1，2026-03-02 10:00 发生" in describe_evidence("backfill", two)


def test_a_fine_outside_its_tier_is_said_in_chinese_with_amounts_that_show_why():
    """Found by a black-box test: two of the three problems of a fine were mailed in English
    (问题：outside the claimed tier 'light'), ¥4,999.999 read as ¥5,000 beside "outside the tier
    ¥5,000–¥20,000", and an open-ended tier read ¥8,000–—."""
    from alerts.describe import describe_evidence

    evidence = {"decided_at": "2026-03-03T10:00:00+08:00", "violation_code": "V-1", "penalty_amount": 4999.999,
                "claimed_tier": "light", "problem": "outside the claimed tier 'light'",
                "tiers": [{"tier": "light", "min": 5000, "max": 20000}, {"tier": "heavy", "min": 60000, "max": None}]}
    text = describe_evidence("discretion_out_of_range", evidence)
    assert "处罚 ¥4,999.999" in text and "从重（heavy） ¥60,000 以上" in text
    assert "问题：处罚金额不在自称适用的“从轻（light）”档范围内" in text and "outside" not in text
    unknown = {**evidence, "claimed_tier": "extreme", "problem": "claims tier 'extreme', which the benchmark does not have"}
    assert "问题：自称适用的“extreme”档不在该违法行为的裁量基准中" in describe_evidence("discretion_out_of_range", unknown)
    assert "¥5,000–¥20,000" in text and "¥1,234.50" in describe_evidence(
        "discretion_out_of_range", {**evidence, "penalty_amount": 1234.5})


def test_a_suspension_stated_while_another_ran_is_named_in_the_pause():
    """Found by an independent oracle: a hearing, then an expert review stated before it was over,
    showed as 挂起 1 次 with the hearing alone, though the expert review's resumption is what
    restarted the clock."""
    j = judge()
    events = [ev("accepted", at(2026, 3, 2)), ev("suspended", at(2026, 3, 4), reason="hearing"),
              ev("suspended", at(2026, 3, 5), reason="expert_review"),
              ev("resumed", at(2026, 3, 12)), ev("resumed", at(2026, 3, 17))]
    state = run(events, at(2026, 3, 20))
    file = case_file(state.events, [], j.catalog.item(LICENCE), j.calendar)
    assert file["deadline"]["suspensions"][0]["inner"] == [{"from": "2026-03-05T10:00:00+08:00",
                                                            "reason": "expert_review"}]
    text = render(file)
    assert "挂起 1 次：2026-03-04 10:00 至 2026-03-17 10:00（听证；其间另行挂起：2026-03-05 10:00 专家评审）" in text


def test_a_deadline_that_ends_at_midnight_reads_as_24_00_of_its_last_day():
    """Found by a black-box test on the real receipt log: a deadline ending on a Friday read
    as the Saturday at 00:00, and a source's stated deadline of the 21st read as the 22nd; the
    contract says a deadline ends at 24:00 of its last day. An open late case's card was titled
    超时办结 (closed late)."""
    j = judge()
    events = [ev("accepted", at(2026, 3, 2, 10), case="K9")]  # 10 working days: Monday 16 March, 24:00
    state = run(events, at(2026, 3, 20), j)
    overdue = next(a.to_json() for a in state.alerts.values() if a.rule is Rule.OVERDUE)
    assert overdue["evidence"]["deadline"].startswith("2026-03-17T00:00")
    assert "时限截止 2026-03-16 24:00" in describe_alert(overdue)
    assert "办结" not in overdue["title"]
    file = case_file(events, [overdue], j.catalog.item(LICENCE), j.calendar, "市市场监督管理局")
    assert "办理时限截止：2026-03-16 24:00" in file["deadline"]["text"]
    assert deadline_moment("2026-03-13T17:30:00+08:00") == "2026-03-13 17:30"  # any other moment as it is
    assert deadline_moment("2026-03-01T00:00:00+08:00") == "2026-02-28 24:00" and deadline_moment(None) == "—"
    # A source's 23:59:59 with its seconds: read as 23:59, a step at 23:59:30 looked late (found by a
    # black-box test); as the panels word it (test_dashboard_panels.py).
    assert deadline_moment("2026-03-13T23:59:59+08:00") == "2026-03-13 23:59:59"
    assert deadline_moment("2026-03-13T17:30:00.500+08:00") == "2026-03-13 17:30:00"



def test_a_stated_deadline_moved_by_a_suspension_is_said_as_stated_and_as_moved():
    """Found by a black-box test: the case file said the source system had given the deadline a
    suspension moved (办理系统在受理时给定的办理时限 2026-10-08 24:00, where the source stated 10-05)."""
    j = judge()
    events = [ev("accepted", at(2026, 9, 28, 10), case="K7", event_id="a", deadline="2026-10-05T23:59:00+08:00"),
              ev("suspended", at(2026, 9, 29, 0), case="K7", event_id="s", reason="supplement"),
              ev("resumed", at(2026, 9, 30, 0), case="K7", event_id="r")]
    file = case_file(events, [], j.catalog.item(LICENCE), j.calendar)
    deadline = file["deadline"]
    assert deadline["stated_deadline"].startswith("2026-10-05T23:59") and deadline["stated_by_source"]
    assert "办理系统在受理时给定的办理时限：2026-10-05 23:59。" in deadline["text"]
    assert "时限相应顺延" in deadline["text"] and not deadline["deadline"].startswith("2026-10-05")
    assert f"办理时限截止：{deadline_moment(deadline['deadline'])}。" in deadline["text"]
    # The days off it spans, said as days off (2026-01-02 is a day off in lieu, not a statutory holiday).
    counted = case_file([ev("accepted", at(2025, 12, 31, 10), case="K8", event_id="a")], [], j.catalog.item(LICENCE),
                        j.calendar)
    assert "期间不计的工作日（法定节假日及调休放假）：" in counted["deadline"]["text"]
    assert "2026-01-02" in counted["deadline"]["text"]

def test_the_text_case_file_shows_node_names_and_officers_whole():
    """Found on the real receipt log: node names were cut to 14 characters ("T02 Check conf")."""
    j = judge()
    long_name = "T02 Check confirmation of receipt"
    item = j.catalog.item(LICENCE)
    item = replace(item, nodes=tuple(replace(n, name=long_name) if n.id == "undertake" else n for n in item.nodes))
    events = [ev("accepted", at(2026, 3, 2, 10), case="K8", event_id="e1"),
              replace(ev("node_completed", at(2026, 3, 3, 9), case="K8", node="undertake", event_id="e2"),
                      officer_id="officer-with-a-long-id-0001")]
    shown = render(case_file(events, [], item, j.calendar, "市市场监督管理局"))
    assert long_name in shown and "officer-with-a-long-id-0001" in shown


def test_the_time_used_by_a_reopened_case_says_it_counts_its_time_out_of_hand():
    """Found by a black-box test: a case closed, returned and closed again read "其间案件不在办"
    and then a time used that counted that gap, with nothing to say so. The time used counts from
    the acceptance, as the deadline does (which the gap does not move); it now says so. A case
    never reopened reads as before."""
    j = judge()
    events = [ev("accepted", at(2026, 3, 2, 10), case="K3", event_id="a"),
              ev("node_completed", at(2026, 3, 3, 10), case="K3", node="undertake", event_id="u"),
              ev("node_completed", at(2026, 3, 3, 11), case="K3", node="review", event_id="r"),
              ev("node_completed", at(2026, 3, 3, 12), case="K3", node="approve", event_id="p"),
              ev("closed", at(2026, 3, 3, 13), case="K3", event_id="c1")]
    item = j.catalog.item(LICENCE)
    plain = case_file(events, [], item, j.calendar, "局")["deadline"]["text"]
    assert "用时" in plain and "含其间不在办" not in plain
    reopened = events + [ev("returned", at(2026, 3, 5, 9), case="K3", node="approve", event_id="back"),
                         ev("node_completed", at(2026, 3, 5, 10), case="K3", node="approve", event_id="p2"),
                         ev("closed", at(2026, 3, 5, 11), case="K3", event_id="c2")]
    text = case_file(reopened, [], item, j.calendar, "局")["deadline"]["text"]
    assert "其间案件不在办" in text and "用时 2.46 个工作日（自受理起算，含其间不在办的时间）" in text, text
