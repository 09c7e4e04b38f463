"""Decoding a case event: the compiled fast path against the contract's parser, same messages.

    python bench/decode_cost.py [--cases 25000] [--rounds 3]

The replay workload's messages (a generated city, seed 1), each decoded by `streams.steps.decode_event`
(msgspec's struct first, the parser when in doubt: streams/event_wire.py) and by what the stream did
before it, `parse_event(orjson.loads(raw))`; the two alternate round by round, and each round's CPU
per event is printed, with the median of each.
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import sys
import time
from datetime import datetime
from pathlib import Path

import orjson

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from alerts.events import parse_event  # noqa: E402
from bench.workload import city  # noqa: E402
from streams.event_wire import wire_event  # noqa: E402
from streams.steps import decode_event  # noqa: E402


def parser_only(raw: bytes):
    return parse_event(orjson.loads(raw))


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--cases", type=int, default=25000)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    _, messages, _, _ = city(args.cases, "sunlight-decode-")
    values = [value for _, value in messages]
    fast = sum(1 for value in values if wire_event(value) is not None)
    times: dict[str, list[float]] = {"decode_event": [], "parse_event(orjson.loads())": []}
    for _ in range(args.rounds):
        for name, decode in (("decode_event", decode_event), ("parse_event(orjson.loads())", parser_only)):
            begun = time.process_time()
            for value in values:
                decode(value)
            times[name].append((time.process_time() - begun) / len(values) * 1e6)
    print(f"date: {datetime.now().isoformat(timespec='seconds')}  machine: {platform.machine()}, "
          f"{os.cpu_count()} cores, Python {platform.python_version()}")
    print(f"events: {len(values)} ({args.cases} cases); taken by the fast path: {fast} ({fast / len(values):.1%})")
    for name, spent in times.items():
        print(f"{name:<28} CPU per event by round: {', '.join(f'{t:.2f}' for t in spent)} us; "
              f"median {statistics.median(spent):.2f} us")
    print(f"reproduce: python bench/decode_cost.py --cases {args.cases} --rounds {args.rounds}")


if __name__ == "__main__":
    main()
