"""What the console's and the CLI's reads of tickets cost on a large store.

    python bench/console_queries.py --data-dir DIR [--runs 20]

DIR is a store `bench/dashboard_queries.py --data-dir DIR` generated (10M events by default: a
ticket for every standing red alert, each with the versions and stored forms of a demo city's
tickets). Each read runs once to warm up, then `--runs` times, through clickhouse-connect, and
prints p50/p95 wall time: the ticket list of every department and of the busiest one (all, open,
overdue: `sinks.queries.ticket_page`), one case's tickets as its case page and `sunlight tickets
show` read them (`stored_tickets`, with and without those still settling), and one ticket's
history (`ticket_history`). The case is that of the newest ticket. Run it from another checkout
for a baseline on the same store.
"""

from __future__ import annotations

import argparse
import shlex
import statistics
import sys
import time
from datetime import datetime
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.dashboard_queries import engine_version, machine, percentile  # noqa: E402
from sinks import queries  # noqa: E402
from sinks.clickhouse import connect  # noqa: E402
from sinks.scope import Scope  # noqa: E402


def timed(read, runs: int) -> list[float]:
    read()
    spent = []
    for _ in range(runs):
        begun = time.perf_counter()
        read()
        spent.append((time.perf_counter() - begun) * 1000)
    return spent


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--data-dir", type=Path, required=True, help="a store bench/dashboard_queries.py generated")
    parser.add_argument("--runs", type=int, default=20)
    args = parser.parse_args()
    client = connect(None, args.data_dir)
    try:
        print(f"date:    {datetime.now().astimezone().isoformat(timespec='seconds')}")
        print(f"machine: {machine()}")
        print(f"engine:  ClickHouse {engine_version(client)} embedded (chdb)")
        versions, tickets = client.query("SELECT count(), uniqExact(ticket_id) FROM tickets").result_rows[0]
        print(f"store:   {args.data_dir}: {versions:,} ticket versions of {tickets:,} tickets")
        everything = Scope.everything()
        busiest = client.query("SELECT department FROM tickets GROUP BY department ORDER BY count() DESC, department "
                               "LIMIT 1").result_rows[0][0]
        department = Scope.of([busiest])
        ticket_id, case_id = client.query("SELECT ticket_id, case_id FROM tickets WHERE version > 0 "
                                          "ORDER BY changed_at DESC, ticket_id LIMIT 1").result_rows[0]
        reads = {
            "ticket list, every department": lambda: queries.ticket_page(client, everything),
            "ticket list, open": lambda: queries.ticket_page(client, everything, status="open"),
            "ticket list, overdue": lambda: queries.ticket_page(client, everything, overdue=True),
            f"ticket list, department {busiest}": lambda: queries.ticket_page(client, department),
            "one case's tickets": lambda: queries.stored_tickets(client, everything, case_id=case_id),
            "one case's tickets, settling too": lambda: queries.stored_tickets(client, everything, case_id=case_id,
                                                                               settling=True),
            "one ticket's history": lambda: queries.ticket_history(client, everything, ticket_id),
        }
        print(f"each read {args.runs} times after one warm-up (case {case_id}, ticket {ticket_id})\n")
        print(f"{'read':44s} {'p50 ms':>8s} {'p95 ms':>8s}")
        for name, read in reads.items():
            spent = timed(read, args.runs)
            print(f"{name:44s} {statistics.median(spent):8.1f} {percentile(spent, 95):8.1f}")
    finally:
        client.close()
    print(f"\nreproduce: python bench/console_queries.py {shlex.join(sys.argv[1:])}")


if __name__ == "__main__":
    main()
