"""Settled cases in a real worker: its memory stays with the open cases, not with every case seen.

    python bench/settled_cases.py [--sizes 50000 200000]

For each size N, and for each retention (30 days, the default where the store is shared, and
`never`), a fresh `sunlight worker` process (the real worker with its defaults: Faust, its tables,
the indexes, the caches and the embedded chdb; the retention said, since on a broker with the
embedded store a worker keeps every case unless told) runs against an embedded broker this script
starts, and N closed cases are sent to it: copies under new ids of a generated city's cases (no
violations injected) whose present was 60 days ago, all closed or withdrawn by then (5.9 events a
case). Once the worker has committed all of them and its metrics show the settled cases let go
(`sunlight_cases_let_go_total`), its resident memory is read from /proc (VmRSS and the peak
VmHWM). The memory per closed case is the slope of the peak between the two sizes: what one more
case seen costs the whole process once it has settled, allocator and chdb included.
"""

from __future__ import annotations

import argparse
import os
import platform
import sys
import tempfile
import time
import urllib.request
from datetime import datetime, timedelta, timezone
from pathlib import Path

import orjson
import yaml

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from alerts.scenario import generate  # noqa: E402
from bench.open_cases import send_and_commit, status, worker_process  # noqa: E402
from streams.broker import EmbeddedBroker  # noqa: E402


def closed_cases(n: int, template) -> list[tuple[bytes, bytes]]:
    """n cases, copies of the template city's cases (every one closed or withdrawn by its present,
    60 days ago) under new ids, in the template's order."""
    by_case: dict[str, list[dict]] = {}
    for event in template.events:
        by_case.setdefault(event["case_id"], []).append(event)
    cases = list(by_case.values())
    out = []
    for number in range(n):
        suffix = f"-{number // len(cases)}"
        for event in cases[number % len(cases)]:
            case = event["case_id"] + suffix
            out.append((case.encode(), orjson.dumps({**event, "case_id": case,
                                                     "event_id": event["event_id"] + suffix})))
    return out


def let_go(port: int) -> float:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as response:
        for line in response.read().decode().splitlines():
            if line.startswith("sunlight_cases_let_go_total "):
                return float(line.split()[1])
    return 0.0


def measure(n: int, retention: str, work: Path, catalog: Path, template, port: int) -> dict:
    out: dict = {"cases": n, "retention": retention}
    # Said even for 30: a worker on a Kafka cluster with the embedded store keeps every case unless told.
    settings = {"SUNLIGHT_METRICS_PORT": str(port), "SUNLIGHT_CASE_RETENTION_DAYS": retention}
    with EmbeddedBroker() as broker, worker_process(broker, work / f"data-{n}-{retention}", catalog,
                                                    **settings) as worker:
        out["seconds"] = send_and_commit(broker, worker, closed_cases(n, template))
        deadline = time.monotonic() + 300
        while retention != "never" and let_go(port) < n and time.monotonic() < deadline:
            time.sleep(1.0)
        out["let_go"] = let_go(port)
        time.sleep(5.0)  # the last flushes, and a garbage collection or two
        out.update(status(worker.pid))
    return out


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--sizes", type=int, nargs=2, default=[50_000, 200_000])
    parser.add_argument("--port", type=int, default=19464)
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="sunlight-settled-"))
    template = generate(cases=2000, violation_rate=0.0, seed=3, now=datetime.now(timezone.utc) - timedelta(days=60))
    by_case: dict[str, set[str]] = {}
    for event in template.events:
        by_case.setdefault(event["case_id"], set()).add(event["type"])
    assert all(kinds & {"closed", "withdrawn"} for kinds in by_case.values()), "the template's cases must all end"
    catalog = work / "catalog.yaml"
    catalog.write_text(yaml.safe_dump(template.catalog, allow_unicode=True), encoding="utf-8")
    small, large = sorted(args.sizes)
    runs = {retention: [measure(size, retention, work, catalog, template, args.port) for size in (small, large)]
            for retention in ("30", "never")}
    print(f"date: {datetime.now().isoformat(timespec='seconds')}  machine: {platform.machine()}, "
          f"{os.cpu_count()} cores, Python {platform.python_version()}")
    for retention, (first, second) in runs.items():
        label = "SUNLIGHT_CASE_RETENTION_DAYS=" + ("30 (the default with a shared store)" if retention == "30"
                                                   else retention)
        for run in (first, second):
            print(f"{label}: {run['cases']:>8} closed cases sent and committed in {run['seconds']:.0f} s, "
                  f"{run['let_go']:.0f} let go; worker RSS {run['VmRSS'] / 2**20:.1f} MiB, "
                  f"peak {run['VmHWM'] / 2**20:.1f} MiB")
        slope = (second["VmHWM"] - first["VmHWM"]) / (large - small)
        slope_rss = (second["VmRSS"] - first["VmRSS"]) / (large - small)
        print(f"{label}: memory per closed case (slope of the peak between {small} and {large}): {slope:.0f} B "
              f"(of the resident size: {slope_rss:.0f} B)")
    print(f"reproduce: python bench/settled_cases.py --sizes {small} {large}")


if __name__ == "__main__":
    main()
