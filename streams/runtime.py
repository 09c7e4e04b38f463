"""Running the pipeline: the embedded broker and store, or the configured ones.

One chdb data directory can be open in only one process, so `replay`, `demo`
and `import` run broker, worker and store in one process: this module starts
the broker (unless SUNLIGHT_KAFKA is set), opens the store, starts a Faust
worker in this event loop, feeds it, waits until every event is processed and
every alert written, and stops everything again.
"""

from __future__ import annotations

import asyncio
import gc
import logging
import os
import signal
import threading
from contextlib import asynccontextmanager
import dataclasses
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import AsyncIterator, Awaitable, Callable, Iterable

import faust
import orjson

from sinks.clickhouse import connect
from sinks.catalog_rows import write_catalog
from sinks.migrations import migrate
from sinks.writer import ClickHouseWriter, StoreReader
from streams import broker as broker_mod, faust_patches, log_limits
from streams.broker import produce
from streams.app import Pipeline, case_changelog_topic
from streams.catalog_source import CatalogSource
from streams.clock import EventTimeClock, WallClock
from streams.settings import Settings

log = logging.getLogger(__name__)


@dataclass
class Running:
    settings: Settings
    pipeline: Pipeline
    bootstrap: str
    broker: broker_mod.EmbeddedBroker | None
    client: object
    worker: faust.Worker


def tune_gc() -> None:
    """A worker holds hundreds of thousands of long-lived objects (case states, their events):
    Python's default collector, after every 700 allocations, walks them again and again (measured:
    a sixth of the CPU of a replay). Collect the youngest generation after 50,000 allocations, and
    leave what exists at start-up (modules, the catalog) out of every collection."""
    gc.set_threshold(50_000, 20, 100)
    gc.freeze()


OWN_BROKER_SESSION_TIMEOUT = 2.0


def _quiet_faust_logging() -> None:
    from streams.log_limits import limit_repeats

    for name in ("faust", "mode", "aiokafka", "kafka"):
        logging.getLogger(name).setLevel(logging.ERROR)
    limit_repeats()  # a broker that is down: an error per connection attempt, thousands a minute
    # A source sending junk: a warning per dead letter (an import against the wrong catalog printed
    # one per event, 390 lines before its summary). The first of each reason, then at most one per
    # 30 s, which says how many it held back since.
    limit_repeats(("streams.steps.dead_letters",))
    # A store that is down or refuses writes: two errors per flush attempt and the client's own
    # warnings, 8 to 25 lines a second (found by a black-box test); its recovery is said once.
    limit_repeats(("streams.write_step", "streams.read_back", "clickhouse_connect", "urllib3"))


# How long a worker with a broker of its own, sent SIGTERM, takes the events that broker holds.
DRAIN_SECONDS = 30.0
# How often a worker checks the broker it started is still running.
BROKER_WATCH_SECONDS = 1.0
# How long the count of what dies with the worker's own broker may take (`_say_what_dies_with_the_broker`).
LOST_COUNT_SECONDS = 10.0


async def _watch_own_broker(pipeline: Pipeline, broker: broker_mod.EmbeddedBroker) -> None:
    """A worker's own broker that exits (killed, out of memory) takes its log with it, and the
    worker could neither take events nor fire deadlines: it fails, to exit non-zero for its
    supervisor to restart it (it stayed alive and quiet, /healthz 200, ignoring SIGTERM: found by
    a black-box test)."""
    while broker.process is not None and broker.process.poll() is None:
        await asyncio.sleep(BROKER_WATCH_SECONDS)
    if broker.process is not None and not pipeline.stopping:
        pipeline.fail(broker_mod.BrokerError(_own_broker_exited(broker)))


def _own_broker_exited(broker: broker_mod.EmbeddedBroker) -> str:
    """Why the process stops, with what the broker said last (its panic; before, only its status
    was logged, and an operator had nothing to go on: found by review)."""
    said = broker.last_words()
    return (f"the embedded broker (tansu) exited with status {broker.process.returncode}"
            f"{f' (it said: {said})' if said else ''}: the events it held in memory are lost; restart the worker "
            f"or the command (its state comes back from the store), or run workers on a Kafka cluster "
            f"(SUNLIGHT_KAFKA)")


def _exit_at_once(status: int) -> None:
    """Leave the process now (what is not written is not committed: delivered again at the next start)."""
    logging.shutdown()
    os._exit(status)


@asynccontextmanager
async def running_pipeline(settings: Settings, catalog_path: Path, clock=None,
                           broker: broker_mod.EmbeddedBroker | None = None,
                           drain_on_signal: bool = False) -> AsyncIterator[Running]:
    """Start (embedded broker,) store, topics and a Faust worker; stop them on exit.

    `drain_on_signal` (a long-lived worker): with a broker of its own, which keeps its log in
    memory and dies with the process, a SIGTERM first lets the agents take the events the broker
    holds (`_drain_then_stop`), or a client's acknowledged events would be lost with it."""
    own_broker = None
    if settings.kafka:
        bootstrap = settings.kafka
    elif broker is not None:
        bootstrap = broker.bootstrap
    else:
        # A fixed port (SUNLIGHT_EMBEDDED_BROKER_PORT) keeps the address its clients send to across
        # restarts; by default any free one, said in the log.
        own_broker = broker = broker_mod.EmbeddedBroker(port=settings.embedded_broker_port).start()
        bootstrap = broker.bootstrap
        if settings.session_timeout is None:
            # Nobody else knows this broker's port: this worker is its group's only member, and
            # Tansu holds a join for about half the session timeout (streams/broker.py).
            settings = dataclasses.replace(settings, session_timeout=OWN_BROKER_SESSION_TIMEOUT)
    faust_patches.confirm_highwaters(broker_mod.confirm_end_offsets if settings.tansu else None)
    # Tansu holds a waiting fetch for the whole wait (streams/broker.py): a short one on Tansu,
    # whether this process started it or not; Kafka answers a waiting fetch when records arrive.
    tansu_wait = 0.1 if settings.tansu else None
    faust_patches.set_fetch_max_wait(settings.fetch_max_wait if settings.fetch_max_wait is not None else tansu_wait)
    faust_patches.set_isolation_level(settings.isolation_level)
    faust_patches.set_transactions_from_markers(settings.transaction_timeout if settings.tansu else None)
    # A Tansu broker that outlives this process keeps a group's leader that left while the group
    # was forming, and no member can join it again (streams/faust_patches.py, patch 11).
    faust_patches.set_stay_when_leading_others(settings.tansu and own_broker is None)
    client = None
    worker = None
    writer = None
    reader = None
    pipeline = None
    watching = None
    dead_broker_tracebacks = None
    leaving_on_error = False
    try:
        catalog = CatalogSource(catalog_path, settings.calendar_overrides, settings.tickets_policy,
                                settings.notice_templates, settings.rulebook)
        # Notices carry the console's signed reply link (none without SUNLIGHT_PUBLIC_URL).
        from streams.console.links import notice_links
        catalog.texts = catalog.texts.with_links(notice_links(settings))
        tune_gc()
        settings.data_dir.mkdir(parents=True, exist_ok=True)  # Faust's tables live here with a server store too
        client = connect(settings.clickhouse, settings.data_dir, shared_broker=settings.kafka is not None)
        migrate(client)
        # for the dashboards' names and variables
        write_catalog(client, catalog.judge.catalog, region_names=catalog.region_names)
        writer = ClickHouseWriter(client, max_rows=settings.flush_rows,
                                  max_pending_rows=settings.sink_max_pending_rows)
        pipeline = Pipeline(settings, bootstrap, catalog, writer, clock or WallClock(), settings.tansu)
        reader = pipeline.read_back.reader = StoreReader(connect(settings.clickhouse, settings.data_dir))
        pipeline.silences = pipeline.read_silences()
        created = await broker_mod.create_topics(bootstrap, pipeline.topics(),
                                                 setting="SUNLIGHT_KAFKA" if settings.kafka else
                                                 "the embedded broker: SUNLIGHT_EMBEDDED_BROKER_PORT",
                                                 lost_before=own_broker is not None)
        if own_broker is not None:
            restore_from_store(pipeline, client)
        elif case_changelog_topic(settings) in created:
            restore_after_a_new_changelog(pipeline, client, settings)
        _quiet_faust_logging()
        worker = faust.Worker(pipeline.app, loop=asyncio.get_running_loop(), loglevel="WARNING",
                              quiet=True, redirect_stdouts=False, override_logging=False, daemon=False)
        worker.spinner = None  # Faust draws a terminal spinner on stdout even when quiet: no control codes in logs
        held = _hold_signals_while_starting(worker)
        if own_broker is not None:
            # From before the start: Faust's start waits for its partitions without end, and a
            # broker that died meanwhile left a replay waiting for ever (found by a test).
            watching = asyncio.ensure_future(_watch_own_broker(pipeline, own_broker))
            dead_broker_tracebacks = log_limits.TracebacksOfADeadBroker(own_broker)
            for handler in logging.getLogger().handlers:
                handler.addFilter(dead_broker_tracebacks)
        await _start_unless_broker_gone(pipeline, worker, own_broker)
        _stop_on_signals(pipeline, worker, drain=drain_on_signal and own_broker is not None, held=held)
        if pipeline.untaken_alerts:  # written by the last process, never taken by its ticket agent
            await produce(bootstrap, settings.alerts_topic, pipeline.untaken_alerts)
            pipeline.untaken_alerts = []
        peer_steps = pipeline.peer_steps
        if peer_steps.unsent_verdicts:  # judged otherwise than the cases hold (`PeerSteps.restore`)
            log.info("%d peer verdicts judged otherwise than their cases hold (the catalog's tiers or the thresholds "
                     "changed): sent to their cases", len(peer_steps.unsent_verdicts))
            await produce(bootstrap, settings.ticks_topic, peer_steps.unsent_verdicts)
            peer_steps.unsent_verdicts = []
        if pipeline.unsent_notices:  # recorded by the last process, never handled: to the notifier
            await produce(bootstrap, settings.notices_topic, pipeline.unsent_notices)
            pipeline.unsent_notices = []
        yield Running(settings, pipeline, bootstrap, broker, client, worker)
        if pipeline.failure is None:  # a failed one's unwritten rows are delivered again on the next start
            await pipeline.flush()
    except BaseException:
        leaving_on_error = True
        raise
    finally:
        if watching is not None:
            watching.cancel()
        if dead_broker_tracebacks is not None and (own_broker.process is None or own_broker.process.poll() is None):
            for handler in logging.getLogger().handlers:  # kept when it died: the process exits below
                handler.removeFilter(dead_broker_tracebacks)
        if pipeline is not None:
            pipeline.stopping = True
        if own_broker is not None and own_broker.process is not None and own_broker.process.poll() is not None:
            if worker is None:
                # It died while this process started, before the worker was made: the topics'
                # creation (the first contact) said "cannot reach the Kafka broker ...
                # SUNLIGHT_EMBEDDED_BROKER_PORT", status 2, as for a setting to mend (found by a test
                # on a loaded machine). As below.
                log.error("%s; exiting at once, while starting", _own_broker_exited(own_broker))
                _exit_at_once(1)
            # Faust's stop waits on a broker that is gone (a commit, the producer's flush) without
            # end, and its consumer thread dies on it with a traceback (found by a black-box test,
            # after the line that said why: noise at the moment an operator reads the log). Nothing
            # can be committed, and the broker's log is gone: leave at once, as a SIGKILL would
            # (what the store holds is what a restart starts from).
            # Said here: a replay, an import or the demo would say the failure after this exit
            # (a replay ended with status 1 and no reason: found by review).
            log.error("%s; exiting at once, without stopping the consumer",
                      pipeline.failure if pipeline is not None and pipeline.failure is not None else
                      _own_broker_exited(own_broker))
            _exit_at_once(1)
        if worker is not None:
            # A stop a signal began (`_stop_on_signals`) is under way, its course set: wait for
            # it (the loop must not close before it ends: the consumer's thread would be left running).
            signalled = getattr(worker, "stopping_on_signal", None)
            if signalled is None:
                if writer is not None and (writer.batch.acks or writer.in_flight or leaving_on_error
                                           or (pipeline is not None and pipeline.failure is not None)):
                    # Rows are still unwritten or being written (the store is down, or we leave on an
                    # error or a failed pipeline, whose timers stop before any flush): do not wait for
                    # their messages to be acknowledged, which could never end. They are not
                    # committed, so they are delivered again on the next start.
                    worker.app.conf.stream_wait_empty = False
                await _stop_in_time(pipeline, worker)
            else:
                await asyncio.shield(signalled)
        if writer is not None:
            writer.close()
        if reader is not None:
            reader.close()
        if client is not None:
            client.close()
        if own_broker is not None:
            if drain_on_signal and pipeline is not None and own_broker.process is not None \
                    and own_broker.process.poll() is None:
                await _say_what_dies_with_the_broker(pipeline)
            own_broker.stop()


async def _say_what_dies_with_the_broker(pipeline: Pipeline) -> int:
    """Count, once the worker has stopped and just before its own broker stops, the events that
    broker holds and the worker never took: they die with it, and the log says how many. Counted
    at the signal instead, the events a client went on sending while the worker stopped (the
    broker acknowledged them for seconds) were lost without a word (found by a black-box test with
    other clients). Returns how many; 0 when the broker did not answer (said so)."""
    topic = pipeline.settings.case_events_topic
    try:
        ends = await asyncio.wait_for(broker_mod.end_offsets(pipeline.bootstrap, topic,
                                                             confirm=pipeline.settings.tansu), LOST_COUNT_SECONDS)
        committed = await asyncio.wait_for(committed_offsets(pipeline, pipeline.bootstrap, topic), LOST_COUNT_SECONDS)
        # By the commits, not by what the agents took: a unit taken while the worker stopped and
        # never written is lost with the broker too (counted by what was taken, 5 of 424 were said).
        lost = sum(max(0, end - committed.get(partition, 0)) for partition, end in ends.items())
    except Exception as exc:
        log.warning("stopping: could not count the events the embedded broker holds and this worker did not take "
                    "(they are lost with it): %s", exc)
        return 0
    if lost:
        log.error("stopping: %d events in the embedded broker were not taken (sent after the signal, or not taken "
                  "within %.0f s of it) and are lost with it: send them again, or run workers on a Kafka cluster "
                  "(SUNLIGHT_KAFKA)", lost, DRAIN_SECONDS)
    return lost


async def _start_unless_broker_gone(pipeline: Pipeline, worker: faust.Worker,
                                    broker: broker_mod.EmbeddedBroker | None) -> None:
    """Start the worker; with a broker of its own, raise the pipeline's failure if that broker dies
    first (Faust's start waits for its partitions without end: a replay whose broker died while it
    started waited for ever; found by a test). Any other failure meanwhile lets the start finish,
    and is found after it, as before (a stop begun while the start runs could hang: review)."""
    starting = asyncio.ensure_future(worker.start())
    while True:
        done, _ = await asyncio.wait({starting}, timeout=BROKER_WATCH_SECONDS if broker is not None else None)
        if done:
            starting.result()
            return
        if broker.process is not None and broker.process.poll() is not None and pipeline.failure is not None:
            raise pipeline.failure


async def _stop_worker(pipeline: Pipeline | None, worker: faust.Worker) -> None:
    """Stop the worker. Faust stops the timers (the flush among them) as the stop begins, then,
    with `stream_wait_empty`, waits for every message taken to be acknowledged: a unit taken and
    not yet written would be acknowledged by no flush, and the stop would wait for ever (a worker
    sent SIGTERM while busy never exited). So the units are flushed meanwhile."""
    flushing = (asyncio.ensure_future(_flush_while_stopping(pipeline, worker.app.consumer))
                if pipeline is not None and worker.app.conf.stream_wait_empty else None)
    try:
        await worker.stop()
    finally:
        if flushing is not None:
            flushing.cancel()


def quiet_while_stopping(stopping: Callable[[], bool], default: Callable) -> Callable:
    """A `threading.excepthook` that says in one line what a thread's cancelled wait or Kafka error
    is once the worker stops (`stopping`): Faust's consumer thread, stopped while a fetch waits on a
    broker gone away, printed two chained tracebacks before the stop's own one-line message (found
    by a black-box test). Anything else, or before the stop, goes to `default`."""
    from aiokafka.errors import KafkaError

    def hook(args) -> None:
        if stopping() and isinstance(args.exc_value, (asyncio.CancelledError, KafkaError)):
            log.warning("%s ended with %s while the worker stops (the Kafka broker does not answer)",
                        args.thread.name if args.thread is not None else "a thread", type(args.exc_value).__name__)
            return
        default(args)
    return hook


async def _stop_in_time(pipeline: Pipeline, worker: faust.Worker) -> None:
    """`_stop_worker`, within `SUNLIGHT_STOP_SECONDS`; past them, the process exits at once, saying
    so. A stop waits on the broker (Faust's last commit) and the store: with the Kafka broker gone
    away, a worker sent SIGTERM never exited, and a failed one never exited for its supervisor to
    restart it (found by a test: still running 60 s after SIGTERM). What is written stays; what is
    not committed is delivered again at the next start."""
    seconds = pipeline.settings.stop_seconds
    before = threading.excepthook
    stopping = True
    threading.excepthook = quiet_while_stopping(lambda: stopping, before)
    try:
        await asyncio.wait_for(asyncio.shield(_stop_worker(pipeline, worker)), seconds)
    except asyncio.TimeoutError:
        log.error("the worker did not stop within %g s (SUNLIGHT_STOP_SECONDS): the Kafka broker or the store "
                  "does not answer; exiting at once (what is not committed is processed again at the next start)",
                  seconds)
        _exit_at_once(1)
    finally:
        stopping = False  # anything later goes to the hook before (a process runs several pipelines)
        threading.excepthook = before


async def _flush_while_stopping(pipeline: Pipeline, consumer) -> None:
    """Write and acknowledge what the units taken before the stop left, at once and then as more
    units finish. If the store fails meanwhile, those rows cannot be written and their messages
    would never be acknowledged: the stop stops waiting for them (they are not committed, so the
    next start gets them again), and goes on not waiting for any unit still finishing."""
    store_failed = False
    while True:
        if not store_failed:
            try:
                await pipeline.flush()
            except Exception:
                log.exception("could not flush while stopping")
                store_failed = True
            else:
                store_failed = pipeline.writer.last_error is not None
            if store_failed:
                log.warning("the store failed while the worker stops: what is not written is not committed, "
                            "and the next start processes it again")
        if store_failed:
            faust_patches.stop_waiting_for_acknowledgements(consumer)
        await asyncio.sleep(0.1 if store_failed else min(pipeline.settings.flush_interval, 0.25))


@asynccontextmanager
async def running_worker(settings: Settings, catalog_path: Path) -> AsyncIterator[Running]:
    """`sunlight worker`: the pipeline, with /metrics, /healthz and /readyz on
    SUNLIGHT_METRICS_PORT (streams.health; 0 turns them off). The server starts first, so that
    /healthz answers while the tables recover and /readyz says why the worker is not ready yet."""
    from streams.health import start_health

    health = await start_health(settings.metrics_port)
    try:
        async with running_pipeline(settings, catalog_path, drain_on_signal=True) as running:
            if health is not None:
                health.attach(running.pipeline)
            try:
                yield running
            finally:
                if health is not None:  # not ready from here on; the pipeline's store closes next
                    await health.detach()
    finally:
        if health is not None:
            await health.stop()


# How long a signal held while the worker starts waits for the start (a broker out of reach can
# hold it for good: a supervisor's one SIGTERM was then ignored until its SIGKILL).
HELD_SIGNAL_EXIT_SECONDS = 20.0


class HeldSignals(list):
    """The signals held while the worker started, and the timer that ends a start taking too long."""
    timer: asyncio.TimerHandle | None = None

    def started(self) -> None:
        if self.timer is not None:
            self.timer.cancel()


def _start_too_long() -> None:
    log.error("the worker did not finish starting within %d s of a signal to stop: exiting at once (what it "
              "took is not committed and comes again)", HELD_SIGNAL_EXIT_SECONDS)
    _exit_at_once(1)


def _hold_signals_while_starting(worker: faust.Worker) -> HeldSignals:
    """SIGTERM and SIGINT while the worker starts are held (the list returned), and the stop they
    ask for begins once it has started (`_stop_on_signals`); a second one exits at once.

    Mode installs signal handlers of its own as the worker's start begins. Its stop ran in a task
    nobody waited for, alongside the start: the worker's `wait_until_stopped` returned at once, our
    `_stop_worker` found the worker stopping and returned, the store closed, and `asyncio.run`,
    cancelling what was left, waited for Faust's stop, whose consumer thread ended only at mode's
    60 s shutdown timeout (a worker sent SIGTERM within its first seconds, busy or not, did not
    exit within 45 s: found by a flaky test). Mode's other handlers (SIGUSR1: the stacks) stay."""
    loop = asyncio.get_running_loop()
    held = HeldSignals()

    def hold(sig: int) -> None:
        if held:
            log.warning("a second signal while starting: exiting at once")
            _exit_at_once(1)
        held.append(sig)
        log.warning("a signal while the worker starts: it stops once started (a second signal exits at once; "
                    "a start not done within %d s exits then)", HELD_SIGNAL_EXIT_SECONDS)
        held.timer = loop.call_later(HELD_SIGNAL_EXIT_SECONDS, _start_too_long)

    def hold_signals() -> None:
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, hold, sig)

    faust_patches.after_signal_handlers(worker, hold_signals)  # mode sets its own as the start begins
    hold_signals()
    return held


def _stop_on_signals(pipeline: Pipeline, worker: faust.Worker, drain: bool = False,
                     held: HeldSignals | None = None) -> None:
    """SIGTERM and SIGINT stop the worker cleanly: the agents know they are stopping (so their
    cancellation is no crash), and the worker stops its services in order. With `drain`, the first
    signal lets the agents take what the worker's own broker holds first; a second stops at once.
    A signal `held` while the worker started begins the stop now."""
    if isinstance(held, HeldSignals):
        held.started()
    loop = asyncio.get_running_loop()
    draining = False

    def signalled() -> None:
        nonlocal draining
        if drain and not draining and not pipeline.stopping:
            draining = pipeline.draining = True
            worker.stopping_on_signal = asyncio.ensure_future(_drain_then_stop(pipeline, worker, stop))
        elif pipeline.stopping and getattr(worker, "stopping_on_signal", None) is not None:
            # A stop is under way and another signal came (it waits on a broker or a store that
            # does not answer, say): stop at once, as an operator pressing Ctrl-C again expects.
            log.warning("a second signal while stopping: exiting at once (what is not written is not committed, "
                        "and is processed again at the next start)")
            _exit_at_once(1)
        else:
            stop()

    def stop() -> None:
        if not pipeline.stopping:
            pipeline.stopping = pipeline.stop_signalled = True
            # The batch being retried is out of `writer.batch` while a write waits: the writer's
            # last error (cleared by a successful write) tells that the store is failing.
            if pipeline.writer.batch.failed_attempts or pipeline.writer.last_error:
                # The store is failing: its rows' messages would never be acknowledged, so do
                # not wait for them (uncommitted, they are delivered again on the next start).
                worker.app.conf.stream_wait_empty = False
            worker.stopping_on_signal = asyncio.ensure_future(_stop_in_time(pipeline, worker))

    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, signalled)
    if held:
        signalled()


async def _drain_then_stop(pipeline: Pipeline, worker: faust.Worker, stop: Callable[[], None]) -> None:
    """Let the agents take every event the worker's own broker holds at the signal (up to
    `DRAIN_SECONDS`), then stop (its `_flush_while_stopping` writes them). Events a client sends
    after the signal, or not taken in time, die with the broker: said in the log, with their number."""
    topic = pipeline.settings.case_events_topic
    try:
        ends = await broker_mod.end_offsets(pipeline.bootstrap, topic, confirm=pipeline.settings.tansu)
        left = await _left_to_take(pipeline, topic, ends)
        if left:
            log.warning("stopping: taking the %d events the embedded broker holds first (it keeps them in memory "
                        "only); a second signal stops at once", left)
        loop = asyncio.get_running_loop()
        deadline = loop.time() + DRAIN_SECONDS
        while left and not pipeline.stopping and pipeline.failure is None and loop.time() < deadline:
            await asyncio.sleep(0.2)
            left = await _left_to_take(pipeline, topic, ends)
    except Exception:
        log.exception("stopping: could not take what the embedded broker holds")
    finally:
        if worker.stopping_on_signal is not asyncio.current_task():  # a second signal began the stop
            await asyncio.shield(worker.stopping_on_signal)
        elif pipeline.stopping:  # the pipeline is leaving (it failed meanwhile), and waits for this stop
            await _stop_in_time(pipeline, worker)
        else:
            stop()
            await asyncio.shield(worker.stopping_on_signal)


async def _left_to_take(pipeline: Pipeline, topic: str, ends: dict[int, int]) -> int:
    """How many offsets of `topic` before `ends` the agents have neither taken nor committed (an
    offset that holds no record, a transaction's marker, is never taken, but committed past), with
    those Faust skipped and the agents still have to read (`DeliveryWatch.holes`)."""
    if not _untaken(pipeline, topic, ends, {}):
        return 0
    return sum(_untaken(pipeline, topic, ends, await committed_offsets(pipeline, pipeline.bootstrap, topic)).values())


def restore_after_a_new_changelog(pipeline: Pipeline, client, settings: Settings) -> int:
    """A worker on a Kafka cluster (SUNLIGHT_KAFKA) that created the case table's changelog: the
    cluster is new to this store, or lost its data (a broker without persistent storage restarted,
    the topics deleted), while the store may hold cases. Before, such a worker said it was ready
    with no open case, no deadline and no ticket, and nothing warned: the cards and escalations of
    every open case were never due (found by a black-box test). With an embedded store, its one
    worker seeds them from the store, as on a fresh embedded broker (`restore_from_store`); with a
    ClickHouse server the group's workers share, none can seed the cases of the others'
    partitions, and it says so. Returns how many cases were seeded."""
    from sinks.queries import stored_case_count

    if settings.embedded_store:
        seeded = restore_from_store(pipeline, client)
        if seeded:
            log.warning("the case table's changelog (%s) did not exist on the Kafka cluster (%s): a cluster new to "
                        "this store, or one that lost its data; %d cases not settled were restored from the store",
                        case_changelog_topic(settings), settings.kafka, seeded)
        return seeded
    stored = stored_case_count(client)
    if stored:
        log.error("the case table's changelog (%s) did not exist on the Kafka cluster (%s), while the store holds "
                  "%d cases: a cluster new to this store, or one that lost its data. The workers know none of those "
                  "cases, and raise no deadline card or escalation for them, until an event of each arrives "
                  "(docs/deploy.md, \"A Kafka cluster that lost its data\")",
                  case_changelog_topic(settings), settings.kafka, stored)
    return 0


def restore_from_store(pipeline: Pipeline, client) -> int:
    """Give a fresh embedded broker the history the store already holds.

    The embedded broker keeps its topics in memory, so the case table's changelog dies with
    the process, while the store in the data directory keeps every event and alert. The cases
    that have not settled (`alerts.retention`) are loaded from their stored events, alerts,
    revisions and clocks as the seed of each one's state, used when the table has nothing for
    the case; those that have settled stay in the store, and are read back as a case let go is
    if anything about them arrives (`sinks.case_history.store_seeds`), so that a start no longer
    reads, validates and judges every stored event (it still reads every stored alert, for the
    tickets; the settled cases' tickets at rest stay in the store too). Every stored fining
    decision seeds its penalty peer group. The seeds are judged once at the clock: at the end of a
    replay's input, or at once by a live worker's wall clock. Returns how many cases were seeded.
    """
    from alerts.detectors.discretion import penalty_of
    from alerts.events import EventType
    from alerts.peers import fact_of
    from sinks.case_history import store_seeds, stored_case_events

    states, settled, alerts = store_seeds(client, pipeline.catalog_source.basis)
    judge = pipeline.catalog_source.judge
    facts = []
    for case_events in stored_case_events(client, types=(EventType.DECIDED.value,)).values():
        for event in case_events:
            penalty = penalty_of(event)
            item = judge.catalog.item(event.item_code)
            if penalty is not None and item is not None:
                tiers = item.tiers(penalty[0])
                facts.append(fact_of(event, *penalty, not tiers or any(t.contains(penalty[1]) for t in tiers)))
    pipeline.restore(states, facts, settled, _held_verdicts(states, alerts))
    tickets, at_rest, pipeline.untaken_alerts = _stored_tickets(client, alerts, pipeline.catalog_source.ticket_policy(),
                                                                settled, pipeline.catalog_source.judge.calendar.tz)
    pipeline.restore_tickets(tickets, at_rest)
    pipeline.unsent_notices = _unfinished_notices(client)
    if states or settled:
        log.info("restored %d cases from the store; %d settled ones stay there until needed", len(states),
                 len(settled))
    return len(states)


def _held_verdicts(states: dict, alerts: dict[str, list]) -> dict[tuple[str, str], str]:
    """The digest of each peer verdict the cases hold, (case, decision event) -> digest: a seeded
    case's from its state; a settled case's from its open outlier alerts (a digest that differs by
    form only sends a verdict the case finds it holds, and nothing changes)."""
    from alerts.peers import Verdict
    from alerts.state import verdicts_of

    held: dict[tuple[str, str], str] = {}
    for case_id in states.keys() | alerts.keys():
        verdicts = states[case_id].verdicts if case_id in states else verdicts_of(alerts[case_id])
        for event_id, evidence in verdicts.items():
            held[(case_id, event_id)] = Verdict(case_id, event_id, "", "", evidence).digest
    return held


def _unfinished_notices(client) -> list[tuple[bytes, bytes]]:
    """The notices recorded but not yet handled by the notifier when the last process stopped (sent
    to it again). The finished ones stay in the store: the notifier reads back the status of a
    notice its table does not hold (`streams.notices.NoticeLog`)."""
    from alerts.tickets import case_of
    from sinks.queries import unfinished_notices
    from streams.notices import FINISHED, notice_from_json, notice_to_json

    return [(case_of(record["ticket_id"]).encode(), orjson.dumps(notice_to_json(notice_from_json(record))))
            for record in unfinished_notices(client, FINISHED)]


def _stored_tickets(client, alerts: dict[str, list], policy, settled: set[str], tz=None
                    ) -> tuple[dict, set[str], list[tuple[bytes, bytes]]]:
    """Each case's tickets as the store last holds them (`streams.tickets.tickets_from_store`),
    but those at rest of the cases that have settled: left in the store (their ids returned),
    read back if anything about them arrives. And the stored alert versions the tickets have not
    taken yet, to hand to the ticket agent again."""
    from sinks.queries import stored_ticket_states
    from streams.tickets import tickets_from_store

    cases, untaken = tickets_from_store(stored_ticket_states(client), alerts, policy, tz)
    in_store = {case_id for case_id, tickets in cases.items() if case_id in settled and tickets.at_rest}
    return {c: t for c, t in cases.items() if c not in in_store}, in_store, untaken


async def topic_ends(running: "Running") -> dict[int, int]:
    """Where the case-events topic ends now, in every partition (not only what this process sent)."""
    return await broker_mod.end_offsets(running.bootstrap, running.settings.case_events_topic,
                                        confirm=running.settings.tansu)


async def committed_offsets(pipeline: Pipeline, bootstrap: str, topic: str | None = None) -> dict[int, int]:
    """The offsets the worker's consumer group had committed in `topic` (case-events by default)."""
    settings = pipeline.settings
    return await broker_mod.committed_offsets(bootstrap, settings.app_id, topic or settings.case_events_topic,
                                              settings.partitions)


def _untaken(pipeline: Pipeline, topic: str, ends: dict[int, int], committed: dict[int, int]) -> dict[int, int]:
    """Per partition of `topic`, how many offsets before `ends` the agents have not taken (and no
    earlier run committed), counting the holes Faust left that are still to be read
    (`streams.delivery`). Empty when everything up to `ends` is taken."""
    taken = pipeline.progress.taken
    untaken = {p: end - 1 - taken.get((topic, p), -1) for p, end in ends.items()
               if taken.get((topic, p), -1) < end - 1 and committed.get(p, 0) < end}
    for tp, holes in pipeline.delivery.holes.items():
        if tp.topic == topic and holes:
            untaken[tp.partition] = untaken.get(tp.partition, 0) + sum(hole.end - hole.start for hole in holes)
    return untaken


def _taken_to_end(pipeline: Pipeline, topic: str, ends: dict[int, int], committed: dict[int, int]) -> bool:
    """Whether the agents have taken every message of `topic` up to `ends` (or an earlier run committed it)."""
    return not _untaken(pipeline, topic, ends, committed)


async def _wait_for_topics(pipeline: Pipeline, topics: Iterable[str], deadline: float
                           ) -> dict[str, dict[int, int]]:
    """Wait until the agents have taken every message in `topics` (the internal ones: ticks, peer
    facts and the verdicts they send back, alerts, ticket ticks, actions, notices), until taking
    them sends no more. Offsets, not counts of what this process sent: after a restart the agents
    also take what the previous run sent and did not commit."""
    loop = asyncio.get_running_loop()
    topics = list(topics)
    previous: dict[str, dict[int, int]] = {}
    while True:
        current = await _ends(pipeline, topics)
        if current == previous:
            return current
        committed = await broker_mod.committed_offsets_of(pipeline.bootstrap, pipeline.settings.app_id, topics,
                                                          pipeline.settings.partitions)
        for topic, ends in current.items():
            while not _taken_to_end(pipeline, topic, ends, committed.get(topic, {})):
                check_running(pipeline)
                if loop.time() > deadline:
                    raise TimeoutError(f"pipeline did not take every message of {topic} in time: "
                                       f"{pipeline.progress} of {ends}")
                await asyncio.sleep(0.05)
        previous = current


async def wait_until_processed(pipeline: Pipeline, ends: dict[int, int],
                               on_progress: Callable[[int], None] | None = None,
                               timeout: float = 3600.0) -> None:
    """Wait until the agent has taken every produced message, fired what is due and written it all."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    progress = pipeline.progress
    settings = pipeline.settings
    internal = (settings.ticks_topic, settings.peers_topic, settings.alerts_topic, settings.ticket_ticks_topic,
                settings.ticket_actions_topic, settings.notices_topic)

    committed = await committed_offsets(pipeline, pipeline.bootstrap)
    while not _taken_to_end(pipeline, pipeline.settings.case_events_topic, ends, committed):
        check_running(pipeline)
        if loop.time() > deadline:
            raise TimeoutError(f"pipeline did not process all events within {timeout:.0f}s: "
                               f"{progress} of {ends}")
        if on_progress:
            on_progress(sum(progress.processed_offsets.get(p, -1) + 1 for p in ends))
        await asyncio.sleep(0.05)
    if on_progress:
        on_progress(sum(ends.values()))
    # The events sent on to their case's partition (streams.steps.CaseSteps.send_on), then the
    # decisions' peer facts.
    await _wait_for_topics(pipeline, (settings.case_events_topic,), deadline)
    await _wait_for_topics(pipeline, internal, deadline)
    # Every decision is in: the peer groups judge them, in decision order whatever the input's,
    # and their cases take the verdicts before they are judged (`PeerSteps.judge_held_decisions`).
    if await pipeline.peer_steps.judge_held_decisions():
        await _wait_for_topics(pipeline, internal, deadline)
    # End of input: the clock moves to --now and every case whose facts changed is judged, with
    # the restored cases that received no new event; their rows are written and their alerts
    # taken by the ticket agent. Only then do the tickets' own moments come (opening, deadline,
    # level 2): a ticket must not open or escalate on what the end of the input changes.
    clock = pipeline.clock
    clock.finish()
    while not pipeline.index_ready:
        check_running(pipeline)
        await asyncio.sleep(0.05)
    await pipeline.judge_restored_cases()
    now = clock.now
    await _settle(pipeline, internal, deadline, pipeline.fire_due, lambda: pipeline.index.any_due(now))
    clock.release_tickets()

    async def fire_both() -> None:
        await pipeline.fire_due()
        await pipeline.fire_ticket_due()

    await _settle(pipeline, internal, deadline, fire_both,
                  lambda: pipeline.index.any_due(now) or pipeline.ticket_index.any_due(now))
    while not await pipeline.flush():
        await asyncio.sleep(settings.flush_interval)


async def _settle(pipeline: Pipeline, topics, deadline: float, fire: Callable[[], Awaitable[None]],
                  due: Callable[[], bool]) -> None:
    """Fire what is due, until nothing is due, every message of `topics` is taken, and a flush of
    what taking them wrote publishes nothing new (written rows publish alerts and notices, which
    the agents then take). The timers fire too, meanwhile: the flush is judged against the offsets
    `_wait_for_topics` saw taken, not against offsets read later, which could hold messages no
    agent has taken yet (a replay ended before its notifier had the last notices: left `recorded`,
    a later process with a channel sent them)."""
    while True:
        await fire()
        taken = await _wait_for_topics(pipeline, topics, deadline)
        if due():
            continue
        while not await pipeline.flush():
            await asyncio.sleep(pipeline.settings.flush_interval)
        if await _wait_for_topics(pipeline, topics, deadline) == taken and not due():
            return


async def _ends(pipeline: Pipeline, topics) -> dict[str, dict[int, int]]:
    await pipeline.app.producer.flush()
    return await broker_mod.end_offsets_of(pipeline.bootstrap, topics, confirm=pipeline.settings.tansu)


def check_running(pipeline: Pipeline) -> None:
    """Raise, rather than wait for ever, when the worker failed or was asked to stop."""
    from streams.app import PipelineFailed

    if pipeline.failure is not None:
        raise pipeline.failure
    if pipeline.stopping:
        raise PipelineFailed("stopped before every event was processed; run the same command again to finish "
                             "(nothing written is lost, nothing is written twice)")


def replay_clock(now: datetime | None):
    from streams.clock import wall_now
    return EventTimeClock(now or wall_now())


async def keep_letters(settings: Settings, bootstrap: str, letters: list, client=None, writer=None) -> None:
    """Dead letters made outside the pipeline (an import's rows it could not take): into the
    store and to the dead-letter topic, as the pipeline keeps its own. The store through the
    running pipeline's `writer` (its one client, on its thread, under its lock), or a `client` of
    this process's own; neither when the store belongs to a worker elsewhere."""
    from sinks.rows import dead_letter_row, to_arrow
    from streams.clock import wall_now

    now = wall_now()

    def insert(store) -> None:
        store.insert_arrow("dead_letters", to_arrow("dead_letters", [dead_letter_row(letter, now) for letter in letters]))

    if writer is not None:
        await writer.run(insert)
    elif client is not None:
        insert(client)
    await produce(bootstrap, settings.dlq_topic,
                  [(letter.key.encode() if letter.key else None, orjson.dumps(letter.to_json())) for letter in letters])
