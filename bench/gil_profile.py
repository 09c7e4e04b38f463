"""Who holds the GIL during a whole `sunlight replay`: py-spy samples of the thread holding it.

    pip install py-spy
    python bench/gil_profile.py [--cases 25000] [--partitions 4] [--rate 200]

Runs `python -m streams.cli replay` over a generated city (seed 1, judged in event time) under
`py-spy record --gil --threads` (only samples where a thread holds the GIL), then prints the
share of those samples per thread, and per function of Sunlight's pipeline counted inclusively
(a function and everything it calls). A thread waiting for the GIL does not appear: the shares
say where the one Python core of the process goes. py-spy stops the process at each sample, so
the command runs slower than without it; shares, not times, are the result.
"""

from __future__ import annotations

import argparse
import os
import platform
import shutil
import subprocess
import sys
from collections import Counter
from datetime import datetime
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench.workload import city, events_file, own_store_env, replay_command  # noqa: E402

SHOWN = ("Pipeline.case_agent", "Pipeline.ticket_agent", "Pipeline.peer_agent", "Pipeline.notifier",
         "decode_case_unit", "step_many", "encode_state", "WriteStep.flush", "ClickHouseWriter.write",
         "through_pipeline", "running_pipeline")


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--cases", type=int, default=25000)
    parser.add_argument("--partitions", type=int, default=4)
    parser.add_argument("--rate", type=int, default=200, help="samples per second")
    args = parser.parse_args()
    spy = shutil.which("py-spy")
    if spy is None:
        raise SystemExit("needs py-spy: pip install py-spy")
    _, messages, work, catalog = city(args.cases, "sunlight-gil-")
    events = events_file(messages, work / "events.jsonl")
    raw = work / "samples.txt"
    subprocess.run([spy, "record", "-r", str(args.rate), "--gil", "--threads", "-f", "raw", "-o", str(raw), "--",
                    *replay_command(events, catalog)], env=own_store_env(work / "data", args.partitions), cwd=ROOT,
                   check=True, capture_output=True)
    threads: Counter[str] = Counter()
    inclusive: Counter[str] = Counter()
    total = 0
    for line in raw.read_text().splitlines():
        stack, _, count = line.rpartition(" ")
        n = int(count)
        total += n
        frames = stack.split(";")
        head = frames[0]  # "thread (TID): NAME"
        threads[head.split(": ", 1)[1] if ": " in head else "(unnamed)"] += n
        names = {frame.split(" (")[0] for frame in frames[1:]}
        for name in names:
            inclusive[name] += n
    print(f"date: {datetime.now().isoformat(timespec='seconds')}  machine: {platform.machine()}, "
          f"{os.cpu_count()} cores, Python {platform.python_version()}")
    print(f"events: {len(messages)} ({args.cases} cases), partitions: {args.partitions}; "
          f"{total} samples holding the GIL at {args.rate}/s")
    print("share of the GIL samples by thread:")
    for name, n in threads.most_common():
        print(f"  {n / total * 100:5.1f}%  {name}")
    print("share of the GIL samples in (inclusive):")
    for name in SHOWN:
        print(f"  {inclusive[name] / total * 100:5.1f}%  {name}")
    print(f"reproduce: python bench/gil_profile.py --cases {args.cases} --partitions {args.partitions} "
          f"--rate {args.rate}")


if __name__ == "__main__":
    main()
