"""An operator closes a dead letter no corrected event can replace (`sunlight dlq close`)."""

from __future__ import annotations

from dataclasses import replace
from datetime import datetime, timezone

from alerts.letters import DeadLetter, why_not_closed
from sinks.rows import dead_letter_row, to_arrow

AT = datetime(2026, 3, 2, 1, 0, tzinfo=timezone.utc)
LETTER = DeadLetter("L1", "empty", "a record without a value (null: a tombstone), not an event", "case-events", 1, 7,
                    "C1", "", "utf-8", case_id="C1", department="SCJG", region="320200", version=3)


def test_a_closed_letter_s_row_says_who_closed_it_when_and_why():
    shut = replace(LETTER, status="closed", closed_at=AT, closed_by="张三", closed_reason="来源系统误发的删除标记",
                   version=4)
    row = dead_letter_row(shut, AT)
    assert (row["status"], row["closed_by"], row["closed_reason"], row["closed_at"]) == (
        "closed", "张三", "来源系统误发的删除标记", AT)
    table = to_arrow("dead_letters", [row, dead_letter_row(LETTER, AT)])
    assert table.column("closed_by").to_pylist() == ["张三", None] and table.column("version").to_pylist() == [4, 3]


def test_only_an_open_letter_whose_case_does_not_wait_for_it_is_closed():
    assert why_not_closed(LETTER, case_waits=False) is None
    waits = DeadLetter("L2", "unknown_item", "item X not in the catalog", "case-events", 0, 1, "C2", "{}", "utf-8",
                       case_id="C2", event_id="E9")
    assert "case C2 waits for its event E9" in why_not_closed(waits, case_waits=True)
    assert "sunlight dlq redrive" in why_not_closed(waits, case_waits=True)
    assert why_not_closed(replace(LETTER, status="redriven"), case_waits=False) == "it is redriven already"
    assert why_not_closed(replace(LETTER, status="closed"), case_waits=False) == "it is closed already"
    # An import's row not read: the operator may let its case into later imports without it.
    row = replace(LETTER, reason="unreadable_row", case_id="C3", topic="import:cases.csv")
    assert why_not_closed(row, case_waits=False) is None
