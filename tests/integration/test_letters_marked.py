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
