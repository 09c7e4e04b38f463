"""The worker's HTTP endpoints, and the gauges that describe its state.

`sunlight worker` serves, on ``SUNLIGHT_METRICS_PORT`` (default 9464; 0 turns it off, so that
several workers can share a host, each with a port of its own):

- ``/metrics``: every metric of `streams.metrics` (Prometheus' text format);
- ``/healthz``: 200 while the process is alive (a liveness probe);
- ``/readyz``: 200 when the worker holds partitions, its tables are recovered, and its Kafka
  broker and its store answer; else 503 with the reason (a readiness probe).

The short, many commands (`replay`, `import`, `demo`) serve nothing.

`Watch` sets the gauges that describe the pipeline's state (open cases, tickets by status, the
due-timer backlog, consumer lag, office hours, readiness) on a timer, from what the pipeline
holds: the agents only count (`streams.metrics`), they never compute a gauge. Counting open cases
and tickets is incremental: the pipeline notes the cases it wrote (`touched_cases`,
`touched_tickets`), and the watch classifies those; it reads a whole table only after a
rebalance.
"""

from __future__ import annotations

import asyncio
import errno
import logging
import re
from collections import Counter
from datetime import datetime
from typing import Callable, Iterable

from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from alerts.calendar import DEFAULT_OFFICE_HOURS, is_office_hours
from sinks.clickhouse import scrub
from streams import metrics
from streams.app import partition_of
from streams.broker import broker_answers
from streams.clock import wall_now
from streams.codec import stored_case_status
from streams.faust_patches import committed_offsets, recovery_done
from streams.ticket_codec import stored_ticket_statuses

log = logging.getLogger(__name__)

STORE_CHECK_TIMEOUT = 5.0
BROKER_CHECK_TIMEOUT = 5.0
LAG_REQUEST_TIMEOUT = 5.0  # each broker request of the lag: the partitions' ends, a partition's log start
OPEN_STATUSES = ("open", "suspended")
TICKET_STATUSES = ("open", "replied", "returned", "closed", "withdrawn")  # settling tickets are not yet tickets


# -- counting what the pipeline holds ---------------------------------------------------------------


class Census:
    """Counts of a table's keys by a label (a status), kept up to date incrementally: `touch` the
    keys written, `refresh` classifies them again; `rebuild` classifies every key (after a
    rebalance)."""

    def __init__(self, classify: Callable[[str], Iterable[str]]):
        self.classify = classify  # key -> its labels (a case's status; a case's tickets' statuses)
        self.labels: dict[str, tuple[str, ...]] = {}
        self.counts: Counter = Counter()

    def _set(self, key: str, labels: tuple[str, ...]) -> None:
        old = self.labels.pop(key, ())
        self.counts.subtract(old)
        if labels:
            self.labels[key] = labels
            self.counts.update(labels)

    def refresh(self, keys: Iterable[str]) -> None:
        for key in keys:
            self._set(key, tuple(self.classify(key)))

    async def rebuild(self, keys: Iterable[str], chunk: int = 2000) -> None:
        self.labels.clear()
        self.counts.clear()
        for n, key in enumerate(list(keys), 1):
            self._set(key, tuple(self.classify(key)))
            if n % chunk == 0:
                await asyncio.sleep(0)  # a large table must not hold the event loop

    def count(self, *labels: str) -> int:
        return sum(self.counts.get(label, 0) for label in labels)


# -- the watch ----------------------------------------------------------------------------------------


class Watch:
    """Sets the state gauges on a timer, and knows whether the worker is ready."""

    def __init__(self, pipeline, interval: float = 2.0, lag_interval: float = 5.0, store_interval: float = 5.0):
        self.pipeline = pipeline
        self.interval = interval
        self.lag_interval = lag_interval
        self.store_interval = store_interval
        self.cases = Census(self._case_labels)
        self.tickets = Census(self._ticket_labels)
        self.counted_for: frozenset | None = None  # the partitions the censuses were rebuilt for
        self.store_ok: bool | None = None  # None: not checked yet
        self.store_error = ""
        self._store_check: asyncio.Future | None = None
        self.broker_ok: bool | None = None  # None: not checked yet
        self.broker_error = ""
        self.ask_broker = broker_answers  # (bootstrap, timeout) -> raises unless a broker answers
        self.lag_partitions: set[tuple[str, str]] = set()
        self.log_starts: dict = {}  # TopicPartition -> the first offset of its log, while held
        self._case_partitions: set[int] = set()  # the case-events partitions held, as of this count
        self._judge = None
        self.office_hours = DEFAULT_OFFICE_HOURS
        self._task: asyncio.Task | None = None

    # readiness ----------------------------------------------------------------------------------------

    def readiness(self) -> tuple[bool, str]:
        """(ready, reason): broker reachable, partitions assigned, tables recovered, store reachable and
        writing (its last write, or read of cases let go, did not fail).

        A worker whose broker went away keeps its partitions (no rebalance reaches it) and takes
        nothing: it is not ready, whatever it held before."""
        pipeline = self.pipeline
        if pipeline.failure is not None:
            return False, f"the worker failed: {pipeline.failure}"
        if pipeline.stopping:
            return False, "the worker is stopping"
        if pipeline.draining:  # it said ready for the 30 s it took what its broker held (found by a black-box test)
            return False, "the worker is stopping (taking the events its own broker holds first)"
        if self.broker_ok is False:
            return False, f"the Kafka broker is unreachable: {self.broker_error}"
        if not pipeline.assigned:
            return False, "no partitions assigned (yet)"
        if not recovery_done(pipeline.app) or not pipeline.index_ready:
            return False, "tables are being recovered"
        if self.broker_ok is None:
            return False, "the Kafka broker has not been checked yet"
        if self.store_ok is None:
            return False, "the store has not been checked yet"
        if not self.store_ok:
            return False, f"the store is unreachable: {self.store_error}"
        refused = pipeline.writer.last_error
        if refused is not None:
            # It answers SELECT 1 but refuses the writes (read-only, a full disk): the rows wait and
            # nothing is committed (before, /readyz said ready all the while, and the SinkFailing
            # runbook sent the operator to it; found by a black-box test).
            return False, f"the store fails to write or read back: {self._said(refused)}"
        if not self.counted():
            # Ready with sunlight_open_cases still NaN (for up to the watch's interval) read as a
            # worker that holds cases it cannot count (found by a black-box test).
            return False, "the open cases and tickets are being counted"
        return True, "ready"

    async def check_store(self) -> None:
        """Ask the store `SELECT 1` on the writer's thread (one client, one thread at a time); a
        check still waiting (behind a slow write) is not asked again."""
        if self._store_check is not None and not self._store_check.done():
            return
        writer = self.pipeline.writer
        self._store_check = asyncio.get_running_loop().run_in_executor(writer.executor, writer.ping)
        try:
            await asyncio.wait_for(asyncio.shield(self._store_check), STORE_CHECK_TIMEOUT)
            self.store_ok, self.store_error = True, ""
        except asyncio.TimeoutError:
            self.store_ok, self.store_error = False, f"no answer to SELECT 1 within {STORE_CHECK_TIMEOUT:.0f} s"
        except Exception as exc:
            self.store_ok, self.store_error = False, self._said(str(exc) or repr(exc))

    def _said(self, error: str) -> str:
        """A store's error as /readyz says it: unauthenticated, so the server URL's password never
        goes out in a reason; its system cause first."""
        server = self.pipeline.settings.clickhouse
        return _cause_first(scrub(error, server) if server else error)

    async def check_broker(self) -> None:
        """Ask a broker of the bootstrap servers for its api versions and metadata, with a client of
        its own (the consumer's connections belong to its own thread and retry for ever)."""
        try:
            await self.ask_broker(self.pipeline.bootstrap, BROKER_CHECK_TIMEOUT)
            self.broker_ok, self.broker_error = True, ""
        except asyncio.TimeoutError:
            self.broker_ok, self.broker_error = False, f"no answer within {BROKER_CHECK_TIMEOUT:.0f} s"
        except Exception as exc:
            text = str(exc) or repr(exc)
            self.broker_ok, self.broker_error = False, _cause_first(text)

    # gauges -----------------------------------------------------------------------------------------------

    def _case_labels(self, case_id: str) -> tuple[str, ...]:
        pipeline = self.pipeline
        state = pipeline.store.cache.get(case_id) or pipeline.store.seeds.get(case_id)
        if state is not None:
            status = state.status
        else:
            found = stored_case_status(pipeline.table.data.get(case_id))
            if found is None or found[0] not in self._case_partitions:
                return ()
            status = found[1]
        return (status,)

    def _ticket_labels(self, case_id: str) -> tuple[str, ...]:
        pipeline = self.pipeline
        held = pipeline.ticket_store.cache.get(case_id) or pipeline.ticket_store.seeds.get(case_id)
        if held is not None:
            return tuple(t.status.value for t in held.tickets.values())
        return stored_ticket_statuses(pipeline.tickets_table.data.get(case_id))

    def _held(self, topic: str) -> set[int]:
        return {tp.partition for tp in self.pipeline.assigned if tp.topic == topic}

    def _keys_held(self, table, seeds, held: set[int]) -> list:
        """The keys of a table, and its seeds of the partitions `held` that it does not hold yet."""
        partitions = list(range(self.pipeline.settings.partitions))
        return [*table.data.keys(), *(key for key in seeds if key not in table.data
                                      and partition_of(key, partitions) in held)]

    def counted(self) -> bool:
        """The censuses are of the partitions held now (`count` rebuilt them since they changed)."""
        return self.counted_for == frozenset(self.pipeline.assigned)

    async def count(self) -> None:
        """Open cases and tickets by status: the cases written since the last count, or every case
        of the tables after the partitions held changed."""
        pipeline = self.pipeline
        if not pipeline.index_ready:  # recovering: what this worker will hold is not known yet
            # Counted again once recovered, even for the same partitions (/readyz waits for it).
            self.counted_for = None
            metrics.OPEN_CASES.set(float("nan"))
            for status in TICKET_STATUSES:
                metrics.TICKETS.labels(status).set(float("nan"))
            return
        held = frozenset(pipeline.assigned)
        self._case_partitions = self._held(pipeline.settings.case_events_topic)
        touched_cases, pipeline.touched_cases = pipeline.touched_cases or set(), set()
        touched_tickets, pipeline.touched_tickets = pipeline.touched_tickets or set(), set()
        if held != self.counted_for:
            # The tables, and the states a fresh embedded broker was seeded with from the store, which
            # stay seeds until something of their case comes (before, the tickets restored after a
            # restart were not counted: sunlight_tickets said 0 beside 6 open; found by a black-box test).
            # The tables hold the partitions held (the others are let go of once an assignment is
            # known: `Pipeline.forget_unassigned`); the seeds, of the partitions held only.
            await self.cases.rebuild(self._keys_held(pipeline.table, pipeline.store.seeds, self._case_partitions))
            await self.tickets.rebuild(self._keys_held(pipeline.tickets_table, pipeline.ticket_store.seeds,
                                                       self._held(pipeline.settings.alerts_topic)))
            self.counted_for = held  # only once both are whole: a failed rebuild is tried again
        else:
            self.cases.refresh(touched_cases)
            self.tickets.refresh(touched_tickets)
        metrics.OPEN_CASES.set(self.cases.count(*OPEN_STATUSES))
        for status in TICKET_STATUSES:
            metrics.TICKETS.labels(status).set(self.tickets.count(status))

    def set_office_hours(self, now: datetime | None = None) -> None:
        catalog = self.pipeline.catalog_source
        judge = catalog.judge
        if judge is not self._judge:  # started, or the catalog was reloaded
            self._judge = judge
            self.office_hours = catalog.office_hours
        now = now or wall_now()
        metrics.OFFICE_HOURS.set(1 if is_office_hours(judge.calendar, now, self.office_hours) else 0)

    def set_gauges(self) -> None:
        pipeline = self.pipeline
        self.set_office_hours()
        if pipeline.index_ready:
            now_of = pipeline.clock.now
            # Due and not popped yet, and popped but whose tick its agent has not taken yet (on its
            # way, or held up by a broker that does not answer: it read 0 then, while no card came).
            metrics.DUE_TIMER_BACKLOG.set(pipeline.index.due_count(now_of) + pipeline.ticket_index.due_count(now_of)
                                          + len(pipeline.store.ticked))
        metrics.SINK_PENDING_ROWS.set(pipeline.writer.pending_rows)
        metrics.READY.set(1 if self.readiness()[0] else 0)

    async def measure_lag(self) -> None:
        """End offset minus committed offset of each input partition this worker holds: the end
        offsets asked of the broker (one request for them all, `Consumer.highwaters`, confirmed by a
        fetch on Tansu), the offsets its consumer committed; nothing that could disturb the consumer
        group. The end its last fetch saw went stale while the worker worked through what it had
        fetched, exactly when it fell behind: a lag of 7,700 where the broker held 21,000, falling
        while the real lag rose (found by a black-box test). Without an answer, the end its fetches
        saw. A partition with nothing committed yet counts from the start of its log (asked once
        while it is held)."""
        pipeline = self.pipeline
        settings = pipeline.settings
        consumer = pipeline.app.consumer
        topics = (settings.case_events_topic, settings.ticket_actions_topic)
        held = [tp for tp in pipeline.assigned if tp.topic in topics]
        committed = committed_offsets(consumer, held)
        missing = [tp for tp, offset in committed.items() if offset is None and tp not in self.log_starts]
        if missing:  # asked once per partition held (a log's start moves only with retention), briefly
            self.log_starts.update(await asyncio.wait_for(consumer.earliest_offsets(*missing), LAG_REQUEST_TIMEOUT))
        for tp, offset in committed.items():
            if offset is None:
                committed[tp] = self.log_starts.get(tp)
        asked: dict = {}
        if held:
            try:
                asked = dict(await asyncio.wait_for(consumer.highwaters(*held), LAG_REQUEST_TIMEOUT))
            except Exception as exc:  # a broker that does not answer: /readyz says so; the ends last seen
                log.debug("the end offsets were not answered (%s): the lag is measured from the ends last fetched", exc)
        seen: set[tuple[str, str]] = set()
        for tp in held:
            end = max((e for e in (asked.get(tp), consumer.highwater(tp)) if e is not None), default=None)
            if end is None or committed.get(tp) is None:
                continue
            key = (tp.topic, str(tp.partition))
            metrics.CONSUMER_LAG.labels(*key).set(max(0, end - committed[tp]))
            seen.add(key)
        self.log_starts = {tp: offset for tp, offset in self.log_starts.items() if tp in held}
        for key in self.lag_partitions - seen:  # partitions no longer held
            metrics.CONSUMER_LAG.remove(*key)
        self.lag_partitions = seen

    def drop_lag_of_partitions_let_go(self) -> None:
        """The lag series of partitions this worker no longer holds, removed at once, not at the next
        measure (a worker whose partitions had moved showed their lag for up to its interval beside a
        /readyz saying it held none: found by a black-box test with two workers)."""
        held = {(tp.topic, str(tp.partition)) for tp in self.pipeline.assigned}
        for key in self.lag_partitions - held:
            metrics.CONSUMER_LAG.remove(*key)
        self.lag_partitions &= held

    async def run(self) -> None:
        loop = asyncio.get_running_loop()
        next_lag = next_store = 0.0
        while True:
            now = loop.time()
            try:
                if now >= next_store:
                    next_store = now + self.store_interval
                    await asyncio.gather(self.check_broker(), self.check_store())
                await self.count()
                self.set_gauges()
                self.drop_lag_of_partitions_let_go()
                if now >= next_lag:
                    next_lag = now + self.lag_interval
                    await self.measure_lag()
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # a gauge left as it was never stops the worker
                log.warning("could not update the state gauges: %s", exc)
            # Soon again while a recovery is not counted yet: /readyz waits for the count.
            await asyncio.sleep(self.interval if self.counted() else min(self.interval, 0.1))

    def start(self) -> None:
        pipeline = self.pipeline
        pipeline.touched_cases, pipeline.touched_tickets = set(), set()  # the pipeline notes them from now on
        self.set_office_hours()
        self._task = asyncio.ensure_future(self.run())

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            try:
                await self._task
            except asyncio.CancelledError:
                pass
            self._task = None
        metrics.READY.set(0)


# -- the HTTP server ------------------------------------------------------------------------------------


class HealthServer:
    """/metrics, /healthz and /readyz on one port. Until a pipeline is attached, /readyz says the
    worker is starting."""

    def __init__(self, port: int, host: str = "0.0.0.0", registry=metrics.REGISTRY):
        self.port = port
        self.host = host
        self.registry = registry
        self.watch: Watch | None = None
        self.runner: web.AppRunner | None = None
        self.stopping = False

    def readiness(self) -> tuple[bool, str]:
        if self.watch is None:
            return False, "the worker is stopping" if self.stopping else "the worker is starting"
        return self.watch.readiness()

    async def _metrics(self, request: web.Request) -> web.Response:
        body = await asyncio.get_running_loop().run_in_executor(None, generate_latest, self.registry)
        return web.Response(body=body, headers={"Content-Type": CONTENT_TYPE_LATEST})

    async def _healthz(self, request: web.Request) -> web.Response:
        return web.Response(text="ok\n")

    async def _readyz(self, request: web.Request) -> web.Response:
        ready, reason = self.readiness()
        metrics.READY.set(1 if ready else 0)
        return web.Response(text=reason + "\n", status=200 if ready else 503)

    async def start(self) -> "HealthServer":
        app = web.Application()
        app.router.add_get("/metrics", self._metrics)
        app.router.add_get("/healthz", self._healthz)
        app.router.add_get("/readyz", self._readyz)
        self.runner = web.AppRunner(app, access_log=None, handle_signals=False)
        await self.runner.setup()
        site = web.TCPSite(self.runner, self.host, self.port, reuse_address=True)
        try:
            await site.start()
        except OSError as exc:
            await self.runner.cleanup()
            self.runner = None
            if exc.errno == errno.EADDRINUSE:
                raise SystemExit(f"sunlight: port {self.port} is in use, so /metrics, /healthz and /readyz cannot "
                                 f"be served: give each worker on this host a port of its own with "
                                 f"SUNLIGHT_METRICS_PORT (0 turns them off)") from None
            raise SystemExit(f"sunlight: cannot serve /metrics on port {self.port} (SUNLIGHT_METRICS_PORT): "
                             f"{exc}") from None
        if self.runner.addresses:  # the port actually bound (0: an ephemeral one, in tests)
            self.port = self.runner.addresses[0][1]
        return self

    def attach(self, pipeline, **intervals) -> Watch:
        """Watch this pipeline: its gauges and its readiness."""
        self.watch = Watch(pipeline, **intervals)
        self.watch.start()
        return self.watch

    async def detach(self) -> None:
        """Stop watching the pipeline (it is stopping): /readyz says so from here on."""
        if self.watch is not None:
            await self.watch.stop()
            self.watch = None
        self.stopping = True

    async def stop(self) -> None:
        await self.detach()
        if self.runner is not None:
            await self.runner.cleanup()
            self.runner = None


async def start_health(port: int, host: str = "0.0.0.0") -> HealthServer | None:
    """The health server on `port`, or None when `port` is 0 (turned off)."""
    if not port:
        return None
    server = await HealthServer(port, host).start()
    log.info("serving /metrics, /healthz and /readyz on port %d", server.port)
    return server


_ERRNO = re.compile(r"\[Errno -?\d+\][^'\")\]]*")


def _cause_first(text: str, limit: int = 300) -> str:
    """An error's first line for a probe's reason, its system cause first when it names one
    (`[Errno 111] Connection refused`): a client's error spent 300 characters on the request's
    address before it (found by a black-box test)."""
    first = text.splitlines()[0] if text.strip() else text
    cause = _ERRNO.search(text)
    if cause is not None:
        first = f"{cause.group(0).strip()} — {first}"
    return first[:limit]

