"""Event-to-alert latency at a steady rate, live (wall clock), one worker process.

    python bench/alert_latency.py [--rate 2000] [--seconds 60] [--partitions 4]

A generated city's events are sent to the embedded broker at a steady rate, as live
events: each occurs and is registered at the moment it is sent (the generated history of
about 100 days is compressed into the run, each case's events keeping their order), and the
pipeline runs on the wall clock, with its default settings. Deadlines are then days ahead, so
the alerts timed are those an event raises (skipped_node, discretion_out_of_range, ...) and the
outliers its peer group judges. For every new alert written, the latency is the time from the
production of the event that raised it (the one its evidence names: the decision, the step that
went ahead, the late completion ...) to the moment ClickHouse's insert of that batch returned
(from then on the alert is queryable). Only an alert's first version is timed. Reports p50, p99
and max, separately for the alerts an event raises in its own case and for outliers (judged by
the decision's peer group, then sent back to its case), and whether the pipeline kept up with
the rate (the consumer's lag when sending ended).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import platform
import sys
import tempfile
import time
from dataclasses import replace
from datetime import datetime, timezone
from pathlib import Path

import orjson
import yaml

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from alerts.scenario import generate  # noqa: E402
from streams.clock import WallClock  # noqa: E402
from streams.runtime import running_pipeline, topic_ends  # noqa: E402
from streams.settings import Settings  # noqa: E402


def as_live(event: dict, sent: float) -> dict:
    """The event as it happens now."""
    now = datetime.fromtimestamp(sent, timezone.utc).isoformat()
    return {**event, "recorded_at": now, "occurred_at": now}


def cause_of(row: dict) -> str | None:
    """The event that raised an alert, as its evidence names it."""
    evidence = orjson.loads(row["evidence"])
    for key in ("event_id", "went_ahead_event_id", "completed_event_id"):
        if evidence.get(key):
            return evidence[key]
    if evidence.get("burst"):
        return evidence["burst"].get("closed_event_id")
    late = evidence.get("late_registrations") or []
    return late[0]["event_id"] if late else None


def quantile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


async def run(args) -> None:
    from aiokafka import AIOKafkaProducer

    now = datetime.now(timezone.utc)
    cases = int(args.rate * args.seconds / 5.6) + 1
    scenario = generate(cases=cases, seed=5, now=now)
    events = scenario.events[: int(args.rate * args.seconds)]
    work = Path(tempfile.mkdtemp(prefix="sunlight-latency-"))
    catalog = work / "catalog.yaml"
    catalog.write_text(yaml.safe_dump(scenario.catalog, allow_unicode=True), encoding="utf-8")
    settings = replace(Settings.from_env({}), data_dir=work / "data", partitions=args.partitions,
                       session_timeout=3.0)  # the defaults, as an operator gets them
    sent_at: dict[str, float] = {}  # event_id -> when it was sent
    latencies: dict[str, list[float]] = {"event": [], "peer": []}
    untimed = [0]  # alerts whose evidence names no event (time rules)

    async with running_pipeline(settings, catalog, clock=WallClock()) as running:
        writer = running.pipeline.writer
        original_write = writer.write

        def timed_write(batch):
            seconds = original_write(batch)
            done = time.time()
            for row in batch.rows.get("alerts", ()):
                if row["version"] != 1:  # an alert's first appearance only
                    continue
                sent = sent_at.get(cause_of(row) or "")
                if sent is None:
                    untimed[0] += 1
                    continue
                kind = "peer" if row["rule"] == "discretion_outlier" else "event"
                latencies[kind].append(done - sent)
            return seconds

        writer.write = timed_write
        while not running.pipeline.index_ready:  # the group has joined and the tables are recovered
            await asyncio.sleep(0.05)
        await asyncio.sleep(1.0)
        producer = AIOKafkaProducer(bootstrap_servers=running.bootstrap, linger_ms=0, enable_idempotence=False,
                                    acks=1)
        await producer.start()
        try:
            interval = 1.0 / args.rate
            started = time.perf_counter()
            for n, event in enumerate(events):
                target = started + n * interval
                delay = target - time.perf_counter()
                if delay > 0:
                    await asyncio.sleep(delay)
                sent = time.time()
                sent_at[event["event_id"]] = sent
                await producer.send(settings.case_events_topic, key=event["case_id"].encode(),
                                    value=orjson.dumps(as_live(event, sent)))
            await producer.flush()
            send_seconds = time.perf_counter() - started
        finally:
            await producer.stop()
        ends = await topic_ends(running)
        lag_at_end = sum(ends.values()) - sum(o + 1 for o in running.pipeline.progress.processed_offsets.values())
        # Let the last events through, then stop.
        caught_up_at = time.perf_counter()
        while sum(o + 1 for o in running.pipeline.progress.processed_offsets.values()) < sum(ends.values()):
            await asyncio.sleep(0.05)
        drain = time.perf_counter() - caught_up_at
        await asyncio.sleep(settings.flush_interval * 3 + settings.tick_interval)
        with writer.lock:
            queried = running.client.query("SELECT count() FROM alerts FINAL").result_rows[0][0]
            by_rule = running.client.query("SELECT rule, status, count() FROM alerts FINAL GROUP BY rule, status "
                                           "ORDER BY rule, status").result_rows

    print(f"date: {datetime.now().isoformat(timespec='seconds')}  machine: {platform.machine()}, "
          f"{os.cpu_count()} cores, Python {platform.python_version()}  load: {os.getloadavg()[0]:.2f}")
    print(f"events: {len(events)} sent at {len(events) / send_seconds:.0f}/s for {send_seconds:.1f}s "
          f"(target {args.rate}/s); partitions {args.partitions}; defaults: flush interval "
          f"{settings.flush_interval}s, tick interval {settings.tick_interval}s, units of up to "
          f"{settings.unit_max_messages} messages")
    print(f"consumer lag when sending ended: {lag_at_end} events, drained in {drain:.2f}s")
    for kind, label in (("event", "raised by an event in its own case (skipped_node, discretion_out_of_range, ...)"),
                        ("peer", "discretion_outlier, judged by the decision's peer group")):
        ms = [x * 1000 for x in latencies[kind]]
        if ms:
            print(f"{label}: {len(ms)} alerts; latency p50 {quantile(ms, 0.5):.0f} ms, p99 {quantile(ms, 0.99):.0f} ms, "
                  f"max {max(ms):.0f} ms  (target p99 < 1000 ms)")
    print(f"alerts not timed (no event named in their evidence): {untimed[0]}")
    print(f"alerts queryable at the end: {queried}: {', '.join(f'{r} {st} {n}' for r, st, n in by_rule)}")
    print(f"reproduce: python bench/alert_latency.py --rate {args.rate:g} --seconds {args.seconds:g} "
          f"--partitions {args.partitions}")


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rate", type=float, default=2000)
    parser.add_argument("--seconds", type=float, default=60)
    parser.add_argument("--partitions", type=int, default=4)
    asyncio.run(run(parser.parse_args()))


if __name__ == "__main__":
    main()
