"""The broker stopped and started again mid-stream: with durable storage nothing is lost.

Tansu keeps its log in the storage engine it is started with. On ``s3://`` (here a local
S3 server, `tests.integration.local_s3`) the topics, their records and the consumer group's
offsets survive a restart; on ``memory://`` (the embedded default) they do not, which the
second test shows, so the embedded broker is for runs that start and end in one process.
"""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from sinks.queries import export_alerts
from sinks.scope import Scope
from streams.broker import EmbeddedBroker, create_topics, end_offsets
from streams.runtime import produce, replay_clock, running_pipeline, wait_until_processed
from tests.integration.conftest import NOW, as_messages, identity, list_topics, pipeline_settings, \
    write_inputs
from tests.integration.local_s3 import LocalS3


async def processed(pipeline, ends, timeout=120.0):
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while any(pipeline.progress.processed_offsets.get(p, -1) < end - 1 for p, end in ends.items()):
        assert loop.time() < deadline, f"not processed in {timeout}s: {pipeline.progress}"
        await asyncio.sleep(0.05)


@pytest.mark.parametrize("kill", [False, True], ids=["sigterm", "sigkill"])
def test_the_worker_rides_out_a_broker_restart_on_durable_storage(scenario, baseline, tmp_path, kill):
    expected = baseline[0]
    catalog, _ = write_inputs(tmp_path, scenario)
    messages = as_messages(scenario.events)
    half = len(messages) // 2
    settings = pipeline_settings(tmp_path / "data")

    async def run(broker):
        async with running_pipeline(settings, catalog, clock=replay_clock(NOW), broker=broker) as running:
            first = await produce(running.bootstrap, settings.case_events_topic, messages[:half])
            await processed(running.pipeline, first)
            await asyncio.to_thread(broker.restart, kill)  # same port, same storage; the worker stays up
            second = await produce(running.bootstrap, settings.case_events_topic, messages[half:])
            ends = {p: max(first.get(p, 0), second.get(p, 0)) for p in set(first) | set(second)}
            await wait_until_processed(running.pipeline, ends, timeout=300)
            with running.pipeline.writer.lock:
                alerts = list(export_alerts(running.client, Scope.everything(), include_withdrawn=True))
                stored = running.client.query("SELECT count() FROM case_events FINAL").result_rows[0][0]
            topic_end = await end_offsets(running.bootstrap, settings.case_events_topic, confirm=True)
            return alerts, stored, topic_end

    with LocalS3(tmp_path / "s3") as s3:
        broker = EmbeddedBroker(storage=s3.storage, env=s3.tansu_env()).start()
        try:
            alerts, stored, topic_end = asyncio.run(run(broker))
        finally:
            broker.stop()
    assert sum(topic_end.values()) == len(messages)  # the first half is still in the log
    assert stored == len(messages)
    assert identity(alerts) == identity(expected)


def test_a_full_restart_of_broker_and_s3_keeps_records_and_offsets(tmp_path):
    """Both processes stopped and started again: the log and the committed offsets are there."""
    from aiokafka import AIOKafkaConsumer, TopicPartition

    messages = [(f"case-{n % 50}".encode(), f'{{"n": {n}}}'.encode()) for n in range(3000)]

    async def produce_and_commit(bootstrap):
        await create_topics(bootstrap, [("durable", 4)])
        await produce(bootstrap, "durable", messages)
        consumer = AIOKafkaConsumer("durable", bootstrap_servers=bootstrap, group_id="g", enable_auto_commit=False,
                                    auto_offset_reset="earliest", fetch_max_wait_ms=2000)
        await consumer.start()
        try:
            await consumer.getmany(timeout_ms=5000)
            await consumer.commit({TopicPartition("durable", p): 100 for p in range(4)})
        finally:
            await consumer.stop()

    async def read_back(bootstrap):
        consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, group_id="g", enable_auto_commit=False,
                                    fetch_max_wait_ms=2000)
        await consumer.start()
        try:
            committed = {p: await consumer.committed(TopicPartition("durable", p)) for p in range(4)}
        finally:
            await consumer.stop()
        reader = AIOKafkaConsumer("durable", bootstrap_servers=bootstrap, group_id=None,
                                  auto_offset_reset="earliest", fetch_max_wait_ms=2000)
        await reader.start()
        values = []
        try:
            loop = asyncio.get_running_loop()
            deadline = loop.time() + 60
            while len(values) < len(messages) and loop.time() < deadline:
                for batch in (await reader.getmany(timeout_ms=1000)).values():
                    values += [r.value for r in batch]
        finally:
            await reader.stop()
        return committed, values

    s3 = LocalS3(tmp_path / "s3").start()
    broker = EmbeddedBroker(storage=s3.storage, env=s3.tansu_env()).start()
    try:
        asyncio.run(produce_and_commit(broker.bootstrap))
        broker.stop()
        s3.stop()
        s3.start()  # same port, same folder
        broker.env = s3.tansu_env()
        broker.start()
        committed, values = asyncio.run(read_back(broker.bootstrap))
    finally:
        broker.stop()
        s3.stop()
    assert committed == {p: 100 for p in range(4)}
    assert sorted(values) == sorted(v for _, v in messages)


def test_memory_storage_forgets_everything_on_restart(tmp_path):
    async def produce_some(bootstrap):
        await create_topics(bootstrap, [("volatile", 2)])
        await produce(bootstrap, "volatile", [(b"k", b"v")] * 100)

    with EmbeddedBroker() as broker:
        asyncio.run(produce_some(broker.bootstrap))
        assert "volatile" in asyncio.run(list_topics(broker.bootstrap))
        broker.restart()
        assert "volatile" not in asyncio.run(list_topics(broker.bootstrap))


def test_a_worker_whose_cluster_lost_its_data_restores_its_open_cases_from_its_store(tmp_path, caplog):
    """Found by a black-box test: a worker on a Kafka cluster (here a broker of its own outside
    the process, its log in memory) whose broker lost its data said it was ready with no open
    case, no deadline and no ticket, and nothing warned; the store held them all. It finds the
    case changelog gone (it creates it) and seeds the cases from its embedded store."""
    import logging
    from datetime import datetime, timedelta, timezone

    import orjson

    catalog = Path(__file__).resolve().parents[1] / "data" / "contract" / "catalog.example.yaml"
    accepted = (datetime.now(timezone.utc) - timedelta(hours=1)).isoformat()  # live: a deadline ahead of each
    events = [{"event_id": f"a{n}", "case_id": f"K{n}", "item_code": "320200-XK-SCJG-0001", "type": "accepted",
               "occurred_at": accepted, "recorded_at": accepted, "officer_id": "P01", "department": "SCJG"}
              for n in range(3)]
    messages = [(event["case_id"].encode(), orjson.dumps(event)) for event in events]
    settings = pipeline_settings(tmp_path / "data")

    async def run(broker, send):
        async with running_pipeline(settings, catalog, broker=broker) as running:  # the wall clock, as a worker's
            pipeline = running.pipeline
            if send:
                ends = await produce(running.bootstrap, settings.case_events_topic, messages)
                await wait_until_processed(pipeline, ends, timeout=120)
            for _ in range(600):
                if pipeline.index_ready and len(pipeline.index) == len(events):
                    break
                await asyncio.sleep(0.05)
            return pipeline.seeded, len(pipeline.index)

    with caplog.at_level(logging.WARNING, logger="streams.runtime"), EmbeddedBroker() as broker:
        assert asyncio.run(run(broker, send=True))[1] == 3  # a deadline_near moment each
    assert "did not exist on the Kafka cluster" not in caplog.text  # (a new cluster, an empty store)
    with caplog.at_level(logging.WARNING, logger="streams.runtime"), EmbeddedBroker() as broker:  # its data gone
        seeded, indexed = asyncio.run(run(broker, send=False))
    assert seeded and indexed == 3
    assert "did not exist on the Kafka cluster" in caplog.text and "3 cases not settled were restored" in caplog.text
