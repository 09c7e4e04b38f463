"""`sunlight replay`'s file, sent by a process of its own (streams/replay_feed.py), against a real Tansu."""

from __future__ import annotations

import asyncio
import os
import time
from pathlib import Path

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
        feed = await FileFeed.start(path, "case-events")
        try:
            sent = await feed.send(bootstrap, on_read=reads.append, on_sent=counts.append)
        finally:
            await feed.close()
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
        feed = await FileFeed.start(path, "case-events")
        try:
            await feed.send("127.0.0.1:1")
        finally:
            await feed.close()

    with pytest.raises(BrokerError, match="events.jsonl failed after reading 1 lines"):
        asyncio.run(run())


def test_a_missing_file_is_refused_before_anything_starts(tmp_path):
    with pytest.raises(FileNotFoundError):
        asyncio.run(FileFeed.start(tmp_path / "nothing.jsonl", "case-events"))


def test_a_feed_closed_before_the_pipeline_ran_ends_its_process(tmp_path):
    path = tmp_path / "events.jsonl"
    path.write_bytes(orjson.dumps({"case_id": "C1"}) + b"\n")

    async def run():
        feed = await FileFeed.start(path, "case-events")
        started = time.monotonic()
        await feed.close()
        return feed._process.returncode, time.monotonic() - started

    code, took = asyncio.run(run())
    assert code == 0  # it stopped when told, not killed
    assert took < 5


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
        feed = await FileFeed.start(path, "case-events")
        try:
            await feed.send(bootstrap, on_read=read.append, check=check)
        finally:
            await feed.close()
            assert feed._process.returncode is not None
            ends = await end_offsets(bootstrap, "case-events", confirm=True)
            assert sum(ends.values()) < 300_000  # it did not go on to the end

    with EmbeddedBroker() as broker:
        with pytest.raises(RuntimeError, match="stopping"):
            asyncio.run(run(broker.bootstrap))


def test_a_replay_run_from_a_script_read_on_stdin_sends_its_file(tmp_path):
    """The sending process is `python -m streams.replay_feed`, not a spawned copy of the parent:
    that would re-import the parent's main module, which has no file when read on stdin."""
    import subprocess
    import sys

    path = tmp_path / "events.jsonl"
    path.write_bytes(orjson.dumps({"case_id": "C1"}) + b"\n")
    script = f"""
import asyncio
from pathlib import Path
from streams.broker import EmbeddedBroker, create_topics, end_offsets
from streams.replay_feed import FileFeed

async def run(bootstrap):
    await create_topics(bootstrap, [("case-events", 2)])
    feed = await FileFeed.start(Path({str(path)!r}), "case-events")
    try:
        print("sent", await feed.send(bootstrap))
    finally:
        await feed.close()
    print("ends", sum((await end_offsets(bootstrap, "case-events", confirm=True)).values()))

with EmbeddedBroker() as broker:
    asyncio.run(run(broker.bootstrap))
"""
    done = subprocess.run([sys.executable, "-"], input=script, text=True, capture_output=True, timeout=120,
                          env={**os.environ, "PYTHONSTARTUP": ""})
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.split() == ["sent", "1", "ends", "1"]


def test_only_lines_with_the_feeds_mark_are_its_reports(tmp_path):
    from types import SimpleNamespace

    from streams.replay_feed import MARK

    async def run():
        stdout = asyncio.StreamReader()
        stdout.feed_data(b"a library's own line\n" + MARK.encode() + b"done 3\n")
        stdout.feed_eof()
        feed = FileFeed(tmp_path / "events.jsonl", SimpleNamespace(stdout=stdout, returncode=0))
        return await feed.send("unused")

    assert asyncio.run(run()) == 3


def test_a_replay_against_a_kafka_it_cannot_reach_says_so_in_one_line(tmp_path):
    """Before, an unreachable SUNLIGHT_KAFKA ended the command with aiokafka's traceback."""
    import subprocess
    import sys

    path = tmp_path / "events.jsonl"
    path.write_bytes(orjson.dumps({"case_id": "C1"}) + b"\n")
    catalog = tmp_path / "catalog.yaml"
    catalog.write_text((Path(__file__).resolve().parents[1] / "data" / "real" / "receipt.catalog.yaml").read_text())
    env = {**os.environ, "SUNLIGHT_DATA_DIR": str(tmp_path / "data"), "SUNLIGHT_KAFKA": "127.0.0.1:1"}
    env.pop("SUNLIGHT_CLICKHOUSE", None)
    done = subprocess.run([sys.executable, "-m", "streams.cli", "replay", str(path), "--catalog", str(catalog)],
                          env=env, capture_output=True, text=True, timeout=120)
    assert done.returncode == 2, done.stderr[-2000:]
    assert "sunlight: cannot reach the Kafka broker at 127.0.0.1:1 (SUNLIGHT_KAFKA)" in done.stderr
    assert "Traceback" not in done.stderr
