"""A second worker joins: the partitions it is given move to it with their cases' state.

Two `sunlight worker` processes in one consumer group on a standalone broker, each with a store
of its own (chdb opens a directory in one process only; against a ClickHouse server they would
share one). The first takes half of each case's events; the second joins, the group rebalances,
and the second takes over some partitions, recovering their cases from the table's changelog;
then the rest of the events come. What the two stores hold together (each alert's latest
version) is what a replay of all the events holds: nothing lost in the move, no case judged on
half its history (a case recovered without its first events would raise false red cards: closed
without 受理).
"""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import time
from datetime import datetime, timezone

from alerts.scenario import generate
from streams.broker import EmbeddedBroker, free_port
from tests.integration.conftest import http_get, identity, start_worker, stopped_worker, write_inputs
from tests.integration.test_live_and_replay_agree import export, send_with_aiokafka, wait_settled


def test_a_worker_that_joins_takes_its_partitions_cases_from_the_changelog_and_nothing_is_lost(tmp_path):
    scenario = generate(cases=300, violation_rate=0.05, seed=11, now=datetime.now(timezone.utc))
    by_case: dict[str, list[dict]] = {}
    for event in scenario.events:
        by_case.setdefault(event["case_id"], []).append(event)
    first, rest = [], []
    for events in by_case.values():  # each case's earlier half before the second worker joins
        ordered = sorted(events, key=lambda e: e["occurred_at"])
        first += ordered[:(len(ordered) + 1) // 2]
        rest += ordered[(len(ordered) + 1) // 2:]
    catalog, events = write_inputs(tmp_path, scenario)
    partitions = 4
    base = {**os.environ, "SUNLIGHT_PARTITIONS": str(partitions), "SUNLIGHT_SESSION_TIMEOUT": "3",
            "SUNLIGHT_TICK_INTERVAL": "0.2", "SUNLIGHT_FLUSH_INTERVAL": "0.3", "SUNLIGHT_CATALOG": str(catalog)}
    base.pop("SUNLIGHT_CLICKHOUSE", None)
    base.pop("SUNLIGHT_CASE_RETENTION_DAYS", None)  # a store each: every case kept (a case let go is read back)
    ports = free_port(), free_port()
    envs = [{**base, "SUNLIGHT_DATA_DIR": str(tmp_path / name), "SUNLIGHT_METRICS_PORT": str(port)}
            for name, port in zip(("one", "two"), ports)]
    workers = []
    with EmbeddedBroker() as broker:
        for env in envs:
            env.update(SUNLIGHT_KAFKA=broker.bootstrap, SUNLIGHT_BROKER_FLAVOUR="tansu")
        try:
            workers.append(start_worker(envs[0], broker.bootstrap))
            asyncio.run(send_with_aiokafka(broker.bootstrap, "lz4", first, key="case_id"))
            wait_settled(broker.bootstrap, workers, partitions)
            workers.append(start_worker(envs[1], broker.bootstrap))
            deadline = time.monotonic() + 120
            # Each ready: it holds partitions, its tables recovered.
            while not all(http_get(f"http://127.0.0.1:{port}/readyz")[0] == 200 for port in ports):
                assert time.monotonic() < deadline and all(w.poll() is None for w in workers), \
                    "the group did not rebalance"
                time.sleep(0.5)
            asyncio.run(send_with_aiokafka(broker.bootstrap, "lz4", rest, key="case_id"))
            wait_settled(broker.bootstrap, workers, partitions)
            ended = datetime.now(timezone.utc)
            logs = [stopped_worker(w, timeout=120)[1] for w in workers]
        finally:
            for worker in workers:
                if worker.poll() is None:
                    worker.kill()
    for worker, log in zip(workers, logs):
        assert worker.returncode == 0 and "Traceback" not in log, log[-3000:]
    stored = [export(env, "--all") for env in envs]
    assert stored[1], "the second worker judged nothing: no partition moved to it"
    latest: dict[str, dict] = {}
    for alert in stored[0] + stored[1]:
        if alert["alert_id"] not in latest or alert["version"] > latest[alert["alert_id"]]["version"]:
            latest[alert["alert_id"]] = alert
    moved = {a["case_id"] for a in stored[1]} & {e["case_id"] for e in first}
    assert moved, "no case judged by the first worker was taken over by the second"

    replay_env = {**base, "SUNLIGHT_DATA_DIR": str(tmp_path / "replayed"), "SUNLIGHT_METRICS_PORT": "0"}
    done = subprocess.run([sys.executable, "-m", "streams.cli", "replay", str(events), "--catalog", str(catalog),
                           "--now", ended.isoformat()], env=replay_env, capture_output=True, timeout=600)
    assert done.returncode == 0, done.stderr.decode()[-3000:]
    replayed = export(replay_env, "--all")
    assert replayed and identity(list(latest.values())) == identity(replayed)
