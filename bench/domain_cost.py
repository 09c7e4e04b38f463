"""Sunlight's own CPU per event, without the broker: decode, state, evaluate, encode, rows.

    python bench/domain_cost.py [--cases 25000] [--partitions 4] [--unit 1000] [--profile]

A generated city's events (the replay workload: about 5.6 events per case) go, in file order,
through the very steps the case agent runs (`streams.steps`): each partition's messages in
units of `--unit`, decoded from their wire bytes, applied and judged per case as each unit comes
(as a live worker judges), each changed
state encoded and stored (a dict stands for the table, the changelog send is not timed), and
every row built and turned into Arrow as the writer does before an insert; the garbage
collector tuned as in a worker (`streams.runtime.tune_gc`). Prints the median
and the 90th percentile of the CPU per event over the units, the whole run's mean, and, for
scale, a bare JSON parse of the same messages in the same run. Then the path a replay takes, on
a fresh table (`run_replay`): the facts stored with the input incomplete, and each case judged
once at its end by a tick, as `Pipeline.fire_due` sends them; and `judge_case` alone over the
judged states, for what the rows of a judgement add. Peer groups run as the peer
agent would, on the facts the units send.
"""

from __future__ import annotations

import argparse
import asyncio
import cProfile
import os
import platform
import pstats
import statistics
import sys
import time
from datetime import datetime
from pathlib import Path
from types import SimpleNamespace

import orjson

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from aiokafka.partitioner import DefaultPartitioner  # noqa: E402

from alerts.calendar import WorkCalendar  # noqa: E402
from alerts.catalog import load_catalog  # noqa: E402
from alerts.evaluate import Judge, judge_case, judging_basis  # noqa: E402
from sinks.rows import to_arrow  # noqa: E402
from sinks.writer import Batch  # noqa: E402
from streams.app import Progress  # noqa: E402
from streams.clock import EachUnitJudgedClock, EventTimeClock  # noqa: E402
from streams.codec import decode_state, stored_index_entry  # noqa: E402
from streams.internal_wire import tick  # noqa: E402
from streams.runtime import tune_gc  # noqa: E402
from streams.steps import CaseSteps, Outputs, Unit, decode_case_unit  # noqa: E402
from streams.store import CaseStore  # noqa: E402
from bench.workload import NOW, city  # noqa: E402



class Writer:
    """The batching writer's buffer, without a store: rows become Arrow tables at each flush."""

    def __init__(self):
        self.batch = Batch()

    def add(self, table, row):
        self.batch.add(table, row)

    def corrected(self, case_id, event_id, correction):
        self.batch.correct(case_id, event_id, correction)

    def to_arrow(self) -> int:
        batch, self.batch = self.batch, Batch()
        for table, rows in batch.rows.items():
            to_arrow(table, rows)
        return batch.count


def units_of(messages, partitions: int, size: int):
    """The messages as the consumer would fetch them: by partition (keyed by case), in order."""
    partitioner = DefaultPartitioner()
    by_partition: dict[int, list] = {p: [] for p in range(partitions)}
    for key, value in messages:
        p = partitioner(key, list(range(partitions)), list(range(partitions)))
        by_partition[p].append(SimpleNamespace(offset=len(by_partition[p]), key=key, value=value))
    out = in_units("case-events", by_partition, size)
    # Interleave partitions by position, as a consumer round-robins between them.
    out.sort(key=lambda u: (u.first_offset, u.partition))
    return out


def in_units(topic: str, by_partition: dict[int, list], size: int) -> list[Unit]:
    """Each partition's records in units of `size`, as a fetch returns them."""
    return [Unit(topic, p, records[i:i + size]) for p, records in sorted(by_partition.items())
            for i in range(0, len(records), size)]


def steps_of(judge, clock) -> tuple[CaseSteps, Writer]:
    """The case agent's steps over a dict for the table, an outbox and a producer that send nothing."""
    table = SimpleNamespace(data={})
    writer = Writer()
    settings = SimpleNamespace(alerts_topic="alerts", peers_topic="peers", ticks_topic="ticks", dlq_topic="dlq")

    def write(key, stored, partition):
        table.data[key] = stored

    async def send(topic, key, value, partition):
        return None

    store = CaseStore(table, write, cache_size=50_000)
    progress = Progress()
    outbox = SimpleNamespace(add=lambda topic, key, value, partition=None: None)
    catalog = SimpleNamespace(judge=judge, basis=judging_basis(judge))
    outputs = Outputs(writer, send, outbox, settings, progress, catalog)
    return CaseSteps(store, catalog, clock, outputs, progress), writer


async def timed(steps: CaseSteps, writer: Writer, units) -> list[tuple[float, int]]:
    """(CPU seconds, records) of each unit: decoded, applied and judged, its rows turned into Arrow."""
    spent = []
    for unit in units:
        begun = time.process_time()
        await steps.process(unit, decode_case_unit(unit, "ticks"))
        writer.to_arrow()
        spent.append((time.process_time() - begun, len(unit.records)))
    return spent


async def run(units, judge) -> tuple[list[float], int, float]:
    """The live path: each unit's cases judged as the unit comes (`EachUnitJudgedClock`)."""
    steps, writer = steps_of(judge, EachUnitJudgedClock(NOW))
    spent = await timed(steps, writer, units)
    return [cpu / n for cpu, n in spent], sum(n for _, n in spent), sum(cpu for cpu, _ in spent)


async def run_replay(units, judge, size: int) -> tuple[float, float, int, int, list[bytes]]:
    """The path `sunlight replay` takes (`EventTimeClock`): each unit's facts stored, no case judged
    until the input is complete; then every case is due at once, and the tick each is sent (as
    `Pipeline.fire_due` sends them, to its case's partition) judges it, in units of `size`. Returns
    the CPU seconds of the input and of the judgement at its end, the events, the ticks and the
    judged states as stored."""
    clock = EventTimeClock(NOW)
    steps, writer = steps_of(judge, clock)
    taken = await timed(steps, writer, units)
    clock.finish()
    by_partition: dict[int, list] = {}
    for case_id, stored in steps.store.table.data.items():
        partition, next_due, _ = stored_index_entry(stored)
        if next_due is None or datetime.fromisoformat(next_due) > NOW:
            continue  # not due at the end of the input: no tick
        records = by_partition.setdefault(partition, [])
        records.append(SimpleNamespace(offset=len(records), key=case_id.encode(), value=tick(case_id, NOW)))
    judged = await timed(steps, writer, in_units("ticks", by_partition, size))
    return (sum(cpu for cpu, _ in taken), sum(cpu for cpu, _ in judged), sum(n for _, n in taken),
            sum(n for _, n in judged), list(steps.store.table.data.values()))


def judgement_alone(stored: list[bytes], judge) -> float:
    """CPU seconds per case of `judge_case` alone over the judged states, again at the same clock
    (their stored forms decoded first, untimed): what a judgement costs without its rows. Judged
    again at that clock nothing changes, but every rule reads the case whole, as at the end of the
    input."""
    states = [decode_state(data)[0] for data in stored]
    states = [state for state in states if state.events]
    begun = time.process_time()
    for state in states:
        judge_case(state, judge, NOW, NOW)
    return (time.process_time() - begun) / max(len(states), 1)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--cases", type=int, default=25000)
    parser.add_argument("--partitions", type=int, default=4)
    parser.add_argument("--unit", type=int, default=1000, help="messages per unit (one partition's fetch)")
    parser.add_argument("--profile", action="store_true")
    args = parser.parse_args()
    scenario, messages, _, _ = city(args.cases, "sunlight-domain-")
    judge = Judge(load_catalog(scenario.catalog), WorkCalendar(on_missing_year=lambda year: None))
    units = units_of(messages, args.partitions, args.unit)
    tune_gc()  # as a worker does
    begun = time.process_time()
    for _, value in messages:
        orjson.loads(value)
    bare = (time.process_time() - begun) / len(messages)
    if args.profile:
        profiler = cProfile.Profile()
        profiler.enable()
    per_event, total, spent = asyncio.run(run(units, judge))
    if args.profile:
        profiler.disable()
        pstats.Stats(profiler).sort_stats("tottime").print_stats(30)
    taken, judged, events, ticks, stored = asyncio.run(run_replay(units, judge, args.unit))
    alone = judgement_alone(stored, judge)
    quantiles = statistics.quantiles(per_event, n=10)
    print(f"date: {datetime.now().isoformat(timespec='seconds')}  machine: {platform.machine()}, "
          f"{os.cpu_count()} cores, Python {platform.python_version()}")
    print(f"events: {total} ({args.cases} cases), {len(units)} units of up to {args.unit} messages, "
          f"{args.partitions} partitions, file order")
    print(f"live path (each unit's cases judged as it comes): CPU per event over the units: median "
          f"{statistics.median(per_event) * 1e6:.1f} us, p90 {quantiles[-1] * 1e6:.1f} us; whole run "
          f"{spent / total * 1e6:.1f} us")
    print(f"replay path (each case judged once, at the end of the input): {(taken + judged) / events * 1e6:.1f} us "
          f"per event in all: the input {taken / events * 1e6:.1f} us per event, the judgement at its end "
          f"{judged / events * 1e6:.1f} us per event ({ticks} cases, {judged / ticks * 1e6:.1f} us each; `judge_case` alone {alone * 1e6:.1f} us a case)")
    print(f"bare JSON parse of the same messages: {bare * 1e6:.2f} us per event "
          f"(ratio {statistics.median(per_event) / bare:.0f}x for the live path's median, "
          f"{(taken + judged) / events / bare:.0f}x for the replay path)")
    print(f"reproduce: python bench/domain_cost.py --cases {args.cases} --partitions {args.partitions} "
          f"--unit {args.unit}")


if __name__ == "__main__":
    main()
