"""Conformance oracle: PM4Py's token-based replay of receipt.bpmn against Sunlight's skipped_node.

For each case of the real receipt log, PM4Py says whether the trace fits the BPMN model
(converted to a Petri net); Sunlight says whether the case has a `skipped_node` alert under the
catalog item built from the same BPMN by `alerts.flowchart`. The real log fits its model
everywhere, so the comparison is repeated on a derived log in which every tenth case lost its
receipt (the first, required step): both must then call exactly those cases non-conforming.
"""

from __future__ import annotations

import warnings
from datetime import datetime, timezone
from pathlib import Path

import pytest
import yaml

from alerts.calendar import WorkCalendar
from alerts.catalog import load_catalog
from alerts.evaluate import Judge, step
from alerts.events import parse_event
from alerts.mapping import load_mapping
from streams.importers import convert

pm4py = pytest.importorskip("pm4py")
pd = pytest.importorskip("pandas")

ROOT = Path(__file__).resolve().parents[2]
REAL = ROOT / "tests" / "data" / "real"


def pm4py_verdicts(frame) -> dict[str, bool]:
    frame = frame.copy()
    frame["time:timestamp"] = pd.to_datetime(frame["time:timestamp"], utc=True, format="mixed")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        log = pm4py.convert_to_event_log(pm4py.format_dataframe(
            frame, case_id="case:concept:name", activity_key="concept:name", timestamp_key="time:timestamp"))
        net, initial, final = pm4py.convert_to_petri_net(pm4py.read_bpmn(str(REAL / "receipt.bpmn")))
        results = pm4py.conformance_diagnostics_token_based_replay(log, net, initial, final)
    return {trace.attributes["concept:name"]: result["trace_is_fit"] for trace, result in zip(log, results)}


def sunlight_verdicts(csv_path: Path) -> dict[str, bool]:
    # The same input PM4Py sees: the activities. The case-level end date and deadline of the
    # mapping are left out here (docs/real-data.md reports what they add).
    raw = yaml.safe_load((REAL / "receipt.mapping.yaml").read_text())
    raw.pop("case_end", None)
    raw.pop("accept_attrs", None)
    events = convert(csv_path, load_mapping(raw)).events
    judge = Judge(load_catalog(yaml.safe_load((REAL / "receipt.catalog.yaml").read_text())),
                  WorkCalendar(on_missing_year=lambda year: None))
    now = datetime(2013, 1, 1, tzinfo=timezone.utc)
    states = {}
    for obj in events:
        event = parse_event(obj)
        states[event.case_id] = step(states.get(event.case_id), event, judge, now, now).state
    return {case: not any(a.rule.value == "skipped_node" and a.status.value != "withdrawn"
                          for a in state.alerts.values()) for case, state in states.items()}


def agreement(pm: dict[str, bool], sl: dict[str, bool]) -> float:
    assert set(pm) == set(sl)
    return sum(pm[c] == sl[c] for c in pm) / len(pm)


def test_sunlight_agrees_with_pm4py_on_the_real_log():
    frame = pd.read_csv(REAL / "receipt.csv")
    pm, sl = pm4py_verdicts(frame), sunlight_verdicts(REAL / "receipt.csv")
    share = agreement(pm, sl)
    print(f"\nreceipt log: {len(pm)} cases, PM4Py fitting {sum(pm.values())}, Sunlight without skips "
          f"{sum(sl.values())}, agreement {share:.2%}")
    assert share >= 0.99


def test_sunlight_agrees_with_pm4py_when_receipts_are_missing(tmp_path):
    frame = pd.read_csv(REAL / "receipt.csv")
    cases = sorted(frame["case:concept:name"].unique())
    damaged = set(cases[::10])
    keep = ~(frame["case:concept:name"].isin(damaged) & (frame["concept:name"] == "Confirmation of receipt"))
    derived = frame[keep]
    path = tmp_path / "receipt-damaged.csv"
    derived.to_csv(path, index=False)
    pm, sl = pm4py_verdicts(derived), sunlight_verdicts(path)
    share = agreement(pm, sl)
    print(f"\nderived log: {len(damaged)} of {len(pm)} cases without their receipt, agreement {share:.2%}")
    # Cases that were nothing but their receipt are gone; every other damaged case is seen.
    assert {c for c, fits in pm.items() if not fits} == damaged & set(pm)
    assert share >= 0.99
