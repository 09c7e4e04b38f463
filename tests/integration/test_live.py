"""Live operation: the wall clock drives the timers, and the catalog changes without a restart."""

from __future__ import annotations

import asyncio
from datetime import datetime, timedelta, timezone
from zoneinfo import ZoneInfo

import orjson
import yaml

from alerts.calendar import WorkCalendar
from sinks.queries import export_alerts
from sinks.scope import Scope
from streams.clock import WallClock
from streams.runtime import produce, running_pipeline
from tests.integration.conftest import pipeline_settings
from tests.unit.helpers import CONTRACT, LICENCE

TZ = ZoneInfo("Asia/Shanghai")


class ShiftedWallClock(WallClock):
    """The wall clock, moved so that a chosen moment comes a few seconds from now."""

    def __init__(self, offset: timedelta):
        self.offset = offset

    def now(self, partition=None):
        return datetime.now(timezone.utc) + self.offset


def accepted(case_id, when, item=LICENCE, event_id=None):
    return {"event_id": event_id or f"{case_id}-1", "case_id": case_id, "item_code": item, "type": "accepted",
            "occurred_at": when.isoformat(), "recorded_at": when.isoformat()}


async def wait_for(predicate, timeout=30.0):
    loop = asyncio.get_running_loop()
    end = loop.time() + timeout
    while loop.time() < end:
        result = predicate()
        if result:
            return result
        await asyncio.sleep(0.2)
    return predicate()


def stored(running):
    with running.pipeline.writer.lock:
        return list(export_alerts(running.client, Scope.everything()))


def test_the_wall_clock_fires_deadline_near_without_a_new_event(tmp_path):
    # A licence case (10 working days) accepted on 2026-03-02: its last day starts 2026-03-16 00:00.
    accepted_at = datetime(2026, 3, 2, 10, tzinfo=TZ)
    last_day = datetime(2026, 3, 16, tzinfo=TZ)
    assert WorkCalendar().deadline(accepted_at, 10) == last_day + timedelta(days=1)

    async def run():
        clock = ShiftedWallClock(timedelta(0))
        settings = pipeline_settings(tmp_path / "data", tick_interval=0.2)
        async with running_pipeline(settings, CONTRACT / "catalog.example.yaml", clock=clock) as running:
            clock.offset = last_day - datetime.now(timezone.utc) - timedelta(seconds=3)
            await produce(running.bootstrap, settings.case_events_topic,
                          [(b"LIVE-1", orjson.dumps(accepted("LIVE-1", accepted_at)))])
            processed = await wait_for(lambda: running.pipeline.progress.events_new == 1)
            assert processed
            assert clock.now() < last_day
            assert not [a for a in stored(running) if a["rule"] == "deadline_near"]
            alerts = await wait_for(lambda: [a for a in stored(running) if a["rule"] == "deadline_near"])
            assert clock.now() >= last_day
            return alerts

    (alert,) = asyncio.run(run())
    assert alert["case_id"] == "LIVE-1"
    assert alert["event_time"] == "2026-03-16T00:00:00+08:00"


def test_the_catalog_changes_while_the_worker_runs(tmp_path):
    raw = yaml.safe_load((CONTRACT / "catalog.example.yaml").read_text(encoding="utf-8"))
    catalog = tmp_path / "catalog.yaml"
    catalog.write_text(yaml.safe_dump(raw, allow_unicode=True), encoding="utf-8")
    new_item = dict(raw["items"][0], code="320200-XK-SCJG-0099", name="新增事项")
    when = datetime(2026, 3, 2, 10, tzinfo=TZ)

    async def run():
        settings = pipeline_settings(tmp_path / "data")
        object.__setattr__(settings, "catalog_reload_interval", 0.2)
        async with running_pipeline(settings, catalog) as running:
            progress = running.pipeline.progress
            send = [(b"NEW-1", orjson.dumps(accepted("NEW-1", when, new_item["code"])))]
            await produce(running.bootstrap, settings.case_events_topic, send)
            assert await wait_for(lambda: progress.dead_letters == 1)
            # A broken catalog is refused; the running one stays in force.
            catalog.write_text("items: [", encoding="utf-8")
            await asyncio.sleep(1.0)
            assert running.pipeline.catalog_source.judge.catalog.item(LICENCE) is not None
            catalog.write_text(yaml.safe_dump({**raw, "items": raw["items"] + [new_item]}, allow_unicode=True),
                               encoding="utf-8")
            assert await wait_for(lambda: running.pipeline.catalog_source.judge.catalog.item(new_item["code"]))
            send = [(b"NEW-2", orjson.dumps(accepted("NEW-2", when, new_item["code"])))]
            await produce(running.bootstrap, settings.case_events_topic, send)
            assert await wait_for(lambda: progress.events_new == 1)
            return progress.dead_letters

    assert asyncio.run(run()) == 1


def test_a_live_worker_started_on_a_store_judges_its_open_cases_at_once(tmp_path):
    """A live worker with its own embedded broker, started on a store a replay filled: the cases
    still open are judged on the wall clock without waiting for an event of theirs (before, they
    were seeded and never judged, so their deadlines passed without an overdue alert)."""
    from alerts.scenario import generate
    from sinks.clickhouse import connect
    from tests.integration.conftest import NOW, as_messages, replay, write_inputs

    scenario = generate(cases=150, violation_rate=0.05, seed=31, now=NOW)
    catalog, _ = write_inputs(tmp_path, scenario)
    settings = pipeline_settings(tmp_path / "data")
    first, _ = replay(settings, catalog, as_messages(scenario.events))  # judged at NOW, months before today
    client = connect(None, tmp_path / "data")
    try:
        late = {row[0] for row in client.query(
            "SELECT case_id FROM cases FINAL WHERE status = 'open' AND deadline < now()").result_rows}
    finally:
        client.close()
    overdue_before = {a["case_id"] for a in first if a["rule"] == "overdue"}
    assert late - overdue_before, "the replay left open cases whose deadlines are past by the wall clock"

    async def run():
        async with running_pipeline(settings, catalog, clock=WallClock()) as running:
            return await wait_for(lambda: late <= {a["case_id"] for a in stored(running) if a["rule"] == "overdue"},
                                  timeout=60)

    assert asyncio.run(run()), "the open cases restored from the store were not judged on the wall clock"


def test_a_history_pushed_late_to_a_live_worker_reaches_no_department(tmp_path):
    """A week of a case's history arrives at once (a self-built system pushing what it held): its
    acceptance alone makes it look overdue on the wall clock, its closing comes seconds later. The
    red card is raised and withdrawn, as facts arrive; its ticket settled from the finding's
    business time, long past, so it opened and escalated at once with notices to the head and the
    inspection office (a helper's live city: 594 such notices, 199 tickets then withdrawn)."""
    from sinks.queries import stored_notices, stored_tickets

    accepted_at = datetime(2026, 3, 2, 10, tzinfo=TZ)
    closing = {"event_id": "LATE-1-9", "case_id": "LATE-1", "item_code": LICENCE, "type": "closed",
               "occurred_at": "2026-03-16T15:00:00+08:00", "recorded_at": "2026-03-16T15:01:00+08:00"}

    async def run():
        # Now is the 24th: the case was closed within its time, but its closing is not here yet.
        clock = ShiftedWallClock(datetime(2026, 3, 24, 10, tzinfo=TZ) - datetime.now(timezone.utc))
        settings = pipeline_settings(tmp_path / "data", tick_interval=0.2)
        async with running_pipeline(settings, CONTRACT / "catalog.example.yaml", clock=clock) as running:
            await produce(running.bootstrap, settings.case_events_topic,
                          [(b"LATE-1", orjson.dumps(accepted("LATE-1", accepted_at)))])
            raised = await wait_for(lambda: [a for a in stored(running) if a["rule"] == "overdue"])
            await asyncio.sleep(2)  # the ticket agent has the red card
            await produce(running.bootstrap, settings.case_events_topic, [(b"LATE-1", orjson.dumps(closing))])
            await wait_for(lambda: not [a for a in stored(running) if a["rule"] == "overdue"])
            await asyncio.sleep(2)
            standing = stored(running)
            with running.pipeline.writer.lock:
                return (raised, standing, stored_tickets(running.client, Scope.everything()),
                        stored_notices(running.client, Scope.everything()))

    raised, standing, tickets, notices = asyncio.run(run())
    assert raised, "the acceptance alone looks overdue on the wall clock"
    assert not [a for a in standing if a["rule"] == "overdue"]  # withdrawn by the closing
    assert tickets == [] and notices == []  # no department heard of it


def test_cases_judged_under_an_earlier_catalog_are_judged_again_under_the_one_in_force(tmp_path):
    """Found by a black-box test with two workers on a shared broker: a time limit lengthened while
    the workers were stopped judged nothing again (a start takes the catalog as it finds it), and
    one lengthened under running workers only reached the cases their tables held: a case let go
    kept its red overdue card. Both kinds are judged again from the store's `judged_under`."""
    from streams.broker import EmbeddedBroker

    raw = yaml.safe_load((CONTRACT / "catalog.example.yaml").read_text(encoding="utf-8"))
    catalog = tmp_path / "catalog.yaml"
    catalog.write_text(yaml.safe_dump(raw, allow_unicode=True), encoding="utf-8")
    when = datetime(2026, 3, 2, 10, tzinfo=TZ)  # 10 working days: overdue from 17 March
    closing = {"event_id": "LET-GO-9", "case_id": "LET-GO", "item_code": LICENCE, "type": "closed",
               "occurred_at": "2026-03-19T15:00:00+08:00", "recorded_at": "2026-03-19T15:01:00+08:00"}
    # 10 May: the late closing is long settled (30 days' retention), the open case long overdue.
    clock = ShiftedWallClock(datetime(2026, 5, 10, 10, tzinfo=TZ) - datetime.now(timezone.utc))
    settings = pipeline_settings(tmp_path / "data", tick_interval=0.2)
    object.__setattr__(settings, "catalog_reload_interval", 0.2)

    def overdue(running):
        return {a["case_id"] for a in stored(running) if a["rule"] in ("overdue", "deadline_near")}

    def lengthen(days):
        changed = {**raw, "items": [dict(raw["items"][0], promised_days=days), *raw["items"][1:]]}
        catalog.write_text(yaml.safe_dump(changed, allow_unicode=True), encoding="utf-8")

    async def run(broker):
        async with running_pipeline(settings, catalog, clock=clock, broker=broker) as running:
            await produce(running.bootstrap, settings.case_events_topic,
                          [(b"OPEN", orjson.dumps(accepted("OPEN", when))),
                           (b"LET-GO", orjson.dumps(accepted("LET-GO", when))), (b"LET-GO", orjson.dumps(closing))])
            assert await wait_for(lambda: overdue(running) == {"OPEN", "LET-GO"})
            assert await wait_for(lambda: running.pipeline.store.evicted >= 1)  # LET-GO left the table
            lengthen(40)  # under the running worker: 40 working days end on 28 April, still passed
            assert await wait_for(lambda: running.pipeline.catalog_source.judge.catalog.item(LICENCE).promised_days == 40)
            # LET-GO, closed within 40 days, loses its cards though the table no longer held it.
            assert await wait_for(lambda: overdue(running) == {"OPEN"}, timeout=60), overdue(running)
        lengthen(60)  # while stopped: 60 working days end late in May
        async with running_pipeline(settings, catalog, clock=clock, broker=broker) as running:
            assert await wait_for(lambda: overdue(running) == set(), timeout=60), overdue(running)

    with EmbeddedBroker() as broker:
        asyncio.run(run(broker))


def test_the_cases_of_an_item_no_longer_in_the_catalog_are_not_asked_for_again(tmp_path):
    """Found by a review: such a case is no longer judged, so its row never changes basis, and every
    start on a Kafka cluster read it back and logged it unwatched again."""
    from sinks.clickhouse import connect
    from sinks.migrations import migrate
    from sinks.queries import cases_judged_otherwise

    client = connect(None, tmp_path / "data")
    try:
        migrate(client)
        now = datetime(2026, 5, 10, tzinfo=timezone.utc)
        rows = [[case_id, item, "SCJG", "320200", "closed", 1, now, basis]
                for case_id, item, basis in (("KEPT", "I-1", "old"), ("GONE", "I-9", "old"), ("SAME", "I-1", "new"))]
        client.insert("cases", rows, column_names=["case_id", "item_code", "department", "region", "status",
                                                   "revision", "updated_at", "judged_under"])
        assert cases_judged_otherwise(client, "new", ["I-1"]) == ["KEPT"]
    finally:
        client.close()


def test_a_case_is_judged_under_the_basis_of_its_latest_row_whatever_the_rows_before_it(tmp_path):
    """The question is read by each case's latest row (`FINAL`, since it is asked at every
    assignment: grouping every case id of a province's store in memory took its writer's thread),
    and not asked at all when no row of another basis is stored."""
    from sinks.clickhouse import connect
    from sinks.migrations import migrate
    from sinks.queries import cases_judged_otherwise

    client = connect(None, tmp_path / "data")
    columns = ["case_id", "item_code", "department", "region", "status", "revision", "updated_at", "judged_under"]
    at = datetime(2026, 5, 10, tzinfo=timezone.utc)
    try:
        migrate(client)
        client.insert("cases", [["A", "I-1", "SCJG", "320200", "open", 1, at, "new"]], column_names=columns)
        assert cases_judged_otherwise(client, "new", ["I-1"]) == []
        for rows in (
            [["AGAIN", "I-1", "SCJG", "320200", "open", 1, at, "old"]],  # judged again since: not stale
            [["AGAIN", "I-1", "SCJG", "320200", "closed", 2, at + timedelta(days=1), "new"]],
            [["BACK", "I-1", "SCJG", "320200", "open", 1, at, "new"]],  # its latest under the old one: stale
            [["BACK", "I-1", "SCJG", "320200", "closed", 2, at + timedelta(days=1), "old"]],
            [["REWRITTEN", "I-1", "SCJG", "320200", "open", 3, at, "old"]],  # written again, same revision
            [["REWRITTEN", "I-1", "SCJG", "320200", "open", 3, at + timedelta(hours=1), "new"]],
        ):  # each its own insert: its own part, none merged yet
            client.insert("cases", rows, column_names=columns)
        assert cases_judged_otherwise(client, "new", ["I-1"]) == ["BACK"]
        assert cases_judged_otherwise(client, "old", ["I-1"]) == ["A", "AGAIN", "REWRITTEN"]
    finally:
        client.close()
