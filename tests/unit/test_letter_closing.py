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


def test_a_refused_rating_holds_no_judgement_back_so_its_letter_may_be_closed():
    """Found by a black-box test: a refused rating's letter could not be closed ("case T4 waits for
    its event"), though no rule reads a rating (`alerts.events.READ_BY_NO_RULE`)."""
    import orjson

    from alerts.letters import holds_judgement, make_letter

    def letter(event_type: str, raw: bytes | None = None):
        payload = raw or orjson.dumps({"event_id": "T4-9", "case_id": "T4", "type": event_type, "item_code": "X"})
        return make_letter("case-events", 0, 3, b"T4", payload, "schema", "bad rating")

    assert not holds_judgement(letter("rated"))
    assert holds_judgement(letter("accepted")) and holds_judgement(letter("node_completed"))
    # Kept as base64 (GBK): its type read as the pipeline read it.
    gbk = '{"event_id": "T4-9", "case_id": "T4", "type": "rated", "attrs": {"comment": "很差"}}'.encode("gbk")
    assert letter("rated", gbk).payload_encoding.startswith("base64") and not holds_judgement(letter("rated", gbk))
    unread = '{"event_id": "T4-9", "case_id": "T4", "type": "评议"}'.encode("gbk")
    assert holds_judgement(letter("rated", unread))  # its type unread: it holds
    # A letter that holds no case (a conflicting copy) holds nothing.
    copy = make_letter("case-events", 0, 3, b"T4", orjson.dumps({"event_id": "T4-9", "case_id": "T4"}),
                       "conflicting_duplicate", "another fact")
    assert not holds_judgement(copy)
