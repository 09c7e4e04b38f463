"""Replay throughput, end to end, against bare baselines measured in the same run on the same broker.

    python bench/replay_throughput.py [--cases 25000] [--partitions 4]

Prints events/s for: a bare aiokafka consumer that parses each record's JSON; a bare Faust agent
that parses JSON; the Sunlight pipeline in steady state (broker -> agents -> ClickHouse, one worker process: the rate between 10% and 90% of the events
processed, sampled every quarter second; a replay judges its cases once its input is complete, so
this is the intake: decoding, applying, storing); the pipeline from its first event to the end of
`wait_until_processed` (everything judged at --now and written), with its intake and its end apart; and the whole `sunlight replay` command (a process of
its own: start, its own broker and store, sending the file, processing, stopping), with the
ratios to the bare consumer, and the same command over one case's events (its fixed cost).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import platform
import sys
import time
from datetime import datetime
from pathlib import Path

import orjson

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from streams.broker import EmbeddedBroker, create_topics  # noqa: E402
from streams.runtime import produce, replay_clock, running_pipeline, topic_ends, wait_until_processed  # noqa: E402
from streams.settings import Settings  # noqa: E402
from bench.workload import NOW, city, events_file, own_store_env, replay_command  # noqa: E402


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


SAMPLE_EVERY = 0.25  # seconds between two looks at the pipeline's progress


async def pipeline_rate(broker: EmbeddedBroker, catalog: Path, messages, partitions: int, data_dir: Path):
    """(steady-state events/s, events/s to the end, progress, (seconds of intake, seconds after it))."""
    settings = Settings(data_dir=data_dir, partitions=partitions, session_timeout=3.0)
    async with running_pipeline(settings, catalog, clock=replay_clock(NOW), broker=broker) as running:
        await produce(running.bootstrap, settings.case_events_topic, messages)
        ends = await topic_ends(running)
        total = sum(ends.values())
        progress = running.pipeline.progress
        samples: list[tuple[float, int]] = []

        async def sample() -> None:
            while True:
                samples.append((time.perf_counter(), sum(o + 1 for o in progress.processed_offsets.values())))
                await asyncio.sleep(SAMPLE_EVERY)

        sampler = asyncio.ensure_future(sample())
        started = time.perf_counter()
        await wait_until_processed(running.pipeline, ends, timeout=3600)
        elapsed = time.perf_counter() - started
        sampler.cancel()
        low = next(s for s in samples if s[1] >= 0.1 * total)
        high = next(s for s in samples if s[1] >= 0.9 * total)
        if high[0] == low[0]:
            raise SystemExit(f"too few events to measure a steady state: 10% to 90% of the {total} events "
                             f"passed within one sample ({SAMPLE_EVERY} s); give more --cases")
        steady = (high[1] - low[1]) / (high[0] - low[0])
        # A replay judges its cases once its input is complete: the intake ends at the last event
        # taken, then every case whose facts changed is judged at --now and written.
        taken = next((s for s in samples if s[1] >= total), samples[-1])
        intake = taken[0] - started
        return steady, len(messages) / elapsed, progress, (intake, elapsed - intake)


def whole_command(catalog: Path, messages, partitions: int, data_dir: Path) -> float:
    """The wall time of `sunlight replay FILE --catalog C --now T`, from its start to its exit."""
    import subprocess

    events = events_file(messages, data_dir.parent / f"{data_dir.name}-events.jsonl")
    started = time.perf_counter()
    done = subprocess.run(replay_command(events, catalog), env=own_store_env(data_dir, partitions),
                          capture_output=True, timeout=3600, cwd=Path(__file__).resolve().parents[1])
    if done.returncode != 0:
        raise RuntimeError(done.stderr.decode()[-3000:])
    return time.perf_counter() - started


async def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--cases", type=int, default=25000)
    parser.add_argument("--partitions", type=int, default=4)
    args = parser.parse_args()
    _, messages, work, catalog = city(args.cases, "sunlight-bench-")
    total = len(messages)
    with EmbeddedBroker() as broker:
        await create_topics(broker.bootstrap, [("bench-bare", args.partitions),
                                               ("bench-bare-faust-__assignor-__leader", 1)])
        await produce(broker.bootstrap, "bench-bare", messages)
        bare = await bare_consumer(broker.bootstrap, "bench-bare", total)
        faust_rate = bare_faust(broker.bootstrap, "bench-bare", total, args.partitions, work / "faust")
        steady, to_end, progress, (intake, end) = await pipeline_rate(broker, catalog, messages, args.partitions, work / "data")
    command = whole_command(catalog, messages, args.partitions, work / "command")
    # The command's fixed cost: the same command over one case's events.
    first_case = messages[0][0]
    fixed = whole_command(catalog, [m for m in messages if m[0] == first_case], args.partitions, work / "fixed")
    print(f"date: {datetime.now().isoformat(timespec='seconds')}  machine: {platform.machine()}, "
          f"{os.cpu_count()} cores, Python {platform.python_version()}")
    print(f"events: {total} ({args.cases} cases), partitions: {args.partitions}, one worker process")
    print(f"bare aiokafka consumer (parse JSON):          {bare:10.0f} events/s")
    print(f"bare Faust agent (parse JSON):                {faust_rate:10.0f} events/s")
    print(f"Sunlight pipeline, steady state:              {steady:10.0f} events/s   ratio {steady / bare:.4f}")
    print(f"Sunlight pipeline, first event to the end:    {to_end:10.0f} events/s   ratio {to_end / bare:.4f} "
          f"({progress.alerts_changed} alert versions written)")
    print(f"  of which the intake, to the last event taken: {intake:.1f} s; judging every case at "
          f"the end of the input and writing: {end:.1f} s")
    print(f"whole `sunlight replay` command: {command:.1f} s = {total / command:10.0f} events/s   "
          f"ratio {total / command / bare:.4f}")
    print(f"  of which fixed (the same command over one case's events: start, broker, store, group join, "
          f"stop): {fixed:.1f} s; the rest {command - fixed:.1f} s = {total / (command - fixed):.0f} events/s")
    print(f"0.10 of the bare consumer in steady state would take {0.10 * bare:.0f} events/s: "
          f"{0.10 * bare / steady:.1f} times this worker")
    print(f"reproduce: python bench/replay_throughput.py --cases {args.cases} --partitions {args.partitions}")


if __name__ == "__main__":
    asyncio.run(main())
