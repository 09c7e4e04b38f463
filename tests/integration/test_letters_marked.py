"""Which letters the pipeline marks redriven when a refused event comes corrected
(`sinks.writer.mark_letters_corrected`), written through the real writer into chdb."""

from __future__ import annotations

import time

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
    assert written_letters(tmp_path, [harness.writer.batch]) == [(0, "redriven"), (2, "open")]


def written_letters(tmp_path, batches) -> list[tuple[int, str]]:
    """(offset, status) of the letters in the store once the batches are written, in order, by the
    real writer into chdb."""
    client = connect(None, tmp_path / "data")
    try:
        migrate(client)
        writer = ClickHouseWriter(client)
        for batch in batches:
            writer.write(batch)
        writer.executor.shutdown()
        return sorted((x["offset"], x["status"]) for x in dead_letters(client, Scope.everything(),
                                                                        include_redriven=True))
    finally:
        client.close()


def test_a_corrected_event_delivered_again_after_a_crash_marks_its_letter_and_not_a_bad_copy_after_it(tmp_path):
    """Found by review: the corrected event delivered again after a crash (its case's changelog
    record written, the batch's rows and marking lost) is a copy of an event its case holds, and
    marked nothing: its letter stayed 待处理 for good. It marks the letter before it, as its first
    delivery would have; a bad copy that came after the event, received before the redelivery,
    stays open."""
    bad = orjson.dumps({**HISTORY[0], "occurred_at": "2026-03-02 10:00"})  # refused at 0
    late = orjson.dumps({**HISTORY[0], "occurred_at": "2026-03-02 10:00:00"})  # a bad copy at 5, after it

    def run(units, table=None):
        harness = Harness()
        if table is not None:
            harness.table.data = dict(table)
        for unit in units:
            harness.run(unit)
        return harness

    first = run([Unit("case-events", 1, [record(0, bad)])])
    lost = run([Unit("case-events", 1, [record(2, HISTORY[0])])], first.table.data)  # its changelog record
    after = run([Unit("case-events", 1, [record(5, late)])], lost.table.data)         # kept, its batch lost
    time.sleep(0.01)  # the redelivery starts after that letter was received (the store keeps milliseconds)
    again = run([Unit("case-events", 1, [record(2, HISTORY[0])])], after.table.data)  # delivered again
    batches = [first.writer.batch, after.writer.batch, again.writer.batch]
    assert written_letters(tmp_path, batches) == [(0, "redriven"), (5, "open")]
