"""The whole `sunlight replay` command of two commits, interleaved on the same machine.

    python bench/replay_ab.py --before COMMIT [--after COMMIT] [--cases 25000] [--partitions 4] [--rounds 3]

This machine's speed drifts by tens of percent between runs minutes apart (the bare consumer of
`replay_throughput.py` has read 190k to 410k events/s on one day), which hides a change of a
few percent in any single run. So the same command is run from a checkout of each commit (`git
worktree`, detached, in a temporary folder; `--after` defaults to the working tree), alternating
before, after, before, after..., over the same events file; each run starts with a fresh data
directory. Prints each run's wall time and the process's CPU (user + system, its children
included), then the median of the per-round ratios after/before: the baseline is the other
commit, measured in the same minutes.
"""

from __future__ import annotations

import argparse
import os
import platform
import resource
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

from bench.workload import city, events_file, own_store_env, replay_command  # noqa: E402


def checkout(commit: str, into: Path) -> Path:
    subprocess.run(["git", "worktree", "add", "--detach", "-f", str(into), commit], cwd=ROOT, check=True,
                   capture_output=True)
    return into


def replay(source: Path, events: Path, catalog: Path, data_dir: Path, partitions: int) -> tuple[float, float]:
    """(wall seconds, CPU seconds) of `python -m streams.cli replay` run from `source`."""
    shutil.rmtree(data_dir, ignore_errors=True)
    env = {**own_store_env(data_dir, partitions), "PYTHONPATH": str(source)}
    used = subprocess.run([sys.executable, "-c", "import streams; print(streams.__file__)"], env=env, cwd=source,
                          capture_output=True, text=True, check=True).stdout.strip()
    if not Path(used).resolve().is_relative_to(source.resolve()):
        raise RuntimeError(f"{source} would run the streams package at {used}")
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    started = time.perf_counter()
    done = subprocess.run(replay_command(events, catalog), env=env, cwd=source, capture_output=True, timeout=3600)
    wall = time.perf_counter() - started
    if done.returncode != 0:
        raise RuntimeError(done.stderr.decode()[-3000:])
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    return wall, (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--before", required=True, help="the commit to compare against")
    parser.add_argument("--after", help="the commit measured (default: the working tree)")
    parser.add_argument("--cases", type=int, default=25000)
    parser.add_argument("--partitions", type=int, default=4)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    _, messages, work, catalog = city(args.cases, "sunlight-ab-")
    events = events_file(messages, work / "events.jsonl")
    trees = Path(tempfile.mkdtemp(prefix="sunlight-ab-trees-"))
    sources = {"before": checkout(args.before, trees / "before"),
               "after": checkout(args.after, trees / "after") if args.after else ROOT}
    runs: dict[str, list[tuple[float, float]]] = {"before": [], "after": []}
    try:
        for _ in range(args.rounds):
            for name in ("before", "after"):
                runs[name].append(replay(sources[name], events, catalog, work / "data", args.partitions))
    finally:
        for name in ("before", "after"):
            if sources[name] != ROOT:
                subprocess.run(["git", "worktree", "remove", "--force", str(sources[name])], cwd=ROOT,
                               capture_output=True)
    print(f"date: {datetime.now().isoformat(timespec='seconds')}  machine: {platform.machine()}, "
          f"{os.cpu_count()} cores, Python {platform.python_version()}")
    print(f"events: {len(messages)} ({args.cases} cases), partitions: {args.partitions}; "
          f"before: {args.before}, after: {args.after or 'the working tree'}")
    for round_, (b, a) in enumerate(zip(runs["before"], runs["after"]), 1):
        print(f"round {round_}: before {b[0]:5.1f} s wall ({b[1]:5.1f} s CPU)   after {a[0]:5.1f} s wall "
              f"({a[1]:5.1f} s CPU)   after/before {a[0] / b[0]:.3f}")
    wall = statistics.median(a[0] / b[0] for b, a in zip(runs["before"], runs["after"]))
    cpu = statistics.median(a[1] / b[1] for b, a in zip(runs["before"], runs["after"]))
    print(f"median after/before: wall {wall:.3f}, CPU {cpu:.3f}")
    print(f"reproduce: python bench/replay_ab.py --before {args.before}"
          f"{f' --after {args.after}' if args.after else ''} --cases {args.cases} --partitions {args.partitions} "
          f"--rounds {args.rounds}")


if __name__ == "__main__":
    main()
