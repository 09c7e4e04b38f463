"""Small builders for unit tests: a catalog, events and a judge, no I/O beyond the contract example."""

from __future__ import annotations

import copy
from datetime import datetime, timedelta, timezone
from itertools import count
from pathlib import Path
from zoneinfo import ZoneInfo

import yaml

from alerts.calendar import WorkCalendar
from alerts.catalog import load_catalog
from alerts.evaluate import Judge, step
from alerts.events import parse_event

TZ = ZoneInfo("Asia/Shanghai")
CONTRACT = Path(__file__).resolve().parents[2] / "tests" / "data" / "contract"
LICENCE = "320200-XK-SCJG-0001"
PENALTY = "320200-CF-SCJG-0007"
_ids = count(1)


def example_catalog():
    return load_catalog(yaml.safe_load((CONTRACT / "catalog.example.yaml").read_text(encoding="utf-8")))


def judge() -> Judge:
    return Judge(example_catalog(), WorkCalendar(on_missing_year=lambda year: None))


def at(y, m, d, h=10, mi=0):
    return datetime(y, m, d, h, mi, tzinfo=TZ)


def ev(kind, occurred, recorded=None, case="C1", item=LICENCE, node=None, event_id=None, channel=None, **attrs):
    obj = {"event_id": event_id or f"ev{next(_ids)}", "case_id": case, "item_code": item, "type": kind,
           "occurred_at": occurred.isoformat(),
           "recorded_at": (recorded or occurred + timedelta(minutes=5)).isoformat(), "officer_id": "P01"}
    if channel:
        obj["channel"] = channel
    if node:
        obj["node"] = node
    if attrs:
        obj["attrs"] = attrs
    return parse_event(obj)


def run(events, now, j=None):
    """Feed events in the order given; returns the final state."""
    j = j or judge()
    state = None
    for event in events:
        state = step(state, event, j, now, datetime(2026, 1, 1, tzinfo=timezone.utc)).state
    return state


def active(state):
    return {(a.rule.value, a.node) for a in state.alerts.values() if a.status.value != "withdrawn"}


def broken(raw, path, value):
    """A deep copy of `raw` with the value at `path` replaced by `value` (KeyError: removed)."""
    raw = copy.deepcopy(raw)
    target = raw
    for key in path[:-1]:
        target = target[key]
    if value is KeyError:
        del target[path[-1]]
    else:
        target[path[-1]] = value
    return raw
