"""`sunlight replay`'s file, sent by a process of its own (streams/replay_feed.py), against a real Tansu."""

from __future__ import annotations

import asyncio
import time

import orjson
import pytest
from aiokafka.partitioner import DefaultPartitioner

from streams.broker import BrokerError, EmbeddedBroker, create_topics, end_offsets, fetch_range
from streams.replay_feed import FileFeed

PARTITIONS = [0, 1, 2, 3]


def test_a_file_is_sent_whole_each_keyed_line_to_its_cases_partition(tmp_path):
    lines = [orjson.dumps({"case_id": f"案件-{n % 37}", "n": n}) for n in range(25_000)]
    lines[10] = b"{not json"  # no key: sent all the same, to some partition
    lines[20] = orjson.dumps({"case_id": 7, "n": 20})
    path = tmp_path / "events.jsonl"
    path.write_bytes(b"\n".join(lines[:100]) + b"\n\n   \n" + b"\n".join(lines[100:]) + b"\n")
    counts, reads = [], []

    async def run(bootstrap):
        await create_topics(bootstrap, [("case-events", 4)])
        feed = FileFeed(path, "case-events")
        try:
            sent = await feed.send(bootstrap, on_read=reads.append, on_sent=counts.append)
        finally:
            feed.close()
        ends = await end_offsets(bootstrap, "case-events", confirm=True)
        return sent, {p: await fetch_range(bootstrap, "case-events", p, 0, end) for p, end in ends.items()}

    with EmbeddedBroker() as broker:
        sent, records = asyncio.run(run(broker.bootstrap))
    assert sent == len(lines) and reads == [len(lines)]  # blank lines are not events
    assert counts[-1] == len(lines) and counts == sorted(counts) and len(counts) >= 2
    partitioner = DefaultPartitioner()
    received = {}
    for partition, held in records.items():
        for record in held:
            received[record.value] = (record.key, partition)
    assert set(received) == set(lines)
    for line in lines:
        key, partition = received[line]
        if line in (lines[10], lines[20]):
            assert key is None
        else:
            assert key == orjson.loads(line)["case_id"].encode()
            assert partition == partitioner(key, PARTITIONS, PARTITIONS)
    for held in records.values():  # each partition in the file's order
        order = [lines.index(r.value) for r in held]
        assert order == sorted(order)


def test_a_feed_that_cannot_reach_the_broker_fails_with_the_reason(tmp_path):
    path = tmp_path / "events.jsonl"
    path.write_bytes(orjson.dumps({"case_id": "C1"}) + b"\n")

    async def run():
        feed = FileFeed(path, "case-events")
        try:
            await feed.send("127.0.0.1:1")
        finally:
            feed.close()

    with pytest.raises(BrokerError, match="events.jsonl failed after reading 1 lines"):
        asyncio.run(run())


def test_a_missing_file_is_refused_before_anything_starts(tmp_path):
    with pytest.raises(FileNotFoundError):
        FileFeed(tmp_path / "nothing.jsonl", "case-events")


def test_a_feed_closed_before_the_pipeline_ran_ends_its_process(tmp_path):
    path = tmp_path / "events.jsonl"
    path.write_bytes(orjson.dumps({"case_id": "C1"}) + b"\n")
    feed = FileFeed(path, "case-events")
    process = feed._process
    started = time.monotonic()
    feed.close()
    assert not process.is_alive()
    assert process.exitcode == 0  # it stopped when told, not killed
    assert time.monotonic() - started < 5


def test_a_pipeline_that_stops_while_the_file_is_sent_ends_the_sending(tmp_path):
    """`check` (the pipeline failed or was asked to stop) ends the wait, and `close` the child,
    in the middle of sending a large file."""
    path = tmp_path / "events.jsonl"
    path.write_bytes(b"".join(orjson.dumps({"case_id": f"C{n}", "pad": "x" * 200}) + b"\n" for n in range(300_000)))
    read = []

    def check():
        if read:
            raise RuntimeError("the pipeline is stopping")

    async def run(bootstrap):
        await create_topics(bootstrap, [("case-events", 4)])
        feed = FileFeed(path, "case-events")
        try:
            await feed.send(bootstrap, on_read=read.append, check=check)
        finally:
            process = feed._process
            feed.close()
            assert not process.is_alive()
            ends = await end_offsets(bootstrap, "case-events", confirm=True)
            assert sum(ends.values()) < 300_000  # it did not go on to the end

    with EmbeddedBroker() as broker:
        with pytest.raises(RuntimeError, match="stopping"):
            asyncio.run(run(broker.bootstrap))
