"""The batching writer's order of tables, and what it writes of a case whose rows the store refuses."""

from __future__ import annotations

from datetime import datetime, timezone

from sinks.writer import Batch, ClickHouseWriter, Correction, in_write_order

SETTLED = datetime(2026, 3, 5, tzinfo=timezone.utc)


class Store:
    """A client that records each insert and refuses the alert rows named `refused`."""

    def __init__(self, refused: set[str]):
        self.refused = refused
        self.inserts: list[tuple[str, list[dict]]] = []

    def command(self, sql: str):
        return 1

    def insert_arrow(self, table: str, data) -> None:
        rows = data.to_pylist()
        if any(row.get("alert_id") in self.refused for row in rows):
            raise RuntimeError("refused")
        self.inserts.append((table, rows))


def alert(alert_id: str, case_id: str) -> dict:
    return {"alert_id": alert_id, "rule": "overdue", "severity": "red", "case_id": case_id, "item_code": "X",
            "department": "D", "version": 1, "status": "open", "evidence": "{}", "title": "t"}


def case(case_id: str) -> dict:
    return {"case_id": case_id, "item_code": "X", "department": "D", "status": "closed", "event_count": 2,
            "revision": 3, "settled_since": SETTLED}


def test_case_rows_are_written_after_the_other_rows_of_their_batch():
    rows = {"cases": [case("A")], "alerts": [alert("a1", "A")], "case_events": [{"case_id": "A"}]}
    assert [table for table, _ in in_write_order(rows)] == ["alerts", "case_events", "cases"]


def test_a_case_whose_rows_the_store_refuses_is_not_written_as_settled():
    """The refused alert row goes to the dead letters; the case row written beside it must not say
    the case settled, or a new process would trust the store to hold the case whole."""
    store = Store(refused={"bad"})
    writer = ClickHouseWriter(store)
    batch = Batch()
    for table, row in (("cases", case("A")), ("cases", case("B")), ("alerts", alert("bad", "A")),
                       ("alerts", alert("good", "B"))):
        batch.add(table, row)
    refused = writer.isolate(batch)
    assert [(item.table, item.row["alert_id"]) for item in refused] == [("alerts", "bad")]
    assert [table for table, _ in store.inserts][-1] == "cases"
    written = {row["case_id"]: row["settled_since"] for table, rows in store.inserts if table == "cases"
               for row in rows}
    assert written == {"A": None, "B": SETTLED}
    writer.executor.shutdown()


def test_a_store_that_cannot_write_now_keeps_the_batch_rather_than_refusing_its_rows():
    """Found by a black-box test: with the data directory's disk full, every insert failed with
    NOT_ENOUGH_SPACE while `SELECT 1` answered, so the batch was bisected row by row into
    `store_refused` dead letters (their offsets then committed): the outage's events and alerts
    were missing from the store for good. A store that cannot write keeps the batch buffered."""
    import pytest

    from sinks.writer import StoreUnavailable, store_cannot_write

    class Full(Store):
        def insert_arrow(self, table, data):
            raise RuntimeError("Code: 243. DB::Exception: Cannot reserve 1.00 MiB, not enough space. "
                               "(NOT_ENOUGH_SPACE) (version 26.9.1)")

    writer = ClickHouseWriter(Full(set()))
    batch = Batch()
    for table, row in (("cases", case("A")), ("alerts", alert("a1", "A")), ("alerts", alert("a2", "A"))):
        batch.add(table, row)
    with pytest.raises(StoreUnavailable, match="NOT_ENOUGH_SPACE"):
        writer.isolate(batch)
    assert batch.count == 3 and len(batch.rows["alerts"]) == 2  # kept, to be tried again
    writer.executor.shutdown()
    assert store_cannot_write(OSError(28, "No space left on device"))
    # A query's memory limit: halved on while there is more than a row to halve (review).
    memory = RuntimeError("Code: 241. DB::Exception: Memory limit (for query) exceeded")
    assert not store_cannot_write(memory, 500) and store_cannot_write(memory, 1)
    from clickhouse_connect.driver.exceptions import OperationalError
    assert store_cannot_write(OperationalError("Error HTTPConnectionPool ... executing HTTP request attempt 1"))
    # A row the store refuses for what it holds is refused, as before.
    assert not store_cannot_write(RuntimeError("Code: 53. DB::Exception: Type mismatch in IN or VALUES section"))
    assert not store_cannot_write(OverflowError("Python int too large to convert to C long"))



def test_letters_of_corrected_events_are_marked_after_the_rows_and_not_for_an_event_the_store_refused():
    """A refused event that came since, corrected, has its letters marked once the batch's rows are
    written (`mark_letters_corrected`); one whose own row the store refused corrected nothing."""
    class Marks(Store):
        def __init__(self):
            super().__init__(refused=set())
            self.marked: list[list] = []

        def command(self, sql: str, parameters=None):
            if parameters is not None:
                self.marked.append([key[:2] for key in parameters["keys"]])
                assert self.inserts, "marked before the rows that correct the letters were written"
            return 1

        def insert_arrow(self, table, data):
            if any(row.get("event_id") == "refused-row" for row in data.to_pylist()):
                raise RuntimeError("Code: 27. DB::Exception: Cannot parse input (CANNOT_PARSE_INPUT_ASSERTION_FAILED)")
            super().insert_arrow(table, data)

    store = Marks()
    writer = ClickHouseWriter(store)
    batch = Batch()
    batch.add("case_events", {"case_id": "A", "event_id": "e1"})
    batch.add("case_events", {"case_id": "B", "event_id": "refused-row"})
    batch.correct("A", "e1", Correction(SETTLED, 0, 5, SETTLED))
    batch.correct("B", "refused-row", Correction(SETTLED, 0, 6, SETTLED))
    writer.write(Batch(rows={"case_events": [{"case_id": "C", "event_id": "e3"}]}, count=1))
    assert store.marked == []  # nothing corrected: no statement
    refused = writer.isolate(batch)
    assert [item.row["event_id"] for item in refused] == ["refused-row"]
    assert store.marked == [[("A", "e1")]]
    writer.executor.shutdown()


def test_a_store_that_refuses_writes_then_takes_them_is_said_to_write_again(caplog, monkeypatch):
    """An operator saw a flood of errors while the store refused writes, and nothing when it took
    them again (found by a black-box test): the recovery is said, with how many attempts failed."""
    import asyncio
    import logging
    from types import SimpleNamespace

    from streams.write_step import WriteStep

    class ReadOnly(Store):
        def __init__(self):
            super().__init__(refused=set())
            self.failing = 2

        def insert_arrow(self, table, data):
            if self.failing:
                self.failing -= 1
                raise RuntimeError("Code: 164. DB::Exception: Table is in readonly mode (READONLY)")
            super().insert_arrow(table, data)

    async def nothing():
        return None

    # The pipeline's repeat limit (`streams.log_limits`, installed by whatever ran the pipeline before
    # in this process) would hold back or annotate the line: not what this test is about.
    monkeypatch.setattr(logging.getLogger("streams.write_step"), "filters", [])
    writer = ClickHouseWriter(ReadOnly(), isolate_after=10)
    step = WriteStep(writer, SimpleNamespace(send=nothing), refused=None)
    writer.add("alerts", alert("a1", "A"))

    async def run():
        return [await step.flush() for _ in range(3)]

    with caplog.at_level(logging.WARNING, logger="streams.write_step"):
        assert asyncio.run(run()) == [False, False, True]
    assert writer.last_error is None
    said = [r.getMessage() for r in caplog.records if "writes again" in r.getMessage()]
    assert said == ["ClickHouse writes again: 1 rows written after 2 failed attempts"]
    writer.executor.shutdown()
