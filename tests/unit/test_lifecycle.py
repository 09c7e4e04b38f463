"""Publication decisions: new, unchanged, changed, withdrawn, reopened; stable ids."""

from datetime import datetime, timezone

from alerts.lifecycle import Labels, reconcile
from alerts.model import AlertStatus, Finding, Rule, alert_id

T0 = datetime(2026, 3, 2, tzinfo=timezone.utc)
T1 = datetime(2026, 3, 3, tzinfo=timezone.utc)
LABELS = Labels("ITEM", "DEPT", "320200")


def finding(evidence=None, node="review"):
    return Finding(Rule.SKIPPED_NODE, "C1", T0, evidence or {"a": 1}, node=node)


def test_alert_ids_are_stable_and_label_sensitive():
    assert finding().alert_id == alert_id(Rule.SKIPPED_NODE, "C1", "review")
    assert finding().alert_id != finding(node="approve").alert_id
    assert alert_id(Rule.OVERDUE, "C1") != alert_id(Rule.OVERDUE, "C2")
    assert len(finding().alert_id) == 32


def test_lifecycle():
    alerts, changed = reconcile({}, [finding()], LABELS, T0)
    (first,) = changed
    assert (first.status, first.version, first.raised_at) == (AlertStatus.OPEN, 1, T0)
    # The same finding again: nothing to publish.
    assert reconcile(alerts, [finding()], LABELS, T1)[1] == []
    # Its evidence changed: the next version, first raised_at kept.
    alerts2, changed = reconcile(alerts, [finding({"a": 2})], LABELS, T1)
    assert [(a.version, a.raised_at, a.evidence["a"]) for a in changed] == [(2, T0, 2)]
    # No longer supported: withdrawn, kept.
    alerts3, changed = reconcile(alerts2, [], LABELS, T1)
    assert [(a.status, a.version) for a in changed] == [(AlertStatus.WITHDRAWN, 3)]
    assert reconcile(alerts3, [], LABELS, T1)[1] == []
    # Holds again: reopened, raised at this moment (not its first version's).
    T2 = datetime(2026, 3, 4, tzinfo=timezone.utc)
    _, changed = reconcile(alerts3, [finding()], LABELS, T2)
    assert [(a.status, a.version, a.raised_at) for a in changed] == [(AlertStatus.OPEN, 4, T2)]
    # A finding that now states it happened after the card was first raised (a deadline moved past
    # that moment, and passed since): raised at this moment too, never before its finding.
    later = Finding(Rule.SKIPPED_NODE, "C1", T1 + (T2 - T1) / 2, {"a": 1}, node="review")
    _, changed = reconcile(alerts, [later], LABELS, T2)
    assert [(a.version, a.raised_at) for a in changed] == [(2, T2)]


def test_contract_format():
    (alert,) = reconcile({}, [finding()], LABELS, T0)[1]
    data = alert.to_json()
    assert data["severity"] == "red" and data["title"] == "红牌·跳过环节"
    assert {"alert_id", "rule", "severity", "case_id", "item_code", "department", "region", "officer_id",
            "node", "raised_at", "event_time", "evidence", "status"} <= set(data)


def test_an_alert_version_reads_the_same_published_again_from_the_store():
    """Published first from the pipeline's clock (microseconds, UTC), then again from a state the
    store gave back (milliseconds, the store's time zone): one alert version, one text."""
    from dataclasses import replace
    from datetime import timedelta

    from alerts.model import Alert

    (first,) = reconcile({}, [finding()], LABELS, T0.replace(microsecond=518886))[1]
    stored = replace(first, raised_at=first.raised_at.replace(microsecond=518000).astimezone(timezone(timedelta(hours=8))))
    assert first.to_json() == stored.to_json() == Alert.from_json(first.to_json()).to_json()
    assert first.to_json()["raised_at"] == "2026-03-02T00:00:00.518000+00:00"


def test_an_alert_on_its_topic_reads_in_the_catalogs_zone_however_its_moments_came():
    """Found by a black-box test: on the alerts topic, raised_at was in UTC while `alerts export`
    gives local time, and event_time in the offset its moment came with (an event's stated offset,
    the catalog's, or UTC once read back from the store): one alert version published twice read
    differently. With the catalog's zone both read as the export gives them, to the millisecond."""
    from dataclasses import replace
    from datetime import timedelta
    from zoneinfo import ZoneInfo

    shanghai = ZoneInfo("Asia/Shanghai")
    (fresh,) = reconcile({}, [Finding(Rule.OVERDUE, "C1", datetime(2026, 3, 17, tzinfo=shanghai), {"a": 1})], LABELS,
                         T0.replace(microsecond=518886))[1]
    read_back = replace(fresh, event_time=fresh.event_time.astimezone(timezone.utc),
                        raised_at=fresh.raised_at.replace(microsecond=518000).astimezone(timezone(timedelta(hours=-5))))
    assert fresh.to_json(shanghai) == read_back.to_json(shanghai)
    assert fresh.to_json(shanghai)["event_time"] == "2026-03-17T00:00:00+08:00"
    assert fresh.to_json(shanghai)["raised_at"] == "2026-03-02T08:00:00.518000+08:00"
