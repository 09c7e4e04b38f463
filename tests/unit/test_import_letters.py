"""Which dead letters of an earlier import a corrected file replaces (streams.importers)."""

from __future__ import annotations

import tracemalloc
from dataclasses import asdict

import orjson

from alerts.mapping import load_mapping
from streams.broker import event_messages
from streams.importers import convert, import_letters, replaced_letters

MAPPING = load_mapping({"case_id": "case", "activity": "activity", "time": "time", "item_code": {"value": "I"},
                        "activities": {"受理": {"type": "accepted"}, "审查": {"node": "review"},
                                       "办结": {"type": "closed"}}})
HEADER = "case,activity,time\n"


def letters_of(path) -> list[dict]:
    return [asdict(letter) for letter in import_letters(convert(path, MAPPING), path, "case-events", None)]


def test_the_corrected_file_in_another_order_replaces_the_rejected_row_s_letter(tmp_path):
    """Found by a black-box test: the rejected row's letter was replaced only by a row of its case
    at the same number; the corrected file exported again sorted otherwise left the case held back
    for good (three overdue and three yellow cards of the receipt log lost)."""
    bad = tmp_path / "bad" / "log.csv"
    bad.parent.mkdir()
    bad.write_text(HEADER + "C1,受理,2026-03-02 10:00\nC1,审查,25/03/2026\nC2,受理,2026-03-02 11:00\n"
                   "C2,办结,2026-03-03 11:00\n", encoding="utf-8")
    left = letters_of(bad)
    assert sorted((letter["reason"], letter["offset"]) for letter in left) == [
        ("case_incomplete", 1), ("unreadable_row", 2)]
    fixed = tmp_path / "fixed" / "log.csv"
    fixed.parent.mkdir()
    fixed.write_text(HEADER + "C2,受理,2026-03-02 11:00\nC2,办结,2026-03-03 11:00\nC1,受理,2026-03-02 10:00\n"
                     "C1,审查,2026-03-25 10:00\n", encoding="utf-8")
    replaced = replaced_letters(left, fixed, convert(fixed, MAPPING), MAPPING)
    assert sorted(letter["offset"] for letter in replaced) == [1, 2]
    # A file of that name bringing the case in whole without that step (next month's export, a
    # later step only) does not replace the rejected row's letter.
    later = tmp_path / "later" / "log.csv"
    later.parent.mkdir()
    later.write_text(HEADER + "C1,受理,2026-03-02 10:00\nC1,办结,2026-03-30 10:00\n", encoding="utf-8")
    replaced = replaced_letters(left, later, convert(later, MAPPING), MAPPING)
    assert [(letter["reason"], letter["offset"]) for letter in replaced] == [("case_incomplete", 1)]


def test_a_corrected_json_line_replaces_its_letter_by_its_event(tmp_path):
    event = ('{{"event_id": "e{n}", "case_id": "C1", "item_code": "I", "type": "{kind}", '
             '"occurred_at": "{at}", "recorded_at": "2026-03-05T10:00:00+08:00"}}')
    bad = tmp_path / "bad" / "log.jsonl"
    bad.parent.mkdir()
    bad.write_text("\n".join([event.format(n=1, kind="accepted", at="2026-03-02T10:00:00+08:00"),
                              event.format(n=2, kind="closed", at="later")]) + "\n", encoding="utf-8")
    left = [asdict(letter) for letter in import_letters(convert(bad, None), bad, "case-events", None)]
    fixed = tmp_path / "fixed" / "log.jsonl"
    fixed.parent.mkdir()
    fixed.write_text("\n".join([event.format(n=2, kind="closed", at="2026-03-04T10:00:00+08:00"),
                                event.format(n=1, kind="accepted", at="2026-03-02T10:00:00+08:00")]) + "\n",
                     encoding="utf-8")
    assert len(replaced_letters(left, fixed, convert(fixed, None), None)) == 2


def test_a_json_line_corrected_in_place_under_another_event_id_replaces_its_letter(tmp_path):
    """Review: a line refused for its event id (too long), corrected in place with another id,
    left its letter open and its case held back for good."""
    event = ('{{"event_id": "{id}", "case_id": "C1", "item_code": "I", "type": "{kind}", '
             '"occurred_at": "2026-03-0{day}T10:00:00+08:00", "recorded_at": "2026-03-05T10:00:00+08:00"}}')
    bad = tmp_path / "bad" / "log.jsonl"
    bad.parent.mkdir()
    bad.write_text(event.format(id="e1", kind="accepted", day=2) + "\n"
                   + event.format(id="x" * 129, kind="closed", day=4) + "\n", encoding="utf-8")
    left = [asdict(letter) for letter in import_letters(convert(bad, None), bad, "case-events", None)]
    assert sorted(letter["reason"] for letter in left) == ["case_incomplete", "unreadable_row"]
    fixed = tmp_path / "fixed" / "log.jsonl"
    fixed.parent.mkdir()
    fixed.write_text(event.format(id="e1", kind="accepted", day=2) + "\n"
                     + event.format(id="e2", kind="closed", day=4) + "\n", encoding="utf-8")
    assert len(replaced_letters(left, fixed, convert(fixed, None), None)) == 2


def test_rows_another_file_held_back_come_in_only_once_their_case_lacks_nothing_else(tmp_path):
    """A case's rows of a later file, held back for a rejected row of an earlier one, come in with
    the earlier file corrected (before, each file held the other back for good: found by a
    black-box test); not while a rejected row of the case is left open, nor when a held row's
    payload can be read as no event of its case."""
    from streams.importers import hold_cases_left_open, released_rows

    def write(name: str, text: str):
        path = tmp_path / name
        path.write_text(HEADER + text, encoding="utf-8")
        return path

    first = write("sep.csv", "C1,受理,02/03/2026\nC1,审查,2026-03-03 10:00\nC2,受理,02/03/2026\n")
    second = write("oct.csv", "C1,办结,2026-04-01 10:00\nC2,办结,2026-04-01 10:00\n")
    left = letters_of(first)
    later = convert(second, MAPPING)
    hold_cases_left_open(later, left, [])
    left += [asdict(letter) for letter in import_letters(later, second, "case-events", None)]
    assert sorted((letter["case_id"], letter["reason"]) for letter in left) == [
        ("C1", "case_incomplete"), ("C1", "case_incomplete"), ("C1", "unreadable_row"), ("C2", "case_incomplete"),
        ("C2", "unreadable_row")]
    corrected = write("sep.csv", "C1,受理,2026-03-02 10:00\nC1,审查,2026-03-03 10:00\n")  # C2 still unread
    result = convert(corrected, MAPPING)
    replaced = replaced_letters(left, corrected, result, MAPPING)
    released, freed = released_rows(result, left, replaced)
    assert [(event["case_id"], event["type"]) for event in released] == [("C1", "closed")]
    assert [(letter["case_id"], letter["detail"].split(",")[0]) for letter in freed] == [("C1", "oct.csv")]
    assert sorted((letter["case_id"], letter["reason"]) for letter in replaced) == [
        ("C1", "case_incomplete"), ("C1", "case_incomplete"), ("C1", "unreadable_row")]
    assert hold_cases_left_open(result, left, replaced) == {} and len(result.events) == 2
    # A held row whose payload is no event of its case is not sent: the case stays held back.
    spoilt = [{**letter, "payload": "{}"} if letter["detail"].startswith("oct.csv, row 1:") else letter
              for letter in left]
    replaced = replaced_letters(spoilt, corrected, result, MAPPING)
    assert released_rows(result, spoilt, replaced) == ([], [])
    assert set(hold_cases_left_open(result, spoilt, replaced)) == {"C1"}


def test_rows_held_for_an_earlier_import_come_in_from_the_latest_import_of_their_file_whatever_its_name(tmp_path):
    """Found by review: a later file imported twice while its case was held, a row corrected, left
    its first version's letter open, and both closings came in (the stale one, the first end,
    took a true overdue down); and monthly files all named export.csv kept the corrected first
    file's rejected row waiting for the second's rows, held back for good."""
    from streams.importers import hold_cases_left_open, released_rows

    def held_letters(path, left, received_at):
        later = convert(path, MAPPING)
        hold_cases_left_open(later, left, [])
        return [{**asdict(letter), "received_at": received_at}
                for letter in import_letters(later, path, "case-events", None)]

    for names in (("jan.csv", "feb.csv"), ("jan/export.csv", "feb/export.csv")):
        first, second = (tmp_path / name for name in names)
        for path in (first, second):
            path.parent.mkdir(parents=True, exist_ok=True)
        first.write_text(HEADER + "C1,受理,02/03/2026\nC1,审查,2026-03-03 10:00\n", encoding="utf-8")
        left = [{**letter, "received_at": "2026-04-01T10:00:00+08:00"} for letter in letters_of(first)]
        second.write_text(HEADER + "C1,办结,2026-04-01 10:00\n", encoding="utf-8")
        stale = held_letters(second, left, "2026-04-02T10:00:00+08:00")
        second.write_text(HEADER + "C1,办结,2026-04-20 10:00\n", encoding="utf-8")  # corrected, held again
        left += stale + held_letters(second, left + stale, "2026-04-03T10:00:00+08:00")
        first.write_text(HEADER + "C1,受理,2026-03-02 10:00\nC1,审查,2026-03-03 10:00\n", encoding="utf-8")
        result = convert(first, MAPPING)
        replaced = replaced_letters(left, first, result, MAPPING)
        assert sorted(letter["reason"] for letter in replaced) == ["case_incomplete", "unreadable_row"], names
        released, freed = released_rows(result, left, replaced)
        assert [(e["type"], e["occurred_at"][:10]) for e in released] == [("closed", "2026-04-20")], names
        assert len(freed) == 2 and hold_cases_left_open(result, left, replaced) == {}, names


def test_the_summary_warns_of_rejected_rows_that_name_no_case(tmp_path):
    """Found by a black-box test: a row whose case id is empty is rejected, but its case cannot be
    held back, and the rest of it was judged without it (a red skipped_node for the acceptance it
    lacked) while the summary said only "1 rejected"."""
    from streams.commands.importing import caseless_rows

    log = tmp_path / "log.csv"
    log.write_text(HEADER + " ,受理,2026-03-02 10:00\nC1,审查,2026-03-03 10:00\nC1,办结,2026-03-04 10:00\n"
                   "C2,受理,2026-03-02 10:00\nC2,审查,25/03/2026\n", encoding="utf-8")
    result = convert(log, MAPPING)
    assert len(result.rejected) == 2 and {e["case_id"] for e in result.events} == {"C1"}
    said = caseless_rows(result)
    assert said is not None and said.startswith("  warning: 1 rejected row names no case (row 1 (line 2))")
    fine = tmp_path / "fine.csv"
    fine.write_text(HEADER + "C2,受理,2026-03-02 10:00\nC2,审查,25/03/2026\n", encoding="utf-8")
    assert caseless_rows(convert(fine, MAPPING)) is None  # its case is known, and held back


def test_a_utf16_file_is_told_it_is_utf16(tmp_path):
    """Found by a black-box test: a file saved as Excel's 'Unicode Text' (UTF-16) was refused with how
    to convert GBK."""
    import pytest

    from streams.importers import LogFormatError

    log = tmp_path / "log.csv"
    log.write_bytes((HEADER + "C1,受理,2026-03-02 10:00\n").encode("utf-16"))
    with pytest.raises(LogFormatError, match="it is UTF-16") as refused:
        convert(log, MAPPING)
    assert "GBK" not in str(refused.value)
    gbk = tmp_path / "gbk.csv"
    gbk.write_bytes((HEADER + "C1,受理,2026-03-02 10:00\n").encode("gbk"))
    with pytest.raises(LogFormatError, match="iconv -f GBK -t UTF-8"):
        convert(gbk, MAPPING)


def _traced_bytes(build) -> int:
    """What `build()`'s result holds, as Python's allocators counted it while building it."""
    tracemalloc.start()
    try:
        kept = build()
        size, _ = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    del kept
    return size


def test_an_imports_messages_hold_their_own_size_not_orjsons_buffer(tmp_path):
    # orjson 3.12 on returns its whole write buffer (about 4 KiB) for a 300-byte event; an import
    # holds every message at once, so a 171,540-row log peaked at 2.0 GB, 0.7 GB of it those buffers.
    log = tmp_path / "log.jsonl"
    log.write_text("".join(
        orjson.dumps({"event_id": f"e{n}", "case_id": f"C{n // 4}", "item_code": "X", "type": "node_completed",
                      "node": "n1", "occurred_at": "2026-03-02T09:00:00+08:00",
                      "recorded_at": "2026-03-02T09:00:00+08:00"}).decode() + "\n" for n in range(2000)))
    result = convert(log, None)
    assert len(result.events) == 2000
    written = sum(len(orjson.dumps(event)) for event in result.events)
    held = _traced_bytes(lambda: event_messages(result.events))
    assert held < 2 * written, (held, written)
