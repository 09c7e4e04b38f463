"""A peer group larger than it keeps (issue 10's trust): the outliers of a replay are a function of
the decisions, not of the order the file holds them in, however many decisions one group has."""

from __future__ import annotations

import math
import random
from datetime import datetime, timedelta, timezone

import yaml

from alerts.config import RuleConfig
from tests.integration.conftest import as_messages, identity, pipeline_settings, replay

CATALOG = {
    "departments": [{"code": "SCJG", "name": "市市场监督管理局", "region": "320200"}],
    "items": [{
        "code": "320200-CF-SCJG-0009", "name": "对未按规定公示信息的处罚", "category": "penalty",
        "department": "SCJG", "promised_days": 60, "legal_days": 90, "status": "active",
        "nodes": [{"id": "decide", "name": "决定"}],
        "decision_node": "decide",  # the decision completes it (no node_completed of its own)
        "discretion": {"V-PUB-01": [{"tier": "light", "min": 1, "max": 1000000}]},
    }],
}


def a_large_group(decisions: int, seed: int = 5) -> list[dict]:
    """`decisions` fining cases of one item and violation over a year, in decision order: fines
    spread around 2,000 yuan, one in forty far above or below what its peers impose."""
    rng = random.Random(seed)
    start = datetime(2025, 3, 3, 9, tzinfo=timezone(timedelta(hours=8)))
    events = []
    for n in range(decisions):
        at = start + timedelta(minutes=130 * n)
        amount = round(2000 * math.exp(rng.gauss(0, 0.25)))
        if rng.random() < 1 / 40:
            amount = amount * 25 if rng.random() < 0.5 else max(1, amount // 25)
        case = f"CF-{n:05d}"
        common = {"case_id": case, "item_code": "320200-CF-SCJG-0009", "officer_id": "O-1", "channel": "online"}
        for kind, moment, attrs in (
                ("accepted", at, {}),
                ("decided", at + timedelta(minutes=30), {"decision": "penalize", "violation_code": "V-PUB-01",
                                                         "penalty_amount": amount, "discretion_tier": "light"}),
                ("closed", at + timedelta(minutes=60), {})):
            events.append({**common, "event_id": f"{case}-{kind}", "type": kind, "occurred_at": moment.isoformat(),
                           "recorded_at": moment.isoformat(), **({"attrs": attrs} if attrs else {})})
    return events


def test_a_group_larger_than_it_keeps_gives_the_same_outliers_in_any_order(tmp_path):
    decisions = RuleConfig().outlier_group_size + 600
    events = a_large_group(decisions)
    catalog = tmp_path / "catalog.yaml"
    catalog.write_text(yaml.safe_dump(CATALOG, allow_unicode=True), encoding="utf-8")
    in_order, _ = replay(pipeline_settings(tmp_path / "ordered"), catalog, as_messages(events))
    shuffled = list(events)
    random.Random(11).shuffle(shuffled)
    # In small units, as a live feed comes: each unit's decisions join the group before the next's.
    out_of_order, _ = replay(pipeline_settings(tmp_path / "shuffled", unit_max_messages=150), catalog,
                             as_messages(shuffled))
    outliers = [a for a in in_order if a["rule"] == "discretion_outlier"]
    assert len(outliers) >= 20  # the group judges: a test of nothing would pass too
    assert {a["rule"] for a in in_order} == {"discretion_outlier"}  # clean cases otherwise
    assert identity(out_of_order) == identity(in_order)
