"""Reading back from the store what the tables let go: settled cases' states, their tickets, and the
statuses of finished notices (`alerts.retention`; docs/architecture.md, "Settled cases").

A unit that needs a case the table no longer holds waits for it to be read back. While the
store cannot be read, the read is tried again (doubling the wait, up to 30 s): a case taken for
new would be judged (or its tickets started) without its history. A stop meanwhile leaves the
unit uncommitted, to be delivered again.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Callable

from alerts.state import CaseState
from streams import metrics

log = logging.getLogger(__name__)


class StoreReadBack:
    def __init__(self, writer, retry_seconds: float, stopping: Callable[[], bool], ticket_policy: Callable):
        self.writer = writer  # sinks.writer.ClickHouseWriter: its thread reads when there is no reader
        # Reads beside the writer (sinks.writer.StoreReader), set once the store is open.
        self.reader = None
        self.retry_seconds = retry_seconds
        self.stopping = stopping
        self.ticket_policy = ticket_policy  # the catalog's, at the moment of the read

    async def cases(self, case_ids: list[str]) -> dict[str, CaseState]:
        """The states the store holds of these cases (let go earlier)."""
        from sinks.case_history import states_of

        states = await self._read(states_of, case_ids)
        metrics.CASES_BROUGHT_BACK.inc(len(states))
        return states

    async def held(self, case_ids: list[str]) -> dict[str, CaseState]:
        """What the store holds of these cases still in hand (not brought back: checked)."""
        from sinks.case_history import states_of

        return await self._read(states_of, case_ids)

    async def tickets(self, case_ids: list[str]) -> dict:
        """The tickets the store holds of these cases (let go with them earlier)."""
        from streams.tickets import tickets_in_store

        return await self._read(tickets_in_store, case_ids, self.ticket_policy())

    async def notice_statuses(self, notice_ids: list[str]) -> dict[str, tuple[str, int]]:
        """The (status, row version) the store's notice log holds of these notices (let go from the table)."""
        from sinks.queries import notice_statuses

        return await self._read(notice_statuses, notice_ids)

    async def _read(self, read, case_ids: list[str], *args):
        """`read(client, case_ids, *args)` on the store's reader, until the store answers."""
        from clickhouse_connect.driver.exceptions import DatabaseError, OperationalError

        loop = asyncio.get_running_loop()
        delay = self.retry_seconds
        while True:
            try:
                return await (self.reader or self.writer).run(read, case_ids, *args)
            except (DatabaseError, OperationalError, OSError) as exc:  # the store; anything else fails the unit
                metrics.CASE_READ_FAILURES.inc()
                # The store's last error: a stop does not wait for this unit (streams.runtime).
                self.writer.last_error = str(exc)
                log.error("could not read %d cases back from the store (tried again in %.1f s): %s",
                          len(case_ids), delay, exc)
                until = loop.time() + delay
                while loop.time() < until:
                    if self.stopping():  # the unit stays uncommitted, and is delivered again
                        raise asyncio.CancelledError()
                    await asyncio.sleep(min(0.25, delay))
                delay = min(2 * delay, 30.0)
