"""What a second `sunlight replay` into a data directory that already holds a city costs.

    python bench/restart_cost.py [--cases 25000] [--partitions 4] [--before COMMIT] [--rounds 1]

A process with its own embedded broker starts by seeding its table from the store
(`streams.runtime.restore_from_store`). This script replays a generated city into a fresh data
directory, then replays one of its events again into the same directory (the start, the seeding
and the end-of-input judgement are all that second run does), and, as the baseline in the same
run, that one event into an empty directory (the command's fixed cost). Prints each run's wall
time and the peak RSS of its process. With `--before COMMIT` the same runs are made from a
checkout of that commit too, alternating, so that the two are compared in the same minutes.
"""

from __future__ import annotations

import argparse
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import datetime
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench.replay_ab import checkout  # noqa: E402
from bench.workload import own_store_env, replay_command  # noqa: E402


def run(source: Path, events: Path, catalog: Path, data_dir: Path, partitions: int) -> tuple[float, float]:
    """(wall seconds, peak RSS in MiB) of `python -m streams.cli replay` run from `source`."""
    env = {**own_store_env(data_dir, partitions), "PYTHONPATH": str(source)}
    started = time.perf_counter()
    process = subprocess.Popen(replay_command(events, catalog), env=env, cwd=source, stdout=subprocess.DEVNULL,
                               stderr=subprocess.PIPE)
    _, status, usage = os.wait4(process.pid, 0)
    wall = time.perf_counter() - started
    err = process.stderr.read().decode(errors="replace")
    process.stderr.close()
    process.returncode = os.waitstatus_to_exitcode(status)
    if process.returncode != 0:
        raise RuntimeError(err[-3000:])
    return wall, usage.ru_maxrss / 1024


WRITE_CITY = """
import sys
sys.path.insert(0, sys.argv[2])
from bench.workload import city, events_file
_, messages, work, catalog = city(int(sys.argv[1]), "sunlight-restart-")
events_file(messages, work / "events.jsonl")
events_file(messages[:1], work / "one.jsonl")
print(work, catalog, len(messages))
"""


def write_city(cases: int) -> tuple[Path, Path, Path, Path, int]:
    """(work directory, catalog, events file, a file of its first event, how many events), written
    by a process of its own: a process forked from one holding the city counts the city's pages in
    its peak RSS, so this one stays small."""
    out = subprocess.run([sys.executable, "-c", WRITE_CITY, str(cases), str(ROOT)], capture_output=True, text=True,
                         check=True).stdout.split()
    work, catalog, count = Path(out[0]), Path(out[1]), int(out[2])
    return work, catalog, work / "events.jsonl", work / "one.jsonl", count


def rounds_of(source: Path, events: Path, one: Path, catalog: Path, work: Path, partitions: int) -> dict:
    empty, full = work / "empty", work / "full"
    for directory in (empty, full):
        shutil.rmtree(directory, ignore_errors=True)
    fixed = run(source, one, catalog, empty, partitions)
    first = run(source, events, catalog, full, partitions)
    second = run(source, one, catalog, full, partitions)
    return {"fixed": fixed, "first": first, "second": second}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cases", type=int, default=25000)
    parser.add_argument("--partitions", type=int, default=4)
    parser.add_argument("--before", help="also run from a checkout of this commit, alternating")
    parser.add_argument("--rounds", type=int, default=1)
    args = parser.parse_args()

    work, catalog, events, one, count = write_city(args.cases)
    sources = {"this tree": ROOT}
    if args.before:
        sources = {args.before: checkout(args.before, Path(tempfile.mkdtemp(prefix="sunlight-before-")) / "src"),
                   "this tree": ROOT}
    print(f"date: {datetime.now().isoformat(timespec='seconds')}  machine: {platform.machine()}, "
          f"{os.cpu_count()} cores, Python {platform.python_version()}")
    print(f"events: {count} ({args.cases} cases), partitions: {args.partitions}")
    results: dict[str, list[dict]] = {name: [] for name in sources}
    try:
        for number in range(args.rounds):
            for name, source in sources.items():
                result = rounds_of(source, events, one, catalog, work / name.replace(" ", "-"), args.partitions)
                results[name].append(result)
                print(f"round {number + 1}, {name}: " + ", ".join(
                    f"{what} {wall:.1f} s ({rss:.0f} MiB)" for what, (wall, rss) in result.items()), flush=True)
    finally:
        if args.before:
            subprocess.run(["git", "worktree", "remove", "--force", str(sources[args.before])], cwd=ROOT,
                           capture_output=True)
        shutil.rmtree(work, ignore_errors=True)
    for name, runs in results.items():
        fixed = statistics.median(r["fixed"][0] for r in runs)
        second = statistics.median(r["second"][0] for r in runs)
        rss = statistics.median(r["second"][1] for r in runs)
        print(f"{name}: one event into the full store {second:.1f} s ({rss:.0f} MiB peak), into an empty one "
              f"{fixed:.1f} s: the store's cases cost {second - fixed:.1f} s at the start "
              f"(ratio {second / fixed:.2f} of the fixed cost; medians of {len(runs)} round(s))")
    print(f"reproduce: python bench/restart_cost.py --cases {args.cases} --partitions {args.partitions}"
          + (f" --before {args.before}" if args.before else "") + f" --rounds {args.rounds}")


if __name__ == "__main__":
    main()
