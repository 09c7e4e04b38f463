"""What `sunlight import` holds in memory: its peak RSS for a real log copied k times.

    python bench/import_memory.py [--copies 5 20]

The WABO receipt log in the repository (tests/data/real/receipt.csv, 8,577 rows of 1,434 cases) is
written k times over, each copy's case ids and task ids suffixed (`-r0`, `-r1`, ...), so that the
copies are k times as many cases of the same shape. For each k, `sunlight import` runs on the
embedded defaults (its own broker and store, in a fresh data directory) with the log's mapping and
catalog, in a process that reports its own peak resident memory (VmHWM) when the import returns:
the importing process, with its pipeline and embedded chdb, not the broker's process. The figure
is the slope between the two sizes, per row: what one more row of a log costs the import.
"""

from __future__ import annotations

import argparse
import csv
import os
import platform
import subprocess
import sys
import tempfile
import time
from datetime import datetime
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
REAL = ROOT / "tests" / "data" / "real"

# Run in the child: the import as the console script runs it, then the process's own peak RSS.
CHILD = """
import sys
from streams.cli import main
try:
    code = main(sys.argv[1:])
except SystemExit as stop:
    code = stop.code
peak = [line for line in open('/proc/self/status') if line.startswith('VmHWM:')][0].split()[1]
print(f'peak_kib {peak} exit {code}', file=sys.stderr)
"""


def copies_of_the_log(k: int, out: Path) -> int:
    with open(REAL / "receipt.csv", newline="", encoding="utf-8") as handle:
        rows = list(csv.reader(handle))
    header, body = rows[0], rows[1:]
    case, task = header.index("case:concept:name"), header.index("concept:instance")
    with open(out, "w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle)
        writer.writerow(header)
        for copy in range(k):
            for row in body:
                row = list(row)
                row[case], row[task] = f"{row[case]}-r{copy}", f"{row[task]}-r{copy}"
                writer.writerow(row)
    return len(body) * k


def import_peak(log: Path, data_dir: Path) -> tuple[int, float, str]:
    env = {**os.environ, "SUNLIGHT_DATA_DIR": str(data_dir)}
    env.pop("SUNLIGHT_KAFKA", None)
    env.pop("SUNLIGHT_CLICKHOUSE", None)
    started = time.monotonic()
    done = subprocess.run(
        [sys.executable, "-c", CHILD, "import", str(log), "--mapping", str(REAL / "receipt.mapping.yaml"),
         "--catalog", str(REAL / "receipt.catalog.yaml"), "--now", "2013-01-01T00:00:00+01:00",
         "--rejects", str(data_dir.parent / f"{data_dir.name}.rejects.jsonl")],
        env=env, cwd=ROOT, capture_output=True, text=True)
    took = time.monotonic() - started
    report = [line for line in done.stderr.splitlines() if line.startswith("peak_kib ")]
    if done.returncode != 0 or not report or not report[-1].endswith("exit 0"):
        raise SystemExit(f"the import of {log.name} failed:\n{done.stderr[-3000:]}")
    summary = next((line.strip() for line in done.stderr.splitlines() if "events (" in line), "")
    return int(report[-1].split()[1]) * 1024, took, summary


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--copies", type=int, nargs=2, default=[5, 20], metavar=("K1", "K2"))
    args = parser.parse_args()
    print(f"date: {datetime.now().isoformat(timespec='seconds')}  machine: {platform.machine()}, "
          f"{os.cpu_count()} cores, Python {platform.python_version()}")
    peaks = []
    with tempfile.TemporaryDirectory(prefix="sunlight-import-memory-") as tmp:
        for k in args.copies:
            log = Path(tmp) / f"receipt_x{k}.csv"
            rows = copies_of_the_log(k, log)
            data_dir = Path(tmp) / f"data{k}"
            peak, took, summary = import_peak(log, data_dir)
            peaks.append((rows, peak))
            print(f"{k} copies: {rows} rows, peak RSS of the import {peak / 2**20:.1f} MiB, {took:.1f} s; {summary}")
    (rows1, peak1), (rows2, peak2) = peaks
    print(f"slope: {(peak2 - peak1) / (rows2 - rows1):,.0f} B of peak RSS per row of the log")
    print(f"reproduce: python bench/import_memory.py --copies {args.copies[0]} {args.copies[1]}")


if __name__ == "__main__":
    main()
