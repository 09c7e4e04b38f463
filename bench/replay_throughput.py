"""Replay throughput, end to end, against bare baselines measured in the same run on the same broker.

    python bench/replay_throughput.py [--cases 5000] [--partitions 4]

Prints events/s for: a bare aiokafka consumer that only deserialises and counts; a bare Faust
agent that parses JSON; and the whole Sunlight pipeline (broker -> agents -> detectors ->
ClickHouse, one worker process), with the ratios.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import platform
import sys
import tempfile
import time
from datetime import datetime, timezone
from pathlib import Path

import orjson
import yaml

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from alerts.scenario import generate  # noqa: E402
from streams.broker import EmbeddedBroker, create_topics  # noqa: E402
from streams.runtime import produce, replay_clock, running_pipeline, topic_ends, wait_until_processed  # noqa: E402
from streams.settings import Settings  # noqa: E402

NOW = datetime(2026, 6, 1, 12, tzinfo=timezone.utc)


async def bare_consumer(bootstrap: str, topic: str, total: int) -> float:
    from aiokafka import AIOKafkaConsumer

    consumer = AIOKafkaConsumer(topic, bootstrap_servers=bootstrap, group_id=None, auto_offset_reset="earliest",
                                enable_auto_commit=False, max_poll_records=5000)
    await consumer.start()
    try:
        seen = 0
        started = None
        while seen < total:
            batches = await consumer.getmany(timeout_ms=500, max_records=5000)
            for records in batches.values():
                if started is None:
                    started = time.perf_counter()
                for record in records:
                    orjson.loads(record.value)
                    seen += 1
        return seen / (time.perf_counter() - started)
    finally:
        await consumer.stop()


def bare_faust(bootstrap: str, topic: str, total: int, partitions: int, data_dir: Path) -> float:
    """A Faust agent that only parses JSON, in a child process (its own app and event loop)."""
    import subprocess

    code = f"""
import asyncio, time, faust, orjson, logging
logging.getLogger('faust').setLevel(logging.ERROR)
app = faust.App('bench-bare-faust', broker='kafka://{bootstrap}', store='memory://', web_enabled=False,
                topic_partitions={partitions}, topic_allow_declare=False, broker_session_timeout=3,
                consumer_auto_offset_reset='earliest', datadir='{data_dir}')
topic = app.topic('{topic}', value_serializer='raw', partitions={partitions})
state = {{'n': 0, 't0': None}}
@app.agent(topic)
async def count(stream):
    async for value in stream:
        if state['t0'] is None:
            state['t0'] = time.perf_counter()
        orjson.loads(value)
        state['n'] += 1
        if state['n'] >= {total}:
            print('RATE', state['n'] / (time.perf_counter() - state['t0']), flush=True)
            asyncio.get_event_loop().call_soon(lambda: asyncio.ensure_future(app.stop()))
async def main():
    worker = faust.Worker(app, loop=asyncio.get_running_loop(), quiet=True, daemon=False,
                          override_logging=False, redirect_stdouts=False, loglevel='ERROR')
    await worker.start()
    while state['n'] < {total}:
        await asyncio.sleep(0.1)
    await worker.stop()
asyncio.run(main())
"""
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=900)
    for line in out.stdout.splitlines():
        if "RATE " in line:  # Faust may put a terminal escape sequence in front
            return float(line.split("RATE ")[1])
    raise RuntimeError(f"bare Faust agent gave no rate: {out.stdout[-2000:]} {out.stderr[-3000:]}")


async def pipeline_rate(broker: EmbeddedBroker, catalog: Path, messages, partitions: int, data_dir: Path):
    settings = Settings(data_dir=data_dir, partitions=partitions, session_timeout=3.0)
    async with running_pipeline(settings, catalog, clock=replay_clock(NOW), broker=broker) as running:
        await produce(running.bootstrap, settings.case_events_topic, messages)
        ends = await topic_ends(running)
        started = time.perf_counter()
        await wait_until_processed(running.pipeline, ends, timeout=3600)
        elapsed = time.perf_counter() - started
        return len(messages) / elapsed, running.pipeline.progress


async def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--cases", type=int, default=5000)
    parser.add_argument("--partitions", type=int, default=4)
    args = parser.parse_args()
    scenario = generate(cases=args.cases, seed=1, now=NOW)
    messages = [(e["case_id"].encode(), orjson.dumps(e)) for e in scenario.events]
    total = len(messages)
    work = Path(tempfile.mkdtemp(prefix="sunlight-bench-"))
    catalog = work / "catalog.yaml"
    catalog.write_text(yaml.safe_dump(scenario.catalog, allow_unicode=True), encoding="utf-8")
    with EmbeddedBroker() as broker:
        await create_topics(broker.bootstrap, [("bench-bare", args.partitions),
                                               ("bench-bare-faust-__assignor-__leader", 1)])
        await produce(broker.bootstrap, "bench-bare", messages)
        bare = await bare_consumer(broker.bootstrap, "bench-bare", total)
        faust_rate = bare_faust(broker.bootstrap, "bench-bare", total, args.partitions, work / "faust")
        full, progress = await pipeline_rate(broker, catalog, messages, args.partitions, work / "data")
    print(f"date: {datetime.now().isoformat(timespec='seconds')}  machine: {platform.machine()}, "
          f"{os.cpu_count()} cores, Python {platform.python_version()}")
    print(f"events: {total} ({args.cases} cases), partitions: {args.partitions}, one worker process")
    print(f"bare aiokafka consumer (deserialise, count): {bare:10.0f} events/s")
    print(f"bare Faust agent (parse JSON):               {faust_rate:10.0f} events/s")
    print(f"Sunlight pipeline, end to end:               {full:10.0f} events/s "
          f"({progress.alerts_changed} alert versions written)")
    print(f"ratio to bare consumer: {full / bare:.4f}   ratio to bare Faust agent: {full / faust_rate:.3f}")
    print(f"reproduce: python bench/replay_throughput.py --cases {args.cases} --partitions {args.partitions}")


if __name__ == "__main__":
    asyncio.run(main())
