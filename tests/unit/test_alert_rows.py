"""An alert's row carries its evidence in words for the screens (`sinks.rows.alert_row`)."""

from __future__ import annotations

from alerts.describe import describe_evidence
from alerts.model import Alert
from sinks.rows import alert_row


def alert(rule: str, evidence: dict, status: str = "open") -> Alert:
    return Alert.from_json({"alert_id": "A1", "rule": rule, "severity": "red", "case_id": "C1", "item_code": "I",
                            "department": "D", "raised_at": "2026-03-20T09:00:00+08:00",
                            "event_time": "2026-03-14T00:00:00+08:00", "evidence": evidence, "status": status})


def test_an_alert_row_holds_its_evidence_in_the_sentences_the_notices_give():
    evidence = {"accepted_at": "2026-03-02T09:00:00+08:00", "promised_days": 5, "suspensions": [],
                "deadline": "2026-03-10T00:00:00+08:00"}
    row = alert_row(alert("overdue", evidence))
    assert row["evidence_text"] == describe_evidence("overdue", evidence)
    assert "2026-03-09 24:00" in row["evidence_text"] and "至今未办结" in row["evidence_text"]


def test_a_withdrawn_alert_s_words_say_they_are_what_it_said_when_raised():
    """Found by a black-box test: the 预警证据 panel showed a withdrawn card's "至今未办结" as current,
    beside a case closed since; `cases show` says it was the situation when the card was raised."""
    evidence = {"accepted_at": "2026-03-02T09:00:00+08:00", "promised_days": 5, "suspensions": [],
                "deadline": "2026-03-10T00:00:00+08:00"}
    row = alert_row(alert("overdue", evidence, "withdrawn"))
    assert row["evidence_text"] == "预警生成时的情况：" + describe_evidence("overdue", evidence)


def test_evidence_the_sentences_cannot_read_leaves_the_words_empty_and_the_row_written():
    """A burst without its counts (an evidence shape the sentences do not know): the row is still
    written, its JSON shown instead of words."""
    row = alert_row(alert("backfill", {"burst": {"registered_from": "2026-03-02T09:00:00+08:00"}}))
    assert row["evidence_text"] == "" and row["evidence"]


def test_a_time_in_the_sentences_is_set_apart_from_the_words_before_it():
    """Found by a black-box test: "实际2026-03-30 13:51 完成" and "案件2026-05-25 12:00 办结"."""
    node = describe_evidence("node_overdue", {"node_name": "审查", "node_days": 2, "clock_started_at": "2026-03-02T09:00:00+08:00",
                                              "node_deadline": "2026-03-05T00:00:00+08:00",
                                              "completed_at": "2026-03-30T13:51:00+08:00", "working_days_used": 20})
    assert "实际于 2026-03-30 13:51 完成" in node
    backdated = describe_evidence("retroactive_suspension", {
        "event_id": "E5", "suspension_occurred_at": "2026-05-01T09:00:00+08:00",
        "suspension_recorded_at": "2026-05-20T09:00:00+08:00", "backdated_hours": 456,
        "deadline_as_registered": "2026-05-16T00:00:00+08:00", "deadline_as_stated": "2026-06-01T00:00:00+08:00",
        "ended_at": "2026-05-25T12:00:00+08:00"})
    assert "案件于 2026-05-25 12:00 办结即已超期" in backdated


def test_a_closing_at_midnight_reads_as_the_end_of_the_day_before():
    """Found by a black-box test on the receipt log: a case whose source gives its end as a date
    (closed at 24:00 of it, `alerts.mapping`) read "于 2010-12-02 00:00 办结", a day late."""
    evidence = {"accepted_at": "2010-11-20T09:00:00+01:00", "promised_days": 5, "suspensions": [],
                "deadline": "2010-11-27T00:00:00+01:00", "ended_at": "2010-12-02T00:00:00+01:00",
                "ended_by": "closed", "working_days_used": 8}
    assert "于 2010-12-01 24:00 办结" in describe_evidence("overdue", evidence)
    skipped = describe_evidence("skipped_node", {"skipped_node_name": "审查", "went_ahead": "closing",
                                                  "went_ahead_at": "2010-12-02T00:00:00+01:00",
                                                  "went_ahead_event_id": "E9"})
    assert "2010-12-01 24:00 即已办结" in skipped


def test_a_node_run_a_return_stopped_says_so():
    """Found by a black-box test: a node late, then stopped by a return, read "实际至今未完成"."""
    text = describe_evidence("node_overdue", {"node_name": "审查", "node_days": 2,
                                              "clock_started_at": "2026-03-02T09:00:00+08:00",
                                              "node_deadline": "2026-03-05T00:00:00+08:00", "completed_at": None,
                                              "stopped_at": "2026-03-09T10:00:00+08:00"})
    assert "实际未完成，2026-03-09 10:00 因案件退回至前置环节重办而中止" in text and "至今" not in text


def test_a_backdated_suspension_s_words_give_its_reason():
    """Found by a black-box test: the reason the suspension states (专家评审) was left out."""
    text = describe_evidence("retroactive_suspension", {
        "event_id": "E5", "reason": "expert_review", "suspension_occurred_at": "2026-05-01T09:00:00+08:00",
        "suspension_recorded_at": "2026-05-20T09:00:00+08:00", "backdated_hours": 456,
        "deadline_without_suspension": "2026-05-16T00:00:00+08:00"})
    assert text.startswith("挂起事件 E5（专家评审）所述挂起时间为 2026-05-01 09:00")


def test_a_text_table_lines_up_whatever_chinese_its_cells_hold():
    """Found by a black-box test: `tickets list` padded by Python's character count, so a status of
    six Chinese characters (已答复待审核) pushed the rest of its line out of line."""
    from alerts.describe import display_width, table_lines

    lines = table_lines(["督办件", "状态", "版本"], [["C-1/overdue", "已答复待审核", "3"], ["C-22/backfill", "待答复", "12"]])
    assert display_width("已答复待审核") == 12 and display_width("C-1") == 3
    starts = {display_width(line[:line.rindex(line.split()[-1])]) for line in lines}
    assert len(starts) == 1, lines  # the last column starts at one terminal column on every line
