"""Every change Sunlight makes to faust-streaming's internals (and to those of mode and aiokafka,
which it runs on), in one place.

Written against faust-streaming 0.15.3 (pinned in pyproject.toml); `apply` refuses another
version, because each patch below relies on the lines it names. `tests/unit/test_faust_patches.py`
covers each one.

1. **Units** (`Consumer.getmany`, faust/transport/consumer.py, the method after `_getmany`):
   Faust hands its agents one message at a time, through a fetch loop that runs
   `wait_first(callback(message), ...)` per message (about four tasks), flow control, a queue
   and the stream iterator: about 200 µs of CPU per message. For the topics Sunlight names, the
   patched `getmany` yields one message per partition per fetch, whose value is the list of the
   fetched records (a *unit*, `streams.steps.Unit`): its offset is the last record's, and the
   partition's read offset is set so that Faust's fetch loop (`_drain_messages`, "gap = offset -
   (r_offset or 0)") sees no gap and drops nothing. Every record of a unit is acknowledged with it
   (`acknowledge_unit`), so Faust commits past a unit only once all of it is done.
2. **Commits** (`Consumer._new_offset`): 0.15.3 commits past a single unacknowledged message
   right after the committed offset (`min(acked) - committed > 1`, where the committed offset is
   already the next one to read). Here a message is committed only once it and every message
   before it are acknowledged.
3. **Fetch wait and isolation** (`AIOKafkaConsumerThread._create_worker_consumer`,
   drivers/aiokafka.py): Faust hard-codes a 1.5 s fetch wait; Tansu holds a waiting fetch for
   the whole wait even when records arrive, so on Tansu (embedded or not) the wait is shortened
   to 0.1 s. Faust reads `read_uncommitted` unless its consumer is in a transaction
   ("isolation_level = 'read_committed'" only under `exactly_once`), so the records of a
   transaction another client aborted were taken as events; `set_isolation_level` makes the
   consumers read `read_committed` on a Kafka cluster (on Tansu, see 13).
4. **High watermarks** (`AIOKafkaConsumerThread._highwaters`): Tansu's ListOffsets(latest)
   under-reports the end of a multi-record batch, and Faust decides from it when a table's
   recovery is complete; on Tansu each end offset is confirmed with a fetch.
5. **Holes** (`Consumer._gap`, an intervaltree per partition of offsets Faust counts as done):
   a range of offsets Faust did not deliver must not be counted as done until Sunlight has read
   it (`keep_uncommitted`); once read, its offsets that hold no record (transaction markers) are
   done (`count_as_done`).
6. **Table writes and sends** (`Collection.send_changelog` and `Table.on_key_set`,
   faust/tables; `Producer._ensure_producer`, drivers/aiokafka.py): a state is written into the
   table's data and its changelog record, with the key serialised as Faust serialises table keys
   (JSON) so that recovery reads it back and co-partitioning holds, goes with the unit's other
   records in one batch per topic partition through the aiokafka producer (`Outbox`).
7. **Committed offsets, read** (`Consumer._committed_offset`, set where Faust commits:
   "self._committed_offset.update(committable_offsets)"): the consumer lag gauge (`streams.health`) reads the
   offsets Faust last committed from its own bookkeeping (`committed_offsets`), with no request.
8. **Table manager start** (`TableManager.on_start`, faust/tables/manager.py: "await
   self.sleep(1.0)" before `_update_channels`): Faust waits a fixed second at start for tables
   declared late; Sunlight declares every table before the worker starts, so the wait only
   delays every command's start (a replay, an import, a ticket action) by a second.
9. **The stop's wait for acknowledgements** (`Consumer.wait_empty`, faust/transport/consumer.py:
   "while not self.should_stop and self._unacked_messages:"): with `stream_wait_empty`, a stop
   waits until every message taken is acknowledged, with no time limit. When the store fails
   during that wait, the rows of those messages cannot be written and their acknowledgements
   never come: `stop_waiting_for_acknowledgements` ends the wait. Faust then commits what is
   acknowledged, as always (`_acked`, not `_unacked_messages`, decides what is committed), so
   the messages left are delivered again on the next start. `stop_waiting_for` leaves one unit
   so: a notice the mail server did not take as a signal stopped the worker.
10. **Signal handlers at the start** (mode-streaming 0.7.1, the worker library Faust runs on:
   `Worker.default_on_first_start`, mode/worker.py, "self.install_signal_handlers()"): mode puts SIGTERM
   and SIGINT on handlers of its own as the worker's start begins, whose stop runs in a task
   nobody waits for. `after_signal_handlers` runs Sunlight's own installation right after mode's,
   so that a signal while the worker starts is Sunlight's to handle (`streams.runtime`).
11. **Leaving a group on Tansu** (aiokafka 0.14.0, the client Faust runs on: `GroupCoordinator.close`,
   aiokafka/consumer/group_coordinator.py, "await self._maybe_leave_group()"; the members a leader
   is given in `_perform_assignment`, "members = response.members"): Tansu 0.6.0 does not clear a
   group's leader when the leader leaves a group that is forming, which it is once another member
   has left first (two workers stopped at once, the follower's LeaveGroup first). The group then
   keeps a leader that is no member and is never evicted: every member that joins afterwards is a
   follower whose SyncGroup is answered REBALANCE_IN_PROGRESS for ever, and the workers hang in
   "the worker is starting" (found by a black-box test: about one stop of two workers in four).
   Tansu does clear a leader it evicts, so with `set_stay_when_leading_others(True)` a consumer
   that led a group of several members does not send LeaveGroup when it stops: the coordinator
   evicts it after the session timeout. A follower, or a leader alone in its group, leaves as
   before (a lone leader's LeaveGroup finds the group formed, which clears it).
12. **Recovery done, of each assignment** (`Recovery.completed`, faust/tables/recovery.py: created
   unset, set when a recovery ends, in `on_recovery_completed` or `_resume_streams`,
   "self.completed.set()", and never cleared): it says that the first recovery is over, not that
   of the latest assignment. `recovery_begins` clears it
   when an assignment is signalled (`App.on_partitions_assigned`, sent after
   `tables.on_rebalance` has started that assignment's recovery, which sets it again once the
   partitions given are read), so that `recovery_done` is this assignment's. Before, every
   index after the first was rebuilt before its partitions were recovered, without the cases of
   those given, and /readyz said ready meanwhile.

13. **Transactions decided by their markers, on Tansu** (aiokafka 0.14.0: `PartitionRecords`,
   consumer/fetcher.py, made in `Fetcher._proc_fetch_request`, "partition_records =
   PartitionRecords("): aiokafka skips an aborted transaction's records by the broker's list of
   aborted transactions, which Tansu 0.6.0 sends empty, and Tansu stops a `read_committed` fetch
   for good at a transaction whose producer died (it never ends one itself); it does write each
   transaction's commit or abort marker. On Tansu the consumers read `read_uncommitted` and
   `set_transactions_from_markers` decides each transactional batch by its producer's next marker:
   an aborted one is skipped, and the partition is held at one whose marker has not come, as a Kafka
   broker's last stable offset holds it, until `SUNLIGHT_TRANSACTION_TIMEOUT` (60 s) has passed;
   its records then come as `UndecidedRecord`s, which Sunlight dead-letters
   (`transaction_not_ended`). A fetch held with nothing to deliver pauses `HELD_FETCH_PAUSE` before
   the next. Tansu ends a fetch about 1 MB in: a batch the fetch's last stable offset (which Tansu
   reports truly) has passed is decided, and its marker is read ahead (`_look_ahead`); it is held
   until the marker is read, never delivered undecided while the reading ahead fails. Before, an
   aborted transaction's events were taken, and a committed one longer than a fetch's were
   dead-lettered (found by black-box tests, and again by the whole suite when Tansu answered the
   reading ahead with nothing until the wait was over)."""

from __future__ import annotations

import asyncio
import logging
import time
from typing import Any, AsyncIterator, Awaitable, Callable, Iterable, Optional

import faust
from faust.serializers import codecs
from faust.transport import consumer as faust_consumer
from faust.transport.consumer import consecutive_numbers
from faust.types import TP
from aiokafka.consumer.fetcher import PartitionRecords
from aiokafka.errors import CorruptRecordException
from aiokafka.structs import ConsumerRecord, TopicPartition

log = logging.getLogger(__name__)

FAUST_VERSION = "0.15.3"
UNIT_CODEC = "sunlight-unit"

_unit_topics: set[str] = set()
_fetch_max_wait_ms: int | None = None
_isolation_level: str | None = None
_confirm_highwaters: Callable[[str, dict], Awaitable[dict]] | None = None
_stay_when_leading_others = False
_applied = False


class FaustVersionError(RuntimeError):
    pass


def check_version() -> None:
    if faust.__version__ != FAUST_VERSION:
        raise FaustVersionError(f"streams/faust_patches.py is written for faust-streaming {FAUST_VERSION}; "
                                f"{faust.__version__} is installed: check every patch against it before "
                                f"changing the pin")


class _UnitCodec(codecs.Codec):
    """A unit's value is already the list of its records: nothing to decode."""

    def _loads(self, s: Any) -> Any:
        return s

    def _dumps(self, s: Any) -> Any:
        return s


def apply() -> None:
    """Install the patches (idempotent). Topics are made to deliver units with `deliver_units`."""
    global _applied
    check_version()
    if _applied:
        return
    codecs.register(UNIT_CODEC, _UnitCodec())
    faust_consumer.Consumer._new_offset = _new_offset
    faust_consumer.Consumer.getmany = _getmany_units
    from faust.transport.drivers import aiokafka as driver

    thread_cls = driver.AIOKafkaConsumerThread
    original = thread_cls._create_worker_consumer

    def _create_worker_consumer(self, transport):
        consumer = original(self, transport)
        if _fetch_max_wait_ms is not None:
            consumer._fetch_max_wait_ms = _fetch_max_wait_ms  # read when the consumer starts its fetcher
        if _isolation_level is not None:
            consumer._isolation_level = _isolation_level  # read there too (aiokafka 0.14.0, Fetcher(...))
        return consumer

    thread_cls._create_worker_consumer = _create_worker_consumer
    from faust.tables.manager import TableManager

    TableManager.on_start = _table_manager_start
    from aiokafka.consumer.group_coordinator import CoordinatorGroupRebalance, GroupCoordinator

    global _perform_assignment, _maybe_leave_group, _on_join_follower, _close
    _perform_assignment = GroupCoordinator._perform_assignment
    _maybe_leave_group = GroupCoordinator._maybe_leave_group
    _on_join_follower = CoordinatorGroupRebalance._on_join_follower
    _close = GroupCoordinator.close
    GroupCoordinator._perform_assignment = _assign_as_leader
    GroupCoordinator._maybe_leave_group = _leave_unless_leading_others
    GroupCoordinator.close = _close_staying_if_leading_others
    CoordinatorGroupRebalance._on_join_follower = _join_as_follower
    _applied = True


def deliver_units(topics: Iterable[str]) -> None:
    """These topics reach their agents as units (one message per partition per fetch)."""
    _unit_topics.update(topics)


# -- 1. units -------------------------------------------------------------------------------------

async def _getmany_units(self, timeout: float) -> AsyncIterator[tuple[TP, Any]]:
    """Consumer.getmany of 0.15.3, with the records of a unit topic's partition as one message."""
    records, active_partitions = await self._wait_next_records(timeout)
    generation_id = self.app.consumer_generation_id
    if records is None or self.should_stop:
        return
    if not self.flow_active:
        self.log.dev("getmany called while flow not active. Seek back to committed offsets.")
        try:
            await self.perform_seek()
        except Exception as ex:
            self.log.warning(f"exception performing seek when flow not active {ex}")
        return
    to_message = self._to_message
    units = {tp: batch for tp, batch in records.items() if tp.topic in _unit_topics and batch}
    singles = {tp: batch for tp, batch in records.items() if tp not in units}
    for tp, batch in units.items():
        if not _deliverable(self, tp, active_partitions, generation_id):
            break
        self.app.monitor.track_tp_end_offset(tp, self.highwater(tp))
        message = to_message(tp, batch[-1])
        message.value = batch
        # Faust's fetch loop takes a jump in offsets for a hole in the log, and drops what is below
        # its read offset: the unit is one step ahead of it, whatever its first offset.
        self._read_offset[tp] = batch[-1].offset - 1
        yield tp, message
    for tp, record in self.scheduler.iterate(singles):
        if not _deliverable(self, tp, active_partitions, generation_id):
            break
        self.app.monitor.track_tp_end_offset(tp, self.highwater(tp))
        yield tp, to_message(tp, record)


def _deliverable(self, tp: TP, active_partitions, generation_id) -> bool:
    if not self.flow_active:
        return False
    if self.app.consumer_generation_id != generation_id:
        self.log.dev("Generation id changed. Cancelling getmany.")
        return False
    return active_partitions is None or tp in active_partitions or tp in self._buffered_partitions



def acknowledge_unit(consumer, message, first_offset: int) -> None:
    """Acknowledge every record of a unit: its earlier offsets here, then the unit's own message."""
    _acknowledge_offsets(consumer, message.tp, first_offset, message.offset)
    consumer.ack(message)


def _acknowledge_offsets(consumer, tp: TP, start: int, end: int) -> None:
    """Offsets start..end-1 acknowledged, those not committed already, each once."""
    with faust_consumer.ack_lock:
        committed = consumer._committed_offset[tp]
        acked_index = consumer._acked_index[tp]
        acked = consumer._acked[tp]
        for offset in range(start, end):
            if (committed is None or offset >= committed) and offset not in acked_index:
                acked_index.add(offset)
                acked.append(offset)


# -- 2. commits -----------------------------------------------------------------------------------

def _new_offset(self, tp) -> Optional[int]:
    acked = self._acked[tp]
    if not acked:
        return None
    max_offset = max(acked)
    gap_for_tp = self._gap[tp]
    if gap_for_tp:  # holes in the log itself (compaction, transaction markers) count as done
        candidates = sorted(gap_for_tp.overlap(0, max_offset), key=lambda x: x.begin)
        if candidates:
            stuff_to_add = [o for entry in candidates for o in range(entry.begin, entry.end)]
            acked.extend(stuff_to_add)
            gap_for_tp.chop(0, max(stuff_to_add[-1], max_offset + 1))
    acked.sort()
    committed_offset = self._committed_offset[tp]
    if committed_offset is not None and acked[0] > committed_offset:
        return None  # the message at the committed offset is not acknowledged yet
    batch = next(consecutive_numbers(acked))
    acked[: len(batch)] = []
    self._acked_index[tp].difference_update(batch)
    return batch[-1] + 1


# -- 3. fetch wait --------------------------------------------------------------------------------

def set_fetch_max_wait(seconds: float | None) -> None:
    """The fetch wait of Faust's consumers created from now on (None: Faust's own 1.5 s)."""
    global _fetch_max_wait_ms
    _fetch_max_wait_ms = None if seconds is None else max(1, int(seconds * 1000))


def set_isolation_level(level: str | None) -> None:
    """The isolation level of Faust's consumers created from now on: "read_committed", or None
    (Faust's own: "read_uncommitted" outside a transaction)."""
    global _isolation_level
    if level not in (None, "read_committed", "read_uncommitted"):
        raise ValueError(f"isolation level {level!r}: read_committed or read_uncommitted")
    _isolation_level = level


# -- 4. high watermarks ---------------------------------------------------------------------------

def confirm_highwaters(confirm: Callable[[str, dict], Awaitable[dict]] | None) -> None:
    """Make Faust confirm ListOffsets(latest) with `confirm(bootstrap, offsets)` (Tansu quirk);
    None: take them as listed."""
    global _confirm_highwaters
    from faust.transport.drivers import aiokafka as driver

    _confirm_highwaters = confirm
    thread_cls = driver.AIOKafkaConsumerThread
    if getattr(thread_cls, "_sunlight_highwaters", False):
        return
    original = thread_cls._highwaters

    async def _highwaters(self, partitions):
        listed = dict(await original(self, partitions))
        if _confirm_highwaters is None:
            return listed
        bootstrap = self._ensure_consumer()._client._bootstrap_servers
        return await _confirm_highwaters(bootstrap, listed)

    thread_cls._highwaters = _highwaters
    thread_cls._sunlight_highwaters = True


# -- 5. holes -------------------------------------------------------------------------------------

def keep_uncommitted(consumer, tp: TP, start: int, end: int) -> None:
    """Offsets start..end-1 are not done, whatever Faust took them for (a hole it did not deliver)."""
    gaps = getattr(consumer, "_gap", {}).get(tp)
    if gaps is not None:
        gaps.chop(start, end)


def count_as_done(consumer, tp: TP, start: int, end: int) -> None:
    """Offsets start..end-1 were read and hold no record (a transaction's commit or abort marker,
    a record compacted away): acknowledged, as a unit's offsets are (`acknowledge_unit`), so that
    the partition is committed past them, even when one ends the log (a transactional producer's
    last marker: counted in Faust's `_gap` instead, it would wait for a later message, and the lag
    would stay above zero)."""
    _acknowledge_offsets(consumer, tp, start, end)


# -- 6. table writes ------------------------------------------------------------------------------

def committed_offsets(consumer, tps) -> dict:
    """The next offset to read of each partition as Faust's consumer last committed it (None:
    nothing committed yet), from its own bookkeeping (`Consumer._committed_offset`, 0.15.3): no
    broker request, nothing that could disturb the consumer group."""
    return {tp: consumer._committed_offset.get(tp) for tp in tps}


def table_key(key: str) -> bytes:
    """A table key as Faust serialises it in the changelog (key_type None: JSON)."""
    return codecs.dumps("json", key)


PLACED_KEYS = 100_000


class Outbox:
    """Records gathered while a unit is processed, sent as one batch per topic partition through
    the aiokafka producer inside Faust's (`Producer._ensure_producer`): aiokafka's `send` costs a
    future and a metadata lookup per record. Faust flushes the producer before it commits offsets,
    and the pipeline sends the outbox before a unit can be acknowledged."""

    def __init__(self, app: faust.App, partitions: int):
        self.app = app
        self.partitions = list(range(partitions))
        self.pending: dict[tuple[str, int], list[tuple[bytes | None, bytes | None, list]]] = {}
        # One send at a time: the agents share the outbox, and a key's records (a state, then its
        # tombstone) must reach their partition in the order they were added.
        self.sending = asyncio.Lock()
        from aiokafka.partitioner import DefaultPartitioner

        self.partitioner = DefaultPartitioner()
        # Where each key went: murmur2 is pure Python in aiokafka, and a case's or a peer group's
        # key comes back unit after unit. Bounded: cleared when full.
        self.placed: dict[bytes, int] = {}

    def add(self, topic: str, key: bytes | None, value: bytes | None, partition: int | None = None,
            headers: list[tuple[str, bytes]] | None = None) -> None:
        if partition is None:  # as the producer would place it: by key (Kafka's default partitioner)
            partition = self.placed.get(key) if key is not None else None
            if partition is None:
                partition = self.partitioner(key, self.partitions, self.partitions)
                if key is not None:  # a record without a key goes anywhere, each time anew
                    if len(self.placed) >= PLACED_KEYS:
                        self.placed.clear()
                    self.placed[key] = partition
        self.pending.setdefault((topic, partition), []).append((key, value, headers or []))

    def write_table(self, table, key: str, value: bytes, partition: int) -> None:
        """Put `value` in the table's data and its changelog record (raw bytes) in the outbox."""
        table.data[key] = value
        self.add(table.changelog_topic.get_topic_name(), table_key(key), value, partition)

    def delete_table(self, table, key: str, partition: int) -> None:
        """Take `key` out of the table's data, and put its tombstone (a record without a value,
        which recovery applies as a deletion and compaction removes) in the outbox."""
        table.data.pop(key, None)
        self.add(table.changelog_topic.get_topic_name(), table_key(key), None, partition)

    async def send(self) -> None:
        if not self.pending:
            return
        async with self.sending:
            pending, self.pending = self.pending, {}
            producer = self.app.producer._ensure_producer()
            for (topic, partition), records in pending.items():
                batch = producer.create_batch()
                for key, value, headers in records:
                    if batch.append(key=key, value=value, timestamp=None, headers=headers) is None:  # full: send,
                        await producer.send_batch(batch, topic, partition=partition)  # start another
                        batch = producer.create_batch()
                        batch.append(key=key, value=value, timestamp=None, headers=headers)
                await producer.send_batch(batch, topic, partition=partition)


# -- 7. table manager start -----------------------------------------------------------------------

async def _table_manager_start(self) -> None:
    """TableManager.on_start of 0.15.3 without its fixed one-second sleep."""
    if not self.should_stop:
        await self._update_channels()
        await self.recovery.start()


# -- 9. the stop's wait for acknowledgements -------------------------------------------------------

def stop_waiting_for_acknowledgements(consumer) -> int:
    """End a `wait_empty` under way (or to come) at its next check: forget the messages it waits
    for, and wake it from its one-second wait for an acknowledgement. Returns how many it waited
    for. Their offsets stay unacknowledged, so they are not committed."""
    waiting = len(consumer._unacked_messages)
    consumer._unacked_messages.clear()
    woken = consumer._waiting_for_ack
    if woken is not None and not woken.done():
        woken.set_result(None)
    return waiting


def stop_waiting_for(consumer, message) -> None:
    """A stop's `wait_empty` does not wait for `message` (a unit left for the next start: a notice a
    mail server did not take in time), woken to see so: it stays unacknowledged, not committed."""
    consumer._unacked_messages.discard(message)
    woken = consumer._waiting_for_ack
    if woken is not None and not woken.done():
        woken.set_result(None)


def after_signal_handlers(worker, install: Callable[[], None]) -> None:
    """Run `install` right after mode installs the worker's signal handlers, as its start begins
    (patch 10): mode's other handlers (SIGUSR1: the stacks) stay; what `install` sets replaces
    mode's for the same signals."""
    install_modes = worker.install_signal_handlers

    def install_signal_handlers() -> None:
        install_modes()
        install()

    worker.install_signal_handlers = install_signal_handlers


# -- 11. leaving a group on Tansu ---------------------------------------------------------------------

# aiokafka's own methods, set by `apply`.
_perform_assignment: Any = None
_maybe_leave_group: Any = None
_on_join_follower: Any = None
_close: Any = None


def set_stay_when_leading_others(stay: bool) -> None:
    """Whether a consumer that led a group of several members leaves it without LeaveGroup when it
    stops (patch 11: True against a Tansu broker that outlives the process)."""
    global _stay_when_leading_others
    _stay_when_leading_others = stay


async def _assign_as_leader(self, response):
    """GroupCoordinator._perform_assignment, noting how many members this leader was given."""
    self.sunlight_led_members = len(response.members)
    return await _perform_assignment(self, response)


async def _join_as_follower(self):
    """CoordinatorGroupRebalance._on_join_follower: this member no longer leads."""
    self._coordinator.sunlight_led_members = 0
    return await _on_join_follower(self)


async def _close_staying_if_leading_others(self) -> None:
    """GroupCoordinator.close, noting that the leave it ends with is the stop's."""
    self.sunlight_stopping = True
    await _close(self)


async def _leave_unless_leading_others(self) -> None:
    """GroupCoordinator._maybe_leave_group, except for the leader of several members on Tansu as it
    stops: its generation is reset as after a LeaveGroup, and none is sent. A leave for another
    cause (its poll interval exceeded: the heartbeat's) is sent as before: the member rejoins at
    once, and an old member of it left leading would stall the group until evicted."""
    if (_stay_when_leading_others and getattr(self, "sunlight_stopping", False) and self.generation > 0
            and getattr(self, "sunlight_led_members", 0) > 1):
        log.info("leaving group %s without LeaveGroup (it led %d members; Tansu would keep a leader that left): "
                 "evicted after the session timeout", self.group_id, self.sunlight_led_members)
        self.reset_generation()
        return
    await _maybe_leave_group(self)


def recovery_begins(app) -> None:
    """An assignment was signalled: its tables are not recovered until its recovery sets
    `completed` again (patch 12)."""
    app.tables.recovery.completed.clear()


def recovery_done(app) -> bool:
    """Whether the recovery of the latest assignment is over (patch 12)."""
    return app.tables.recovery.completed.is_set()


# -- 13. transactions decided by their markers, on Tansu ----------------------------------------------

class UndecidedRecord(ConsumerRecord):
    """A record of a transaction that neither its commit nor its abort marker followed within the
    wait (`set_transactions_from_markers`): given to Sunlight to be dead-lettered, never taken as
    an event. A type, not a header, so that no client can mark its own records so."""


_undecided_wait: float | None = None
_undecided_since: dict[tuple[str, int, int], float] = {}  # (topic, partition, batch offset): first seen
_learned: dict[tuple[str, int, int], list[tuple[int, int, bool]]] = {}  # (topic, partition, producer): read ahead
_not_found_ahead: set[tuple[str, int, int, int]] = set()  # (topic, partition, producer, batch offset)
_holding: dict[tuple[str, int], int] = {}  # (topic, partition): the offset its reading is held at
_clock: Callable[[], float] = time.monotonic
HELD_FETCH_PAUSE = 0.1  # between fetches of a partition held at an undecided transaction
LOOK_AHEAD_FETCHES = 10_000  # at most, for one marker (Tansu ends a fetch about 1 MB in)
EMPTY_ANSWERS_AHEAD = 3  # in a row, each after the consumer's fetch wait: the reading ahead is tried again later


def set_transactions_from_markers(wait: float | None, clock: Callable[[], float] | None = None) -> None:
    """Decide each transactional batch by the marker its producer writes after it (None: as aiokafka
    does, by the broker's list of aborted transactions). Tansu 0.6.0 sends that list empty, and
    stops a `read_committed` fetch for good at a transaction whose producer died; it writes the
    markers. So on Tansu the consumers read `read_uncommitted` and, like a Kafka broker's last
    stable offset, hold a partition at a batch whose marker has not come; after `wait` seconds
    (Kafka's transaction.timeout.ms, whose end a Kafka broker marks as an abort) its records are
    delivered as `UndecidedRecord`s, and the partition goes on. A batch the fetch's last stable
    offset has passed is decided: its marker, beyond the fetch, is read ahead."""
    global _undecided_wait, _clock
    _undecided_wait = wait
    _clock = clock or time.monotonic
    from aiokafka.consumer import fetcher

    if fetcher.PartitionRecords is not _RecordsDecidedByMarkers:
        _RecordsDecidedByMarkers.original_fetch = fetcher.Fetcher._proc_fetch_request
        fetcher.PartitionRecords = _RecordsDecidedByMarkers  # read in Fetcher._proc_fetch_request
        fetcher.Fetcher._proc_fetch_request = _fetch_deciding


def held_at(topic: str, partition: int) -> int | None:
    """The offset where the reading of a partition is held at a transaction whose marker has not
    been read (None: it is not held). Records from there on are waited for, not missing."""
    return _holding.get((topic, partition))


def forget_held(topic: str, partition: int) -> None:
    """The partition is no longer this process's: where its reading was held says nothing of where
    it will be if it comes back (another worker may read past it meanwhile)."""
    _holding.pop((topic, partition), None)


def _learned_fate(topic: str, partition: int, batch) -> bool | str:
    """A transactional batch's fate by a marker read ahead: True (committed), False (aborted) or
    "open" (none read)."""
    for first, marker, aborted in _learned.get((topic, partition, batch.producer_id), ()):
        if first <= batch.base_offset < marker:
            return not aborted
    return "open"


class _RecordsDecidedByMarkers(PartitionRecords):
    """aiokafka 0.14.0's PartitionRecords (consumer/fetcher.py: "self._records_iterator =
    self._unpack_records()", "_contains_abort_marker", "_consumer_record"), deciding transactions
    by their markers while `set_transactions_from_markers` is on: the batches of one fetch are read
    at once, each transactional one decided by its producer's next control batch, or by one read
    ahead (`decide`)."""

    original_fetch: Callable | None = None

    def __init__(self, tp, records, aborted_transactions, fetch_offset, *rest):
        super().__init__(tp, records, aborted_transactions, fetch_offset, *rest)
        self.held = False  # at an undecided batch, with nothing to deliver before it
        self.look_ahead: dict[int, int] = {}  # producer: its first batch whose marker lies beyond the fetch
        self._decided: list[tuple[Any, bool | str | None]] | None = None
        if _undecided_wait is not None:
            self._batches, self._fates, self._end = self._scan()
            self._records_iterator = self._unpack_decided()
        else:  # (turned off since the class was put in place: aiokafka's own reading)
            self._decided = []

    def _scan(self) -> tuple[list, list[bool | str], int]:
        """The fetch's batches, each with True (deliver), False (skip: a marker or an aborted batch),
        "open" (no marker in the fetch) or "corrupt" (its CRC does not match: the fetch ends there),
        and the offset the fetch ends at."""
        batches, fates, open_by_producer = [], [], {}
        records, end = self._records, self.next_fetch_offset
        while records.has_next():
            batch = records.next_batch()
            if self._check_crcs and not batch.validate_crc():
                batches.append(batch)  # raised where it is read, as aiokafka does: fetched again
                fates.append("corrupt")
                break
            if batch.is_control_batch:
                aborted = self._contains_abort_marker(batch)
                for index in open_by_producer.pop(batch.producer_id, ()):
                    fates[index] = not aborted
                fates.append(False)
            elif batch.producer_id is not None and batch.is_transactional:
                open_by_producer.setdefault(batch.producer_id, []).append(len(batches))
                fates.append("open")
            else:
                fates.append(True)
            batches.append(batch)
            end = max(end, batch.next_offset)
        return batches, fates, end

    def decide(self, stable: int | None, high: int | None) -> None:
        """Decide the fetch's batches, given its last stable offset and high watermark (None:
        unknown), up to the first one held: an open batch that the last stable offset has passed,
        in a fetch that ended before the high watermark, has its marker further on (`look_ahead`);
        any other waits (None: delivered as undecided once the wait is over)."""
        if self._decided is not None:
            return
        now = _clock()
        topic, partition = self._tp.topic, self._tp.partition
        start, held_from, out = self.next_fetch_offset, None, []
        for batch, fate in zip(self._batches, self._fates):
            if fate == "open":
                fate = _learned_fate(topic, partition, batch)
            if fate != "open":
                if _undecided_since and batch.is_transactional:
                    _undecided_since.pop((topic, partition, batch.base_offset), None)
                out.append((batch, fate))
                continue
            if held_from is not None:  # the others of the fetch decided by the same reading ahead
                if self._ahead(batch, stable, high):
                    self.look_ahead.setdefault(batch.producer_id, batch.base_offset)
                continue
            where = (topic, partition, batch.base_offset)
            since = _undecided_since.setdefault(where, now)
            ended = self._ahead(batch, stable, high)  # committed or aborted: never undecided, whatever the wait
            if not ended and now - since >= _undecided_wait:
                out.append((batch, None))  # (remembered: read again, after a restart, it is undecided still)
                continue
            held_from = batch.base_offset
            if not ended:
                break
            self.look_ahead[batch.producer_id] = batch.base_offset  # (held until its marker is read)
        self._decided = [(batch, fate) for batch, fate in out if held_from is None or batch.base_offset < held_from]
        self.held = held_from is not None and all(fate is False or done.next_offset <= start
                                                  for done, fate in self._decided)
        if _learned and held_from is None:  # markers read ahead that this reading has passed
            for key in [key for key in _learned if key[:2] == (topic, partition)]:
                _learned[key] = [known for known in _learned[key] if known[1] >= start]
                if not _learned[key]:
                    del _learned[key]
        current = _holding.get((topic, partition))
        if held_from is not None:
            if current is None or current >= start:  # (not a read begun beyond where the reading is held)
                _holding[topic, partition] = held_from
        elif current is not None and start <= current < self._end:
            del _holding[topic, partition]

    def _ahead(self, batch, stable: int | None, high: int | None) -> bool:
        """Whether an open batch's marker is to be read ahead: the last stable offset has passed it
        (so it is decided), the fetch ended before the log does, and no reading ahead missed it."""
        return (stable is not None and high is not None and batch.base_offset < stable and self._end < high
                and (self._tp.topic, self._tp.partition, batch.producer_id, batch.base_offset) not in _not_found_ahead)

    def _unpack_decided(self):
        self.decide(None, None)  # (unless the fetcher did, knowing the offsets)
        tp = self._tp
        for batch, fate in self._decided:
            if fate == "corrupt":
                raise CorruptRecordException(f"Invalid CRC - {tp}")
            if fate is not False:
                for record in batch:
                    if record.offset < self.next_fetch_offset:
                        continue  # the fetch began inside the batch
                    consumer_record = self._consumer_record(tp, record)
                    if fate is None:
                        consumer_record = UndecidedRecord(**vars(consumer_record))
                    self.next_fetch_offset = record.offset + 1
                    yield consumer_record
            self.next_fetch_offset = max(self.next_fetch_offset, batch.next_offset)


async def _look_ahead(fetcher_, node_id: int, tp: TopicPartition, start: int, wanted: dict[int, int],
                      high: int) -> bool:
    """Read a partition from `start` for the markers of the `wanted` producers (each with its first
    open batch), as far as `high`, remembering each one found (`_learned`); whether all were. One not
    found by `high` (or within `LOOK_AHEAD_FETCHES`) is not looked for again: its batch waits. False
    too on a fetch's error, or on `EMPTY_ANSWERS_AHEAD` answers in a row that bring nothing: tried
    again at the next fetch, for as long as it fails (the batch has ended: it never waits)."""
    from aiokafka.errors import KafkaError
    from aiokafka.protocol.fetch import FetchRequest
    from aiokafka.record.memory_records import MemoryRecords

    wanted, empty = dict(wanted), 0
    for _ in range(LOOK_AHEAD_FETCHES):
        if start >= high:
            break
        # The consumer's own wait, for at least a byte: there are records to read, and Tansu answers a
        # wait of 1 ms with none now and then (of 0, with no topics).
        request = FetchRequest(fetcher_._fetch_max_wait_ms, 1, fetcher_._fetch_max_bytes, 0,
                               [(tp.topic, [(tp.partition, start, fetcher_._max_partition_fetch_bytes)])])
        try:
            response = await fetcher_._client.send(node_id, request)
            data = [part for topic, parts in response.topics if topic == tp.topic
                    for part in parts if part[0] == tp.partition]
            if data and data[0][1] != 0:
                log.warning("%s[%s]: reading ahead from offset %d for a transaction's marker failed: error code %d",
                            tp.topic, tp.partition, start, data[0][1])
                return False
            records, progressed = MemoryRecords((data[0][-1] if data else None) or b""), False
            while records.has_next():
                batch = records.next_batch()
                if batch.next_offset <= start:
                    continue
                progressed, start = True, batch.next_offset
                if batch.is_control_batch and batch.producer_id in wanted:
                    aborted = PartitionRecords._contains_abort_marker(None, batch)  # (uses no self)
                    first = wanted.pop(batch.producer_id)
                    _learned.setdefault((tp.topic, tp.partition, batch.producer_id), []).append(
                        (first, batch.base_offset, aborted))
                    _undecided_since.pop((tp.topic, tp.partition, first), None)  # decided: no wait
                    if not wanted:
                        return True
        except KafkaError as exc:  # as aiokafka's own fetch: logged, and fetched again
            log.warning("%s[%s]: reading ahead from offset %d for a transaction's marker failed: %r", tp.topic,
                        tp.partition, start, exc)
            return False
        empty = 0 if progressed else empty + 1
        if empty >= EMPTY_ANSWERS_AHEAD:
            log.warning("%s[%s]: reading ahead from offset %d for a transaction's marker brought nothing %d times; "
                        "tried again at the next fetch", tp.topic, tp.partition, start, empty)
            return False
    for producer, first in wanted.items():  # read to the high watermark (or as far as allowed) and not found
        _not_found_ahead.add((tp.topic, tp.partition, producer, first))
    return False


async def _decide_fetched(fetcher_, assignment, node_id, request) -> bool:
    """Decide the records just fetched for each partition of `request`, reading ahead where needed;
    whether a partition is held with nothing to deliver (or could not be read ahead)."""
    pause = False
    if _undecided_wait is None:  # (turned off since the fetcher was patched)
        return pause
    for topic, partitions in request.topics:
        for partition, *_ in partitions:
            tp = TopicPartition(topic, partition)
            records = getattr(fetcher_._records.get(tp), "_partition_records", None)
            if not isinstance(records, _RecordsDecidedByMarkers) or records._decided is not None:
                continue  # (a fetch's error, or records fetched before)
            try:
                state = assignment.state_value(tp)
            except KeyError:  # (no longer assigned)
                continue
            records.decide(getattr(state, "lso", None), getattr(state, "highwater", None))
            if records.look_ahead:
                found = await _look_ahead(fetcher_, node_id, tp, records._end, records.look_ahead, state.highwater)
                pause = pause or not found
            elif records.held:
                pause = True
    return pause


async def _fetch_deciding(self, assignment, node_id, request):
    """Fetcher._proc_fetch_request, then each fetched partition's transactions decided (reading
    ahead for markers beyond the fetch), and a pause when one is held with nothing to deliver: the
    next fetch would return the same records at once (the node is in flight until this returns)."""
    result = await _RecordsDecidedByMarkers.original_fetch(self, assignment, node_id, request)
    try:
        if await _decide_fetched(self, assignment, node_id, request):
            await asyncio.sleep(HELD_FETCH_PAUSE)
    except asyncio.CancelledError:  # closed or unassigned meanwhile: as aiokafka's own fetch does
        return False
    return result
