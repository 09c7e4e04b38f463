"""A batching, at-least-once sink (after quix-streams' BatchingSink).

Rows are buffered per table together with the acknowledgements they stand
for. `flush` writes every buffered table (one Arrow insert each) and only then
runs the acknowledgements, which is what lets the stream commit offsets. If a
write fails, nothing is acknowledged, the batch stays buffered and the next
flush retries it; the tables are keyed so that writing a batch twice changes
nothing. `over_capacity` tells the stream to wait (backpressure).
"""

from __future__ import annotations

import asyncio
import logging
import re
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Awaitable, Callable, Mapping

from alerts.letters import HOLDS_ITS_CASE
from sinks.rows import to_arrow

log = logging.getLogger(__name__)

Ack = Callable[[], Any]


@dataclass
class Batch:
    rows: dict[str, list[dict[str, Any]]] = field(default_factory=dict)
    acks: list[Ack] = field(default_factory=list)
    after_write: list[Callable[[], Awaitable[None] | None]] = field(default_factory=list)
    count: int = 0
    failed_attempts: int = 0
    # (case_id, event_id) of refused events that came since, corrected: their letters are marked
    # once the batch's rows are written (`mark_letters_corrected`)
    corrected: dict[tuple[str, str], "Correction"] = field(default_factory=dict)

    def add(self, table: str, row: dict[str, Any]) -> None:
        self.rows.setdefault(table, []).append(row)
        self.count += 1

    def correct(self, case_id: str, event_id: str, correction: "Correction") -> None:
        self.corrected.setdefault((case_id, event_id), correction)


@dataclass(frozen=True)
class Correction:
    """Where and when a refused event came corrected: the letters it replaces are those received
    before `since` (the start of the unit that brought it), or before it in its partition."""
    at: datetime  # when it was applied (the letters' `redriven_at`)
    partition: int
    offset: int
    since: datetime


_LETTER_FIELDS = ("letter_id, reason, detail, topic, partition, offset, key, case_id, event_id, department, region, "
                  "payload, payload_encoding, received_at")
LETTERS_CORRECTED = f"""INSERT INTO dead_letters ({_LETTER_FIELDS}, status, redriven_at, version)
SELECT {_LETTER_FIELDS}, 'redriven', {{at:DateTime64(3, 'UTC')}}, version + 1 FROM dead_letters FINAL
WHERE status = 'open' AND reason IN {{holding:Array(String)}} AND case_id IN {{cases:Array(String)}}
  AND arrayExists(k -> k.1 = assumeNotNull(case_id) AND k.2 = assumeNotNull(event_id)
                       AND ((partition = k.3 AND offset < k.4) OR received_at < k.5),
                  {{keys:Array(Tuple(String, String, Int32, Int64, DateTime64(3, 'UTC')))}})"""


# A letter marked by a command (`dlq redrive`, an import, `dlq close`): the new version is made from
# the letter as the store holds it at that moment, and only if it is still open, in one statement
# (before, from the letter as the command had read it, minutes before its pipeline run ended: a
# close and a redrive of one letter each wrote version 2, the later insert won, and the close that
# had said "closed" was lost; found by review).
LETTERS_REDRIVEN = f"""INSERT INTO dead_letters ({_LETTER_FIELDS}, status, redriven_at, version)
SELECT {_LETTER_FIELDS}, 'redriven', {{at:DateTime64(3, 'UTC')}}, version + 1 FROM dead_letters FINAL
WHERE status = 'open' AND letter_id IN {{ids:Array(String)}}"""
LETTERS_CLOSED = f"""INSERT INTO dead_letters ({_LETTER_FIELDS}, status, version, closed_at, closed_by, closed_reason)
SELECT {_LETTER_FIELDS}, 'closed', version + 1, {{at:DateTime64(3, 'UTC')}}, {{by:String}}, {{reason:String}}
FROM dead_letters FINAL WHERE status = 'open' AND letter_id IN {{ids:Array(String)}}"""


def mark_letters_redriven(client, letter_ids: list[str], at: datetime) -> None:
    """Mark `redriven` those of these letters still open (replaced by a corrected event)."""
    if letter_ids:
        client.command(LETTERS_REDRIVEN, parameters={"ids": sorted(set(letter_ids)), "at": at})


def close_letters(client, letter_ids: list[str], at: datetime, by: str, reason: str) -> None:
    """Close those of these letters still open: by an operator, `by`, for `reason` (`dlq close`)."""
    if letter_ids:
        client.command(LETTERS_CLOSED, parameters={"ids": sorted(set(letter_ids)), "at": at, "by": by,
                                                   "reason": reason})


def mark_letters_corrected(client, corrected: Mapping[tuple[str, str], Correction]) -> None:
    """Mark `redriven` the open letters of refused events that their cases now hold: corrected and
    sent again under their ids, by `sunlight dlq redrive` or by the source system itself (before,
    only the redrive command marked them, and it cannot while a worker holds an embedded store:
    the letters of events corrected through Kafka stayed 待处理 for good, in `dlq list` and on the
    wall's dead-letter panels; found by a black-box test with other clients). A letter that holds
    no case (a conflicting copy names an event its case holds) is not one of them, nor a letter of
    a bad copy that came after the correction (written in the same batch: found by review)."""
    if not corrected:
        return
    client.command(LETTERS_CORRECTED, parameters={
        "at": max(c.at for c in corrected.values()), "holding": sorted(HOLDS_ITS_CASE),
        "cases": sorted({case_id for case_id, _ in corrected}),
        "keys": sorted((case_id, event_id, c.partition, c.offset, c.since)
                       for (case_id, event_id), c in corrected.items())})


@dataclass
class RefusedRow:
    table: str
    row: dict[str, Any]
    error: str


class StoreUnavailable(RuntimeError):
    """The batch could not be written now (not one row, or the store says it cannot write at all)."""


# ClickHouse error codes that say the store cannot write now, whatever the rows: its disk is full,
# its memory or its parts are at a limit, it is read-only, busy or cut off. A row refused with one
# of these is not refused for good: the batch stays buffered and is tried again (before, a full
# disk had every row of an outage bisected into `store_refused` dead letters, their offsets
# committed: events and alerts missing from the store; found by a black-box test).
STORE_STATE_CODES = frozenset({
    74, 75, 76,  # CANNOT_READ_FROM_FILE_DESCRIPTOR, CANNOT_WRITE_TO_FILE_DESCRIPTOR, CANNOT_OPEN_FILE
    164, 202, 209, 210,  # READONLY, TOO_MANY_SIMULTANEOUS_QUERIES, SOCKET_TIMEOUT, NETWORK_ERROR
    236, 242, 243, 252,  # ABORTED, TABLE_IS_READ_ONLY, NOT_ENOUGH_SPACE, TOO_MANY_PARTS
    319, 425, 999, 1001,  # UNKNOWN_STATUS_OF_INSERT, SYSTEM_ERROR, KEEPER_EXCEPTION, STD_EXCEPTION (filesystem errors)
    60, 81, 497, 516,  # UNKNOWN_TABLE, UNKNOWN_DATABASE, ACCESS_DENIED, AUTHENTICATION_FAILED: the store's set-up
})
# Codes a smaller insert may not meet (a query's memory or time limit): halved on, and the store's
# state only when one row alone still meets them (review: a batch halving would write was held).
SIZE_CODES = frozenset({159, 241})  # TIMEOUT_EXCEEDED, MEMORY_LIMIT_EXCEEDED
_CODE = re.compile(r"\bCode: (\d+)\b")
_NO_SPACE = ("no space left on device", "not enough space")


def _code(error: BaseException) -> int | None:
    """ClickHouse's error code: the client's own attribute (both drivers set it), else its text's."""
    code = getattr(error, "code", None)
    if isinstance(code, int):
        return code
    found = _CODE.search(str(error))
    return int(found.group(1)) if found else None


def store_cannot_write(error: BaseException, rows: int = 1) -> bool:
    """Whether an insert of `rows` rows failed because the store cannot write now, not because it
    refuses these rows: a code of the store's state, a transport failure (the client's
    OperationalError, a connection or a timeout), or, with no code, a full disk."""
    from clickhouse_connect.driver.exceptions import OperationalError

    code = _code(error)
    if code in STORE_STATE_CODES or (code in SIZE_CODES and rows <= 1):
        return True
    if isinstance(error, (OperationalError, ConnectionError, TimeoutError)):
        return True
    return code is None and (isinstance(error, OSError) or any(w in str(error).lower() for w in _NO_SPACE))


def in_write_order(rows: dict[str, list]) -> list[tuple[str, list]]:
    """A batch's tables in the order they are written: the cases' rows last. A case row then
    stands for every other row of its batch: a process that died between two inserts left no
    case row whose events and alerts are missing, which is what lets a new process on the same
    store trust a settled case row without reading the case (`sinks.case_history`). When the
    store refuses some rows of a case (`isolate`), its case rows are written as not settled."""
    return sorted(rows.items(), key=lambda item: item[0] == "cases")


def unsettle(case_rows: list[dict[str, Any]], case_ids: set[str]) -> None:
    """The store will not hold these cases whole (some of their rows were refused): their case
    rows must not say they settled, or a new process on the store would leave them there
    (`sinks.queries.settled_cases`) instead of loading them."""
    for row in case_rows:
        if row.get("case_id") in case_ids:
            row["settled_since"] = None


class ClickHouseWriter:
    """Writes batches with a dedicated thread (one client, used by one thread at a time)."""

    def __init__(self, client, max_rows: int = 5000, max_pending_rows: int = 50000, isolate_after: int = 3):
        self.client = client
        self.isolate_after = isolate_after
        self.max_rows = max_rows
        self.max_pending_rows = max_pending_rows
        self.batch = Batch()
        self.executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="clickhouse-writer")
        self.lock = threading.Lock()
        self.written_rows = 0
        self.in_flight = 0
        self.failures = 0
        self.last_error: str | None = None

    def add(self, table: str, row: dict[str, Any]) -> None:
        self.batch.add(table, row)

    def corrected(self, case_id: str, event_id: str, correction: Correction) -> None:
        """A refused event came since, corrected: its letters are marked with the batch's write."""
        self.batch.correct(case_id, event_id, correction)

    def on_written(self, ack: Ack) -> None:
        self.batch.acks.append(ack)

    @property
    def pending_rows(self) -> int:
        """Rows not yet written: buffered, and taken for a write that has not succeeded yet."""
        return self.batch.count + self.in_flight

    @property
    def full(self) -> bool:
        return self.batch.count >= self.max_rows

    @property
    def over_capacity(self) -> bool:
        return self.pending_rows >= self.max_pending_rows

    def write(self, batch: Batch) -> float:
        started = time.perf_counter()
        with self.lock:
            for table, rows in in_write_order(batch.rows):
                if rows:
                    self.client.insert_arrow(table, to_arrow(table, rows))
            mark_letters_corrected(self.client, batch.corrected)  # after the events that correct them
        return time.perf_counter() - started

    def isolate(self, batch: Batch) -> list[RefusedRow]:
        """Write what can be written, bisecting down to the rows the store refuses.

        Returns the refused rows (removed from `batch.rows`). Raises `StoreUnavailable`, with
        the batch untouched, if no row at all could be written, or if an insert failed because the
        store cannot write now (`store_cannot_write`: a full disk refuses every row, one by one)."""
        refused: list[RefusedRow] = []
        written = 0
        with self.lock:
            try:
                self.client.command("SELECT 1")  # a store that is down fails here, not row by row
            except Exception as exc:
                raise StoreUnavailable(str(exc)[:2000]) from None
            for table, rows in in_write_order(batch.rows):
                if table == "cases":  # written last: a case some of whose rows were refused has not
                    unsettle(rows, {str(item.row.get("case_id")) for item in refused})  # settled whole
                stack = [rows]
                while stack:
                    part = stack.pop()
                    try:
                        self.client.insert_arrow(table, to_arrow(table, part))
                        written += len(part)
                    except Exception as exc:
                        if store_cannot_write(exc, len(part)):  # not these rows: the store (what is written
                            raise StoreUnavailable(str(exc)[:2000]) from None  # is written again: at least once)
                        if len(part) > 1:
                            middle = len(part) // 2
                            stack += [part[middle:], part[:middle]]
                        else:
                            refused.append(RefusedRow(table, part[0], str(exc)[:2000]))
            if written:
                lost = {(item.row.get("case_id"), item.row.get("event_id")) for item in refused
                        if item.table == "case_events"}  # a corrected event the store refused corrects nothing
                try:
                    mark_letters_corrected(self.client, {k: c for k, c in batch.corrected.items() if k not in lost})
                except Exception as exc:  # the letters stay open: said, not a reason to hold the batch
                    log.warning("could not mark %d corrected dead letters: %s", len(batch.corrected), exc)
        if written == 0:
            raise StoreUnavailable(refused[0].error if refused else "nothing to write")
        for item in refused:
            rows = batch.rows[item.table]
            rows.remove(item.row)
            batch.count -= 1
        return refused

    def take(self) -> Batch:
        """The buffered batch, for a write; its rows count as pending until `written` or `put_back`."""
        batch, self.batch = self.batch, Batch()
        self.in_flight = batch.count
        return batch

    def written(self, batch: Batch) -> None:
        self.in_flight = 0
        self.written_rows += batch.count

    def put_back(self, batch: Batch) -> None:
        """A failed batch goes back in front of anything added since."""
        self.in_flight = 0
        newer = self.batch
        for table, rows in newer.rows.items():
            batch.rows.setdefault(table, []).extend(rows)
        batch.acks.extend(newer.acks)
        batch.after_write.extend(newer.after_write)
        batch.corrected.update(newer.corrected)
        batch.count += newer.count
        batch.failed_attempts += 1
        self.batch = batch

    async def run(self, fn: Callable[..., Any], *args: Any) -> Any:
        """`fn(client, *args)` on the writer's thread, under its lock (one client, used by one
        thread at a time): how the pipeline and the demo read the store, or write beside the batches."""
        def locked() -> Any:
            with self.lock:
                return fn(self.client, *args)

        return await asyncio.get_running_loop().run_in_executor(self.executor, locked)

    def ping(self) -> None:
        """Ask the store `SELECT 1` (on the writer's thread: one client, one thread at a time)."""
        with self.lock:
            self.client.command("SELECT 1")

    def close(self) -> None:
        self.executor.shutdown(wait=True)


class StoreReader:
    """A client of its own, on a thread of its own, for the reads the stream waits on (cases read
    back from the store): they do not queue behind the writer's inserts. chdb lets one process
    hold several clients of its one engine, each used by one thread at a time."""

    def __init__(self, client):
        self.client = client
        self.executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="clickhouse-reader")

    async def run(self, fn: Callable[..., Any], *args: Any) -> Any:
        """`fn(client, *args)` on the reader's thread."""
        return await asyncio.get_running_loop().run_in_executor(self.executor, fn, self.client, *args)

    def close(self) -> None:
        self.executor.shutdown(wait=True)
        self.client.close()
