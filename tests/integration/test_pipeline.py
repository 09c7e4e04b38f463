"""The whole core path for real: Tansu, a Faust worker, the detectors, chdb."""

from __future__ import annotations

import random
from collections import defaultdict

import orjson

from alerts.model import Rule
from tests.integration.conftest import as_messages, identity, replay, pipeline_settings


def by_case(alerts):
    out = defaultdict(set)
    for alert in alerts:
        if alert["status"] != "withdrawn":
            out[alert["case_id"]].add(alert["rule"])
    return out


def test_every_injected_violation_is_found_and_clean_cases_stay_clean(scenario, baseline):
    alerts, progress, _, _ = baseline
    found = by_case(alerts)
    injected = {case: rule for case, rule in scenario.truth.items() if rule is not None}
    assert set(injected.values()) == set(Rule)  # the scenario holds every rule
    missed = {case: rule.value for case, rule in injected.items() if rule.value not in found.get(case, set())}
    assert missed == {}
    noisy = {case: found[case] for case in scenario.clean_cases if found.get(case)}
    assert noisy == {}
    assert progress.events_new == len(scenario.events)
    assert progress.dead_letters == 0


def test_alerts_follow_the_contract(baseline):
    import json
    from pathlib import Path

    import jsonschema

    schema = json.loads((Path(__file__).parents[1] / "data" / "contract" / "alert.schema.json").read_text())
    alerts, _, _, published = baseline
    assert alerts
    for alert in alerts:
        jsonschema.validate(alert, schema)
    assert len({a["alert_id"] for a in alerts}) == len(alerts)  # one row per alert: FINAL, versions merged
    # Every stored alert version was also published on the alerts topic, keyed by case.
    on_topic = {(r.key.decode(), orjson.loads(r.value)["alert_id"], orjson.loads(r.value)["version"])
                for r in published}
    assert {(a["case_id"], a["alert_id"], a["version"]) for a in alerts} <= on_topic
    # And the latest version on the topic reads as `alerts export` gives it, to the strings of its
    # times (found by a black-box test: the topic gave raised_at in UTC, and event_time in whatever
    # offset its moment came with: the event's, the catalog's, or UTC once read back from the store).
    latest: dict = {}
    for record in published:
        obj = orjson.loads(record.value)
        if obj["version"] >= latest.get(obj["alert_id"], {"version": 0})["version"]:
            latest[obj["alert_id"]] = obj
    for alert in alerts:
        assert {key: latest[alert["alert_id"]].get(key) for key in alert} == alert


def test_shuffled_and_fed_twice_gives_the_identical_alert_set(scenario, baseline, tmp_path):
    alerts, _, catalog, _ = baseline
    events = list(scenario.events)
    rng = random.Random(11)
    rng.shuffle(events)
    twice = events + rng.sample(events, len(events))
    again, progress = replay(pipeline_settings(tmp_path / "data"), catalog, as_messages(twice))
    assert progress.events_duplicate == len(events)
    assert identity(again) == identity(alerts)


def test_bad_input_goes_to_the_dead_letter_topic_and_the_rest_is_unaffected(scenario, baseline, tmp_path):
    alerts, _, catalog, _ = baseline
    good = as_messages(scenario.events)
    bad = [
        (b"x1", b"{not json"),
        (b"x2", b"\xff\xfe invalid utf-8"),
        (b"x3", orjson.dumps({"event_id": "b3", "case_id": "X3", "item_code": "NO-SUCH-ITEM", "type": "accepted",
                              "occurred_at": "2026-03-02T09:00:00+08:00",
                              "recorded_at": "2026-03-02T09:00:00+08:00"})),
        (b"x4", orjson.dumps({"event_id": "b4", "case_id": "X4", "item_code": scenario.events[0]["item_code"],
                              "type": "accepted", "occurred_at": "9999-01-01T00:00:00+08:00",
                              "recorded_at": "9999-01-01T00:00:00+08:00"})),
        (b"x5", orjson.dumps([1, 2, 3])),
        (None, b""),
        (b"x7", orjson.dumps({"event_id": "b7", "case_id": "X7" * 400_000, "item_code": "I", "type": "accepted",
                              "occurred_at": "2026-03-02T09:00:00+08:00",
                              "recorded_at": "2026-03-02T09:00:00+08:00"})),  # 800 kB: a letter must still go
    ]
    mixed = list(good)
    for index, message in enumerate(bad):
        mixed.insert((index + 1) * len(good) // (len(bad) + 1), message)
    again, progress, letters = replay(pipeline_settings(tmp_path / "data"), catalog, mixed,
                                      read_topic="case-events-dlq")
    assert progress.dead_letters == len(bad)
    assert identity(again) == identity(alerts)
    reasons = sorted(orjson.loads(record.value)["reason"] for record in letters)
    assert reasons == sorted(["invalid_json", "invalid_utf8", "unknown_item", "impossible_time", "schema", "empty",
                              "schema"])
    invalid_utf8 = next(orjson.loads(r.value) for r in letters if r.key == b"x2")
    assert invalid_utf8["payload_encoding"] == "base64"
    assert invalid_utf8["topic"] == "case-events" and invalid_utf8["error"]
    huge = next(orjson.loads(r.value) for r in letters if r.key == b"x7")
    assert "truncated from" in huge["payload_encoding"] and "longer than 128" in huge["error"]
