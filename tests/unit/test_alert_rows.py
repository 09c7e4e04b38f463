"""An alert's row carries its evidence in words for the screens (`sinks.rows.alert_row`)."""

from __future__ import annotations

from alerts.describe import describe_evidence
from alerts.model import Alert
from sinks.rows import alert_row


def alert(rule: str, evidence: dict) -> Alert:
    return Alert.from_json({"alert_id": "A1", "rule": rule, "severity": "red", "case_id": "C1", "item_code": "I",
                            "department": "D", "raised_at": "2026-03-20T09:00:00+08:00",
                            "event_time": "2026-03-14T00:00:00+08:00", "evidence": evidence, "status": "open"})


def test_an_alert_row_holds_its_evidence_in_the_sentences_the_notices_give():
    evidence = {"accepted_at": "2026-03-02T09:00:00+08:00", "promised_days": 5, "suspensions": [],
                "deadline": "2026-03-10T00:00:00+08:00"}
    row = alert_row(alert("overdue", evidence))
    assert row["evidence_text"] == describe_evidence("overdue", evidence)
    assert "2026-03-09 24:00" in row["evidence_text"] and "至今未办结" in row["evidence_text"]


def test_evidence_the_sentences_cannot_read_leaves_the_words_empty_and_the_row_written():
    """A burst without its counts (an evidence shape the sentences do not know): the row is still
    written, its JSON shown instead of words."""
    row = alert_row(alert("backfill", {"burst": {"registered_from": "2026-03-02T09:00:00+08:00"}}))
    assert row["evidence_text"] == "" and row["evidence"]
