"""Where a replay's CPU goes: cProfile over one worker's replay, grouped by area, per event.

    python bench/profile_replay.py [--cases 5000] [--partitions 4] [--top 20] [--function NAME ...]

A generated city (seed 1) is replayed in event time through the pipeline `sunlight replay`
runs (`running_pipeline` with the replay clock, an embedded broker and a fresh chdb directory),
under cProfile from the first event sent to the end of `wait_until_processed`. Prints the
process's CPU per event (all threads: the ClickHouse inserts run on the writer's thread, which
cProfile does not see), the profiled main thread's own time per event grouped by area (Faust and
mode, aiokafka, Sunlight's domain `alerts/`, `streams/`, `sinks/`, JSON, asyncio, the rest),
and the functions with the most own time; with `--function`, the calls and time of functions of
that name.

It uses only entry points that the code before the stream core was rebuilt (commit 0bb4c5d)
has too, so the same script gives the profile before:

    git worktree add /tmp/before 0bb4c5d && cp bench/profile_replay.py /tmp/before/bench/ \\
        && (cd /tmp/before && python bench/profile_replay.py)
"""

from __future__ import annotations

import argparse
import asyncio
import cProfile
import os
import platform
import pstats
import subprocess
import sys
import tempfile
import time
from collections import defaultdict
from datetime import datetime, timezone
from pathlib import Path

import orjson
import yaml

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from alerts.scenario import generate  # noqa: E402
from streams.runtime import produce, replay_clock, running_pipeline, topic_ends, wait_until_processed  # noqa: E402
from streams.settings import Settings  # noqa: E402

NOW = datetime(2026, 6, 1, 12, tzinfo=timezone.utc)

AREAS = [  # (area, what a file's path contains), first match wins
    ("Sunlight alerts/ (domain)", f"{ROOT}/alerts/"),
    ("Sunlight streams/", f"{ROOT}/streams/"),
    ("Sunlight sinks/", f"{ROOT}/sinks/"),
    ("Faust and mode", "/faust/"),
    ("Faust and mode", "/mode/"),
    ("aiokafka and kafka", "/aiokafka/"),
    ("aiokafka and kafka", "/kafka/"),
    ("clickhouse-connect, chdb, pyarrow", "/clickhouse_connect/"),
    ("clickhouse-connect, chdb, pyarrow", "/chdb/"),
    ("clickhouse-connect, chdb, pyarrow", "/pyarrow/"),
    ("asyncio and selectors", "/asyncio/"),
    ("asyncio and selectors", "/selectors.py"),
]


IDLE = "idle (waiting in epoll: not CPU)"


def area_of(filename: str, function: str) -> str:
    if "of 'select.epoll' objects" in function:
        return IDLE
    for area, part in AREAS:
        if part in filename:
            return area
    if "orjson" in function or "json" in filename or "json" in function:
        return "JSON"
    return "other (builtins, stdlib, datetime, ...)"


async def replay(messages, catalog: Path, partitions: int, data_dir: Path, profiler: cProfile.Profile):
    settings = Settings(data_dir=data_dir, partitions=partitions, session_timeout=3.0)
    async with running_pipeline(settings, catalog, clock=replay_clock(NOW)) as running:
        cpu, wall = time.process_time(), time.perf_counter()
        profiler.enable()
        await produce(running.bootstrap, settings.case_events_topic, messages)
        ends = await topic_ends(running)
        await wait_until_processed(running.pipeline, ends, timeout=3600)
        profiler.disable()
        return time.process_time() - cpu, time.perf_counter() - wall


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--cases", type=int, default=5000)
    parser.add_argument("--partitions", type=int, default=4)
    parser.add_argument("--top", type=int, default=20)
    parser.add_argument("--dump", type=Path, help="also write the raw cProfile stats here (for pstats callers)")
    parser.add_argument("--function", action="append", default=[],
                        help="also print the calls and the time (own, with callees) of functions of this name")
    args = parser.parse_args()
    scenario = generate(cases=args.cases, seed=1, now=NOW)
    messages = [(e["case_id"].encode(), orjson.dumps(e)) for e in scenario.events]
    work = Path(tempfile.mkdtemp(prefix="sunlight-profile-"))
    catalog = work / "catalog.yaml"
    catalog.write_text(yaml.safe_dump(scenario.catalog, allow_unicode=True), encoding="utf-8")
    profiler = cProfile.Profile()
    cpu, wall = asyncio.run(replay(messages, catalog, args.partitions, work / "data", profiler))
    n = len(messages)
    stats = pstats.Stats(profiler)
    if args.dump:
        stats.dump_stats(args.dump)
    by_area: dict[str, float] = defaultdict(float)
    rows = []
    for (filename, line, function), (_, calls, own, cumulative, _) in stats.stats.items():
        by_area[area_of(filename, function)] += own
        rows.append((own, calls, filename, line, function))
    profiled = sum(own for area, own in by_area.items() if area != IDLE)
    try:
        commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True,
                                text=True).stdout.strip()
    except OSError:
        commit = "?"
    print(f"date: {datetime.now().isoformat(timespec='seconds')}  machine: {platform.machine()}, "
          f"{os.cpu_count()} cores, Python {platform.python_version()}  commit: {commit}")
    print(f"events: {n} ({args.cases} cases), {args.partitions} partitions, event-time replay, under cProfile")
    print(f"process CPU per event (all threads): {cpu / n * 1e6:.0f} us; wall {wall:.1f} s "
          f"({n / wall:.0f} events/s under the profiler)")
    print(f"main thread, own time per event by area (profiled total {profiled / n * 1e6:.0f} us, idle apart):")
    for area, own in sorted(by_area.items(), key=lambda kv: (kv[0] == IDLE, -kv[1])):
        share = f"{own / profiled * 100:5.1f}%" if area != IDLE else ""
        print(f"  {area:<40} {own / n * 1e6:8.1f} us  {share}")
    print(f"top {args.top} functions by own time, per event:")
    for own, calls, filename, line, function in sorted(rows, reverse=True)[:args.top]:
        where = filename.replace(str(ROOT) + "/", "").split("site-packages/")[-1]
        print(f"  {own / n * 1e6:7.1f} us  {calls / n:7.2f} calls  {where}:{line} {function}")
    for name in args.function:
        for (filename, line, function), (_, calls, own, cumulative, _) in sorted(stats.stats.items()):
            if function == name:
                where = filename.replace(str(ROOT) + "/", "").split("site-packages/")[-1]
                share = cumulative / profiled * 100
                print(f"  {where}:{line} {function}: {calls} calls ({calls / n:.3f} per event), own {own:.3f} s, "
                      f"with callees {cumulative:.3f} s ({share:.1f}% of the profiled main thread)")
    chosen = "".join(f" --function {name}" for name in args.function)
    print(f"reproduce: python bench/profile_replay.py --cases {args.cases} --partitions {args.partitions}{chosen}")


if __name__ == "__main__":
    main()
