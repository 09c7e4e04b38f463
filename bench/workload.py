"""The replay workload the throughput benchmarks share: a generated city judged in event time."""

from __future__ import annotations

import os
import sys
import tempfile
from datetime import datetime, timezone
from pathlib import Path

import orjson
import yaml

from alerts.scenario import Scenario, generate

# The replay's --now: the generated city's present.
NOW = datetime(2026, 6, 1, 12, tzinfo=timezone.utc)


def city(cases: int, prefix: str) -> tuple[Scenario, list[tuple[bytes, bytes]], Path, Path]:
    """(scenario, its events as keyed wire records, a fresh work directory, the catalog file in it)."""
    scenario = generate(cases=cases, seed=1, now=NOW)
    messages = [(e["case_id"].encode(), orjson.dumps(e)) for e in scenario.events]
    work = Path(tempfile.mkdtemp(prefix=prefix))
    catalog = work / "catalog.yaml"
    catalog.write_text(yaml.safe_dump(scenario.catalog, allow_unicode=True), encoding="utf-8")
    return scenario, messages, work, catalog


def events_file(messages, path: Path) -> Path:
    """The messages' values as a JSON-lines file, what `sunlight replay FILE` reads."""
    path.write_bytes(b"".join(value + b"\n" for _, value in messages))
    return path


def replay_command(events: Path, catalog: Path) -> list[str]:
    """`sunlight replay` over `events`, judged at the city's present."""
    return [sys.executable, "-m", "streams.cli", "replay", str(events), "--catalog", str(catalog),
            "--now", NOW.isoformat()]


def own_store_env(data_dir: Path, partitions: int) -> dict[str, str]:
    """The environment of a command with its own embedded broker and chdb store in `data_dir`
    (whatever Kafka or ClickHouse server this shell points at)."""
    env = {**os.environ, "SUNLIGHT_DATA_DIR": str(data_dir), "SUNLIGHT_PARTITIONS": str(partitions)}
    env.pop("SUNLIGHT_KAFKA", None)
    env.pop("SUNLIGHT_CLICKHOUSE", None)
    return env
