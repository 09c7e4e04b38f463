"""The write step: a batching sink flushed before offsets are committed.

The steps of a unit buffer their rows in the writer's batch (`sinks.writer`) and register what
must follow the write: publishing the alerts and notices the rows hold, letting go the cases
they settle (`after_write`), and acknowledging the unit's messages (`acks`, which let Faust commit
their offsets). `flush` writes the batch, one insert per table, on the writer's thread; then
`finish_written` runs the callbacks and the acknowledgements of every written batch, oldest
first. A store that refuses some rows of a batch and takes the rest has those rows handed to
`refused` (the pipeline keeps them as dead letters); a store that is down keeps the batch for the
next flush, its messages unacknowledged.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Awaitable, Callable

from sinks.writer import Batch, ClickHouseWriter
from streams import metrics

log = logging.getLogger(__name__)


class WriteStep:
    def __init__(self, writer: ClickHouseWriter, outbox, refused: Callable[[object], Awaitable[None]]):
        self.writer = writer
        self.outbox = outbox  # faust_patches.Outbox: the changelog records and tombstones the callbacks make
        self.refused = refused  # a row the store refused while it took the rest of its batch
        self.lock = asyncio.Lock()
        # Written batches whose alerts are not all published yet, or whose messages are not acked.
        self.unfinished: list[Batch] = []

    async def flush(self) -> bool:
        """Write what is buffered, then publish its alerts and acknowledge its messages.

        A batch is acknowledged only once its rows are written and every alert of it is
        published: a batch whose publishing fails stays, written, and is finished first by the
        next flush (its rows are not written twice)."""
        async with self.lock:
            if not await self.finish_written():
                return False
            batch = self.writer.take()
            if batch.count == 0 and not batch.acks and not batch.after_write:
                return True
            loop = asyncio.get_running_loop()
            try:
                seconds = await loop.run_in_executor(self.writer.executor, self.writer.write, batch)
            except Exception as exc:
                self.writer.failures += 1
                self.writer.last_error = str(exc)
                metrics.SINK_FAILURES.inc()
                refused = None
                if batch.failed_attempts + 1 >= self.writer.isolate_after:
                    try:  # is it the store, or some rows it refuses?
                        refused = await loop.run_in_executor(self.writer.executor, self.writer.isolate, batch)
                    except Exception as again:
                        log.error("ClickHouse is unavailable, %d rows kept for retry: %s", batch.count, again)
                if refused is None:
                    self.writer.put_back(batch)
                    log.error("ClickHouse write failed, %d rows kept for retry: %s", batch.count, exc)
                    return False
                for item in refused:
                    await self.refused(item)
                await self.outbox.send()
                seconds = 0.0
            if self.writer.last_error is not None and batch.failed_attempts:
                log.warning("ClickHouse writes again: %d rows written after %d failed attempts", batch.count,
                            batch.failed_attempts)
            self.writer.last_error = None  # written (or its refused rows set aside): the store answers
            metrics.SINK_FLUSH_SECONDS.observe(seconds)
            if batch.count:  # a flush of acknowledgements only writes no batch
                metrics.SINK_BATCH_ROWS.observe(batch.count)
            for table, rows in batch.rows.items():
                metrics.SINK_ROWS.labels(table).inc(len(rows))
            self.writer.written(batch)
            self.unfinished.append(batch)
            finished = await self.finish_written()
            metrics.SINK_PENDING_ROWS.set(self.writer.pending_rows)
            return finished

    async def finish_written(self) -> bool:
        """Publish the alerts of written batches, then acknowledge their messages, oldest first."""
        while self.unfinished:
            batch = self.unfinished[0]
            while batch.after_write:
                try:
                    await batch.after_write[0]()
                except Exception as exc:
                    metrics.PUBLISH_FAILURES.inc()
                    log.error("publishing a written alert failed, %d left to publish; its messages stay "
                              "unacknowledged until it is published: %s", len(batch.after_write), exc)
                    return False
                batch.after_write.pop(0)
            for ack in batch.acks:
                ack()
            self.unfinished.pop(0)
        # The tombstones of the cases and tickets the callbacks let go: sent now, not left for a
        # timer that a stop may not wait for (the changelog would keep cases let go).
        await self.outbox.send()
        return True
