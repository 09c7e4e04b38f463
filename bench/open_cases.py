"""Many open cases in a real worker: memory per open case, and deadline-to-alert delay.

    python bench/open_cases.py [--sizes 250000 1000000] [--due 200]

For each size N, a fresh `sunlight worker` process (the real worker: Faust, its tables, the
deadline index, the caches and the embedded chdb, all with their defaults) runs against an
embedded broker this script starts, and N cases are sent to it, each one `accepted` event of a
licence item accepted yesterday with 10 working days to go: N open cases, each in the table and
the deadline index, none due. Once the worker has committed all of them (and its RSS has
settled), its resident memory is read from /proc (VmRSS, and the peak VmHWM). The memory per
open case is the slope of the peak between the two sizes: what one more open case costs the
whole process, allocator and chdb included.

At the largest size, `--due` more cases are then sent whose deadline, stated by the source
system (`attrs.deadline`, part of the contract), falls 5 s to 5 + 0.25·due s ahead, so that they
fall due at random phases of the worker's tick and flush timers.

Between the two, the worker's CPU time over 20 s with nothing due (ticks, flushes, heartbeats and
fetches) shows whether the idle cost grows with the number of open cases. Each one's `overdue` alert is
published on the `alerts` topic after its row is written to ClickHouse; the delay is from the
deadline to the moment this script reads the record (an upper bound of when the alert became
queryable).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import platform
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from contextlib import contextmanager
from datetime import datetime, timedelta, timezone
from pathlib import Path

import orjson
import yaml

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from alerts.scenario import build_catalog  # noqa: E402
from streams.broker import EmbeddedBroker, committed_offsets, end_offsets  # noqa: E402
from streams.runtime import produce  # noqa: E402

PARTITIONS = 4
IDLE_SECONDS = 20.0


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of a process so far."""
    fields = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def status(pid: int) -> dict[str, int]:
    """VmRSS and VmHWM of a process, in bytes."""
    out = {}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        name, _, value = line.partition(":")
        if name in ("VmRSS", "VmHWM"):
            out[name] = int(value.split()[0]) * 1024
    return out


async def settled(bootstrap: str, topics: list[str]) -> bool:
    for topic in topics:
        ends = await end_offsets(bootstrap, topic, confirm=True)
        done = await committed_offsets(bootstrap, "sunlight", topic, PARTITIONS)
        if any(done.get(p, 0) < end for p, end in ends.items() if end > 0):
            return False
    return True


def open_cases(n: int, item: str, prefix: str) -> list[tuple[bytes, bytes]]:
    accepted = (datetime.now(timezone.utc) - timedelta(days=1)).isoformat()
    return [(f"{prefix}{i:08d}".encode(),
             orjson.dumps({"event_id": f"{prefix}{i:08d}-1", "case_id": f"{prefix}{i:08d}", "item_code": item,
                           "type": "accepted", "occurred_at": accepted, "recorded_at": accepted}))
            for i in range(n)]


async def read_alerts(bootstrap: str, wanted: set[str], deadlines: dict[str, float], timeout: float) -> dict:
    from aiokafka import AIOKafkaConsumer

    consumer = AIOKafkaConsumer("alerts", bootstrap_servers=bootstrap, group_id=None,
                                auto_offset_reset="latest", enable_auto_commit=False, fetch_max_wait_ms=20)
    await consumer.start()
    delays: dict[str, float] = {}
    try:
        await consumer.seek_to_end()
        loop = asyncio.get_running_loop()
        end = loop.time() + timeout
        while len(delays) < len(wanted) and loop.time() < end:
            for records in (await consumer.getmany(timeout_ms=50)).values():
                seen = time.time()
                for record in records:
                    alert = orjson.loads(record.value)
                    if alert["rule"] == "overdue" and alert["case_id"] in wanted and alert["case_id"] not in delays:
                        delays[alert["case_id"]] = seen - deadlines[alert["case_id"]]
    finally:
        await consumer.stop()
    return delays


@contextmanager
def worker_process(broker: EmbeddedBroker, data_dir: Path, catalog: Path, **settings: str):
    """A `sunlight worker` process against `broker`, with its defaults (less `settings`), once it
    has created its topics; stopped with SIGTERM at the end."""
    env = {**os.environ, "SUNLIGHT_KAFKA": broker.bootstrap, "SUNLIGHT_BROKER_FLAVOUR": "tansu",
           "SUNLIGHT_DATA_DIR": str(data_dir), "SUNLIGHT_PARTITIONS": str(PARTITIONS),
           "SUNLIGHT_SESSION_TIMEOUT": "3", "SUNLIGHT_CATALOG": str(catalog)}
    for name in ("SUNLIGHT_CLICKHOUSE", "SUNLIGHT_FLUSH_INTERVAL", "SUNLIGHT_TICK_INTERVAL",
                 "SUNLIGHT_CASE_RETENTION_DAYS", "SUNLIGHT_METRICS_PORT"):
        env.pop(name, None)
    env.update(settings)
    root = Path(__file__).resolve().parents[1]
    worker = subprocess.Popen([sys.executable, "-m", "streams.cli", "worker"], env=env, cwd=root,
                              stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        from tests.integration.conftest import list_topics

        while "case-events" not in asyncio.run(list_topics(broker.bootstrap)):
            assert worker.poll() is None, worker.stderr.read().decode()[-3000:]
            time.sleep(0.3)
        yield worker
    finally:
        worker.send_signal(signal.SIGTERM)
        try:
            worker.wait(timeout=120)
        except subprocess.TimeoutExpired:
            worker.kill()


def send_and_commit(broker: EmbeddedBroker, worker: subprocess.Popen, messages) -> float:
    """Seconds from sending `messages` to case-events to the worker's having committed them all."""
    started = time.perf_counter()
    asyncio.run(produce(broker.bootstrap, "case-events", messages))
    while not asyncio.run(settled(broker.bootstrap, ["case-events"])):
        assert worker.poll() is None, worker.stderr.read().decode()[-3000:]
        time.sleep(1.0)
    return time.perf_counter() - started


def measure(n: int, due: int, work: Path, catalog: Path, item: str) -> dict:
    out: dict = {"cases": n}
    with EmbeddedBroker() as broker, worker_process(broker, work / f"data-{n}", catalog) as worker:
        out["rss_idle"] = status(worker.pid)["VmRSS"]
        out["seconds"] = send_and_commit(broker, worker, open_cases(n, item, "OPEN"))
        time.sleep(5.0)  # the last flushes, and a garbage collection or two
        out.update(status(worker.pid))
        before = cpu_seconds(worker.pid)
        time.sleep(IDLE_SECONDS)  # nothing due: the tick and flush timers, heartbeats, fetches
        out["idle_cpu"] = (cpu_seconds(worker.pid) - before) / IDLE_SECONDS
        if due:
            now = time.time()
            deadlines = {f"DUE{i:06d}": now + 5.0 + 0.25 * i + 0.01 * (i % 7) for i in range(due)}
            accepted = datetime.now(timezone.utc).isoformat()
            messages = [(case.encode(), orjson.dumps({
                "event_id": f"{case}-1", "case_id": case, "item_code": item, "type": "accepted",
                "occurred_at": accepted, "recorded_at": accepted,
                "attrs": {"deadline": datetime.fromtimestamp(moment, timezone.utc).isoformat()}}))
                for case, moment in deadlines.items()]

            async def due_run():
                reading = asyncio.ensure_future(read_alerts(broker.bootstrap, set(deadlines), deadlines,
                                                            timeout=5.0 + 0.25 * due + 30))
                await asyncio.sleep(1.0)
                await produce(broker.bootstrap, "case-events", messages)
                return await reading

            out["delays"] = sorted(asyncio.run(due_run()).values())
            out["due_sent"] = due
    return out


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--sizes", type=int, nargs=2, default=[250_000, 1_000_000])
    parser.add_argument("--due", type=int, default=200)
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="sunlight-open-"))
    raw = build_catalog()
    catalog = work / "catalog.yaml"
    catalog.write_text(yaml.safe_dump(raw, allow_unicode=True), encoding="utf-8")
    item = next(i["code"] for i in raw["items"] if i["category"] == "licensing")
    small, large = sorted(args.sizes)
    first = measure(small, 0, work, catalog, item)
    second = measure(large, args.due, work, catalog, item)
    print(f"date: {datetime.now().isoformat(timespec='seconds')}  machine: {platform.machine()}, "
          f"{os.cpu_count()} cores, Python {platform.python_version()}")
    for run in (first, second):
        print(f"{run['cases']:>9} open cases: sent and committed in {run['seconds']:.0f} s "
              f"({run['cases'] / run['seconds']:.0f}/s); worker RSS {run['VmRSS'] / 2**20:.1f} MiB, "
              f"peak {run['VmHWM'] / 2**20:.1f} MiB (idle before: {run['rss_idle'] / 2**20:.1f} MiB); "
              f"CPU while nothing is due {run['idle_cpu'] * 100:.1f}% of a core")
    slope = (second["VmHWM"] - first["VmHWM"]) / (large - small)
    slope_rss = (second["VmRSS"] - first["VmRSS"]) / (large - small)
    print(f"memory per open case (slope of the peak between {small} and {large}): {slope:.0f} B "
          f"(of the resident size: {slope_rss:.0f} B)   target <= 1024 B")
    delays = second.get("delays", [])
    if delays:
        print(f"deadline -> overdue alert read from the alerts topic, at {large} open cases, defaults: "
              f"{len(delays)} of {second['due_sent']}; p50 {statistics.median(delays) * 1000:.0f} ms, "
              f"p99 {delays[min(len(delays) - 1, int(0.99 * len(delays)))] * 1000:.0f} ms, "
              f"max {delays[-1] * 1000:.0f} ms   target p99 < 1000 ms")
    print(f"reproduce: python bench/open_cases.py --sizes {small} {large} --due {args.due}")


if __name__ == "__main__":
    main()
