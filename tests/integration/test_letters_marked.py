"""Which letters the pipeline marks redriven when a refused event comes corrected
(`sinks.writer.mark_letters_corrected`), written through the real writer into chdb."""

from __future__ import annotations

import orjson

from sinks.clickhouse import connect
from sinks.migrations import migrate
from sinks.queries import dead_letters
from sinks.scope import Scope
from sinks.writer import ClickHouseWriter
from streams.steps import Unit
from tests.unit.test_steps import HISTORY, Harness, record


def test_a_bad_copy_that_comes_after_the_correction_keeps_its_letter_open_in_the_same_batch(tmp_path):
    """Found by review: the marking took every open letter naming the event at write time, so a bad
    copy that came after the correction, its letter written in the same batch, was marked too."""
    bad = orjson.dumps({**HISTORY[0], "occurred_at": "2026-03-02 10:00"})  # bad_time, before the correction
    late = orjson.dumps({**HISTORY[0], "occurred_at": "2026-03-02 10:00:00"})  # another bad copy, after it
    harness = Harness()
    harness.run(Unit("case-events", 1, [record(0, bad), record(1, HISTORY[0])]))
    harness.run(Unit("case-events", 1, [record(2, late)]))  # a later unit, in the same batch
    assert list(harness.writer.batch.corrected) == [("U1", "a")]
    client = connect(None, tmp_path / "data")
    try:
        migrate(client)
        writer = ClickHouseWriter(client)
        writer.write(harness.writer.batch)
        writer.executor.shutdown()
        letters = sorted((x["offset"], x["status"]) for x in dead_letters(client, Scope.everything(),
                                                                           include_done=True))
        assert letters == [(0, "redriven"), (2, "open")]
    finally:
        client.close()


def test_a_close_and_a_redrive_of_one_letter_mark_it_once_whichever_comes_second(tmp_path):
    """Found by review: `dlq close` and a redrive (or an import) each wrote the letter's next version
    from the letter as they had read it, minutes apart: both wrote version 2, the later insert won,
    and a close that had said "closed" was lost (or a true redrive undone). Each now marks only a
    letter still open, as the store holds it at that moment."""
    from datetime import datetime, timezone

    from alerts.letters import DeadLetter
    from sinks.rows import dead_letter_row, to_arrow
    from sinks.writer import close_letters, mark_letters_redriven

    at = datetime(2026, 3, 2, 2, tzinfo=timezone.utc)
    letters = [DeadLetter(i, "empty", "a tombstone", "case-events", 0, n, None, "", "utf-8") for n, i in
               enumerate(["closed-first", "redriven-first"])]
    client = connect(None, tmp_path / "data")
    try:
        migrate(client)
        client.insert_arrow("dead_letters", to_arrow("dead_letters", [dead_letter_row(x, at) for x in letters]))
        close_letters(client, ["closed-first"], at, "张三", "误发")
        mark_letters_redriven(client, ["redriven-first"], at)
        mark_letters_redriven(client, ["closed-first"], at)  # read while it was open, marked after the close
        close_letters(client, ["redriven-first"], at, "张三", "误发")
        stored = {x["letter_id"]: (x["status"], x["closed_by"], x["version"])
                  for x in dead_letters(client, Scope.everything(), include_done=True)}
    finally:
        client.close()
    assert stored == {"closed-first": ("closed", "张三", 2), "redriven-first": ("redriven", None, 2)}


def test_a_refused_gbk_rating_read_back_from_the_store_holds_its_case_no_more_than_in_the_pipeline(tmp_path):
    """Found by review: a rating in GBK is kept as base64; the pipeline read its type (rated: it
    holds nothing back), but the store's read named none (SQL's JSON functions cannot read base64),
    so a case read back from the store held everything back."""
    from datetime import datetime, timezone

    from alerts.letters import make_letter
    from sinks.queries import refused_case_events
    from sinks.rows import dead_letter_row, to_arrow

    gbk = '{"event_id": "R1", "case_id": "G1", "type": "rated", "attrs": {"comment": "很差"}}'.encode("gbk")
    letter = make_letter("case-events", 0, 4, b"G1", gbk, "invalid_utf8", "not UTF-8")
    assert letter.payload_encoding.startswith("base64")
    plain = make_letter("case-events", 0, 5, b"G2", orjson.dumps({"event_id": "N1", "case_id": "G2",
                                                                  "type": "node_completed"}), "unknown_node", "x")
    client = connect(None, tmp_path / "data")
    try:
        migrate(client)
        at = datetime(2026, 3, 5, tzinfo=timezone.utc)
        client.insert_arrow("dead_letters", to_arrow("dead_letters", [dead_letter_row(letter, at),
                                                                       dead_letter_row(plain, at)]))
        assert refused_case_events(client, ["G1", "G2"], as_kept=True) == {
            "G1": {"R1": "invalid_utf8@rated"}, "G2": {"N1": "unknown_node@node_completed"}}
        # A rating's letter in UTF-8 holds nothing back: not among the console's refused events that
        # hold their case, nor on the 暂缓评判 panel (found by review: listed, while judged in full).
        from dashboards.queries import CASES_WAITING
        from sinks.queries import refused_events_page

        rating = make_letter("case-events", 0, 6, b"G3", orjson.dumps({"event_id": "R3", "case_id": "G3",
                                                                        "type": "rated", "rating": 9}), "schema", "x")
        client.insert_arrow("dead_letters", to_arrow("dead_letters", [dead_letter_row(rating, at)]))
        listed, total = refused_events_page(client, Scope.everything(), 10)
        assert {r["case_id"] for r in listed} == {"G1", "G2"} and total == 2
        assert {row[0] for row in client.query(CASES_WAITING.sql).result_rows} == {"G1", "G2"}
        # A node event's stated time is kept, as the pipeline keeps it (a node stated after its case's
        # end holds nothing back: `alerts.state.holds_back`), read from base64 too; not a time it
        # was refused for (registered before it happened).
        times = {"occurred_at": "2026-03-04T10:00:00+08:00", "recorded_at": "2026-03-04T10:00:00+08:00"}
        timed = [make_letter("case-events", 0, 7, b"G4", orjson.dumps({"event_id": "N4", "case_id": "G4",
                                                                        "type": "node_completed", **times}), "schema", "x"),
                 make_letter("case-events", 0, 8, b"G4", orjson.dumps(
                     {"event_id": "N5", "case_id": "G4", "type": "node_completed", "node": "审核", **times}
                 ).decode().encode("gbk"), "invalid_utf8", "x"),
                 make_letter("case-events", 0, 9, b"G4", orjson.dumps(
                     {"event_id": "N6", "case_id": "G4", "type": "node_completed", **times,
                      "recorded_at": "2026-03-01T10:00:00+08:00"}), "impossible_time", "x")]
        client.insert_arrow("dead_letters", to_arrow("dead_letters", [dead_letter_row(x, at) for x in timed]))
        assert refused_case_events(client, ["G4"], as_kept=True) == {"G4": {
            "N4": "schema@node_completed@2026-03-04T02:00:00+00:00",
            "N5": "invalid_utf8@node_completed@2026-03-04T02:00:00+00:00", "N6": "impossible_time@node_completed"}}
    finally:
        client.close()


def test_what_a_case_waits_for_reads_the_same_from_the_store_as_in_the_pipeline(tmp_path):
    """Found by review: the pipeline read a refused event's type and time from the whole record,
    the store from what its letter keeps (256 kB) by SQL's JSON functions: a 400 kB node event
    stated after its case's closing let the case go in the pipeline and held it once read back from
    the store, and of two `occurred_at` keys the pipeline took the last, SQL the first. Both read
    the letter's payload with the same functions now."""
    from datetime import datetime, timezone

    from alerts.letters import kept_refusal, make_letter
    from sinks.queries import refused_case_events
    from sinks.rows import dead_letter_row, to_arrow

    times = '"occurred_at": "2026-03-04T12:00:00+08:00", "recorded_at": "2026-03-04T12:00:00+08:00"'
    raws = {
        "P1": f'{{"event_id": "P1", "case_id": "S1", "type": "node_completed", {times}}}'.encode(),
        "P2": f'{{"event_id": "P2", "case_id": "S1", "type": "node_completed", "node": "审核", {times}}}'.encode("gbk"),
        "P3": ('{"event_id": "P3", "case_id": "S1", "type": "node_completed", '
               '"occurred_at": "2026-03-01T12:00:00+08:00", ' + times + '}').encode(),
        "P4": (f'{{"event_id": "P4", "case_id": "S1", "type": "node_completed", {times}, '
               f'"attrs": {{"scan": "{"x" * 400_000}"}}}}').encode(),
        "P5": f'{{"event_id": "P5", "case_id": "S1", "type": "rated", {times}}}'.encode(),
    }
    reasons = {"P1": "schema", "P2": "invalid_utf8", "P3": "schema", "P4": "too_large", "P5": "schema"}
    letters = [make_letter("case-events", 0, n, b"S1", raw, reasons[k], "x") for n, (k, raw) in enumerate(raws.items())]
    in_the_pipeline = {k: kept_refusal(reasons[k], raw) for k, raw in raws.items()}
    client = connect(None, tmp_path / "data")
    try:
        migrate(client)
        at = datetime(2026, 3, 5, tzinfo=timezone.utc)
        client.insert_arrow("dead_letters", to_arrow("dead_letters", [dead_letter_row(x, at) for x in letters]))
        assert refused_case_events(client, ["S1"], as_kept=True) == {"S1": in_the_pipeline}
    finally:
        client.close()
    assert in_the_pipeline["P1"] == in_the_pipeline["P2"].replace("invalid_utf8", "schema") \
        == "schema@node_completed@2026-03-04T04:00:00+00:00"
    assert in_the_pipeline["P4"] == "too_large"  # its letter keeps 256 kB of it, no JSON: held whole
