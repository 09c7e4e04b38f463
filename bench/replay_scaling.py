"""How replay throughput scales with worker processes and partitions.

    python bench/replay_scaling.py [--cases 6000] [--workers 1 2] [--partitions 2 4 8]

For each combination: a fresh embedded broker gets the generated city's events, then that
many `sunlight worker` processes (one consumer group, each its own store directory, since one
chdb directory opens in one process only; against a ClickHouse server they would share it)
consume them. The rate is taken from the group's committed offsets between 10% and 90% of the
input, so process start-up and the group join are not counted. Reported next to a bare
aiokafka consumer on the same broker, and extrapolated to a province's year (6e8 events).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import platform
import subprocess
import sys
import tempfile
import time
from datetime import datetime, timezone
from pathlib import Path

import orjson
import yaml

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from alerts.scenario import generate  # noqa: E402
from bench.replay_throughput import bare_consumer  # noqa: E402
from streams.app import topic_names  # noqa: E402
from streams.broker import EmbeddedBroker, committed_offsets, create_topics  # noqa: E402
from streams.runtime import produce  # noqa: E402
from streams.settings import Settings  # noqa: E402

NOW = datetime(2026, 6, 1, 12, tzinfo=timezone.utc)
PROVINCE_YEAR = 6e8


async def committed_total(bootstrap: str, topic: str, partitions: int) -> int:
    return sum((await committed_offsets(bootstrap, "sunlight", topic, partitions)).values())


def run_case(messages, catalog: Path, workers: int, partitions: int, work: Path) -> tuple[float, float]:
    total = len(messages)
    with EmbeddedBroker() as broker:
        settings = Settings(partitions=partitions)
        asyncio.run(create_topics(broker.bootstrap, topic_names(settings) + [("bench-bare", partitions)]))
        asyncio.run(produce(broker.bootstrap, settings.case_events_topic, messages))
        asyncio.run(produce(broker.bootstrap, "bench-bare", messages))
        bare = asyncio.run(bare_consumer(broker.bootstrap, "bench-bare", total))
        env = {**os.environ, "SUNLIGHT_KAFKA": broker.bootstrap, "SUNLIGHT_BROKER_FLAVOUR": "tansu",
               "SUNLIGHT_PARTITIONS": str(partitions), "SUNLIGHT_SESSION_TIMEOUT": "3",
               "SUNLIGHT_CATALOG": str(catalog)}
        env.pop("SUNLIGHT_CLICKHOUSE", None)
        procs = []
        for n in range(workers):
            procs.append(subprocess.Popen([sys.executable, "-m", "streams.cli", "worker"],
                                          env={**env, "SUNLIGHT_DATA_DIR": str(work / f"w{workers}-p{partitions}-{n}")},
                                          stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL))
        try:
            marks: dict[float, float] = {}
            deadline = time.monotonic() + 3600
            while time.monotonic() < deadline:
                done = asyncio.run(committed_total(broker.bootstrap, settings.case_events_topic, partitions))
                now = time.perf_counter()
                for share in (0.1, 0.9):
                    if share not in marks and done >= share * total:
                        marks[share] = now
                if 0.9 in marks:
                    break
                if any(p.poll() is not None for p in procs):
                    raise RuntimeError("a worker exited early")
                time.sleep(0.2)
            rate = 0.8 * total / (marks[0.9] - marks[0.1])
        finally:
            for p in procs:
                p.terminate()
            for p in procs:
                try:
                    p.wait(timeout=30)
                except subprocess.TimeoutExpired:
                    p.kill()
    return rate, bare


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--cases", type=int, default=6000)
    parser.add_argument("--workers", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--partitions", type=int, nargs="+", default=[4])
    args = parser.parse_args()
    scenario = generate(cases=args.cases, seed=1, now=NOW)
    messages = [(e["case_id"].encode(), orjson.dumps(e)) for e in scenario.events]
    work = Path(tempfile.mkdtemp(prefix="sunlight-scaling-"))
    catalog = work / "catalog.yaml"
    catalog.write_text(yaml.safe_dump(scenario.catalog, allow_unicode=True), encoding="utf-8")
    print(f"date: {datetime.now().isoformat(timespec='seconds')}  machine: {platform.machine()}, "
          f"{os.cpu_count()} cores, Python {platform.python_version()}")
    print(f"events: {len(messages)} ({args.cases} cases); rate from committed offsets, 10% to 90% of the input")
    print("workers  partitions  events/s  bare consumer  ratio   workers for 6e8 events in 1 h")
    for partitions in args.partitions:
        for workers in args.workers:
            rate, bare = run_case(messages, catalog, workers, partitions, work)
            per_worker = rate / workers
            need = PROVINCE_YEAR / 3600 / per_worker
            print(f"{workers:7d}  {partitions:10d}  {rate:8.0f}  {bare:13.0f}  {rate / bare:.4f}  {need:8.0f}",
                  flush=True)
    print(f"load average at the end: {os.getloadavg()[0]:.2f}")
    print(f"reproduce: python bench/replay_scaling.py --cases {args.cases} --workers "
          f"{' '.join(map(str, args.workers))} --partitions {' '.join(map(str, args.partitions))}")


if __name__ == "__main__":
    main()
