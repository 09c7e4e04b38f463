"""How replay throughput scales with worker processes, on the event-time replay workload.

    python bench/replay_scaling.py [--cases 80000] [--workers 1 2] [--partitions 4]

The workload is `bench/replay_throughput.py`'s: a generated city (seed 1) judged in event time,
as `sunlight replay --now` judges it (each partition's clock is its latest event time, never
beyond --now), so cases are late only when their own history says so. For each number of
workers, a fresh embedded broker gets the events, then that many worker processes (one consumer
group; each process runs the replay's pipeline, `running_pipeline` with the replay clock, and its
own chdb directory, since one directory opens in one process only: against a ClickHouse server
they would share it) consume them. The rate is taken from the group's committed offsets between
10% and 90% of the input, so process start-up and the group join are not counted; offsets are
committed every second, so a window of under about 20 s carries a visible rounding error (40,000
cases gave 2.00x once, 80,000 gave 1.64x). A bare aiokafka consumer that parses each record's
JSON runs on the same broker in the same run, for the ratio. The last column extrapolates to a province's year of history (6e8 events) in an hour, at
the per-worker rate measured (on 2 cores the broker and the workers share them; more workers
need more cores).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import platform
import subprocess
import sys
import time
from datetime import datetime
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.replay_throughput import bare_consumer  # noqa: E402
from bench.workload import NOW, city  # noqa: E402
from streams.app import topic_names  # noqa: E402
from streams.broker import EmbeddedBroker, committed_offsets, create_topics  # noqa: E402
from streams.runtime import produce  # noqa: E402
from streams.settings import Settings  # noqa: E402

PROVINCE_YEAR = 6e8

# One worker process of an event-time replay: the pipeline `sunlight replay` runs, without the
# sending and the end-of-input judgement (the rate is taken before the end).
WORKER = """
import asyncio, sys
from datetime import datetime
from pathlib import Path
from streams.clock import EachUnitJudgedClock
from streams.runtime import running_pipeline
from streams.settings import Settings

async def main():
    clock = EachUnitJudgedClock(datetime.fromisoformat(sys.argv[2]))
    async with running_pipeline(Settings.from_env(), Path(sys.argv[1]), clock=clock) as running:
        await running.worker.wait_until_stopped()

asyncio.run(main())
"""


async def committed_total(bootstrap: str, topic: str, partitions: int) -> int:
    return sum((await committed_offsets(bootstrap, "sunlight", topic, partitions)).values())


def run_workers(messages, catalog: Path, workers: int, partitions: int, work: Path) -> tuple[float, float, float]:
    """(events/s of the group, events/s of the bare consumer, seconds measured) on a fresh broker."""
    total = len(messages)
    root = Path(__file__).resolve().parents[1]
    with EmbeddedBroker() as broker:
        settings = Settings(partitions=partitions)
        asyncio.run(create_topics(broker.bootstrap, topic_names(settings) + [("bench-bare", partitions)]))
        asyncio.run(produce(broker.bootstrap, settings.case_events_topic, messages))
        asyncio.run(produce(broker.bootstrap, "bench-bare", messages))
        bare = asyncio.run(bare_consumer(broker.bootstrap, "bench-bare", total))
        env = {**os.environ, "SUNLIGHT_KAFKA": broker.bootstrap, "SUNLIGHT_BROKER_FLAVOUR": "tansu",
               "SUNLIGHT_PARTITIONS": str(partitions), "SUNLIGHT_SESSION_TIMEOUT": "3"}
        env.pop("SUNLIGHT_CLICKHOUSE", None)
        procs = [subprocess.Popen([sys.executable, "-c", WORKER, str(catalog), NOW.isoformat()], cwd=root,
                                  env={**env, "SUNLIGHT_DATA_DIR": str(work / f"w{workers}-p{partitions}-{n}")},
                                  stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
                 for n in range(workers)]
        try:
            marks: dict[float, float] = {}
            deadline = time.monotonic() + 3600
            while time.monotonic() < deadline and 0.9 not in marks:
                done = asyncio.run(committed_total(broker.bootstrap, settings.case_events_topic, partitions))
                now = time.perf_counter()
                for share in (0.1, 0.9):
                    if share not in marks and done >= share * total:
                        marks[share] = now
                for p in procs:
                    if p.poll() is not None:
                        raise RuntimeError(f"a worker exited early: {p.stderr.read().decode()[-3000:]}")
                time.sleep(0.1)
            seconds = marks[0.9] - marks[0.1]
            rate = 0.8 * total / seconds
        finally:
            for p in procs:
                p.terminate()
            for p in procs:
                try:
                    p.wait(timeout=60)
                except subprocess.TimeoutExpired:
                    p.kill()
    return rate, bare, seconds


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--cases", type=int, default=80000)
    parser.add_argument("--workers", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--partitions", type=int, default=4)
    args = parser.parse_args()
    _, messages, work, catalog = city(args.cases, "sunlight-scaling-")
    print(f"date: {datetime.now().isoformat(timespec='seconds')}  machine: {platform.machine()}, "
          f"{os.cpu_count()} cores, Python {platform.python_version()}")
    print(f"events: {len(messages)} ({args.cases} cases), event-time replay clock (--now {NOW.isoformat()}), "
          f"{args.partitions} partitions; rate from committed offsets, 10% to 90% of the input")
    print("workers  events/s  (over s)  bare consumer  ratio   vs 1 worker  workers for 6e8 events in 1 h")
    single = None
    for workers in args.workers:
        rate, bare, seconds = run_workers(messages, catalog, workers, args.partitions, work)
        single = single or (rate if workers == 1 else None)
        need = PROVINCE_YEAR / 3600 / (rate / workers)
        versus = f"{rate / single:10.2f}x" if single else "          -"
        print(f"{workers:7d}  {rate:8.0f}  {seconds:8.1f}  {bare:13.0f}  {rate / bare:.4f}  {versus}  {need:8.0f}", flush=True)
    print(f"load average at the end: {os.getloadavg()[0]:.2f}")
    print(f"reproduce: python bench/replay_scaling.py --cases {args.cases} --workers "
          f"{' '.join(map(str, args.workers))} --partitions {args.partitions}")


if __name__ == "__main__":
    main()
