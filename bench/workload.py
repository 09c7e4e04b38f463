"""The replay workload the throughput benchmarks share: a generated city judged in event time."""

from __future__ import annotations

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
