"""What asking the store for the cases judged under another catalog costs, at a province's size.

    python bench/stale_catalog_query.py [--cases 2000000] [--rounds 3]

A worker on a Kafka cluster asks the store, at every assignment of partitions and at every
catalog reload that judges otherwise, which stored cases were judged under another catalog than
the one in force (`sinks.queries.cases_judged_otherwise`). This fills a fresh chdb directory (a
temporary one, removed afterwards) with `--cases` case rows (every tenth case with a second
revision, as cases that changed after their first judgement, the table's parts left unmerged)
and times that question, against the bare scan of the `cases` table's case ids it cannot do
without (`SELECT count(DISTINCT case_id)`), in three states of the store:

* steady: every case judged under the catalog in force (the common state: a start, a rebalance);
* changed: the catalog just changed, every case judged under the one before;
* half: half the cases judged again since the change (their newer revision under the new one);
* again: every case judged again, the rows of the catalog before not yet merged away.

Prints the median of `--rounds` timings of each, its ratio to the bare scan, and how many cases
each answer names (which must be 0, every case, half of them, and 0).
"""

from __future__ import annotations

import argparse
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import datetime, timezone
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from sinks.clickhouse import connect  # noqa: E402
from sinks.migrations import migrate  # noqa: E402
from sinks.queries import cases_judged_otherwise  # noqa: E402

OLD, NEW = "a" * 16, "b" * 16
ITEMS = [f"320200-XK-D{d:02d}-{i:04d}" for d in range(40) for i in range(25)]


def insert(client, cases: int, revision: int, day: str, basis: str, where: str = "1") -> None:
    """A row of revision `revision` under `basis` for each case of numbers(cases) that `where` names,
    as a worker writes after judging: one insert, one part."""
    client.command(f"""
        INSERT INTO cases (case_id, item_code, department, region, status, event_count, open_alerts,
                           revision, updated_at, judged_under)
        SELECT concat('case-', leftPad(toString(number), 9, '0')), arrayElement({ITEMS!r}, 1 + number % {len(ITEMS)}),
               concat('D', toString(number % 40)), '320200', 'closed', 6, 0, {revision},
               toDateTime64('{day} 00:00:00', 3, 'UTC'), '{basis}'
        FROM numbers({cases}) WHERE {where}""")


def fill(client, cases: int) -> None:
    """`cases` rows judged under OLD, every tenth case with a second revision."""
    insert(client, cases, 1, "2026-06-01", OLD)
    insert(client, cases, 2, "2026-06-02", OLD, "number % 10 = 0")


def judge_again(client, cases: int, where: str) -> None:
    """A newer revision under NEW of the cases `where` says."""
    insert(client, cases, 3, "2026-07-01", NEW, where)


def timed(fn, rounds: int) -> tuple[float, object]:
    times, answer = [], None
    for _ in range(rounds):
        start = time.perf_counter()
        answer = fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times), answer


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--cases", type=int, default=2_000_000)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="sunlight-stale-"))
    try:
        client = connect(None, work)
        migrate(client)
        fill(client, args.cases)
        import chdb

        commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True,
                                text=True).stdout.strip()
        print(f"date: {datetime.now(timezone.utc).isoformat(timespec='seconds')}  machine: {platform.machine()}, "
              f"Python {platform.python_version()}, chdb {chdb.__version__}  commit: {commit}")
        print(f"cases: {args.cases} ({args.cases // 10} with a second revision), {len(ITEMS)} items; "
              f"median of {args.rounds}, seconds")

        def bare():
            return client.query("SELECT count(DISTINCT case_id) FROM cases").result_rows[0][0]

        for state, basis, prepare in (("steady", OLD, None), ("changed", NEW, None),
                                      ("half", NEW, lambda: judge_again(client, args.cases, "number % 2 = 0")),
                                      ("again", NEW, lambda: judge_again(client, args.cases, "number % 2 = 1"))):
            if prepare:
                prepare()
            scan, distinct = timed(bare, args.rounds)
            asked, stale = timed(lambda: cases_judged_otherwise(client, basis, ITEMS), args.rounds)
            print(f"{state:<8} bare scan {scan:6.2f} s ({distinct} cases)   cases_judged_otherwise {asked:6.2f} s "
                  f"({len(stale)} cases named)   ratio {asked / scan:5.2f}")
        print(f"reproduce: python bench/stale_catalog_query.py --cases {args.cases} --rounds {args.rounds}")
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
