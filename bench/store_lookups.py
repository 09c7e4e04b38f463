"""What reading cases back costs a pipeline that shares its broker, in steady state.

    python bench/store_lookups.py [--cases 25000] [--partitions 4] [--rounds 3]

A pipeline whose table may lack cases other workers let go asks the store, once per unit, for
every case of the unit its table lacks (`CaseStore.bring_back`); in a replay of a new city all of
them are new, and the store finds none. This runs `replay_throughput.py`'s steady-state
measurement (the same generated city, seed 1, judged in event time, a broker of its own per run)
with those lookups, and with them turned off (`CaseStore.load = None`: a measurement only; a
worker on a cluster cannot do without them), alternating round by round, and prints each rate and
the median of each.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import platform
import statistics
import sys
from datetime import datetime
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import streams.app as app_module  # noqa: E402
from bench.replay_throughput import pipeline_rate  # noqa: E402
from bench.workload import city  # noqa: E402
from streams.broker import EmbeddedBroker  # noqa: E402

LOOKUPS = {"on": True}
_init = app_module.Pipeline.__init__


def _pipeline_init(self, *args, **kwargs) -> None:
    _init(self, *args, **kwargs)
    if not LOOKUPS["on"]:
        self.store.load = None  # the table's misses are taken for new cases, unasked


async def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--cases", type=int, default=25000)
    parser.add_argument("--partitions", type=int, default=4)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    app_module.Pipeline.__init__ = _pipeline_init
    _, messages, work, catalog = city(args.cases, "sunlight-lookups-")
    rates: dict[bool, list[float]] = {True: [], False: []}
    for round_ in range(args.rounds):
        for on in (True, False):
            LOOKUPS["on"] = on
            with EmbeddedBroker() as broker:
                steady, _, _ = await pipeline_rate(broker, catalog, messages, args.partitions,
                                                   work / f"data-{round_}-{on}")
            rates[on].append(steady)
    print(f"date: {datetime.now().isoformat(timespec='seconds')}  machine: {platform.machine()}, "
          f"{os.cpu_count()} cores, Python {platform.python_version()}")
    print(f"events: {len(messages)} ({args.cases} cases), partitions: {args.partitions}; steady state, events/s")
    for on in (True, False):
        label = "asking the store for the table's misses" if on else "not asking (measurement only)"
        print(f"{label:<42} {', '.join(f'{r:.0f}' for r in rates[on])}; median {statistics.median(rates[on]):.0f}")
    ratio = statistics.median(rates[True]) / statistics.median(rates[False])
    print(f"median with / median without: {ratio:.3f}")
    print(f"reproduce: python bench/store_lookups.py --cases {args.cases} --partitions {args.partitions} "
          f"--rounds {args.rounds}")


if __name__ == "__main__":
    asyncio.run(main())
