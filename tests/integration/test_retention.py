"""Settled cases leave the worker's table and its changelog after the retention, and come back
from the store when something about them arrives: the alerts are those of a worker that kept
every case. Real broker, real Faust worker, real chdb."""

from __future__ import annotations

import asyncio
import random
from pathlib import Path

import orjson
import pytest

from alerts.model import Rule, Severity
from alerts.scenario import generate
from alerts.tickets import INSPECTORS
from sinks.queries import export_alerts, stored_tickets
from sinks.scope import Scope
from streams.broker import EmbeddedBroker
from streams.runtime import produce, replay_clock, running_pipeline, topic_ends, wait_until_processed
from tests.integration.conftest import NOW, as_messages, identity, pipeline_settings, write_inputs


def late_inputs(scenario, count: int = 40) -> tuple[list[dict], list[str]]:
    """For `count` closed cases: their first event again (alone, a case taken for new would be
    open and overdue), or every event again, and a rating registered late (what a re-import of an
    old file and a late satisfaction rating send), shuffled."""
    by_case: dict[str, list[dict]] = {}
    for event in scenario.events:
        by_case.setdefault(event["case_id"], []).append(event)
    closed = sorted(c for c, events in by_case.items()
                    if any(e["type"] == "closed" for e in events) and not any(e["type"] == "rated" for e in events))
    chosen = closed[:count]
    late = []
    for number, case_id in enumerate(chosen):
        events = by_case[case_id]
        late.extend(events if number % 2 else events[:1])
        closing = next(e for e in events if e["type"] == "closed")
        late.append({**{k: closing[k] for k in ("case_id", "item_code", "department", "region") if k in closing},
                     "event_id": f"{case_id}-late-rating", "type": "rated", "occurred_at": closing["occurred_at"],
                     "recorded_at": "2026-05-31T09:00:00+08:00", "attrs": {"rating": "dissatisfied"}})
    random.Random(5).shuffle(late)
    return late, chosen


def ticket_identity(tickets) -> list[tuple]:
    """What must be identical between runs: each ticket's case, rule, where it stands and its alerts."""
    return sorted((t["ticket_id"], t["status"], t["resolution"] or "", t["escalation_level"], t["overdue"],
                   str(t["deadline"])) for t in tickets)


def basis_of(catalog) -> str:
    """The judging basis of a catalog file, as a pipeline on it records it."""
    from streams.catalog_source import CatalogSource

    return CatalogSource(catalog).basis


async def let_go_due(pipeline) -> None:
    """Until every case due to be let go is let go (the timer takes them from the index, a flush
    lets them go once the rows before them are written)."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + 60
    while True:
        await pipeline.flush()
        if not pipeline.let_go.evictions.any_due(pipeline.clock.now) and not pipeline.writer.batch.after_write:
            return
        assert loop.time() < deadline, "settled cases were not let go"
        await asyncio.sleep(0.2)


async def _run(settings, catalog, phases, broker=None, wait_let_go=False, seen=None, tickets=None):
    """Each phase's messages produced and processed to the end in turn, and with `wait_let_go`
    the settled cases let go after it. Returns (alerts, store, the cases in the table); with
    `seen`, appends to it how many alert versions the run published; with `tickets` (a dict),
    puts there the stored tickets, the ticket store and the cases in its table."""
    async with running_pipeline(settings, catalog, clock=replay_clock(NOW), broker=broker) as running:
        pipeline = running.pipeline
        for messages in phases:
            await produce(running.bootstrap, settings.case_events_topic, messages)
            await wait_until_processed(pipeline, await topic_ends(running), timeout=600)
            if wait_let_go:
                await let_go_due(pipeline)
                assert pipeline.store.evicted > 0
        with pipeline.writer.lock:
            alerts = list(export_alerts(running.client, Scope.everything(), include_withdrawn=True))
        if seen is not None:
            seen.append(pipeline.progress.alerts_changed)
        if tickets is not None:
            with pipeline.writer.lock:
                tickets["stored"] = stored_tickets(running.client, Scope.everything())
            tickets.update(store=pipeline.ticket_store,
                           table={k for k, v in pipeline.tickets_table.data.items() if v})
        return alerts, pipeline.store, {k for k, v in pipeline.table.data.items() if v}


@pytest.mark.parametrize("own_broker", [False, True], ids=["shared-broker", "own-broker"])
def test_settled_cases_are_let_go_and_come_back_with_their_history(tmp_path, own_broker):
    scenario = generate(cases=300, violation_rate=0.05, seed=21, now=NOW)
    catalog, _ = write_inputs(tmp_path, scenario)
    late, chosen = late_inputs(scenario)
    # A worker that keeps every case, fed everything at once.
    kept_tickets, let_go_tickets = {}, {}
    kept, _, _ = asyncio.run(_run(pipeline_settings(tmp_path / "kept", case_retention_days=None), catalog,
                                  [as_messages(scenario.events + late)], tickets=kept_tickets))

    async def let_go_run():
        settings = pipeline_settings(tmp_path / "let-go", case_retention_days=0.0)
        if own_broker:
            return await _run(settings, catalog, [as_messages(scenario.events), as_messages(late)],
                              wait_let_go=True, tickets=let_go_tickets)
        with EmbeddedBroker() as broker:
            return await _run(settings, catalog, [as_messages(scenario.events), as_messages(late)], broker=broker,
                              wait_let_go=True, tickets=let_go_tickets)

    alerts, store, in_table = asyncio.run(let_go_run())
    settled = {c for c in {e["case_id"] for e in scenario.events}
               if any(e["type"] in ("closed", "withdrawn") for e in scenario.events if e["case_id"] == c)}
    assert store.evicted >= len(chosen)
    assert store.brought_back >= len(chosen), (store.brought_back, len(chosen))
    # With no retention, a case brought back and settled again is let go again once written.
    assert not in_table & settled
    assert in_table  # the open cases stay
    assert identity(alerts) == identity(kept)
    assert [a for a in alerts if a["case_id"] in chosen], "the cases brought back have alerts to compare"
    # Their tickets went with them, those at rest, and came back when their alerts changed: the
    # tickets are those of the worker that kept everything, and the table holds none at rest of a
    # case let go.
    ticket_store = let_go_tickets["store"]
    assert ticket_store.evicted > 0 and ticket_store.brought_back > 0, (ticket_store.evicted, ticket_store.brought_back)
    assert ticket_identity(let_go_tickets["stored"]) == ticket_identity(kept_tickets["stored"])
    assert ticket_identity(let_go_tickets["stored"])
    at_rest = {c for c in let_go_tickets["table"] & settled if ticket_store.get(c, 0).at_rest}
    assert not at_rest - in_table, sorted(at_rest - in_table)[:5]


def test_a_restarted_worker_recovers_without_the_cases_let_go(tmp_path):
    """The tombstones reach the changelog: a second worker on the same broker recovers a table
    without the cases the first let go, and reads them back from the store when they are needed."""
    scenario = generate(cases=200, violation_rate=0.05, seed=22, now=NOW)
    catalog, _ = write_inputs(tmp_path, scenario)
    late, chosen = late_inputs(scenario, count=20)
    kept, _, _ = asyncio.run(_run(pipeline_settings(tmp_path / "kept", case_retention_days=None), catalog,
                                  [as_messages(scenario.events + late)]))
    settings = pipeline_settings(tmp_path / "data", case_retention_days=0.0)

    async def both():
        with EmbeddedBroker() as broker:
            _, first, first_table = await _run(settings, catalog, [as_messages(scenario.events)], broker=broker,
                                               wait_let_go=True)
            assert first.evicted > 0
            async with running_pipeline(settings, catalog, clock=replay_clock(NOW), broker=broker) as running:
                pipeline = running.pipeline
                await wait_until_processed(pipeline, await topic_ends(running), timeout=600)
                recovered = {k for k, v in pipeline.table.data.items() if v}
            second = await _run(settings, catalog, [as_messages(late)], broker=broker)
            return first_table, recovered, second

    first_table, recovered, (alerts, store, _) = asyncio.run(both())
    assert recovered == first_table
    assert not set(chosen) & recovered
    assert store.brought_back >= len(chosen)
    assert identity(alerts) == identity(kept)


def test_the_store_is_asked_first_which_cases_it_holds_then_only_for_those(tmp_path):
    """Reading cases back looks first which of them have events (without FINAL), and reads the
    events, alerts and clocks of those alone; a unit of new cases costs that one look."""
    from datetime import datetime, timezone

    from alerts.events import parse_event
    from sinks.case_history import states_of
    from sinks.clickhouse import connect
    from sinks.migrations import migrate
    from sinks.queries import cases_with_events
    from sinks.rows import event_row, to_arrow

    client = connect(None, tmp_path / "data")
    try:
        migrate(client)
        now = datetime(2026, 3, 2, tzinfo=timezone.utc)
        rows = [event_row(parse_event({"event_id": f"{case}-{n}", "case_id": case, "item_code": "X",
                                       "type": "accepted", "occurred_at": "2026-03-02T09:15:00+08:00",
                                       "recorded_at": "2026-03-02T09:15:00+08:00"}), "D", now)
                for case in ("C1", "C2") for n in range(2)]
        client.insert_arrow("case_events", to_arrow("case_events", rows))
        client.insert_arrow("case_events", to_arrow("case_events", rows[:1]))  # a version written twice
        assert cases_with_events(client, ["C1", "C2", "C3"]) == {"C1", "C2"}
        assert cases_with_events(client, ["C3", "C4"]) == set()
        states = states_of(client, ["C2", "C3"])
        assert set(states) == {"C2"} and [e.event_id for e in states["C2"].events] == ["C2-0", "C2-1"]
        assert states_of(client, ["C3"]) == {}
    finally:
        client.close()


def test_reading_cases_back_does_not_wait_for_the_writer(tmp_path):
    """The cases a unit asks of the store are read with a client and a thread of their own: a
    write in progress (here, the writer's thread held for two seconds) does not hold the unit up."""
    import threading
    import time

    scenario = generate(cases=20, violation_rate=0.05, seed=5, now=NOW)
    catalog, _ = write_inputs(tmp_path, scenario)
    settings = pipeline_settings(tmp_path / "data")

    async def run():
        async with running_pipeline(settings, catalog, clock=replay_clock(NOW)) as running:
            pipeline = running.pipeline
            await produce(running.bootstrap, settings.case_events_topic, as_messages(scenario.events))
            await wait_until_processed(pipeline, await topic_ends(running), timeout=600)
            known = sorted({e["case_id"] for e in scenario.events})[:3]
            released = threading.Event()
            busy = asyncio.get_running_loop().run_in_executor(pipeline.writer.executor, released.wait, 2.0)
            started = time.monotonic()
            states = await pipeline.read_back.cases([*known, "NO-SUCH-CASE"])
            took = time.monotonic() - started
            released.set()
            await busy
            return known, states, took

    known, states, took = asyncio.run(run())
    assert sorted(states) == known
    assert took < 1.0, f"the read waited {took:.1f} s for the writer"


def test_a_process_started_on_the_store_seeds_only_the_cases_that_have_not_settled(tmp_path):
    """A second process with its own embedded broker (a second `replay` or `import` into the same
    data directory) loads the cases still open, not the store's history: the settled ones stay in
    the store and are read back, as seeds, when a late event or rating about them comes. The
    alerts are those of one worker that kept every case, fed everything at once."""
    from sinks.clickhouse import connect
    from sinks.queries import cases_with_events, settled_cases

    scenario = generate(cases=300, violation_rate=0.05, seed=23, now=NOW)
    catalog, _ = write_inputs(tmp_path, scenario)
    late, chosen = late_inputs(scenario, count=30)
    kept_tickets = {}
    kept, _, _ = asyncio.run(_run(pipeline_settings(tmp_path / "kept", case_retention_days=None), catalog,
                                  [as_messages(scenario.events + late)], tickets=kept_tickets))
    settings = pipeline_settings(tmp_path / "data")
    asyncio.run(_run(settings, catalog, [as_messages(scenario.events)]))  # the first process
    client = connect(None, tmp_path / "data")
    try:
        settled, every = set(settled_cases(client, basis_of(catalog))), cases_with_events(client)
    finally:
        client.close()
    assert set(chosen) <= settled < every  # the late inputs are about settled cases; some cases are open
    seen = {}

    again = [e for e in scenario.events if e["case_id"] in chosen]  # a re-import of their events

    async def second():
        async with running_pipeline(settings, catalog, clock=replay_clock(NOW)) as running:
            pipeline = running.pipeline
            store = pipeline.store
            seen.update(seeded=set(store.seeds), settled=set(store.in_store.at_start),
                        ticket_seeds=set(pipeline.ticket_store.seeds),
                        tickets_in_store=set(pipeline.ticket_store.in_store.at_start))
            await produce(running.bootstrap, settings.case_events_topic, as_messages(again))
            await wait_until_processed(pipeline, await topic_ends(running), timeout=600)
            seen.update(brought_back=store.brought_back, published=pipeline.progress.alerts_changed)
            await produce(running.bootstrap, settings.case_events_topic, as_messages(late))
            await wait_until_processed(pipeline, await topic_ends(running), timeout=600)
            with pipeline.writer.lock:
                alerts = list(export_alerts(running.client, Scope.everything(), include_withdrawn=True))
                seen.update(tickets=stored_tickets(running.client, Scope.everything()))
            # An inspector opens a ticket by hand from a yellow card of a case whose tickets and
            # alerts stayed in the store: they are read back for it.
            policy = pipeline.catalog_source.ticket_policy()
            yellow = next(a for a in alerts if a["case_id"] in seen["tickets_in_store"] and a["status"] == "open"
                          and not policy.opens(Rule(a["rule"]), Severity(a["severity"])))
            action = {"action_id": "by-hand-1", "ticket_id": f"{yellow['case_id']}/{yellow['rule']}",
                      "actor": "inspector-1", "department": INSPECTORS, "kind": "open", "text": "请说明情况",
                      "at": "2026-05-31T09:00:00+08:00", "alert_id": yellow["alert_id"]}
            await produce(running.bootstrap, settings.ticket_actions_topic,
                          [(action["ticket_id"].encode(), orjson.dumps(action))])
            await wait_until_processed(pipeline, await topic_ends(running), timeout=600)
            with pipeline.writer.lock:
                seen.update(by_hand=stored_tickets(running.client, Scope.everything(), ticket_id=action["ticket_id"]))
            seen.update(tickets_brought_back=pipeline.ticket_store.brought_back)
            return alerts

    alerts = asyncio.run(second())
    assert seen["seeded"] == every - settled
    # The settled cases' tickets at rest (and their alerts that open none) stay in the store too,
    # read back when the late inputs change their alerts; the tickets come out the same.
    assert seen["tickets_in_store"] and seen["tickets_in_store"] <= settled
    assert not seen["ticket_seeds"] & seen["tickets_in_store"]
    assert ticket_identity(seen["tickets"]) == ticket_identity(kept_tickets["stored"])
    assert seen["tickets_brought_back"] == 1
    assert [(t["status"], t["manual"]) for t in seen["by_hand"]] == [("open", True)]
    assert seen["settled"] == settled
    # Read back for the re-import as seeds: their rows were in the store before, so events they
    # already hold publish nothing again (a case let go by this process would republish).
    assert seen["brought_back"] == len(chosen) and seen["published"] == 0
    assert identity(alerts) == identity(kept)


def test_a_case_read_back_is_not_let_go_while_its_judgement_is_due_or_on_its_way(tmp_path):
    """A settled case read back for a re-import is judged once the input ends (a tick through the
    ticks topic). Let go before that tick is taken, the tick would read it back again: another
    store query, and as a case this process let go its rows written and its alerts published
    again. It stays until the tick has judged it, and is let go after."""
    from sinks.clickhouse import connect
    from sinks.queries import settled_cases

    scenario = generate(cases=120, violation_rate=0.05, seed=23, now=NOW)
    catalog, _ = write_inputs(tmp_path, scenario)
    _, chosen = late_inputs(scenario, count=12)
    settings = pipeline_settings(tmp_path / "data")
    asyncio.run(_run(settings, catalog, [as_messages(scenario.events)]))  # the first process
    client = connect(None, tmp_path / "data")
    try:
        assert set(chosen) <= set(settled_cases(client, basis_of(catalog)))
    finally:
        client.close()
    again = [e for e in scenario.events if e["case_id"] in chosen]  # a re-import of their events
    seen = {}

    async def second():  # settled cases are let go at once
        async with running_pipeline(pipeline_settings(tmp_path / "data", case_retention_days=0.0), catalog,
                                    clock=replay_clock(NOW)) as running:
            pipeline = running.pipeline
            # A round of letting go right after the cases are scheduled for their judgement at the
            # end of the input, and after their ticks are sent (the timer may run at either moment).
            judge, fire = pipeline.judge_restored_cases, pipeline.fire_due

            async def let_go_round():
                await pipeline.let_go.settled()
                while not await pipeline.flush():
                    await asyncio.sleep(0.1)

            async def judge_then_let_go():
                scheduled = await judge()
                await let_go_round()
                return scheduled

            async def fire_then_let_go():
                sent = await fire()
                await let_go_round()
                return sent

            pipeline.judge_restored_cases, pipeline.fire_due = judge_then_let_go, fire_then_let_go
            await produce(running.bootstrap, settings.case_events_topic, as_messages(again))
            await wait_until_processed(pipeline, await topic_ends(running), timeout=600)
            seen.update(brought_back=pipeline.store.brought_back, published=pipeline.progress.alerts_changed)
            await let_go_due(pipeline)
            seen.update(let_go=set(pipeline.store.in_store.let_go))

    asyncio.run(second())
    assert seen["brought_back"] == len(chosen) and seen["published"] == 0
    assert set(chosen) <= seen["let_go"]  # judged, they are let go


def test_a_case_whose_first_event_names_no_department_comes_back_from_the_store_as_it_came(tmp_path):
    """Its first event names no department, a later one names WJW: its alerts are WJW's. The store
    files the first event under its item's department (SCJG), and read back (a second run on the
    store: the open case seeded, the closed one read back for a re-import of the same file) the
    case came back labelled SCJG and its alerts moved there, new versions published (found by a
    black-box test). Read back, the event names none, as it came."""
    scenario = generate(cases=5, violation_rate=0.0, seed=1, now=NOW)
    catalog, _ = write_inputs(tmp_path, scenario)
    item = "320200-XK-SCJG-0001"

    def event(case, n, kind, day, **more):
        return {"event_id": f"{case}-{n}", "case_id": case, "item_code": item, "type": kind,
                "occurred_at": f"2026-03-{day:02d}T10:00:00+08:00", "recorded_at": f"2026-03-{day:02d}T10:05:00+08:00",
                **more}

    named = {"department": "WJW", "region": "320200"}
    events = [event("L-OPEN", 1, "accepted", 2), event("L-OPEN", 2, "node_completed", 3, node="undertake", **named),
              event("L-CLOSED", 1, "accepted", 2), event("L-CLOSED", 2, "node_completed", 3, node="approve", **named),
              event("L-CLOSED", 3, "closed", 4, **named)]
    settings = pipeline_settings(tmp_path / "data")
    seen = []
    first, _, _ = asyncio.run(_run(settings, catalog, [as_messages(events)], seen=seen))
    again, _, _ = asyncio.run(_run(settings, catalog, [as_messages(events)], seen=seen))
    assert {(a["case_id"], a["department"]) for a in first} == {("L-OPEN", "WJW"), ("L-CLOSED", "WJW")}
    assert {(a["case_id"], a["rule"]) for a in first} >= {("L-OPEN", "overdue"), ("L-CLOSED", "skipped_node")}
    assert identity(again) == identity(first) and {a["department"] for a in again} == {"WJW"}
    assert seen[1] == 0, "the second run published alert versions"


def test_only_a_settled_case_the_store_holds_whole_is_left_there(tmp_path):
    """A settled case row counts only when it is the case's latest, it was judged under the
    catalog in force, its events are all stored and no row of the case was refused: otherwise the
    case is seeded (read whole) as before."""
    from datetime import datetime, timedelta, timezone

    from alerts.events import parse_event
    from alerts.state import CaseState
    from sinks.clickhouse import connect
    from sinks.migrations import migrate
    from sinks.queries import settled_cases
    from sinks.rows import case_row, dead_letter_row, event_row, to_arrow
    from alerts.letters import make_letter

    now = datetime(2026, 3, 20, tzinfo=timezone.utc)

    def events_of(case, types=("accepted", "closed")):
        return tuple(parse_event({"event_id": f"{case}-{n}", "case_id": case, "item_code": "X", "type": kind,
                                  "occurred_at": f"2026-03-0{n + 2}T09:15:00+08:00",
                                  "recorded_at": f"2026-03-0{n + 2}T09:15:00+08:00"})
                     for n, kind in enumerate(types))

    def settled_state(case, revision=2):
        return CaseState(case_id=case, events=events_of(case), judged_at=now, revision=revision)

    client = connect(None, tmp_path / "data")
    try:
        migrate(client)
        cases = ("WHOLE", "MORE-EVENTS", "REOPENED", "REFUSED", "OPEN", "REWRITTEN", "OTHER-CATALOG")
        client.insert_arrow("case_events", to_arrow("case_events", [
            event_row(e, "D", now) for case in cases for e in events_of(case)]
            + [event_row(events_of("MORE-EVENTS", ("accepted", "closed", "rated"))[2], "D", now)]))

        def row(state, basis="B", at=now):  # judged under the catalog "B" unless said otherwise
            return case_row(state, "X", "D", None, None, at, basis)

        rows = [row(settled_state(case)) for case in cases[:4]]
        rows.append(row(CaseState(case_id="OPEN", events=events_of("OPEN", ("accepted",)), judged_at=now,
                                  next_due=now + timedelta(days=3), revision=1)))
        # A newer revision of REOPENED that has not settled (NULL after a value).
        rows.append(row(CaseState(case_id="REOPENED", events=events_of("REOPENED"), judged_at=now,
                                  next_due=now + timedelta(days=1), revision=3)))
        # REWRITTEN: its row without settled_since (written before the column), then the same
        # revision written again with it, later (what a process that finds it settled writes).
        rewritten = row(settled_state("REWRITTEN"))
        rows += [{**rewritten, "settled_since": None}, {**rewritten, "updated_at": now + timedelta(seconds=1)}]
        rows.append(row(settled_state("OTHER-CATALOG"), basis="A"))  # settled, under another catalog
        client.insert_arrow("cases", to_arrow("cases", rows))
        letter = make_letter("clickhouse:alerts", -1, -1, b"REFUSED", b'{"case_id": "REFUSED"}', "store_refused", "x")
        client.insert_arrow("dead_letters", to_arrow("dead_letters", [dead_letter_row(letter, now)]))
        assert rows[0]["settled_since"] is not None and rows[4]["settled_since"] is None
        assert sorted(settled_cases(client, "B")) == ["REWRITTEN", "WHOLE"]
    finally:
        client.close()


def test_a_store_written_before_settled_since_learns_it_on_the_next_run(tmp_path):
    """Case rows written before `cases.settled_since` say nothing of it: the next process loads
    those cases whole, as before, and writes the row of each that it finds settled again, so that
    the process after it leaves them in the store. Nothing else is published."""
    from sinks.clickhouse import connect
    from sinks.queries import settled_cases

    scenario = generate(cases=200, violation_rate=0.05, seed=24, now=NOW)
    catalog, _ = write_inputs(tmp_path, scenario)
    settings = pipeline_settings(tmp_path / "data")
    first, _, _ = asyncio.run(_run(settings, catalog, [as_messages(scenario.events)]))

    def settled_now():
        client = connect(None, tmp_path / "data")
        try:
            return set(settled_cases(client, basis_of(catalog)))
        finally:
            client.close()

    def forget_settled_since():  # as rows written before migrations 0008 and 0009
        client = connect(None, tmp_path / "data")
        try:
            client.command("ALTER TABLE cases UPDATE settled_since = NULL, judged_under = '' WHERE 1 "
                           "SETTINGS mutations_sync = 2")
        finally:
            client.close()

    settled = settled_now()
    assert settled
    # A first run over the store judges every case at the replay's clock, so a case judged last
    # at an earlier event time gets a new row anyway; after it, the store's clocks are the run's.
    forget_settled_since()
    asyncio.run(_run(settings, catalog, [[]]))
    assert settled_now() == settled
    # At the same clock a settled case is judged unchanged, and only its row says it settled.
    forget_settled_since()
    assert settled_now() == set()
    published = []

    third, _, _ = asyncio.run(_run(settings, catalog, [[]], seen=published))  # nothing new, the same clock
    assert settled_now() == settled
    assert published == [0]  # rows written again, no alert published again
    assert identity(third) == identity(first)
    assert sorted((a["alert_id"], a["version"]) for a in third) == sorted((a["alert_id"], a["version"])
                                                                          for a in first)


def test_a_changed_catalog_judges_the_settled_cases_again(tmp_path):
    """Settled cases are left in the store only while the catalog they were judged under is in
    force: after the time limits change, the next run loads and judges every case again (those a
    re-import touches too), and its alerts are those of one run over the same events under the
    new catalog."""
    import yaml

    from sinks.clickhouse import connect
    from sinks.queries import settled_cases

    scenario = generate(cases=200, violation_rate=0.05, seed=25, now=NOW)
    catalog, _ = write_inputs(tmp_path, scenario)
    settings = pipeline_settings(tmp_path / "data")
    first, _, _ = asyncio.run(_run(settings, catalog, [as_messages(scenario.events)]))
    tighter = yaml.safe_load(catalog.read_text(encoding="utf-8"))
    for item in tighter["items"]:  # half the promised time: cases closed in time become late
        item["promised_days"] = max(1, item["promised_days"] // 2)
    changed = tmp_path / "changed.yaml"
    changed.write_text(yaml.safe_dump(tighter, allow_unicode=True, sort_keys=False), encoding="utf-8")
    fresh, _, _ = asyncio.run(_run(pipeline_settings(tmp_path / "fresh"), changed, [as_messages(scenario.events)]))
    assert identity(fresh) != identity(first), "the change must change some settled case's alerts"
    seen = {}

    # Some of the closed cases are imported again: events they hold already, which change nothing.
    closed = sorted({e["case_id"] for e in scenario.events if e["type"] == "closed"})[:40]
    reimport = [e for e in scenario.events if e["case_id"] in closed]

    async def second():
        async with running_pipeline(settings, changed, clock=replay_clock(NOW)) as running:
            seen.update(seeded=set(running.pipeline.store.seeds), settled=set(running.pipeline.store.in_store.at_start))
            await produce(running.bootstrap, settings.case_events_topic, as_messages(reimport))
            await wait_until_processed(running.pipeline, await topic_ends(running), timeout=600)
            with running.pipeline.writer.lock:
                return list(export_alerts(running.client, Scope.everything(), include_withdrawn=True))

    again = asyncio.run(second())
    assert seen["seeded"] == {e["case_id"] for e in scenario.events} and not seen["settled"]
    assert identity(again) == identity(fresh)
    # The rows now record the new catalog: the next process leaves the settled cases in the store.
    client = connect(None, tmp_path / "data")
    try:
        now_settled = set(settled_cases(client, basis_of(changed)))
        assert not settled_cases(client, basis_of(catalog))
    finally:
        client.close()
    client = connect(None, tmp_path / "fresh")
    try:
        assert now_settled == set(settled_cases(client, basis_of(changed))) and set(closed) & now_settled
    finally:
        client.close()


def test_changed_discretion_tiers_judge_the_fines_peers_again(tmp_path, caplog):
    """Found by a black-box test: after the benchmark tiers changed, the next process rebuilt the
    peer groups under the new tiers (fines now outside every tier are no one's peers) but took
    every verdict as sent: the cases kept the outlier cards of the old peers, and lacked the new
    ones, unlike one run under the new catalog. The verdicts judged otherwise are sent to their
    cases; a process under an unchanged catalog sends none. tests/data/outlier_tiers (the
    tester's files): 20 fines of about ¥1,000, 8 of ¥100, one of ¥300; the light tier starts at
    ¥100, then at ¥200."""
    import logging

    data = Path(__file__).resolve().parents[1] / "data" / "outlier_tiers"
    events = [orjson.loads(line) for line in (data / "events.jsonl").read_bytes().splitlines()]
    for before, after in (("cat-r1.yaml", "cat-r2.yaml"), ("cat-r2.yaml", "cat-r1.yaml")):
        store = tmp_path / before
        first, _, _ = asyncio.run(_run(pipeline_settings(store), data / before, [as_messages(events)]))
        fresh, _, _ = asyncio.run(_run(pipeline_settings(tmp_path / f"fresh-{after}"), data / after,
                                       [as_messages(events)]))
        assert identity(fresh) != identity(first), "the change must change some card"
        caplog.clear()
        caplog.set_level(logging.INFO, logger="streams.runtime")
        again, _, _ = asyncio.run(_run(pipeline_settings(store), data / after, [as_messages(events[:1])]))
        assert identity(again) == identity(fresh), (before, after)
        assert "peer verdicts judged otherwise than their cases hold" in caplog.text
        caplog.clear()
        asyncio.run(_run(pipeline_settings(store), data / after, [as_messages(events[:1])]))
        assert "peer verdicts judged otherwise" not in caplog.text


def test_changed_discretion_tiers_reloaded_while_running_judge_the_fines_peers_again(tmp_path, caplog):
    """The same change of tiers, reloaded by a running worker (a worker on a Kafka cluster restores
    its groups from their changelog, not from the store, so it never rebuilds them): the groups
    kept the old flags, and the cases the old peers' cards, until a restart. The reloaded tiers
    judge the groups again, and the cases' outlier cards end as one run under the new catalog gives
    them (these cases have settled and are in the store: their own rules, such as
    discretion_out_of_range, take the new catalog when the next process judges them)."""
    import logging
    import os
    import shutil
    import time

    data = Path(__file__).resolve().parents[1] / "data" / "outlier_tiers"
    events = [orjson.loads(line) for line in (data / "events.jsonl").read_bytes().splitlines()]
    fresh, _, _ = asyncio.run(_run(pipeline_settings(tmp_path / "fresh"), data / "cat-r2.yaml",
                                   [as_messages(events)]))
    fresh = outliers(fresh)
    catalog = tmp_path / "catalog.yaml"
    shutil.copyfile(data / "cat-r1.yaml", catalog)

    async def reloaded() -> tuple[list, list]:
        settings = pipeline_settings(tmp_path / "store")
        async with running_pipeline(settings, catalog, clock=replay_clock(NOW)) as running:
            pipeline = running.pipeline
            await produce(running.bootstrap, settings.case_events_topic, as_messages(events))
            await wait_until_processed(pipeline, await topic_ends(running), timeout=600)
            with pipeline.writer.lock:
                before = outliers(export_alerts(running.client, Scope.everything(), include_withdrawn=True))
            shutil.copyfile(data / "cat-r2.yaml", catalog)
            os.utime(catalog, ns=(time.time_ns(), time.time_ns() + 10 ** 9))  # a stamp the reload sees
            caplog.set_level(logging.INFO, logger="streams.catalog_reload")
            await pipeline.catalog_reload.run()
            deadline = time.monotonic() + 60
            while True:  # the verdicts go to their cases through the verdicts topic, then are written
                await asyncio.sleep(0.5)
                with pipeline.writer.lock:
                    after = outliers(export_alerts(running.client, Scope.everything(), include_withdrawn=True))
                if identity(after) == identity(fresh) or time.monotonic() > deadline:
                    return before, after

    before, after = asyncio.run(reloaded())
    assert identity(before) != identity(fresh), "the change must change some card"
    assert identity(after) == identity(fresh)
    assert "peer verdicts judged otherwise under its benchmark tiers sent to their cases" in caplog.text


def outliers(alerts) -> list[dict]:
    return [a for a in alerts if a["rule"] == Rule.DISCRETION_OUTLIER.value]


def test_a_reloaded_time_limit_judges_the_open_cases_again(tmp_path, caplog):
    """Found by a black-box test: after the catalog lengthened an item's time limit, an open case
    with nothing due kept its red overdue card (and its ticket) until an event of its came or the
    worker restarted. A reload that changes what cases are judged against judges every case the
    worker holds again, at the clock."""
    import logging
    import os
    import time

    import yaml

    from tests.unit.helpers import CONTRACT, LICENCE

    raw = yaml.safe_load((CONTRACT / "catalog.example.yaml").read_text(encoding="utf-8"))
    catalog = tmp_path / "catalog.yaml"
    catalog.write_text(yaml.safe_dump(raw, allow_unicode=True), encoding="utf-8")
    accepted = {"event_id": "T-1", "case_id": "TL-1", "item_code": LICENCE, "type": "accepted",
                "occurred_at": "2026-05-04T10:00:00+08:00", "recorded_at": "2026-05-04T10:00:00+08:00"}

    def open_cards(alerts) -> set[str]:
        return {a["rule"] for a in alerts if a["status"] != "withdrawn" and a["case_id"] == "TL-1"}

    async def run() -> tuple[set, set]:
        settings = pipeline_settings(tmp_path / "store")
        async with running_pipeline(settings, catalog, clock=replay_clock(NOW)) as running:
            pipeline = running.pipeline
            await produce(running.bootstrap, settings.case_events_topic, as_messages([accepted]))
            await wait_until_processed(pipeline, await topic_ends(running), timeout=600)
            with pipeline.writer.lock:
                before = open_cards(export_alerts(running.client, Scope.everything(), include_withdrawn=True))
            longer = {**raw, "items": [{**item, "promised_days": 60} if item["code"] == LICENCE else item
                                       for item in raw["items"]]}
            catalog.write_text(yaml.safe_dump(longer, allow_unicode=True), encoding="utf-8")
            os.utime(catalog, ns=(time.time_ns(), time.time_ns() + 10 ** 9))
            caplog.set_level(logging.WARNING, logger="streams.catalog_reload")
            await pipeline.catalog_reload.run()
            deadline = time.monotonic() + 60
            while True:
                await asyncio.sleep(0.5)
                await pipeline.flush()
                with pipeline.writer.lock:
                    after = open_cards(export_alerts(running.client, Scope.everything(), include_withdrawn=True))
                if "overdue" not in after or time.monotonic() > deadline:
                    return before, after

    before, after = asyncio.run(run())
    assert {"overdue", "deadline_near"} <= before  # ten working days from 05-04 ran out before 06-01
    assert "overdue" not in after and "deadline_near" not in after
    assert "the 1 cases this worker holds are judged again under it" in caplog.text
