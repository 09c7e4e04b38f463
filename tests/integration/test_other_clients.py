"""Events from other Kafka clients than Sunlight's own (found by a black-box test with kafka-python
and confluent-kafka producers)."""

from __future__ import annotations

import asyncio
import logging

import orjson

from streams.broker import EmbeddedBroker, committed_offsets, create_topics, end_offsets
from streams.runtime import produce, running_pipeline
from streams.steps import home_partition
from tests.integration.conftest import pipeline_settings, store_rows
from tests.unit.helpers import CONTRACT, LICENCE


def event(case_id: str, event_id: str, kind: str, day: int, **extra) -> dict:
    return {"event_id": event_id, "case_id": case_id, "item_code": LICENCE, "type": kind,
            "occurred_at": f"2026-03-{day:02d}T10:00:00+08:00", "recorded_at": f"2026-03-{day:02d}T10:05:00+08:00",
            **extra}


def send_in_a_transaction(bootstrap: str, partition: int, events: list[dict]) -> None:
    """As a transactional producer (Kafka Streams, Connect, Debezium ...) sends: its commit marker
    takes an offset that no consumer is ever given."""
    from kafka import KafkaProducer

    producer = KafkaProducer(bootstrap_servers=bootstrap, transactional_id="another-system", enable_idempotence=True)
    try:
        producer.init_transactions()
        producer.begin_transaction()
        for item in events:
            producer.send("case-events", key=item["case_id"].encode(), value=orjson.dumps(item), partition=partition)
        producer.commit_transaction()
    finally:
        producer.close()


async def committed_in_partition_0(broker, settings, end: int, timeout: float = 30.0) -> int | None:
    """The group's committed offset of case-events[0] once it reaches `end` (or when time is up)."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while True:
        committed = (await committed_offsets(broker.bootstrap, settings.app_id, "case-events",
                                             settings.partitions)).get(0)
        if committed == end or loop.time() > deadline:
            return committed
        await asyncio.sleep(0.5)


def test_a_transactions_commit_marker_is_not_a_hole_and_the_group_commits_past_it(tmp_path, caplog):
    # Before, the marker's offset was taken for a message Faust had failed to deliver: read directly
    # (no record), then never counted as done, so the group committed no further, for good. And a
    # marker that ends the partition was a warning that offsets were not delivered, after every
    # transaction of a transactional source (found by a black-box test).
    settings = pipeline_settings(tmp_path / "data")
    cases = [c for c in (f"TX-{n}" for n in range(40)) if home_partition(c, settings.partitions) == 0][:3]

    async def run():
        with EmbeddedBroker() as broker:
            async with running_pipeline(settings, CONTRACT / "catalog.example.yaml", broker=broker) as running:
                await asyncio.to_thread(send_in_a_transaction, broker.bootstrap, 0,
                                        [event(cases[0], "t1", "accepted", 2), event(cases[0], "t2", "closed", 3)])
                later = [event(case, f"{case}-a", "accepted", 2) for case in cases[1:]]
                await produce(broker.bootstrap, "case-events", [(e["case_id"].encode(), orjson.dumps(e)) for e in later])
                ends = await end_offsets(broker.bootstrap, "case-events", confirm=True)
                assert ends[0] == 5  # two events, the marker, two events
                assert await committed_in_partition_0(broker, settings, ends[0]) == ends[0]
                assert running.pipeline.progress.events_new == 4 and running.pipeline.progress.dead_letters == 0
                # A transaction last in the log: its marker ends the partition, and nothing follows it.
                await asyncio.to_thread(send_in_a_transaction, broker.bootstrap, 0, [event(cases[1], "t3", "closed", 4)])
                ends = await end_offsets(broker.bootstrap, "case-events", confirm=True)
                assert ends[0] == 7
                assert await committed_in_partition_0(broker, settings, ends[0]) == ends[0]  # lag 0, not 1 for ever
                assert running.pipeline.progress.events_new == 5

    with caplog.at_level(logging.INFO, logger="streams.delivery"):
        asyncio.run(run())
    said = [(r.levelname, r.getMessage()) for r in caplog.records if r.name == "streams.delivery"]
    assert any("not delivered for" in message for _, message in said)  # the marker that ends the log, read
    assert [message for level, message in said if level != "INFO"] == []


def test_an_aborted_transaction_is_not_taken_and_one_never_ended_is_dead_lettered_after_the_wait(tmp_path):
    # Tansu sends no list of aborted transactions: before, an aborted transaction's events were taken
    # (a case that never existed judged, another closed by a closing withdrawn), and a read_committed
    # consumer would have been held for good by a producer that died inside a transaction.
    from kafka import KafkaProducer

    settings = pipeline_settings(tmp_path / "data", transaction_timeout=3.0)
    cases = [c for c in (f"TX-{n}" for n in range(60)) if home_partition(c, settings.partitions) == 0][:5]
    kept, withdrawn, plain, abandoned, after = cases

    def send(producer, items):
        for item in items:
            producer.send("case-events", key=item["case_id"].encode(), value=orjson.dumps(item), partition=0)
        producer.flush()

    async def run():
        with EmbeddedBroker() as broker:
            async with running_pipeline(settings, CONTRACT / "catalog.example.yaml", broker=broker) as running:
                progress = running.pipeline.progress
                await asyncio.to_thread(send_in_a_transaction, broker.bootstrap, 0, [event(kept, "k1", "accepted", 2)])

                def aborted_then_abandoned():
                    producer = KafkaProducer(bootstrap_servers=broker.bootstrap, transactional_id="aborts",
                                             enable_idempotence=True)
                    producer.init_transactions()
                    producer.begin_transaction()
                    send(producer, [event(kept, "k2", "closed", 3), event(withdrawn, "w1", "accepted", 2)])
                    producer.abort_transaction()
                    producer.begin_transaction()  # and never ended: the producer dies, as it were
                    send(producer, [event(abandoned, "d1", "accepted", 2)])
                    return producer

                producer = await asyncio.to_thread(aborted_then_abandoned)
                await produce(broker.bootstrap, "case-events",
                              [(e["case_id"].encode(), orjson.dumps(e)) for e in
                               (event(plain, "p1", "accepted", 2), event(after, "a1", "accepted", 2))])
                ends = await end_offsets(broker.bootstrap, "case-events", confirm=True)
                assert ends[0] == 8  # k1, its marker, k2 and w1, their abort marker, d1, p1, a1
                started = asyncio.get_running_loop().time()
                assert await committed_in_partition_0(broker, settings, ends[0]) == ends[0]
                assert progress.events_new == 3 and progress.letters_by_reason == {"transaction_not_ended": 1}
                # held at d1 until its wait was over, as Kafka holds read_committed at an open transaction
                assert asyncio.get_running_loop().time() - started >= 2.0
                await asyncio.to_thread(producer.close, 0)

    asyncio.run(run())
    open_cases = store_rows(tmp_path / "data", "SELECT case_id, status FROM cases FINAL ORDER BY case_id")
    assert [c for c, _ in open_cases] == sorted([kept, plain, after])  # no case of an aborted event
    assert dict(open_cases)[kept] != "closed"
    letters = store_rows(tmp_path / "data", "SELECT reason, event_id, case_id, offset FROM dead_letters FINAL")
    assert letters == [("transaction_not_ended", "d1", abandoned, 5)]


def test_a_committed_transaction_longer_than_a_fetch_is_taken_whole_not_dead_lettered():
    # Found by a black-box test: Tansu ends a fetch of a long partition well before its end (about
    # 1 MB in), so a committed transaction of tens of MB showed no marker in the fetch; the partition
    # was held for the wait, then its records dead-lettered as never ended. Now the last stable
    # offset (past the transaction) sends the reader further on for the marker.
    from aiokafka import AIOKafkaConsumer, TopicPartition
    from kafka import KafkaProducer

    from streams import faust_patches

    count = 60_000
    value = orjson.dumps(event("TX-LONG", "e", "accepted", 2, attrs={"note": "x" * 150}))

    def send_long_transaction(bootstrap):
        producer = KafkaProducer(bootstrap_servers=bootstrap, transactional_id="long", enable_idempotence=True)
        try:
            producer.init_transactions()
            producer.begin_transaction()
            for _ in range(count):
                producer.send("case-events", key=b"TX-LONG", value=value, partition=0)
            producer.commit_transaction()
        finally:
            producer.close()

    async def run():
        with EmbeddedBroker() as broker:
            await create_topics(broker.bootstrap, [("case-events", 1)])
            await asyncio.to_thread(send_long_transaction, broker.bootstrap)
            faust_patches.set_transactions_from_markers(3.0)
            consumer = AIOKafkaConsumer(bootstrap_servers=broker.bootstrap, fetch_max_wait_ms=100)
            await consumer.start()
            try:
                tp = TopicPartition("case-events", 0)
                consumer.assign([tp])
                consumer.seek(tp, 0)
                read = []
                loop = asyncio.get_running_loop()
                started = loop.time()
                while len(read) < count and loop.time() - started < 30:
                    read.extend((await consumer.getmany(tp, timeout_ms=200)).get(tp, []))
                return read, loop.time() - started
            finally:
                await consumer.stop()
                faust_patches.set_transactions_from_markers(None)

    read, took = asyncio.run(run())
    assert len(read) == count and {type(record).__name__ for record in read} == {"ConsumerRecord"}
    assert took < 3.0  # not held for the wait


def test_a_topic_with_fewer_partitions_than_the_workers_is_refused_at_start_naming_it(tmp_path):
    # Before, a case-events topic another client had created first (Kafka's auto-create gives one
    # partition) crashed the case agent on its first event sent on to a partition the topic lacks,
    # while the worker stayed up, said it was ready, and ignored SIGTERM.
    from streams.broker import BrokerError, create_topics

    settings = pipeline_settings(tmp_path / "data", partitions=2)

    async def run():
        with EmbeddedBroker() as broker:
            await create_topics(broker.bootstrap, [("case-events", 1), ("alerts", 1)])
            try:
                async with running_pipeline(settings, CONTRACT / "catalog.example.yaml", broker=broker):
                    pass
            except BrokerError as exc:
                return str(exc)
            return None

    refusal = asyncio.run(run())
    assert refusal is not None and "case-events has 1 partition" in refusal
    assert "alerts has 1 partition" in refusal  # every short topic named, not the first and a count
    assert "SUNLIGHT_PARTITIONS" in refusal and "2" in refusal


def test_an_agent_that_fails_outside_its_units_fails_the_worker_instead_of_leaving_it_half_alive(tmp_path, monkeypatch):
    from streams.app import PipelineFailed

    settings = pipeline_settings(tmp_path / "data")

    async def run():
        with EmbeddedBroker() as broker:
            async with running_pipeline(settings, CONTRACT / "catalog.example.yaml", broker=broker) as running:
                pipeline = running.pipeline

                async def broken_send():
                    raise AssertionError("Unrecognized partition")

                monkeypatch.setattr(pipeline.outbox, "send", broken_send)
                item = event("FAIL-1", "f1", "accepted", 2)
                await produce(broker.bootstrap, "case-events", [(b"FAIL-1", orjson.dumps(item))])
                await asyncio.wait_for(pipeline.failed.wait(), 30)
                return pipeline.failure

    failure = asyncio.run(run())
    assert isinstance(failure, PipelineFailed) and "Unrecognized partition" in str(failure)


def test_a_topic_with_more_partitions_than_the_workers_is_read_from_where_the_group_left_it(tmp_path, caplog):
    """Found by a black-box test: case-events created with more partitions than SUNLIGHT_PARTITIONS
    (a client wrote before the first worker started, and the broker auto-created it). The events
    in the extra partitions are taken and sent on to their case's partition; but after a restart
    the group's offsets were asked for the first SUNLIGHT_PARTITIONS partitions only, so the extra
    ones looked unread from their start: read again (every event a duplicate, every bad one a
    second letter), and the nudge for that 'hole' went to a partition the internal topic lacks,
    which stopped the worker on every start after the first."""
    from streams.broker import create_topics

    settings = pipeline_settings(tmp_path / "data", partitions=2)
    events = [event(f"XP-{n}", f"XP-{n}-a", "accepted", 2) for n in range(6)]

    async def until(condition, timeout=30.0):
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while not condition() and loop.time() < deadline:
            await asyncio.sleep(0.2)

    async def run():
        with EmbeddedBroker() as broker:
            await create_topics(broker.bootstrap, [("case-events", 3)])
            from aiokafka import AIOKafkaProducer

            producer = AIOKafkaProducer(bootstrap_servers=broker.bootstrap)
            await producer.start()
            try:
                for item in events:  # all in the partition the workers do not use
                    await producer.send_and_wait("case-events", orjson.dumps(item), key=item["case_id"].encode(),
                                                 partition=2)
            finally:
                await producer.stop()
            async with running_pipeline(settings, CONTRACT / "catalog.example.yaml", broker=broker) as running:
                await until(lambda: running.pipeline.progress.events_new == len(events))
                first = running.pipeline.progress.events_new
            assert first == len(events)
            # Said at start, and the events sent on are not blamed on the clients that keyed them
            # right (the warning said "the contract keys an event by its case_id": found by a
            # black-box test).
            said = [r.getMessage() for r in caplog.records if r.levelname == "WARNING"]
            assert any("case-events has 3 partitions: more than the 2 the workers use (SUNLIGHT_PARTITIONS=2)" in m
                       for m in said), said
            moved = [m for m in said if "sent on to their case's partition" in m and "case-events[2]" in m]
            assert moved and all("beyond the 2 the workers use" in m and "not at fault" in m for m in moved), moved
            # Where the worker starts reading each partition: the extra one's committed offset too.
            committed = await committed_offsets(broker.bootstrap, settings.app_id, "case-events", settings.partitions)
            assert committed.get(2) == len(events)
            async with running_pipeline(settings, CONTRACT / "catalog.example.yaml", broker=broker) as running:
                await asyncio.sleep(15)  # past the stall window (5 s, checked every few) after which an unread partition is read directly
                progress = running.pipeline.progress
                assert (progress.events_new, progress.events_duplicate, progress.dead_letters) == (0, 0, 0)

    asyncio.run(run())


def test_records_a_client_sent_before_the_worker_created_its_topics_are_counted_as_lost(caplog):
    # Found by a black-box test: a client whose metadata was from the embedded broker before a
    # worker's restart (its fixed port, SUNLIGHT_EMBEDDED_BROKER_PORT) sent to the new broker before
    # the worker had created its topics. Tansu 0.6.0 acknowledges such records, keeps them in
    # partitions no metadata names, and empties them when the topic is created: hundreds of
    # acknowledged events lost, the new worker ready with a lag of 0 and not a word. They cannot
    # be kept (the partitions refuse records for a while after); the worker says how many were lost.
    import logging

    from aiokafka import AIOKafkaProducer
    from aiokafka.protocol.produce import ProduceRequest
    from aiokafka.record.default_records import DefaultRecordBatchBuilder

    def batch(n: int) -> bytes:
        builder = DefaultRecordBatchBuilder(magic=2, compression_type=0, is_transactional=0, producer_id=-1,
                                            producer_epoch=-1, base_sequence=-1, batch_size=1 << 20)
        for i in range(n):
            builder.append(i, timestamp=None, key=b"C-1", value=b"{}", headers=[])
        return bytes(builder.build())

    async def run():
        with EmbeddedBroker() as broker:
            producer = AIOKafkaProducer(bootstrap_servers=broker.bootstrap)
            await producer.start()
            try:  # as a client that knows the topic's partitions from the broker before sends them
                node = next(iter(producer.client.cluster.brokers())).nodeId
                for partition, n in ((0, 3), (2, 4)):
                    await producer.client.send(node, ProduceRequest(None, -1, 30000, [("case-events",
                                                                                      [(partition, batch(n))])]))
            finally:
                await producer.stop()
            await create_topics(broker.bootstrap, [("case-events", 4), ("alerts", 4)], lost_before=True)
            said = [r.getMessage() for r in caplog.records]
            caplog.clear()
            await create_topics(broker.bootstrap, [("case-events", 4), ("other", 4)], lost_before=True)
            return said, [r.getMessage() for r in caplog.records]

    with caplog.at_level(logging.ERROR, logger="streams.broker"):
        said, later = asyncio.run(run())
    assert len(said) == 1 and said[0].startswith("7 records clients sent to case-events (7) before this worker "
                                                 "created the topics are lost"), said
    assert later == []  # nothing sent before: nothing said (and the topic is there now)
