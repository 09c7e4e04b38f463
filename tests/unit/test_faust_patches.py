"""Each patch of `streams.faust_patches` against the faust-streaming version it is written for.

Two kinds of check: that the Faust lines a patch relies on (or replaces) are still there, so a
new Faust version fails here before it fails in production; and what the patched code does,
called on consumer objects holding only the attributes Faust's own code reads. The whole path
through a real broker (units, commits, kill -9 mid-unit, recovery) is in
tests/integration/test_restart.py and test_pipeline.py.
"""

from __future__ import annotations

import asyncio
import inspect
import time
from types import SimpleNamespace

import faust
import pytest
from faust.tables.manager import TableManager
from faust.transport import consumer as faust_consumer
from faust.transport.drivers import aiokafka as driver
from aiokafka.structs import TopicPartition
from faust.types import TP
from intervaltree import IntervalTree

from streams import faust_patches

faust_patches.apply()


def test_the_pinned_version_is_installed_and_another_is_refused(monkeypatch):
    assert faust.__version__ == faust_patches.FAUST_VERSION
    monkeypatch.setattr(faust, "__version__", "0.16.0")
    with pytest.raises(faust_patches.FaustVersionError, match="0.15.3"):
        faust_patches.check_version()


def test_the_faust_lines_the_patches_rely_on_are_there():
    import faust.tables.manager as manager_module
    import faust.transport.drivers.aiokafka as driver_module

    consumer_source = inspect.getsource(faust_consumer)
    assert "gap = offset - (r_offset or 0)" in consumer_source  # units: the fetch loop's gap check
    assert "min(acked) - committed_offset > 1" in consumer_source  # commits: the line replaced
    assert "fetch_max_wait_ms=1500" in inspect.getsource(driver_module)  # fetch wait
    assert "await self.sleep(1.0)" in inspect.getsource(manager_module)  # table manager start
    assert "consumer.end_offsets(partitions)" in inspect.getsource(driver_module)  # high watermarks
    assert "self._committed_offset.update(committable_offsets)" in consumer_source  # what committed_offsets reads
    assert "while not self.should_stop and self._unacked_messages:" in consumer_source  # the stop's wait
    from aiokafka.consumer import group_coordinator

    coordinator_source = inspect.getsource(group_coordinator)
    assert "await self._maybe_leave_group()" in coordinator_source  # leaving a group on Tansu: the stop's leave
    assert "members = response.members" in coordinator_source  # ... and the members a leader is given
    import faust.tables.recovery as recovery_module

    recovery_source = inspect.getsource(recovery_module)  # recovery done: set, never cleared, by Faust
    assert "self.completed.set()" in recovery_source and "completed.clear()" not in recovery_source
    from faust.app.base import App

    assigned_source = inspect.getsource(App._on_partitions_assigned)  # ... and an assignment's recovery
    assert assigned_source.index("self.tables.on_rebalance") < assigned_source.index("self.on_partitions_assigned.send")
    from aiokafka.consumer import fetcher

    fetcher_source = inspect.getsource(fetcher)  # transactions decided by their markers: what is replaced
    assert "self._records_iterator = self._unpack_records()" in fetcher_source
    proc_fetch = faust_patches._RecordsDecidedByMarkers.original_fetch or fetcher.Fetcher._proc_fetch_request
    assert "partition_records = PartitionRecords(" in inspect.getsource(proc_fetch)  # (aiokafka's, patched or not)
    assert "self._in_flight.discard(node_id)" in fetcher_source  # a fetch task's node is in flight until it ends


def test_apply_installs_every_patch():
    assert faust_consumer.Consumer.getmany is faust_patches._getmany_units
    assert faust_consumer.Consumer._new_offset is faust_patches._new_offset
    assert TableManager.on_start is faust_patches._table_manager_start
    assert "_fetch_max_wait_ms" in inspect.getsource(driver.AIOKafkaConsumerThread._create_worker_consumer)
    from aiokafka.consumer.group_coordinator import CoordinatorGroupRebalance, GroupCoordinator

    assert GroupCoordinator._maybe_leave_group is faust_patches._leave_unless_leading_others
    assert GroupCoordinator.close is faust_patches._close_staying_if_leading_others
    assert GroupCoordinator._perform_assignment is faust_patches._assign_as_leader
    assert CoordinatorGroupRebalance._on_join_follower is faust_patches._join_as_follower


def test_only_a_leader_of_several_members_stays_in_its_group_and_only_when_told():
    """Patch 11 (the whole path against a real Tansu: tests/integration/test_broker.py)."""
    class Coordinator:
        group_id, generation, _group_instance_id, member_id = "sunlight", 4, None, "m-1"

        def __init__(self, led: int, stopping: bool):
            self.sunlight_led_members, self.sunlight_stopping, self.sent = led, stopping, []

        async def _send_req(self, request):
            self.sent.append(type(request).__name__)

        def reset_generation(self):
            self.generation = -1

    def left(led: int, stay: bool, stopping: bool = True) -> tuple[list[str], int]:
        coordinator = Coordinator(led, stopping)
        faust_patches.set_stay_when_leading_others(stay)
        try:
            asyncio.run(faust_patches._leave_unless_leading_others(coordinator))
        finally:
            faust_patches.set_stay_when_leading_others(False)
        return coordinator.sent, coordinator.generation

    assert left(2, stay=True) == ([], -1)  # reset as after a leave, none sent
    assert left(1, stay=True) == (["LeaveGroupRequest"], -1)  # a leader alone leaves
    assert left(0, stay=True) == (["LeaveGroupRequest"], -1)  # a follower leaves
    assert left(2, stay=False) == (["LeaveGroupRequest"], -1)  # on a Kafka cluster, as aiokafka does
    # A leave that is not the stop's (the heartbeat's, its poll interval exceeded) is sent: the member
    # rejoins at once, and its old self left leading would stall the group (found by a review).
    assert left(2, stay=True, stopping=False) == (["LeaveGroupRequest"], -1)


# -- 1. units -------------------------------------------------------------------------------------

def _record(offset: int, value: bytes):
    return SimpleNamespace(offset=offset, value=value)


class _FetchingConsumer:
    """What Consumer.getmany reads of its consumer, with one fetch's records."""

    def __init__(self, records):
        self._records = records
        self.app = SimpleNamespace(consumer_generation_id=1,
                                   monitor=SimpleNamespace(track_tp_end_offset=lambda tp, end: None))
        self.should_stop = False
        self.flow_active = True
        self._read_offset: dict = {}
        self._buffered_partitions: set = set()
        self.scheduler = SimpleNamespace(iterate=lambda records: ((tp, r) for tp, rs in records.items() for r in rs))
        self.log = SimpleNamespace(dev=lambda *a: None)

    async def _wait_next_records(self, timeout):
        return self._records, None

    def highwater(self, tp):
        return 100

    def _to_message(self, tp, record):
        return SimpleNamespace(tp=tp, offset=record.offset, value=record.value)


def test_a_unit_topic_partition_arrives_as_one_message_and_others_one_by_one():
    events, other = TP("case-events", 0), TP("other", 0)
    faust_patches.deliver_units(["case-events"])
    consumer = _FetchingConsumer({events: [_record(4, b"a"), _record(5, b"b"), _record(9, b"c")],
                                  other: [_record(0, b"x"), _record(1, b"y")]})

    async def take():
        return [item async for item in faust_patches._getmany_units(consumer, 1.0)]

    delivered = asyncio.run(take())
    units = [m for tp, m in delivered if tp == events]
    assert len(units) == 1
    assert units[0].offset == 9 and [r.value for r in units[0].value] == [b"a", b"b", b"c"]
    # Faust's fetch loop sees the unit one step ahead of its read offset, whatever the hole (6-8).
    assert consumer._read_offset[events] == 8
    assert [m.value for tp, m in delivered if tp == other] == [b"x", b"y"]


def test_a_rebalance_while_a_fetch_is_handed_out_stops_the_rest_of_it():
    first, second = TP("case-events", 0), TP("case-events", 1)
    faust_patches.deliver_units(["case-events"])
    consumer = _FetchingConsumer({first: [_record(0, b"a")], second: [_record(0, b"b")]})

    async def take():
        out = []
        async for item in faust_patches._getmany_units(consumer, 1.0):
            out.append(item)
            consumer.app.consumer_generation_id += 1  # the group rebalanced meanwhile
        return out

    assert [tp for tp, _ in asyncio.run(take())] == [first]


def _acking_consumer(committed):
    tp = TP("case-events", 0)
    consumer = SimpleNamespace(_acked={tp: []}, _acked_index={tp: set()}, _committed_offset={tp: committed},
                               _gap={tp: IntervalTree()}, ack=lambda message: consumer._acked[tp].append(message.offset))
    return tp, consumer


def test_acknowledging_a_unit_acknowledges_each_of_its_records():
    tp, consumer = _acking_consumer(committed=3)
    faust_patches.acknowledge_unit(consumer, SimpleNamespace(tp=tp, offset=7), first_offset=2)
    assert sorted(consumer._acked[tp]) == [3, 4, 5, 6, 7]  # 2 was committed already
    assert faust_patches._new_offset(consumer, tp) == 8


def test_committed_offsets_are_what_faust_last_committed():
    tp, consumer = _acking_consumer(committed=3)
    other = TP("ticket-actions", 1)
    assert faust_patches.committed_offsets(consumer, [tp, other]) == {tp: 3, other: None}


# -- 2. commits -----------------------------------------------------------------------------------

@pytest.mark.parametrize("committed, acked, expected", [
    (5, [5, 6, 8], 7),       # up to the first hole in what is acknowledged
    (5, [6, 7], None),       # 5 (the next to read) is not acknowledged: no commit
    (0, [1, 2], None),       # nor with the committed offset 0
    (None, [0, 1, 2], 3),    # nothing committed yet
])
def test_an_offset_is_committed_only_once_it_and_all_before_it_are_acknowledged(committed, acked, expected):
    tp, consumer = _acking_consumer(committed)
    consumer._acked[tp].extend(acked)
    consumer._acked_index[tp].update(acked)
    assert faust_patches._new_offset(consumer, tp) == expected


def test_faust_0_15_3_itself_would_commit_past_the_unacknowledged_message():
    """Why patch 2 exists: Faust's own method skips offset 5 (and offset 0) once the next are acked."""
    namespace: dict = {}
    exec(compile(_faust_new_offset_source(), "faust/transport/consumer.py", "exec"), vars(faust_consumer) | namespace,
         namespace)
    for committed, acked, skipped_to in [(5, [6, 7], 8), (0, [1, 2], 3)]:
        tp, consumer = _acking_consumer(committed)
        consumer._acked[tp].extend(acked)
        assert namespace["_new_offset"](consumer, tp) == skipped_to


def _faust_new_offset_source() -> str:
    """Faust's own Consumer._new_offset, from its source file (the class now holds the patch)."""
    import ast
    import textwrap

    source = inspect.getsource(faust_consumer)
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.ClassDef) and node.name == "Consumer":
            for item in node.body:
                if isinstance(item, ast.FunctionDef) and item.name == "_new_offset":
                    return textwrap.dedent("\n".join(source.splitlines()[item.lineno - 1:item.end_lineno]))
    raise AssertionError("Consumer._new_offset not found in faust/transport/consumer.py")


# -- 3. fetch wait --------------------------------------------------------------------------------

def test_the_fetch_wait_is_set_on_the_consumers_created_afterwards():
    app = faust.App("fetch-wait-test", broker="kafka://127.0.0.1:1", web_enabled=False, autodiscover=False)

    async def create(seconds):
        faust_patches.set_fetch_max_wait(seconds)
        thread = driver.AIOKafkaConsumerThread(app.consumer, loop=asyncio.get_running_loop())
        return thread._create_worker_consumer(app.transport)

    try:
        assert asyncio.run(create(0.1))._fetch_max_wait_ms == 100
        assert asyncio.run(create(None))._fetch_max_wait_ms == 1500  # Faust's own
    finally:
        faust_patches.set_fetch_max_wait(None)


def test_on_a_kafka_cluster_the_consumers_read_past_aborted_transactions():
    """Faust 0.15.3 reads read_uncommitted outside exactly_once, so a transaction another client
    (a source system's Kafka producer) aborted was taken as events: alerts on facts that were
    withdrawn. On a Kafka cluster the consumers read read_committed; on Tansu, which gives a
    read_committed consumer aborted records too, every record, decided by the markers (patch 13)."""
    from streams.settings import SettingError, Settings

    app = faust.App("isolation-test", broker="kafka://127.0.0.1:1", web_enabled=False, autodiscover=False)

    async def create(level):
        faust_patches.set_isolation_level(level)
        thread = driver.AIOKafkaConsumerThread(app.consumer, loop=asyncio.get_running_loop())
        return thread._create_worker_consumer(app.transport)

    cluster = Settings.from_env({"SUNLIGHT_KAFKA": "kafka-1:9092"})
    assert cluster.isolation_level == "read_committed"
    assert Settings.from_env({}).isolation_level == "read_uncommitted"  # the embedded Tansu
    tansu = Settings.from_env({"SUNLIGHT_KAFKA": "tansu:9092", "SUNLIGHT_BROKER_FLAVOUR": "tansu"})
    assert tansu.isolation_level == "read_uncommitted"
    assert tansu.transaction_timeout == 60.0  # Kafka's transaction.timeout.ms
    assert Settings.from_env({"SUNLIGHT_TRANSACTION_TIMEOUT": "5"}).transaction_timeout == 5.0
    with pytest.raises(SettingError, match="SUNLIGHT_TRANSACTION_TIMEOUT"):
        Settings.from_env({"SUNLIGHT_TRANSACTION_TIMEOUT": "0"})
    try:
        assert asyncio.run(create(cluster.isolation_level))._isolation_level == "read_committed"
        assert asyncio.run(create(None))._isolation_level == "read_uncommitted"  # Faust's own
        with pytest.raises(ValueError):
            faust_patches.set_isolation_level("dirty")
    finally:
        faust_patches.set_isolation_level(None)


# -- 4. high watermarks ---------------------------------------------------------------------------

def test_listed_end_offsets_are_confirmed_before_faust_uses_them():
    seen = []

    async def confirm(bootstrap, offsets):
        seen.append((bootstrap, dict(offsets)))
        return {tp: end + 2 for tp, end in offsets.items()}  # the batch's real end, found by a fetch

    previous = faust_patches._confirm_highwaters
    faust_patches.confirm_highwaters(confirm)
    tp = TP("case-events", 0)

    class _Consumer:
        _client = SimpleNamespace(_bootstrap_servers="127.0.0.1:9")

        async def end_offsets(self, partitions):
            return {p: 10 for p in partitions}

    thread = SimpleNamespace(_ensure_consumer=lambda: _Consumer(), consumer=SimpleNamespace(in_transaction=False))
    try:
        ends = asyncio.run(driver.AIOKafkaConsumerThread._highwaters(thread, [tp]))
        assert ends == {tp: 12}
        assert seen == [("127.0.0.1:9", {tp: 10})]
        faust_patches.confirm_highwaters(None)  # Kafka answers ListOffsets right
        assert asyncio.run(driver.AIOKafkaConsumerThread._highwaters(thread, [tp])) == {tp: 10}
    finally:
        faust_patches.confirm_highwaters(previous)


# -- 5. holes -------------------------------------------------------------------------------------

def test_a_hole_sunlight_has_not_read_is_not_counted_as_done():
    tp, consumer = _acking_consumer(committed=10)
    consumer._gap[tp].addi(10, 20)  # Faust took 10..19 for a hole in the log
    faust_patches.keep_uncommitted(consumer, tp, 12, 20)  # but 12..19 were not delivered
    consumer._acked[tp].extend([20, 21])
    assert faust_patches._new_offset(consumer, tp) == 12  # 10 and 11 done; 12 is the next to read
    assert faust_patches._new_offset(consumer, tp) is None  # and stays so until 12..19 are read


def test_offsets_read_and_found_empty_are_done_even_at_the_end_of_the_log():
    # A transaction's commit marker takes an offset no consumer is given: read directly, it holds
    # no record. Before, it was never counted as done, and the group committed no further.
    tp, consumer = _acking_consumer(committed=10)
    faust_patches.keep_uncommitted(consumer, tp, 12, 13)  # 12 was not delivered
    faust_patches.acknowledge_unit(consumer, SimpleNamespace(tp=tp, offset=11), first_offset=10)
    faust_patches.count_as_done(consumer, tp, 12, 13)  # read: no record there
    faust_patches.acknowledge_unit(consumer, SimpleNamespace(tp=tp, offset=15), first_offset=13)
    assert faust_patches._new_offset(consumer, tp) == 16
    consumer._committed_offset[tp] = 16
    faust_patches.count_as_done(consumer, tp, 14, 17)  # the log's last offset is a marker too
    assert faust_patches._new_offset(consumer, tp) == 17  # 14, 15 were committed already


# -- 6. table writes ------------------------------------------------------------------------------

def test_a_table_key_is_serialised_as_faust_serialises_table_keys():
    app = faust.App("table-key-test", broker="kafka://127.0.0.1:1", web_enabled=False, autodiscover=False,
                    store="memory://")
    table = app.Table("cases", default=None, partitions=4, value_type=bytes)
    faust_key = app.serializers.dumps_key(table.key_type, "案件-001", serializer=table.key_serializer)
    assert faust_patches.table_key("案件-001") == faust_key


def test_the_outbox_places_a_keyed_record_where_the_producer_would():
    from aiokafka.partitioner import DefaultPartitioner

    app = faust.App("outbox-test", broker="kafka://127.0.0.1:1", web_enabled=False, autodiscover=False)
    outbox = faust_patches.Outbox(app, partitions=4)
    partitioner = DefaultPartitioner()
    keys = [f"C-{n}".encode() for n in range(200)] + ["案件-3".encode()]
    faust_patches.PLACED_KEYS, kept = 50, faust_patches.PLACED_KEYS  # the memo fills and is cleared
    try:
        for _ in range(2):  # placed, then placed from the memo
            for key in keys:
                outbox.add("alerts", key, key)
                partition = partitioner(key, [0, 1, 2, 3], [0, 1, 2, 3])
                assert outbox.pending[("alerts", partition)][-1] == (key, key, [])
                assert len(outbox.placed) <= 50
    finally:
        faust_patches.PLACED_KEYS = kept
    outbox.add("ticks", None, b"t", partition=2)
    assert outbox.pending[("ticks", 2)] == [(None, b"t", [])]
    for _ in range(40):  # a record without a key: spread, never remembered
        outbox.add("letters", None, b"x")
    assert None not in outbox.placed
    assert len({partition for topic, partition in outbox.pending if topic == "letters"}) > 1


# -- 7. table manager start -----------------------------------------------------------------------

def test_the_table_manager_starts_without_faust_s_fixed_second():
    calls = []

    async def update_channels():
        calls.append("channels")

    async def start_recovery():
        calls.append("recovery")

    manager = SimpleNamespace(should_stop=False, _update_channels=update_channels,
                              recovery=SimpleNamespace(start=start_recovery))
    started = time.perf_counter()
    asyncio.run(faust_patches._table_manager_start(manager))
    assert calls == ["channels", "recovery"]
    assert time.perf_counter() - started < 0.5


# -- 9. the stop's wait for acknowledgements -------------------------------------------------------

def test_the_stops_wait_for_acknowledgements_ends_when_told_and_commits_only_what_is_acknowledged():
    """Faust 0.15.3's own `wait_empty`, run on a consumer holding the attributes it reads: it waits
    while a message taken is unacknowledged (for ever, with no time limit), and ends at once when
    told to stop waiting. The message stays unacknowledged: nothing marks it done."""
    from functools import partial
    from weakref import WeakSet

    class Taken:  # a message taken by an agent, never acknowledged (its rows could not be written)
        acked = False

    async def run() -> tuple[bool, float, list[str]]:
        commits: list[str] = []

        async def commit(*args, **kwargs):
            commits.append("commit")

        async def commit_and_end_transactions():
            commits.append("commit_and_end_transactions")

        message = Taken()
        quiet = SimpleNamespace(warning=lambda *a: None, info=lambda *a: None, dev=lambda *a: None)
        consumer = SimpleNamespace(should_stop=False, _unacked_messages=WeakSet([message]), log=quiet,
                                   diag=SimpleNamespace(set_flag=lambda f: None, unset_flag=lambda f: None),
                                   app=SimpleNamespace(agents=SimpleNamespace(human_tracebacks=lambda: "")),
                                   loop=asyncio.get_running_loop(), _waiting_for_ack=None, commit=commit,
                                   commit_and_end_transactions=commit_and_end_transactions)
        consumer._wait_for_ack = partial(faust_consumer.Consumer._wait_for_ack, consumer)
        consumer._clean_unacked_messages = partial(faust_consumer.Consumer._clean_unacked_messages, consumer)
        waiting = asyncio.ensure_future(faust_consumer.Consumer.wait_empty(consumer))
        await asyncio.sleep(1.5)  # past one of its one-second waits for an acknowledgement
        still_waiting = not waiting.done()
        told = time.monotonic()
        if one:
            faust_patches.stop_waiting_for(consumer, message)
        else:
            assert faust_patches.stop_waiting_for_acknowledgements(consumer) == 1
        await asyncio.wait_for(waiting, 5)
        return still_waiting, time.monotonic() - told, commits + [str(message.acked)]

    for one in (False, True):  # every message (the store failed), or one unit (a notice left)
        still_waiting, took, commits = asyncio.run(run())
        assert still_waiting
        assert took < 0.5  # woken, not left to its one-second wait
        assert commits[-2:] == ["commit_and_end_transactions", "False"]


def test_sunlight_s_signal_handlers_follow_mode_s_at_the_start():
    """Patch 10: mode 0.7.1 installs its signal handlers as the worker's start begins; Sunlight's
    are installed right after (a SIGTERM then was mode's, whose stop nobody waited for)."""
    from importlib.metadata import version

    from mode import worker as mode_worker

    assert version("mode-streaming") == "0.7.1"
    assert "self.install_signal_handlers()" in inspect.getsource(mode_worker.Worker.default_on_first_start)
    calls: list[str] = []

    class Worker:
        def install_signal_handlers(self) -> None:
            calls.append("mode")

    worker = Worker()
    faust_patches.after_signal_handlers(worker, lambda: calls.append("sunlight"))
    worker.install_signal_handlers()
    assert calls == ["mode", "sunlight"]


# -- 13. transactions decided by their markers, on Tansu ----------------------------------------------

def _batch(base: int, values: list[bytes], producer: int = -1, transactional: bool = False,
           marker: str | None = None) -> bytes:
    """One record batch as a broker stores it: `marker` "commit" or "abort" makes it a control batch."""
    import struct

    from aiokafka.record.default_records import _DefaultRecordBatchBuilderPy

    class Builder(_DefaultRecordBatchBuilderPy):
        def _get_attributes(self, include_compression_type=True):
            return super()._get_attributes(include_compression_type) | (self.CONTROL_MASK if marker else 0)

    builder = Builder(magic=2, compression_type=0, is_transactional=transactional or marker is not None,
                      producer_id=producer, producer_epoch=0, base_sequence=0, batch_size=1 << 20)
    if marker:
        builder.append(0, timestamp=1, key=struct.pack(">hh", 0, 1 if marker == "commit" else 0),
                       value=b"\0" * 6, headers=[])
    for index, value in enumerate(values):
        builder.append(index, timestamp=1, key=b"k", value=value, headers=[])
    data = builder.build()
    struct.pack_into(">q", data, 0, base)  # the base offset, which the broker sets (outside the CRC)
    return bytes(data)


def _read(log: list[bytes], fetch_offset: int = 0):
    from aiokafka.consumer import fetcher
    from aiokafka.record.memory_records import MemoryRecords

    records = fetcher.PartitionRecords(TP("case-events", 0), MemoryRecords(b"".join(log)), [], fetch_offset,
                                       None, None, True, 0)
    return records, [(type(r).__name__, r.offset, r.value) for r in records]


@pytest.fixture
def markers_decide():
    now = [1000.0]
    for remembered in (faust_patches._undecided_since, faust_patches._learned, faust_patches._not_found_ahead,
                       faust_patches._holding):
        remembered.clear()
    faust_patches.set_transactions_from_markers(60.0, clock=lambda: now[0])
    yield now
    faust_patches.set_transactions_from_markers(None)
    for remembered in (faust_patches._undecided_since, faust_patches._learned, faust_patches._not_found_ahead,
                       faust_patches._holding):
        remembered.clear()


def test_an_aborted_transactions_records_are_skipped_and_a_committed_ones_delivered(markers_decide):
    # Tansu 0.6.0 sends no list of aborted transactions (aiokafka's only way to know): before, an
    # aborted transaction's events were taken, alerts on facts the source withdrew.
    log = [_batch(0, [b"c1"], producer=7, transactional=True), _batch(1, [], producer=7, marker="commit"),
           _batch(2, [b"a1", b"a2"], producer=7, transactional=True), _batch(4, [b"plain"]),
           _batch(5, [], producer=7, marker="abort"), _batch(6, [b"after"])]
    records, read = _read(log)
    assert read == [("ConsumerRecord", 0, b"c1"), ("ConsumerRecord", 4, b"plain"), ("ConsumerRecord", 6, b"after")]
    assert records.next_fetch_offset == 7 and not records.held
    faust_patches.set_transactions_from_markers(None)  # aiokafka's own way, given the same log
    assert [r[2] for r in _read(log)[1]] == [b"c1", b"a1", b"a2", b"plain", b"after"]


def test_a_transaction_not_ended_holds_its_partition_then_is_delivered_undecided(markers_decide):
    now = markers_decide
    log = [_batch(0, [b"before"]), _batch(1, [b"open"], producer=9, transactional=True),
           _batch(2, [b"others"], producer=3, transactional=True), _batch(3, [], producer=3, marker="commit"),
           _batch(4, [b"plain"])]
    records, read = _read(log)
    assert read == [("ConsumerRecord", 0, b"before")]  # held at the open transaction, as Kafka's LSO would
    assert records.next_fetch_offset == 1 and not records.held
    now[0] += 30
    records, read = _read(log, fetch_offset=1)
    assert read == [] and records.next_fetch_offset == 1 and records.held  # the fetcher pauses
    assert faust_patches.held_at("case-events", 0) == 1  # not a hole: what is delivered waits for it
    now[0] += 31  # the open transaction's wait is over (60 s since it was first seen)
    records, read = _read(log, fetch_offset=1)
    assert read == [("UndecidedRecord", 1, b"open"), ("ConsumerRecord", 2, b"others"), ("ConsumerRecord", 4, b"plain")]
    assert records.next_fetch_offset == 5 and faust_patches.held_at("case-events", 0) is None
    records, read = _read(log, fetch_offset=1)  # read again (a restart, a rebalance): undecided still
    assert [(r[0], r[1]) for r in read] == [("UndecidedRecord", 1), ("ConsumerRecord", 2), ("ConsumerRecord", 4)]
    # Its marker, coming at last, decides it: read again, it is skipped.
    records, read = _read(log + [_batch(5, [], producer=9, marker="abort")], fetch_offset=1)
    assert [r[1] for r in read] == [2, 4]


def test_a_corrupt_batch_fails_where_it_is_read_as_aiokafka_fails_it(markers_decide):
    from aiokafka.errors import CorruptRecordException

    corrupt = bytearray(_batch(1, [b"damaged"]))
    corrupt[-3] ^= 0xFF
    from aiokafka.consumer import fetcher
    from aiokafka.record.memory_records import MemoryRecords

    records = fetcher.PartitionRecords(TP("case-events", 0), MemoryRecords(_batch(0, [b"sound"]) + bytes(corrupt)),
                                       [], 0, None, None, True, 0)  # made without raising (in the fetch task)
    assert next(records).value == b"sound"
    with pytest.raises(CorruptRecordException):
        next(records)


def _fetched(log: bytes, stable: int, high: int, looked_ahead: list, ahead: bytes | Exception = b""):
    """A fetcher that has just fetched `log` of case-events[0] (last stable offset `stable`, high
    watermark `high`), whose client answers a fetch with `ahead` (or raises it)."""
    from aiokafka.consumer import fetcher
    from aiokafka.record.memory_records import MemoryRecords

    tp = TopicPartition("case-events", 0)
    records = fetcher.PartitionRecords(tp, MemoryRecords(log), [], 0, None, None, True, 0)

    async def send(node_id, request):
        looked_ahead.append(request.topics)
        if isinstance(ahead, Exception):
            raise ahead
        return SimpleNamespace(topics=[("case-events", [(0, 0, high, stable, 0, [], -1, ahead)])])

    state = SimpleNamespace(lso=stable, highwater=high)
    fetched = SimpleNamespace(_records={tp: SimpleNamespace(_partition_records=records)}, _fetch_max_bytes=1 << 20,
                              _fetch_max_wait_ms=100,
                              _max_partition_fetch_bytes=1 << 20, _client=SimpleNamespace(send=send))
    assignment = SimpleNamespace(active=True, state_value=lambda tp: state)
    return fetched, assignment, records


def _fetch(fetched, assignment) -> float:
    async def fetch(self, assignment, node_id, request):
        return True

    async def timed():
        started = time.monotonic()
        request = SimpleNamespace(topics=[("case-events", [(0, 0, 1 << 20)])])
        assert await faust_patches._fetch_deciding(fetched, assignment, 1, request) is True
        return time.monotonic() - started

    original = faust_patches._RecordsDecidedByMarkers.original_fetch
    faust_patches._RecordsDecidedByMarkers.original_fetch = fetch
    try:
        return asyncio.run(timed())
    finally:
        faust_patches._RecordsDecidedByMarkers.original_fetch = original


def test_a_fetch_held_at_an_open_transaction_with_nothing_to_deliver_pauses_before_the_next(markers_decide):
    looked = []
    open_transaction = _batch(0, [b"open"], producer=9, transactional=True)
    fetched, assignment, records = _fetched(open_transaction, stable=0, high=1, looked_ahead=looked)
    assert _fetch(fetched, assignment) >= faust_patches.HELD_FETCH_PAUSE
    assert records.held and list(records) == [] and looked == []
    fetched, assignment, records = _fetched(_batch(0, [b"plain"]), stable=1, high=1, looked_ahead=looked)
    assert _fetch(fetched, assignment) < faust_patches.HELD_FETCH_PAUSE and [r.value for r in records] == [b"plain"]


def test_a_committed_transaction_whose_marker_the_fetch_did_not_reach_is_read_ahead_not_dead_lettered(markers_decide):
    # Found by a black-box test: under load Tansu ended fetches well before the commit marker of a
    # transaction of 8,000 events, the partition was held at it until the wait was over, and 51
    # committed events were dead-lettered. The last stable offset (past the transaction: decided)
    # and the high watermark (past the fetch's end) send Sunlight further on for the marker.
    now = markers_decide
    looked = []
    window = _batch(0, [b"c1", b"c2"], producer=9, transactional=True)
    further = _batch(2, [b"c3"], producer=9, transactional=True) + _batch(3, [], producer=9, marker="commit")
    fetched, assignment, records = _fetched(window, stable=4, high=4, looked_ahead=looked, ahead=further)
    assert _fetch(fetched, assignment) < faust_patches.HELD_FETCH_PAUSE  # found: fetch again at once
    assert looked == [[("case-events", [(0, 2, 1 << 20)])]]  # from where the fetch ended
    assert list(records) == [] and faust_patches._undecided_since == {}  # no wait begun: it is decided
    now[0] += 3600
    fetched, assignment, records = _fetched(window, stable=4, high=4, looked_ahead=looked)  # the same window
    _fetch(fetched, assignment)
    assert [(type(r).__name__, r.value) for r in records] == [("ConsumerRecord", b"c1"), ("ConsumerRecord", b"c2")]
    assert len(looked) == 1 and faust_patches._learned
    _read([_batch(4, [b"later"])], fetch_offset=4)  # read past its marker: not kept for ever
    assert faust_patches._learned == {}
    # An aborted one, found the same way, is skipped.
    window = _batch(4, [b"a1"], producer=5, transactional=True)
    fetched, assignment, records = _fetched(window, stable=7, high=7, looked_ahead=looked,
                                            ahead=_batch(5, [b"p"]) + _batch(6, [], producer=5, marker="abort"))
    _fetch(fetched, assignment)
    fetched, assignment, records = _fetched(window + _batch(5, [b"p"]), stable=7, high=7, looked_ahead=looked)
    _fetch(fetched, assignment)
    assert [r.value for r in records] == [b"p"]


def test_a_marker_not_found_ahead_despite_the_stable_offset_leaves_the_batch_open_for_the_wait(markers_decide):
    now = markers_decide
    looked = []
    window = _batch(0, [b"x"], producer=9, transactional=True)
    fetched, assignment, records = _fetched(window, stable=3, high=3, looked_ahead=looked,
                                            ahead=_batch(1, [b"y", b"z"]))
    assert _fetch(fetched, assignment) >= faust_patches.HELD_FETCH_PAUSE  # read to the end, no marker
    fetched, assignment, records = _fetched(window, stable=3, high=3, looked_ahead=looked)
    _fetch(fetched, assignment)
    assert list(records) == [] and len(looked) == 1  # not read ahead again: open, its wait begun
    now[0] += 61
    fetched, assignment, records = _fetched(window, stable=3, high=3, looked_ahead=looked)
    _fetch(fetched, assignment)
    assert [type(r).__name__ for r in records] == ["UndecidedRecord"]


def test_a_reading_ahead_that_fails_is_tried_again_and_never_letters_a_transaction_that_has_ended(markers_decide):
    # Found by review: an error of the fetch reading ahead (a broker gone a moment) came out of the
    # fetch task, which ended aiokafka's fetch routine: the consumer fetched nothing ever again.
    # Found later by the whole suite: Tansu answers a reading ahead with nothing now and then, and
    # failing readings ran out the wait; a committed transaction of 60,000 events was dead-lettered,
    # though the last stable offset had passed it (ended: committed or aborted, never undecided).
    from aiokafka.errors import NodeNotReadyError

    now = markers_decide
    looked = []
    window = _batch(0, [b"c1"], producer=9, transactional=True)
    for answer in (NodeNotReadyError("gone"), b""):  # an error; then fetches that bring nothing
        fetched, assignment, records = _fetched(window, stable=3, high=3, looked_ahead=looked, ahead=answer)
        assert _fetch(fetched, assignment) >= faust_patches.HELD_FETCH_PAUSE  # no error out of the fetch
        assert list(records) == [] and faust_patches._not_found_ahead == set()  # not given up: tried again
    assert len(looked) == 1 + faust_patches.EMPTY_ANSWERS_AHEAD  # empty answers asked again at once, a few
    now[0] += 61  # failing still when the wait is over: held still, read ahead again
    fetched, assignment, records = _fetched(window, stable=3, high=3, looked_ahead=looked, ahead=NodeNotReadyError())
    _fetch(fetched, assignment)
    assert list(records) == [] and records.held and len(looked) == 2 + faust_patches.EMPTY_ANSWERS_AHEAD
    further = _batch(1, [b"c2"], producer=9, transactional=True) + _batch(2, [], producer=9, marker="commit")
    fetched, assignment, records = _fetched(window, stable=3, high=3, looked_ahead=looked, ahead=further)
    _fetch(fetched, assignment)  # the marker read at last
    fetched, assignment, records = _fetched(window, stable=3, high=3, looked_ahead=looked)
    _fetch(fetched, assignment)
    assert [(type(r).__name__, r.value) for r in records] == [("ConsumerRecord", b"c1")]


def test_a_reading_ahead_answered_with_nothing_a_moment_goes_on_from_where_it_was(markers_decide):
    # Tansu answers a fetch with no records now and then; the reading ahead asks again, from the
    # offset it had reached, instead of giving up (and starting again, 0.1 s later, from the fetch's end).
    looked = []
    answers = [_batch(1, [b"c2"], producer=9, transactional=True), b"",
               _batch(2, [b"c3"], producer=9, transactional=True), b"", b"", _batch(3, [], producer=9, marker="abort")]
    window = _batch(0, [b"c1"], producer=9, transactional=True)
    fetched, assignment, records = _fetched(window, stable=4, high=4, looked_ahead=looked)
    send = fetched._client.send

    async def answered(node_id, request):
        response = await send(node_id, request)
        response.topics[0][1][0] = response.topics[0][1][0][:-1] + (answers.pop(0),)
        return response

    fetched._client.send = answered
    assert _fetch(fetched, assignment) < faust_patches.HELD_FETCH_PAUSE and answers == []
    assert [topics[0][1][0][1] for topics in looked] == [1, 2, 2, 3, 3, 3]  # from where it was, each time
    assert faust_patches._learned == {("case-events", 0, 9): [(0, 3, True)]}


def test_turned_off_after_it_was_on_the_fetcher_reads_as_aiokafka_does(markers_decide):
    # Found by review: the patched fetcher stays in place, and its records made while it is off had
    # nothing to decide; each fetch raised AttributeError, which ended the fetch routine.
    faust_patches.set_transactions_from_markers(None)
    looked = []
    fetched, assignment, records = _fetched(_batch(0, [b"plain"]) + _batch(1, [b"t"], producer=4, transactional=True),
                                            stable=0, high=2, looked_ahead=looked)
    assert _fetch(fetched, assignment) < faust_patches.HELD_FETCH_PAUSE
    assert [r.value for r in records] == [b"plain", b"t"] and looked == []


def test_where_a_partition_was_held_is_forgotten_when_it_is_revoked(markers_decide):
    # Found by review: held at 1, then revoked; another worker read past it, and the partition came
    # back: the stall watch would have waited at an offset long passed.
    _read([_batch(0, [b"before"]), _batch(1, [b"open"], producer=9, transactional=True)])
    assert faust_patches.held_at("case-events", 0) == 1
    faust_patches.forget_held("case-events", 0)
    assert faust_patches.held_at("case-events", 0) is None
