"""What more frequent flushes cost the dashboards: active parts and panel times while the
pipeline writes at a given flush interval.

    python bench/flush_cost.py [--events 10000000] [--rate 2000] [--seconds 60] [--intervals 1.0 0.25]

Builds the store of `bench/dashboard_queries.py` (`--events` case events, a city's year, written
as the pipeline writes it), then for each condition, in the same run: nothing written (quiet),
then a writer thread that flushes every `interval` seconds what `--rate` events/s bring (one
Arrow insert per table per flush, as `sinks.writer.ClickHouseWriter` makes them: the events,
one case row per event, an alert version per ten events, with fresh keys and times of now),
for `--seconds`, while the main thread runs every ClickHouse panel of the dashboards (as Grafana sends it)
over and over and samples the active parts of each table once a second (background merges run
as they would). Prints, per condition: the inserts made and their p50/p95 time, the active parts
(mean and max), and each panel's p50/p95 with the ratio of its p95 to the quiet one.
"""

from __future__ import annotations

import argparse
import shlex
import shutil
import statistics
import sys
import tempfile
import threading
import time
from datetime import datetime, timezone
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.dashboard_queries import Generator, machine, panel_queries, percentile, settle, table_stats  # noqa: E402
from sinks.clickhouse import connect  # noqa: E402
from sinks.migrations import migrate  # noqa: E402
from sinks.rows import to_arrow  # noqa: E402

TABLES = ("case_events", "cases", "alerts")


def templates(client) -> dict[str, list[dict]]:
    """Recent rows of each table, to copy with fresh keys."""
    out = {}
    for table, order in (("case_events", "occurred_at"), ("cases", "updated_at"), ("alerts", "raised_at")):
        out[table] = list(client.query(f"SELECT * FROM {table} ORDER BY {order} DESC LIMIT 500").named_results())
    return out


class Writer(threading.Thread):
    """Flushes every `interval` s the rows `rate` events/s bring, until stopped."""

    def __init__(self, data_dir: Path, rows: dict[str, list[dict]], rate: float, interval: float, tag: str):
        super().__init__(daemon=True)
        self.client = connect(None, data_dir)
        self.rows, self.rate, self.interval, self.tag = rows, rate, interval, tag
        self.stop = threading.Event()
        self.insert_ms: list[float] = []
        self.flushes = 0

    def batch(self, n: int, flush: int) -> dict[str, list[dict]]:
        now = datetime.now(timezone.utc)
        out: dict[str, list[dict]] = {t: [] for t in TABLES}
        for i in range(n):
            case = f"{self.tag}-{flush}-{i}"
            event = dict(self.rows["case_events"][i % 500], case_id=case, event_id=f"{case}-e",
                         occurred_at=now, recorded_at=now, ingested_at=now)
            out["case_events"].append(event)
            out["cases"].append(dict(self.rows["cases"][i % 500], case_id=case, updated_at=now))
            if i % 10 == 0:
                out["alerts"].append(dict(self.rows["alerts"][i % 500], alert_id=f"{case}-a", case_id=case,
                                          raised_at=now, event_time=now))
        return out

    def run(self) -> None:
        n = max(1, round(self.rate * self.interval))
        next_at = time.monotonic()
        while not self.stop.is_set():
            rows = self.batch(n, self.flushes)
            for table in TABLES:
                started = time.perf_counter()
                self.client.insert_arrow(table, to_arrow(table, rows[table]))
                self.insert_ms.append((time.perf_counter() - started) * 1000)
            self.flushes += 1
            next_at += self.interval
            self.stop.wait(max(0.0, next_at - time.monotonic()))
        self.client.close()


def active_parts(client) -> dict[str, int]:
    rows = client.query("SELECT table, count() FROM system.parts WHERE database = currentDatabase() AND active "
                        "GROUP BY table").result_rows
    counts = dict(rows)
    return {t: counts.get(t, 0) for t in TABLES}


def measure(client, panels: dict[str, str], seconds: float, writer: Writer | None) -> dict:
    times: dict[str, list[float]] = {name: [] for name in panels}
    parts: list[dict[str, int]] = []
    if writer is not None:
        writer.start()
    end = time.monotonic() + seconds
    next_sample = time.monotonic()
    try:
        while time.monotonic() < end:
            for name, sql in panels.items():
                started = time.perf_counter()
                client.query(sql)
                times[name].append((time.perf_counter() - started) * 1000)
                if time.monotonic() >= next_sample:
                    parts.append(active_parts(client))
                    next_sample += 1.0
    finally:
        if writer is not None:
            writer.stop.set()
            writer.join()
    return {"times": times, "parts": parts, "writer": writer}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--events", type=int, default=10_000_000, help="case_events rows in the store")
    parser.add_argument("--rate", type=float, default=2000, help="events/s the writer brings")
    parser.add_argument("--seconds", type=float, default=60, help="per condition")
    parser.add_argument("--intervals", type=float, nargs="+", default=[1.0, 0.25], help="flush intervals (s)")
    parser.add_argument("--seed", type=int, default=1)
    args = parser.parse_args()
    command = shlex.join(["python", "bench/flush_cost.py", *sys.argv[1:]])
    print(f"date:    {datetime.now().astimezone().isoformat(timespec='seconds')}")
    print(f"machine: {machine()}")
    work = Path(tempfile.mkdtemp(prefix="sunlight-flush-bench-"))
    client = connect(None, work)
    try:
        migrate(client)
        now = datetime.now(timezone.utc).replace(microsecond=0)
        gen = Generator(client, args.events, now, args.seed, "dated")
        started = time.perf_counter()
        gen.plan()
        gen.history()
        gen.recent()
        gen.catalog_and_tickets()
        gen.cleanup()
        print(f"store: {args.events:,} case events generated in {time.perf_counter() - started:.0f} s "
              f"(bench/dashboard_queries.py's generator)")
        settle(client, timeout=300)
        for line in table_stats(client):
            print(line)
        rows = templates(client)
        # Each panel as its dashboard opens now (bench/dashboard_queries.py's panel_queries); the range
        # is fixed when the run starts, so the rows the writer adds later are outside the "today"
        # panels' range but inside every other panel's.
        panels = {name: sql for name, (sql, *_) in panel_queries(client, datetime.now(timezone.utc)).items()}
        for sql in panels.values():  # warm-up
            client.query(sql)
        results = {"quiet": measure(client, panels, args.seconds, None)}
        for interval in args.intervals:
            settle(client, timeout=300)
            writer = Writer(work, rows, args.rate, interval, f"FLUSH{interval}")
            results[f"flush {interval:g} s"] = measure(client, panels, args.seconds, writer)
        print(f"\nwriting {args.rate:.0f} events/s for {args.seconds:.0f} s per condition, panels run in a loop "
              f"meanwhile\n")
        print(f"{'condition':<14} {'flushes':>7} {'insert p50/p95 ms':>18}  "
              + "  ".join(f"{t + ' parts mean/max':>24}" for t in TABLES))
        for label, result in results.items():
            writer, parts = result["writer"], result["parts"]
            inserts = (f"{statistics.median(writer.insert_ms):8.1f}/{percentile(writer.insert_ms, 95):<8.1f}"
                       if writer else f"{'-':>18}")
            print(f"{label:<14} {writer.flushes if writer else 0:>7} {inserts:>18}  " + "  ".join(
                f"{statistics.fmean(p[t] for p in parts):>16.1f}/{max(p[t] for p in parts):<7d}" for t in TABLES))
        print(f"\n{'panel p95 ms (p50)':<34}" + "".join(f"{label:>24}" for label in results))
        quiet = results["quiet"]["times"]
        for name in panels:
            cells = []
            for label, result in results.items():
                times = result["times"][name]
                p95 = percentile(times, 95)
                ratio = p95 / percentile(quiet[name], 95)
                cells.append(f"{p95:8.1f} ({statistics.median(times):6.1f}) {ratio:4.2f}x")
            print(f"{name:<34}" + "".join(f"{c:>24}" for c in cells))
        print("\nworst panel p95: " + ", ".join(
            f"{label} {max(percentile(t, 95) for t in result['times'].values()):.1f} ms"
            for label, result in results.items()))
        print(f"reproduce: {command}")
    finally:
        client.close()
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
