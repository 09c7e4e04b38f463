"""Deadline timers with many open cases: memory per open case, deadline-to-alert delay, CPU per idle tick.

    python bench/open_case_timers.py [--cases 1000000] [--tracemalloc-max 100000] [--sample-cases 20000]
                                     [--due-cases 200] [--delay-configs 1.0/1.0,0.2/0.2]
                                     [--skip memory,sample,delay,broker]

Small: --cases 20000 --sample-cases 2000 --due-cases 20 (about 5 minutes). At 1M, about 30 minutes
on 2 cores.

The requirement: with 1,000,000 open cases, memory per open case <= 1 KB; the delay between a
deadline and its alert < 1 s; CPU per tick when nothing is due must not grow with the number of
open cases. Every measurement runs in a fresh child process of this script (clean heap and RSS):

1. Memory per open case, by component. N typical open cases (half with one
   `accepted` event, half with `accepted` + one `node_completed`, none late, so no alert) go
   through the worker's own code path without Kafka: `parse_event(orjson.loads(wire bytes))`,
   `Pipeline._load`, `alerts.evaluate.step`, `Pipeline._store` on a real `Pipeline` whose Faust
   table is replaced by a plain dict (Faust's memory store keeps exactly that: a dict of key ->
   the encoded JSON of each state). `_store` fills the three things a worker holds per open case: the table
   entry (the JSON bytes of `CaseState.to_json()` + partition), the decoded-state cache `Pipeline.states`
   (bounded at STATE_CACHE_SIZE) and the `DeadlineIndex`. a) at every size up to --cases: the
   deep size of each (sys.getsizeof over everything reachable, each object once; objects shared
   by several, the case_id string and the next_due datetime, count with the index) and the RSS
   growth of the process (which adds allocator slack). b) up to --tracemalloc-max (tracemalloc
   makes the build ~7x slower): the bytes tracemalloc sees released when the cache, the table and
   the index are freed in turn; it agrees with a) and validates it.
2. CPU per idle tick, in the processes of 1a: `Pipeline.fire_due` (what the tick timer runs:
   peer-group judgements, then `DeadlineIndex.pop_due` over every partition) timed when nothing
   is due, and `pop_due` alone, interleaved with the same on a near-empty index as a reference;
   also the time of one full `gc.collect()` with that many cases alive.
3. Cross-check through the real pipeline: S cases produced to the embedded broker and processed
   by a real Faust worker (wall clock); RSS and tracemalloc of the worker process before/after,
   and the same per-component attribution on the live table, cache and index.
4. Deadline-to-alert delay: a live pipeline (`running_pipeline`, wall clock, given tick/flush
   intervals) holding `--cases` open cases whose deadlines are days ahead (put in the table,
   state cache and index through the same code path as 1, bypassing Kafka for speed), then
   `--due-cases` cases sent through Kafka whose deadline, stated by the source system
   (`attrs.deadline`, part of the contract), falls 5..5+0.25*K seconds ahead. For each, the time
   from its deadline to its `overdue` alert being readable in the ClickHouse `alerts` table
   (a thread polls it), split at the alert's raised_at (when the worker judged the case).
   Deadlines counted in working days end at local midnight, so a wall clock meets one only at
   00:00 (test_live moves the clock instead: ShiftedWallClock); a deadline the source system
   states is any moment, which lets due moments fall at random phases of the tick and flush
   timers with the real wall clock.
5. The embedded broker's own produce -> consume latency for one record, with the consumer's
   fetch_max_wait_ms at Faust's hard-coded 1500 and lower: the part of 4 that is the broker's.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import json
import logging
import os
import platform
import random
import shlex
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import tracemalloc
import warnings
from datetime import datetime, timedelta, timezone
from pathlib import Path
from zoneinfo import ZoneInfo

import orjson
import yaml

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from alerts.evaluate import step  # noqa: E402
from alerts.events import parse_event  # noqa: E402
from alerts.scenario import build_catalog  # noqa: E402
from streams.app import STATE_CACHE_SIZE, Pipeline, utcnow  # noqa: E402
from streams.catalog_source import CatalogSource  # noqa: E402
from streams.clock import WallClock  # noqa: E402
from streams.settings import Settings  # noqa: E402
from streams.timers import DeadlineIndex  # noqa: E402

TZ = ZoneInfo("Asia/Shanghai")
PARTITIONS = 4
RESULT = "RESULT "
# The first node after acceptance, completed by the second event of a two-event case.
SECOND_NODE = {"licensing": "undertake", "penalty": "investigate", "confirmation": "review"}


# -- machine and process figures ------------------------------------------------------------------

def rss(pid: int | str = "self") -> int:
    with open(f"/proc/{pid}/status") as handle:
        for line in handle:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    return 0


def machine() -> str:
    model = "?"
    try:
        with open("/proc/cpuinfo") as handle:
            model = next((line.split(":", 1)[1].strip() for line in handle if line.startswith("model name")), "?")
        with open("/proc/meminfo") as handle:
            ram = int(next(line.split()[1] for line in handle if line.startswith("MemTotal:"))) / 1024 ** 2
    except OSError:
        ram = float("nan")
    return (f"{platform.machine()}, {os.cpu_count()} cores ({model}), {ram:.1f} GiB RAM, "
            f"Python {platform.python_version()}, {platform.system()} {platform.release()}")


def load() -> str:
    one, five, fifteen = os.getloadavg()
    return f"load average {one:.2f} {five:.2f} {fifteen:.2f} ({os.cpu_count()} cores)"


def uptime() -> str:
    try:
        return subprocess.run(["uptime"], capture_output=True, text=True, timeout=5).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return load()


def quiet() -> None:
    warnings.simplefilter("ignore")
    logging.basicConfig(level=logging.ERROR)
    for name in ("faust", "mode", "aiokafka", "kafka", "streams", "alerts", "sinks"):
        logging.getLogger(name).setLevel(logging.ERROR)


# -- the cases ------------------------------------------------------------------------------------

def write_catalog(directory: Path) -> Path:
    path = directory / "catalog.yaml"
    path.write_text(yaml.safe_dump(build_catalog(), allow_unicode=True, sort_keys=False), encoding="utf-8")
    return path


class CaseMaker:
    """Open cases as the synthetic city's generator writes them (same fields, same id shapes)."""

    def __init__(self, catalog: dict, now: datetime, seed: int = 1, prefix: str = "C01"):
        self.rng = random.Random(seed)
        self.now = now
        self.prefix = prefix
        self.items: dict[str, list[dict]] = {}
        for item in catalog["items"]:
            self.items.setdefault(item["category"], []).append(item)

    def _event(self, case_id, item, officer, channel, kind, number, occurred, **extra) -> bytes:
        recorded = min(occurred + timedelta(minutes=self.rng.randint(1, 30)), self.now)
        event = {"event_id": f"{case_id}-{number:02d}", "case_id": case_id, "item_code": item["code"],
                 "type": kind, "occurred_at": occurred.astimezone(TZ).isoformat(),
                 "recorded_at": recorded.astimezone(TZ).isoformat(), "officer_id": officer,
                 "department": item["department"], "region": "320200", "channel": channel}
        event.update(extra)
        return orjson.dumps(event)

    def case(self, index: int, events: int) -> list[tuple[bytes, bytes]]:
        """One open case, on time: accepted 5 min..6 h ago; with events=2 its next node done too."""
        rng = self.rng
        item = rng.choice(self.items[rng.choice(["licensing", "penalty", "penalty", "confirmation"])])
        case_id = f"{self.prefix}{index:07d}"
        officer = f"{item['department']}-{rng.randint(1, 12):02d}"
        channel = rng.choice(["online", "online", "window"])
        accepted = self.now - timedelta(seconds=rng.uniform(300, 6 * 3600))
        out = [self._event(case_id, item, officer, channel, "accepted", 1, accepted)]
        if events >= 2:
            done = accepted + (self.now - accepted) * rng.uniform(0.1, 0.9)
            out.append(self._event(case_id, item, officer, channel, "node_completed", 2, done,
                                   node=SECOND_NODE[item["category"]]))
        key = case_id.encode()
        return [(key, raw) for raw in out]

    def late_case(self, index: int, calendar) -> list[tuple[bytes, bytes]]:
        """A licence case in its last working day, stuck after acceptance: it carries its
        deadline_near and node_overdue alerts (what a case costs once it has alerts)."""
        rng = self.rng
        item = rng.choice(self.items["licensing"])
        case_id = f"{self.prefix}{index:07d}"
        day = self.now.astimezone(TZ).date()
        while not calendar.is_workday(day):
            day -= timedelta(days=1)
        for _ in range(item["promised_days"]):
            day -= timedelta(days=1)
            while not calendar.is_workday(day):
                day -= timedelta(days=1)
        accepted = datetime(day.year, day.month, day.day, 10, tzinfo=TZ)
        raw = self._event(case_id, item, f"{item['department']}-{rng.randint(1, 12):02d}", "online",
                          "accepted", 1, accepted)
        return [(case_id.encode(), raw)]

    def cases(self, count: int, variant: str, calendar=None):
        for index in range(count):
            if variant == "late":
                yield self.late_case(index, calendar)
            elif variant == "one":
                yield self.case(index, 1)
            elif variant == "two":
                yield self.case(index, 2)
            else:  # typical: half and half
                yield self.case(index, 1 + index % 2)


def partition_of():
    from aiokafka.partitioner import DefaultPartitioner

    partitioner = DefaultPartitioner()
    partitions = list(range(PARTITIONS))
    return lambda key: partitioner(key, partitions, partitions)


def feed(pipeline: Pipeline, messages, partition) -> None:
    """What the case agent does with one case event, minus the sink (streams.app._on_case_event)."""
    judge = pipeline.catalog.judge
    for key, raw in messages:
        event = parse_event(orjson.loads(raw))
        p = partition(key)
        state = pipeline._load(event.case_id, p)
        now = pipeline.clock.observe(p, event.occurred_at)
        outcome = step(state, event, judge, now, utcnow())
        pipeline._store(outcome.state, p)


def offline_pipeline(directory: Path, catalog: Path) -> Pipeline:
    """A real Pipeline (never started) whose Faust table is a plain dict, as Faust's memory store holds it."""
    settings = Settings(data_dir=directory / "data", partitions=PARTITIONS, app_id="bench-offline")
    pipeline = Pipeline(settings, "127.0.0.1:9", CatalogSource(catalog, None), None, WallClock(), True)
    pipeline.table = {}
    return pipeline


def heap_entries(index: DeadlineIndex) -> int:
    heaps = getattr(index, "_heaps", None)  # read-only look at the index's heaps, for the stale-entry count
    return sum(len(h) for h in heaps.values()) if isinstance(heaps, dict) else -1


def table_items(table) -> dict:
    data = getattr(table, "data", table)  # a Faust table -> its Store -> the dict
    data = getattr(data, "data", data)
    return data


def deep_sizes(roots: list[tuple[str, object]]) -> dict[str, int]:
    """Bytes reachable from each root (sys.getsizeof, each object once), walking the roots in order:
    an object reachable from several is counted with the first, as tracemalloc counts it with the
    last one freed. Types, enum members and zone-info objects are shared by the whole process and
    not counted; a `datetime.timezone` (one per time parsed with an offset) is."""
    import enum
    import types
    from datetime import timezone as fixed_offset, tzinfo

    skip_types = (type, types.ModuleType, types.FunctionType, enum.Enum, bool)
    leaf_types = (str, bytes, int, float, timedelta, type(None))
    seen: set[int] = set()
    out = {}
    for name, root in roots:
        total = 0
        stack = [root]
        while stack:
            obj = stack.pop()
            key = id(obj)
            if key in seen:
                continue
            seen.add(key)
            if isinstance(obj, skip_types) or obj is None:
                continue
            if isinstance(obj, tzinfo) and not isinstance(obj, fixed_offset):
                continue  # ZoneInfo: one per zone, shared
            total += sys.getsizeof(obj)
            if isinstance(obj, leaf_types):
                continue
            if isinstance(obj, dict):
                stack.extend(obj.keys())
                stack.extend(obj.values())
            elif isinstance(obj, (list, tuple, set, frozenset)):
                stack.extend(obj)
            elif isinstance(obj, datetime):
                if obj.tzinfo is not None:
                    stack.append(obj.tzinfo)
            elif isinstance(obj, fixed_offset):
                stack.append(obj.utcoffset(None))
            else:
                for cls in type(obj).__mro__:
                    for slot in cls.__dict__.get("__slots__", ()):
                        if hasattr(obj, slot):
                            stack.append(getattr(obj, slot))
                if hasattr(obj, "__dict__"):
                    stack.append(obj.__dict__)
        out[name] = total
    return out


def freed_by_component(pipeline: Pipeline, table) -> dict[str, int]:
    """Bytes tracemalloc sees released as the state cache, then the table, then the index are freed."""
    freed = {}
    for name, clear in (("states", pipeline.states.clear), ("table", table.clear),
                        ("index", lambda: setattr(pipeline, "index", DeadlineIndex()))):
        before = tracemalloc.get_traced_memory()[0]
        clear()
        gc.collect()
        freed[name] = before - tracemalloc.get_traced_memory()[0]
    return freed


def run_tick(pipeline: Pipeline) -> int:
    """Run `fire_due` once to completion; with nothing due it never suspends."""
    coro = pipeline.fire_due()
    try:
        coro.send(None)
    except StopIteration as stop:
        return stop.value
    coro.close()
    raise RuntimeError("fire_due suspended: something was due or a peer group was dirty")


def time_ticks(fns: dict, batches: int = 30, per_batch: int = 200) -> dict:
    """Per-call wall time (median, p99) and thread CPU of each function, their batches interleaved so
    that load from other processes falls on all of them alike."""
    for fn in fns.values():
        for _ in range(50):
            fn()
    walls: dict = {name: [] for name in fns}
    cpus: dict = {name: [] for name in fns}
    for _ in range(batches):
        for name, fn in fns.items():
            c0 = time.thread_time_ns()
            for _ in range(per_batch):
                t0 = time.perf_counter_ns()
                fn()
                walls[name].append(time.perf_counter_ns() - t0)
            cpus[name].append((time.thread_time_ns() - c0) / per_batch)
    out = {}
    for name in fns:
        w = sorted(walls[name])
        out[name] = {"median_us": statistics.median(w) / 1000, "p99_us": w[int(len(w) * 0.99)] / 1000,
                     "cpu_us": statistics.median(cpus[name]) / 1000, "samples": len(w)}
    return out


# -- child 1 and 2: memory by component, RSS, idle ticks ------------------------------------------

def memory_child(n: int, variant: str, traced: bool) -> dict:
    quiet()
    work = Path(tempfile.mkdtemp(prefix="sunlight-bench-mem-"))
    catalog = write_catalog(work)
    pipeline = offline_pipeline(work, catalog)
    partition = partition_of()
    maker = CaseMaker(build_catalog(), utcnow(), seed=n)
    calendar = pipeline.catalog.judge.calendar
    feed(pipeline, maker.case(9_999_999, 2), partition)  # warm the catalog and calendar caches
    pipeline.table.clear()
    pipeline.states.clear()
    pipeline.index = DeadlineIndex()
    gc.collect()
    if traced:
        tracemalloc.start()
    rss0 = rss()
    traced0 = tracemalloc.get_traced_memory()[0] if traced else 0
    events = 0
    started = time.perf_counter()
    for messages in maker.cases(n, variant, calendar):
        feed(pipeline, messages, partition)
        events += len(messages)
    build_s = time.perf_counter() - started
    gc.collect()
    rss1 = rss()
    out = {"n": n, "variant": variant, "events": events, "build_s": build_s, "rss_delta": rss1 - rss0,
           "table": len(pipeline.table), "states": len(pipeline.states), "index": len(pipeline.index),
           "heap_entries": heap_entries(pipeline.index),
           "with_alerts": sum(1 for s in pipeline.states.values() if s.alerts),
           "alerts": sum(len(s.alerts) for s in pipeline.states.values())}
    values = list(pipeline.table.values())
    sample = random.Random(0).sample(values, min(2000, len(values)))
    del values
    out["json_bytes"] = statistics.mean(len(v) if isinstance(v, bytes) else len(orjson.dumps(v)) for v in sample)
    del sample  # it would keep table values alive
    if traced:
        total = tracemalloc.get_traced_memory()[0] - traced0
        freed = freed_by_component(pipeline, pipeline.table)
        tracemalloc.stop()
        out.update(traced_total=total, freed=freed)
    else:
        # The reference: the same timer over an index of 40 such cases (every partition has some),
        # timed interleaved with the real one (the machine is shared: load changes between runs).
        reference = offline_pipeline(work, catalog)
        for messages in CaseMaker(build_catalog(), utcnow(), seed=n + 1, prefix="R01").cases(40, "typical"):
            feed(reference, messages, partition)
        pipeline.index_ready = reference.index_ready = True
        clock_now = pipeline.clock.now
        out["ticks"] = time_ticks({"fire_due": lambda: run_tick(pipeline),
                                   "fire_due_ref": lambda: run_tick(reference),
                                   "pop_due": lambda: pipeline.index.pop_due(clock_now),
                                   "pop_due_ref": lambda: reference.index.pop_due(clock_now)})
        assert len(pipeline.index) == out["index"], "an idle tick popped something"
        del reference
        started = time.perf_counter()
        gc.collect()
        out["gc_full_s"] = time.perf_counter() - started
        out["gc_objects"] = len(gc.get_objects())
        started = time.perf_counter()
        out["walked"] = deep_sizes([("index", pipeline.index), ("table", pipeline.table),
                                    ("states", pipeline.states)])
        out["walk_s"] = time.perf_counter() - started
    shutil.rmtree(work, ignore_errors=True)
    return out


# -- child 3: a sample through the real pipeline ------------------------------------------------

async def sample_child(cases: int) -> dict:
    from streams.runtime import produce, running_pipeline, wait_until_processed

    quiet()
    work = Path(tempfile.mkdtemp(prefix="sunlight-bench-sample-"))
    catalog = write_catalog(work)
    settings = Settings(data_dir=work / "data", partitions=PARTITIONS)
    maker = CaseMaker(build_catalog(), utcnow(), seed=cases, prefix="S01")
    messages = [m for case in maker.cases(cases, "typical") for m in case]
    async with running_pipeline(settings, catalog, clock=WallClock()) as running:
        pipeline = running.pipeline
        while not pipeline.index_ready:
            await asyncio.sleep(0.1)
        await asyncio.sleep(2.0)
        broker_pid = running.broker.process.pid if running.broker and running.broker.process else None
        gc.collect()
        rss0, broker0 = rss(), (rss(broker_pid) if broker_pid else 0)
        tracemalloc.start()
        traced0 = tracemalloc.get_traced_memory()[0]
        started = time.perf_counter()
        ends = await produce(running.bootstrap, settings.case_events_topic, messages)
        await wait_until_processed(pipeline, ends, timeout=3600)
        await pipeline.flush()
        elapsed = time.perf_counter() - started
        await asyncio.sleep(2.0)  # let the producer drain its changelog batches
        gc.collect()
        rss1, broker1 = rss(), (rss(broker_pid) if broker_pid else 0)
        total = tracemalloc.get_traced_memory()[0] - traced0
        table = table_items(pipeline.table)
        out = {"n": cases, "events": len(messages), "elapsed_s": elapsed, "rss_delta": rss1 - rss0,
               "broker_rss_delta": broker1 - broker0, "traced_total": total, "table": len(table),
               "states": len(pipeline.states), "index": len(pipeline.index),
               "heap_entries": heap_entries(pipeline.index), "events_new": pipeline.progress.events_new,
               "dead_letters": pipeline.progress.dead_letters,
               "with_alerts": sum(1 for s in pipeline.states.values() if s.alerts)}
        out["freed"] = freed_by_component(pipeline, table)
        tracemalloc.stop()
    shutil.rmtree(work, ignore_errors=True)
    return out


# -- child 4: the deadline-to-alert delay in a live pipeline -------------------------------------

async def delay_child(cases: int, tick: float, flush: float, due_cases: int, lead: float, spacing: float,
                      poll: float, idle_seconds: float) -> dict:
    from streams.runtime import produce, running_pipeline

    quiet()
    work = Path(tempfile.mkdtemp(prefix="sunlight-bench-delay-"))
    catalog = write_catalog(work)
    settings = Settings(data_dir=work / "data", partitions=PARTITIONS, tick_interval=tick, flush_interval=flush)
    out: dict = {"tick": tick, "flush": flush, "cases": cases, "due_cases": due_cases}
    gc_pauses: list[float] = []
    gc_started = [0.0]

    def on_gc(phase, info):
        if info.get("generation") != 2:
            return
        if phase == "start":
            gc_started[0] = time.perf_counter()
        else:
            gc_pauses.append(time.perf_counter() - gc_started[0])

    async with running_pipeline(settings, catalog, clock=WallClock()) as running:
        pipeline = running.pipeline
        while not pipeline.index_ready:
            await asyncio.sleep(0.1)
        await asyncio.sleep(1.0)
        cpu0, t0 = time.process_time(), time.perf_counter()
        await asyncio.sleep(idle_seconds)
        out["idle_cpu_empty"] = (time.process_time() - cpu0) / (time.perf_counter() - t0)
        rss0 = rss()
        # The open cases, days from their deadlines, through the same code path as the agent, into
        # the table's store (no changelog: this stands for a worker that has recovered them).
        partition = partition_of()
        maker = CaseMaker(build_catalog(), utcnow(), seed=cases, prefix="C01")
        table = pipeline.table
        pipeline.table = table.data
        started = time.perf_counter()
        try:
            for index, messages in enumerate(maker.cases(cases, "typical")):
                feed(pipeline, messages, partition)
                if index % 500 == 0:
                    await asyncio.sleep(0)  # heartbeats, timers
        finally:
            pipeline.table = table
        out["fill_s"] = time.perf_counter() - started
        gc_t = time.perf_counter()
        gc.collect()
        out["gc_full_s"] = time.perf_counter() - gc_t
        out["rss_fill_delta"] = rss() - rss0
        out["index_before"] = len(pipeline.index)
        out["states"] = len(pipeline.states)
        out["table"] = len(table_items(table))
        await asyncio.sleep(2.0)
        cpu0, t0 = time.process_time(), time.perf_counter()
        await asyncio.sleep(idle_seconds)
        out["idle_cpu_full"] = (time.process_time() - cpu0) / (time.perf_counter() - t0)
        out["ticks_sent_idle"] = pipeline.progress.ticks_sent

        # The measured cases: each deadline, stated by the source system, a few seconds ahead.
        rng = random.Random(7)
        base = time.time() + lead
        dues = {f"DUE{i:04d}": base + i * spacing + rng.random() * spacing for i in range(due_cases)}
        accepted = datetime.now(timezone.utc) - timedelta(minutes=1)
        item = build_catalog()["items"][0]
        messages = []
        for case_id, due in dues.items():
            event = {"event_id": f"{case_id}-01", "case_id": case_id, "item_code": item["code"],
                     "type": "accepted", "occurred_at": accepted.astimezone(TZ).isoformat(),
                     "recorded_at": accepted.astimezone(TZ).isoformat(), "officer_id": f"{item['department']}-01",
                     "department": item["department"], "region": "320200", "channel": "online",
                     "attrs": {"deadline": datetime.fromtimestamp(due, timezone.utc).isoformat()}}
            messages.append((case_id.encode(), orjson.dumps(event)))
        seen: dict[str, tuple[float, int]] = {}
        polls: list[float] = []
        stop = threading.Event()

        def poller():
            sql = ("SELECT case_id, toUnixTimestamp64Milli(raised_at) FROM alerts "
                   "WHERE rule = 'overdue' AND startsWith(case_id, 'DUE')")
            while not stop.is_set():
                with pipeline.writer.lock:
                    observed = time.time()  # writes hold this lock too: what is there now is readable now
                    q0 = time.perf_counter()
                    rows = running.client.query(sql).result_rows
                    polls.append(time.perf_counter() - q0)
                for case_id, raised in rows:
                    seen.setdefault(case_id, (observed, raised))
                stop.wait(poll)

        thread = threading.Thread(target=poller, daemon=True)
        gc.callbacks.append(on_gc)
        thread.start()
        processed_at = None
        new_before = pipeline.progress.events_new
        try:
            await produce(running.bootstrap, settings.case_events_topic, messages)
            limit = max(dues.values()) + 30
            while len(seen) < len(dues) and time.time() < limit:
                if processed_at is None and pipeline.progress.events_new - new_before >= len(dues):
                    processed_at = time.time()
                await asyncio.sleep(0.05)
        finally:
            stop.set()
            thread.join(timeout=10)
            gc.callbacks.remove(on_gc)
        out["processed_before_first_due"] = processed_at is not None and processed_at < min(dues.values())
        out["index_after"] = len(pipeline.index)
        delays, judged, written = [], [], []
        for case_id, due in dues.items():
            if case_id in seen:
                observed, raised_ms = seen[case_id]
                delays.append(observed - due)
                judged.append(raised_ms / 1000 - due)
                written.append(observed - raised_ms / 1000)
        out.update(delays=delays, judged=judged, written=written, missing=len(dues) - len(delays),
                   poll_interval=poll, poll_query_s=statistics.median(polls) if polls else None,
                   gc_gen2_pauses=gc_pauses, load=load())
    shutil.rmtree(work, ignore_errors=True)
    return out


# -- child 5: the broker's own round trip ----------------------------------------------------------

async def broker_child(sends: int) -> dict:
    """One record at a time, produced at random moments, to a consumer fetching as Faust's does
    (fetch_max_wait_ms 1500, hard-coded by faust 0.15) and with shorter waits: produce -> consume."""
    from aiokafka import AIOKafkaConsumer, AIOKafkaProducer

    from streams.broker import EmbeddedBroker, create_topics

    quiet()
    rng = random.Random(3)
    out = {}
    with EmbeddedBroker() as broker:
        await create_topics(broker.bootstrap, [("bench-probe", PARTITIONS)])
        producer = AIOKafkaProducer(bootstrap_servers=broker.bootstrap, linger_ms=5)
        await producer.start()
        try:
            for wait in (1500, 500, 100):
                consumer = AIOKafkaConsumer("bench-probe", bootstrap_servers=broker.bootstrap, group_id=None,
                                            auto_offset_reset="latest", fetch_max_wait_ms=wait)
                await consumer.start()
                await asyncio.sleep(1.0)
                latencies = []
                try:
                    for i in range(sends):
                        await asyncio.sleep(rng.uniform(0.05, 0.8))
                        sent = time.time()
                        await producer.send_and_wait("bench-probe", repr(sent).encode(), key=b"k%d" % i)
                        while True:
                            batches = await consumer.getmany(timeout_ms=5000)
                            records = [r for rs in batches.values() for r in rs]
                            if records:
                                latencies.append(time.time() - float(records[-1].value))
                                break
                finally:
                    await consumer.stop()
                out[str(wait)] = latencies
        finally:
            await producer.stop()
    return out


# -- the parent: run the children, print the figures ----------------------------------------------

def child(args: list[str], timeout: float = 7200) -> dict:
    command = [sys.executable, str(Path(__file__).resolve()), "--child", *args]
    result = subprocess.run(command, capture_output=True, text=True, timeout=timeout)
    for line in reversed(result.stdout.splitlines()):
        if RESULT in line:
            return json.loads(line.split(RESULT, 1)[1])
    raise RuntimeError(f"child {' '.join(args)} failed ({result.returncode}):\n"
                       f"{result.stdout[-3000:]}\n{result.stderr[-5000:]}")


def pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    if not ordered:
        return float("nan")
    return ordered[min(len(ordered) - 1, max(0, round(q * (len(ordered) - 1))))]


def sizes_up_to(cases: int, start: int) -> list[int]:
    out, n = [], start
    while n < cases:
        out.append(n)
        n *= 10
    return out + [cases]


def print_memory(cases: int, traced_max: int) -> dict:
    sizes = sizes_up_to(cases, 1_000)
    runs = {}
    print("\n== 1. Memory per open case, by component. Built without Kafka through the worker's code path "
          "(parse_event -> Pipeline._load -> step -> Pipeline._store)")
    print(f"   'typical' open case: half one event (accepted), half two (accepted + node_completed), on time, "
          f"no alert; STATE_CACHE_SIZE = {STATE_CACHE_SIZE}")
    print("   a) deep size of what the worker holds (sys.getsizeof, each object once), and RSS growth of the process")
    print(f"   {'open cases':>10} {'events':>8} {'table':>7} {'cache':>7} {'cache/st':>8} {'index':>7} "
          f"{'TOTAL':>7} {'all cached':>10} {'RSS':>7} {'json':>5} {'heap/c':>6} {'build':>6}   load")
    print(f"   {'':>10} {'':>8} {'B/case':>7} {'B/case':>7} {'B/state':>8} {'B/case':>7} {'B/case':>7} "
          f"{'B/case':>10} {'B/case':>7} {'B':>5} {'':>6} {'s':>6}")
    for n in sizes:
        r = runs[n] = child(["memory", "--n", str(n), "--variant", "typical"])
        w = r["walked"]
        per_state = w["states"] / max(1, r["states"])
        total = (w["table"] + w["states"] + w["index"]) / n
        print(f"   {n:>10} {r['events']:>8} {w['table'] / n:>7.0f} {w['states'] / n:>7.0f} {per_state:>8.0f} "
              f"{w['index'] / n:>7.0f} {total:>7.0f} {(w['table'] + w['index']) / n + per_state:>10.0f} "
              f"{r['rss_delta'] / n:>7.0f} {r['json_bytes']:>5.0f} {r['heap_entries'] / max(1, r['index']):>6.2f} "
              f"{r['build_s']:>6.0f}   {load()}")
    print("   table = the Faust table entry (key + the JSON bytes _store writes, as the memory store keeps them); "
          "cache = Pipeline.states amortised over all open cases; cache/st = per cached state; index = "
          "DeadlineIndex (dict entry, heap entry, and the case_id string and next_due datetime it shares "
          "with the others); TOTAL = table + cache + index; all cached = table + index + a cached state "
          "(every open case in the cache, i.e. up to STATE_CACHE_SIZE open cases); RSS = growth of the "
          "process's resident memory (includes allocator slack; noisy at small N); json = orjson size of "
          "the table value (a changelog record); heap/c = heap entries per open case (stale ones included).")
    print("   b) tracemalloc: bytes released when the cache, then the table, then the index are freed (shared "
          "objects count with the last freed); validates a)")
    print(f"   {'open cases':>10} {'variant':>8} {'events':>8} {'table':>7} {'cache':>7} {'cache/st':>8} "
          f"{'index':>7} {'other':>6} {'TOTAL':>7} {'json':>5} {'alerts':>6}   load")
    traced = [(n, "typical") for n in sizes if 10_000 <= n <= traced_max]
    small = min(10_000, cases)
    traced += [(small, "one"), (small, "two"), (small, "late")]
    for n, variant in traced:
        r = child(["memory", "--n", str(n), "--variant", variant, "--tracemalloc"])
        f = r["freed"]
        other = r["traced_total"] - sum(f.values())
        print(f"   {n:>10} {variant:>8} {r['events']:>8} {f['table'] / n:>7.0f} {f['states'] / n:>7.0f} "
              f"{f['states'] / max(1, r['states']):>8.0f} {f['index'] / n:>7.0f} {other / n:>6.0f} "
              f"{r['traced_total'] / n:>7.0f} {r['json_bytes']:>5.0f} {r['alerts'] / n:>6.2f}   {load()}")
    print("   one/two = every case with one/two events; late = a licence case in its last working day, stuck "
          "after acceptance, carrying its deadline_near and node_overdue alerts (alerts = alerts per case).")
    return runs


def print_ticks(runs: dict) -> None:
    print("\n== 2. CPU per tick when nothing is due (same processes as 1a; wall clock; 4 partitions)")
    print(f"   {'open cases':>10} {'fire_due':>9} {'p99':>7} {'CPU':>7} {'ref':>7} {'ratio':>6} "
          f"{'pop_due':>8} {'p99':>7} {'ref':>7} {'ratio':>6} {'full gc':>8} {'gc objects':>11}")
    print(f"   {'':>10} {'us':>9} {'us':>7} {'us':>7} {'us':>7} {'':>6} {'us':>8} {'us':>7} {'us':>7} {'':>6} "
          f"{'s':>8}")
    for n, r in runs.items():
        t = r["ticks"]
        fd, fr, pd, pr = t["fire_due"], t["fire_due_ref"], t["pop_due"], t["pop_due_ref"]
        print(f"   {n:>10} {fd['median_us']:>9.2f} {fd['p99_us']:>7.2f} {fd['cpu_us']:>7.2f} {fr['median_us']:>7.2f} "
              f"{fd['median_us'] / fr['median_us']:>6.2f} {pd['median_us']:>8.2f} {pd['p99_us']:>7.2f} "
              f"{pr['median_us']:>7.2f} {pd['median_us'] / pr['median_us']:>6.2f} {r['gc_full_s']:>8.2f} "
              f"{r['gc_objects']:>11}")
    print("   fire_due = the tick timer's body (peer-group judgements, then DeadlineIndex.pop_due over every "
          "partition's heap), run to completion; median and p99 wall time of 6000 ticks; CPU = median thread "
          "CPU per tick; ref = the same on an index of 40 open cases, timed interleaved "
          "in the same process; ratio = median / ref median (1.0 = no growth). full gc = one gc.collect() "
          "with that many open cases alive: a pause Python takes whenever it decides on a full collection.")


def print_sample(sample: int) -> None:
    print(f"\n== 3. Cross-check through the real pipeline: {sample} typical cases via the embedded broker, "
          f"one Faust worker (wall clock, defaults)")
    r = child(["sample", "--n", str(sample)])
    n = r["n"]
    f = r["freed"]
    print(f"   {r['events']} events in {r['elapsed_s']:.1f} s ({r['events'] / r['elapsed_s']:.0f} events/s "
          f"under tracemalloc); new {r['events_new']}, dead letters {r['dead_letters']}; table {r['table']}, "
          f"cache {r['states']}, index {r['index']} (heap entries {r['heap_entries']}); cases with alerts "
          f"{r['with_alerts']}   {load()}")
    print(f"   worker RSS delta:        {r['rss_delta'] / n:7.0f} B/case  (includes chdb, the embedded ClickHouse "
          f"in this process, and allocator slack)")
    print(f"   worker Python heap delta:{r['traced_total'] / n:7.0f} B/case  (tracemalloc, everything the "
          f"worker kept: table + cache + index + Faust/aiokafka/writer)")
    print(f"     of which table {f['table'] / n:.0f}, cache {f['states'] / n:.0f}, index {f['index'] / n:.0f}, "
          f"rest {(r['traced_total'] - sum(f.values())) / n:.0f} B/case")
    print(f"   broker (Tansu, separate process, in-memory topics incl. the table changelog) RSS delta: "
          f"{r['broker_rss_delta'] / n:.0f} B/case")


def print_delay(cases: int, configs: list[tuple[float, float]], due_cases: int, lead: float, spacing: float,
                poll: float, idle: float) -> list[dict]:
    print(f"\n== 4. Deadline -> alert readable in ClickHouse, live pipeline (wall clock), {cases} other open "
          f"cases in table/cache/index, {due_cases} cases due {lead:.0f}..{lead + spacing * due_cases:.0f} s "
          f"after they are sent")
    results = []
    for tick, flush in configs:
        r = child(["delay", "--n", str(cases), "--tick", str(tick), "--flush", str(flush),
                   "--due-cases", str(due_cases), "--lead", str(lead), "--spacing", str(spacing),
                   "--poll", str(poll), "--idle", str(idle)])
        results.append(r)
        d, j, w = r["delays"], r["judged"], r["written"]
        print(f"   tick_interval {tick:g} s, flush_interval {flush:g} s   ({r['load']})")
        print(f"     open cases held: table {r['table']}, cache {r['states']}, index {r['index_before']} -> "
              f"{r['index_after']}; fill {r['fill_s']:.0f} s, RSS +{r['rss_fill_delta'] / cases:.0f} B/case; "
              f"full gc {r['gc_full_s']:.2f} s")
        print(f"     idle worker CPU: {100 * r['idle_cpu_empty']:.1f}% of a core with 0 open cases, "
              f"{100 * r['idle_cpu_full']:.1f}% with {r['index_before']} (over {idle:.0f} s each; "
              f"ticks sent meanwhile: {r['ticks_sent_idle']})")
        print(f"     alerts seen {len(d)}/{due_cases} (missing {r['missing']}); all processed before the first "
              f"due moment: {r['processed_before_first_due']}")
        if d:
            print(f"     deadline -> readable:  p50 {pct(d, .5):.3f}  p99 {pct(d, .99):.3f}  max {max(d):.3f} s   "
                  f"(<1 s: {sum(x < 1 for x in d)}/{len(d)})")
            print(f"     deadline -> judged:    p50 {pct(j, .5):.3f}  p99 {pct(j, .99):.3f}  max {max(j):.3f} s   "
                  f"(raised_at, ms precision)")
            print(f"     judged -> readable:    p50 {pct(w, .5):.3f}  p99 {pct(w, .99):.3f}  max {max(w):.3f} s")
        print(f"     measurement resolution: poll every {r['poll_interval']:.3f} s, query median "
              f"{(r['poll_query_s'] or 0) * 1000:.1f} ms; gen-2 GC pauses during the measurement: "
              f"{len(r['gc_gen2_pauses'])}"
              + (f", max {max(r['gc_gen2_pauses']):.2f} s" if r["gc_gen2_pauses"] else ""))
    return results


def print_broker(sends: int) -> None:
    print(f"\n== 5. The broker's own round trip (embedded Tansu): one record produced at a random moment "
          f"-> consumed, {sends} records per setting")
    r = child(["broker", "--n", str(sends)])
    for wait, latencies in r.items():
        note = "  <- what Faust 0.15 hard-codes for its consumer" if wait == "1500" else ""
        print(f"   consumer fetch_max_wait_ms {wait:>5}: p50 {pct(latencies, .5):.3f}  max {max(latencies):.3f}  "
              f"min {min(latencies):.3f} s{note}")
    print(f"   Every tick goes through this once (timer -> ticks topic -> case agent). A Kafka broker answers a "
          f"waiting fetch as soon as fetch.min.bytes (1) are there, so with Kafka this part should be milliseconds "
          f"(not measured here).  {load()}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--cases", type=int, default=1_000_000, help="open cases (largest size measured)")
    parser.add_argument("--sample-cases", type=int, default=20_000, help="cases through the real pipeline (3.)")
    parser.add_argument("--due-cases", type=int, default=200, help="cases whose deadline is measured (4.)")
    parser.add_argument("--delay-configs", default="1.0/1.0,0.2/0.2",
                        help="tick_interval/flush_interval pairs for 4., comma separated")
    parser.add_argument("--lead", type=float, default=5.0, help="seconds from sending to the first deadline")
    parser.add_argument("--spacing", type=float, default=0.25, help="seconds between deadlines")
    parser.add_argument("--poll", type=float, default=0.02, help="seconds between polls of the alerts table")
    parser.add_argument("--idle", type=float, default=10.0, help="seconds of idle CPU measurement in 4.")
    parser.add_argument("--tracemalloc-max", type=int, default=100_000,
                        help="largest size also measured with tracemalloc (slow: ~1.5 ms per case)")
    parser.add_argument("--skip", default="", help="parts to skip: memory (with ticks),sample,delay,broker")
    parser.add_argument("--child", choices=["memory", "sample", "delay", "broker"], help=argparse.SUPPRESS)
    parser.add_argument("--n", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--variant", default="typical", help=argparse.SUPPRESS)
    parser.add_argument("--tracemalloc", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--tick", type=float, help=argparse.SUPPRESS)
    parser.add_argument("--flush", type=float, help=argparse.SUPPRESS)
    args = parser.parse_args()

    if args.child == "memory":
        result = memory_child(args.n, args.variant, args.tracemalloc)
    elif args.child == "sample":
        result = asyncio.run(sample_child(args.n))
    elif args.child == "broker":
        result = asyncio.run(broker_child(args.n))
    elif args.child == "delay":
        result = asyncio.run(delay_child(args.n, args.tick, args.flush, args.due_cases, args.lead, args.spacing,
                                         args.poll, args.idle))
    if args.child:
        print(RESULT + json.dumps(result), flush=True)
        os._exit(0)  # no slow teardown of a million objects

    skip = {s.strip() for s in args.skip.split(",") if s.strip()}
    configs = [tuple(float(x) for x in pair.split("/")) for pair in args.delay_configs.split(",") if pair]
    command = ["python", "bench/open_case_timers.py", "--cases", str(args.cases), "--tracemalloc-max",
               str(args.tracemalloc_max), "--sample-cases", str(args.sample_cases), "--due-cases",
               str(args.due_cases), "--delay-configs", args.delay_configs]
    for name in ("lead", "spacing", "poll", "idle"):
        if getattr(args, name) != parser.get_default(name):
            command += [f"--{name}", str(getattr(args, name))]
    if skip:
        command += ["--skip", ",".join(sorted(skip))]
    started = time.perf_counter()
    print(f"date: {datetime.now().astimezone().isoformat(timespec='seconds')}")
    print(f"machine: {machine()}")
    print(f"at start: {uptime()}")
    print(f"command: {shlex.join(command)}")
    print("targets: memory <= 1 KB per open case; deadline -> alert < 1 s; CPU per idle tick flat in open cases")
    runs, delays = {}, []
    if "memory" not in skip:
        runs = print_memory(args.cases, args.tracemalloc_max)
        print_ticks(runs)
    if "sample" not in skip:
        print_sample(args.sample_cases)
    if "delay" not in skip:
        delays = print_delay(args.cases, configs, args.due_cases, args.lead, args.spacing, args.poll, args.idle)
    if "broker" not in skip:
        print_broker(30)
    print("\n== Against the targets")
    if runs:
        n = max(runs)
        r = runs[n]
        w = r["walked"]
        total = (w["table"] + w["states"] + w["index"]) / n
        cached = (w["table"] + w["index"]) / n + w["states"] / max(1, r["states"])
        print(f"   memory per open case at {n} open cases: {total:.0f} B held ({r['rss_delta'] / n:.0f} B of RSS); "
              f"{cached:.0f} B while every open case is in the state cache -> target 1024 B "
              f"{'MET' if max(total, r['rss_delta'] / n) <= 1024 else 'MISSED'}")
        low = runs[min(runs)]["ticks"]
        high = r["ticks"]
        ratio = high["fire_due"]["median_us"] / high["fire_due_ref"]["median_us"]
        print(f"   CPU per idle tick: fire_due {low['fire_due']['median_us']:.1f} us at {min(runs)} open cases, "
              f"{high['fire_due']['median_us']:.1f} us at {n} (ratio to the interleaved 40-case reference "
              f"{low['fire_due']['median_us'] / low['fire_due_ref']['median_us']:.2f} and "
              f"{high['fire_due']['median_us'] / high['fire_due_ref']['median_us']:.2f}) -> "
              f"{'flat: MET' if ratio < 1.5 else 'GROWS: MISSED'}")
    for r in delays:
        d = r["delays"]
        if d:
            verdict = "MET" if max(d) < 1.0 and not r["missing"] else ("MET at p99" if pct(d, .99) < 1.0 else "MISSED")
            print(f"   deadline -> alert, tick {r['tick']:g} s / flush {r['flush']:g} s, {r['index_before']} open "
                  f"cases: p50 {pct(d, .5):.2f} s, p99 {pct(d, .99):.2f} s, max {max(d):.2f} s -> target < 1 s "
                  f"{verdict}")
    print(f"\nat end: {uptime()}   (whole run {time.perf_counter() - started:.0f} s)")
    print(f"reproduce: {shlex.join(command)}")


if __name__ == "__main__":
    main()
