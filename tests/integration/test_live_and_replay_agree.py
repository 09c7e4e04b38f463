"""The same events hold the same open alerts live and in replay.

A long-lived `sunlight worker` on a standalone broker is fed by other Kafka clients
(kafka-python and aiokafka, with lz4, snappy and zstd compression, some events without a key or
keyed by something else than their case), judging on the wall clock; then `sunlight replay --now T`, with T the moment the
live run ended, judges the same events on event time. Both must hold the same open alerts.
"""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import time
from datetime import datetime, timezone

import orjson

from alerts.scenario import generate
from streams.broker import EmbeddedBroker, committed_offsets, end_offsets
from tests.integration.conftest import identity, start_worker, write_inputs


async def settled(bootstrap: str, topics: list[str], partitions: int) -> bool:
    """Has the worker committed every message now in `topics`?"""
    for topic in topics:
        ends = await end_offsets(bootstrap, topic, confirm=True)
        done = await committed_offsets(bootstrap, "sunlight", topic, partitions)
        if any(done.get(p, 0) < end for p, end in ends.items() if end > 0):
            return False
    return True


async def send_with_aiokafka(bootstrap: str, compression: str, events: list[dict], key: str) -> None:
    from aiokafka import AIOKafkaProducer

    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, acks="all", linger_ms=5, compression_type=compression)
    await producer.start()
    try:
        for event in events:
            await producer.send("case-events", key=event[key].encode(), value=orjson.dumps(event))
        await producer.flush()
    finally:
        await producer.stop()


def wait_settled(bootstrap: str, workers, partitions: int) -> None:
    """Every message the workers take committed, and nothing new for a few seconds."""
    topics = ["case-events", "sunlight-case-ticks", "sunlight-penalty-peers"]
    deadline, quiet_since = time.monotonic() + 300, None
    while True:
        assert time.monotonic() < deadline, "the workers did not finish"
        assert all(w.poll() is None for w in workers), "a worker exited"
        if asyncio.run(settled(bootstrap, topics, partitions)):
            quiet_since = quiet_since or time.monotonic()
            if time.monotonic() - quiet_since > 4:
                return
        else:
            quiet_since = None
        time.sleep(0.5)


def export(env, *options: str) -> list[dict]:
    out = subprocess.run([sys.executable, "-m", "streams.cli", "alerts", "export", *options], env=env,
                         capture_output=True, timeout=300)
    assert out.returncode == 0, out.stderr.decode()[-3000:]
    return [orjson.loads(line) for line in out.stdout.splitlines()]


def test_a_live_worker_fed_by_kafka_python_and_a_replay_at_its_end_hold_the_same_alerts(tmp_path):
    from kafka import KafkaProducer

    from streams.steps import home_partition

    scenario = generate(cases=300, violation_rate=0.03, seed=5, now=datetime.now(timezone.utc))
    # One closed case whose acceptance is refused, its events all sent in order to the partition
    # that is not its case's (as a client placing by another partitioner, librdkafka's default,
    # does): it waits for the acceptance, live as in the replay. Before, the refusal reached the
    # case's partition through another topic, after the case's other events, and the live worker
    # raised a red skipped_node ("closed without 受理") the replay never had.
    by_case: dict[str, list[dict]] = {}
    for event in scenario.events:
        by_case.setdefault(event["case_id"], []).append(event)
    waiting = next(c for c, evs in sorted(by_case.items()) if scenario.truth.get(c) is None
                   and "closed" in {e["type"] for e in evs})
    refused = next(e for e in by_case[waiting] if e["type"] == "accepted")
    scenario.events[scenario.events.index(refused)] = {**refused, "attrs": {"promised_days": "five"}}
    elsewhere = sorted((e for e in scenario.events if e["case_id"] == waiting), key=lambda e: e["occurred_at"])
    catalog, events = write_inputs(tmp_path, scenario)
    base = {**os.environ, "SUNLIGHT_PARTITIONS": "2", "SUNLIGHT_SESSION_TIMEOUT": "3",
            "SUNLIGHT_TICK_INTERVAL": "0.2", "SUNLIGHT_FLUSH_INTERVAL": "0.3", "SUNLIGHT_CATALOG": str(catalog),
            "SUNLIGHT_METRICS_PORT": "0"}
    base.pop("SUNLIGHT_CLICKHOUSE", None)
    live_env = {**base, "SUNLIGHT_DATA_DIR": str(tmp_path / "live")}
    with EmbeddedBroker() as broker:
        # A lone worker told to let settled cases go, as it did by default before: a case let go and
        # read back (for a peer group's verdict) must be judged as the replay judges it.
        live_env.update(SUNLIGHT_KAFKA=broker.bootstrap, SUNLIGHT_BROKER_FLAVOUR="tansu",
                        SUNLIGHT_CASE_RETENTION_DAYS="30")
        worker = start_worker(live_env, broker.bootstrap)
        try:
            # Other clients, one event per record, each case's events through one of them: keyed
            # by case as the contract asks, with the compressions Java and librdkafka clients use;
            # and, misused, without a key or keyed by the event (sent on to the case's partition).
            groups: dict[int, list[dict]] = {}
            for event in scenario.events:
                if event["case_id"] != waiting:
                    groups.setdefault(int(event["case_id"][-1]) % 4, []).append(event)
            producer = KafkaProducer(bootstrap_servers=broker.bootstrap, acks="all", linger_ms=5,
                                     compression_type="lz4")
            for event in elsewhere:
                producer.send("case-events", key=event["case_id"].encode(), value=orjson.dumps(event),
                              partition=1 - home_partition(waiting, 2))
            for event in groups.get(0, []):
                producer.send("case-events", key=event["case_id"].encode(), value=orjson.dumps(event))
            for event in groups.get(1, []):
                producer.send("case-events", value=orjson.dumps(event))
            producer.flush(timeout=60)
            producer.close()
            asyncio.run(send_with_aiokafka(broker.bootstrap, "snappy", groups.get(2, []), key="event_id"))
            asyncio.run(send_with_aiokafka(broker.bootstrap, "zstd", groups.get(3, []), key="case_id"))
            wait_settled(broker.bootstrap, [worker], 2)
            ended = datetime.now(timezone.utc)
            worker.send_signal(signal.SIGTERM)
            _, err = worker.communicate(timeout=120)
        finally:
            if worker.poll() is None:
                worker.kill()
    assert worker.returncode == 0, err[-3000:]
    assert "Traceback" not in err, err[-3000:]
    live = export(live_env)

    replay_env = {**base, "SUNLIGHT_DATA_DIR": str(tmp_path / "replayed")}
    replay_env.pop("SUNLIGHT_KAFKA", None)
    done = subprocess.run([sys.executable, "-m", "streams.cli", "replay", str(events), "--catalog", str(catalog),
                           "--now", ended.isoformat()], env=replay_env, capture_output=True, timeout=600)
    assert done.returncode == 0, done.stderr.decode()[-3000:]
    replayed = export(replay_env)
    assert live and identity(live) == identity(replayed)
    assert [a for a in live if a["case_id"] == waiting] == []
    listed = subprocess.run([sys.executable, "-m", "streams.cli", "dlq", "list", "--format", "jsonl"], env=live_env,
                            capture_output=True, timeout=300)
    letters = [orjson.loads(line) for line in listed.stdout.splitlines()]
    # One letter, where the client's record came in (the copy sent on, marked, wrote none).
    assert [(x["case_id"], x["event_id"], x["partition"]) for x in letters] == [
        (waiting, refused["event_id"], 1 - home_partition(waiting, 2))]
    found = {(a["case_id"], a["rule"]) for a in live}
    missed = [(c, r.value) for c, r in scenario.truth.items() if r is not None and (c, r.value) not in found]
    assert missed == []
