"""When a worker may let go of a case (alerts.retention), and the stored form's answer to the same
question (streams.codec.stored_index_entry), which rebuilds the eviction index after a rebalance."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

from alerts.calendar import WorkCalendar
from alerts.catalog import load_catalog
from alerts.evaluate import Judge, step
from alerts.events import parse_event
from alerts.retention import evict_at, settled_since
from alerts.scenario import generate
from streams.codec import encode_state, stored_index_entry

NOW = datetime(2026, 6, 1, 12, tzinfo=timezone.utc)


def city_states():
    """Every case of a generated city, judged after each of its events at that event's time."""
    scenario = generate(cases=300, violation_rate=0.05, seed=11, now=NOW)
    judge = Judge(load_catalog(scenario.catalog), WorkCalendar(on_missing_year=lambda year: None))
    states = {}
    for obj in sorted(scenario.events, key=lambda e: e["occurred_at"]):
        event = parse_event(obj)
        outcome = step(states.get(event.case_id), event, judge, event.occurred_at, NOW)
        states[event.case_id] = outcome.state
    return states


def test_only_ended_cases_with_nothing_due_settle_at_their_latest_event():
    states = city_states()
    settled = {c: s for c, s in states.items() if settled_since(s) is not None}
    assert settled and len(settled) < len(states)  # some cases settled, others still open
    for state in states.values():
        since = settled_since(state)
        ended = state.status in ("closed", "withdrawn")
        if since is None:
            assert not ended or state.next_due is not None or state.judged_at is None
        else:
            assert ended and state.next_due is None
            assert since == max(e.occurred_at for e in state.events)


def test_retention_none_keeps_every_case_and_a_retention_counts_from_the_latest_event():
    for state in city_states().values():
        since = settled_since(state)
        assert evict_at(state, None) is None
        assert evict_at(state, timedelta(days=30)) == (since + timedelta(days=30) if since else None)


def test_the_stored_form_gives_the_same_answer_as_the_state():
    for state in city_states().values():
        partition, next_due, since = stored_index_entry(encode_state(state, 3))
        assert partition == 3
        assert next_due == (state.next_due.isoformat() if state.next_due else None)
        assert since == settled_since(state)


def test_a_case_in_the_hands_of_a_unit_is_not_let_go():
    """A unit asks for its cases (bring_back), then may wait between them while a flush lets
    settled cases go: none of its cases may leave before the unit is done with it."""
    import asyncio
    from types import SimpleNamespace

    from streams.store import CaseStore

    table = SimpleNamespace(data={"C1": b"state-1", "C2": b"state-2"})
    deleted = []
    store = CaseStore(table, write=lambda *a: None, cache_size=10, delete=lambda key, p: (deleted.append(key),
                                                                                         table.data.pop(key)))
    asyncio.run(store.bring_back(["C1"]))
    assert store.evict("C1", 0, table.data["C1"]) is False
    assert store.evict("C2", 0, table.data["C2"]) is True
    store.in_hand = set()
    assert store.evict("C1", 0, b"another state") is False  # changed since it was found settled
    assert store.evict("C1", 0, table.data["C1"]) is True
    assert deleted == ["C2", "C1"] and table.data == {}


def test_a_case_a_tick_is_on_its_way_to_is_not_let_go_until_the_tick_is_taken():
    """Its tick would read it back from the store (streams.app.Pipeline.fire_due notes it)."""
    from types import SimpleNamespace

    from streams.store import CaseStore

    table = SimpleNamespace(data={"C1": b"state-1"})
    store = CaseStore(table, write=lambda *a: None, cache_size=10, delete=lambda key, p: table.data.pop(key))
    store.ticked.add("C1")
    assert store.awaited("C1") and store.evict("C1", 0, table.data["C1"]) is False
    store.ticked.discard("C1")
    assert not store.awaited("C1") and store.evict("C1", 0, table.data["C1"]) is True


def test_a_case_the_store_would_give_back_under_another_department_never_settles():
    """The store keeps an event naming no department under its item's: a case whose first event
    names none while a later one names a department would come back relabelled."""
    from dataclasses import replace

    state = next(s for s in city_states().values() if settled_since(s) is not None)
    first, *rest = state.events
    unnamed = state.evolve(events=(replace(first, department=None), *rest))
    assert any(e.department for e in rest)
    assert settled_since(unnamed) is None
    assert stored_index_entry(encode_state(unnamed, 0))[2] is None
    nameless = state.evolve(events=tuple(replace(e, department=None) for e in state.events))
    assert settled_since(nameless) == settled_since(state)  # every label comes from the item: alike


def test_a_case_read_back_is_written_and_published_again_on_a_redelivery():
    """A case read back from the store is not taken as 'rows already stored': its alerts may not
    have reached the topic before a crash while its tombstone did."""
    import asyncio
    from types import SimpleNamespace

    from streams.store import CaseStore

    state = next(iter(city_states().values()))
    table = SimpleNamespace(data={})

    async def load(case_ids):
        return {state.case_id: state}

    store = CaseStore(table, write=lambda key, stored, p: table.data.__setitem__(key, stored), cache_size=10)
    store.load = load
    asyncio.run(store.bring_back([state.case_id]))
    assert asyncio.run(store.get(state.case_id, 0)) is state
    assert state.case_id not in store.from_store and store.brought_back == 1


def test_a_seeded_store_remembers_a_bounded_number_of_cases_let_go_then_asks_for_every_miss(monkeypatch):
    """With a fresh embedded broker only the cases this process let go are asked of the store;
    their ids were kept without end. Past the bound they are forgotten, and every case the table
    lacks is asked, so a case let go before the switch still comes back."""
    import asyncio
    from types import SimpleNamespace

    from streams import store as store_module
    from streams.store import CaseStore

    monkeypatch.setattr(store_module, "LET_GO_REMEMBERED", 3)
    table = SimpleNamespace(data={f"C{n}": b"state-%d" % n for n in range(6)})
    asked: list[list[str]] = []

    async def load(case_ids):
        asked.append(sorted(case_ids))
        return {}

    store = CaseStore(table, write=lambda *a: None, cache_size=10, delete=lambda key, p: table.data.pop(key))
    store.load, store.in_store.seeded = load, True
    for n in range(3):
        assert store.evict(f"C{n}", 0, table.data[f"C{n}"])
    asyncio.run(store.bring_back(["C0", "new"]))
    assert asked == [["C0"]] and store.in_store.let_go == {"C0", "C1", "C2"}  # a new case is not asked
    assert store.evict("C3", 0, table.data["C3"])  # the fourth: past the bound
    assert store.in_store.let_go == set() and not store.in_store.seeded
    asyncio.run(store.bring_back(["C1", "new", "C5"]))
    assert asked[-1] == ["C1", "new"]  # every miss; C5 is in the table


def test_a_seeded_store_reads_a_case_back_once_until_it_is_taken_and_a_settled_one_as_a_seed_from_the_store():
    """A case let go is read back for a unit; one whose unit failed before taking it is held as a
    seed, and a later unit's case is not asked of the store again (as on a cluster, and as the
    tickets do). A case that had settled in the store at start comes back as a seed whose rows are
    in the store; one this process let go, as a case read back (written again on a redelivery)."""
    import asyncio
    from types import SimpleNamespace

    from streams.store import CaseStore

    states = iter(city_states().values())
    let_go, settled = next(states), next(states)
    table = SimpleNamespace(data={let_go.case_id: b"state"})
    asked: list[list[str]] = []

    async def load(case_ids):
        asked.append(sorted(case_ids))
        return {s.case_id: s for s in (let_go, settled) if s.case_id in case_ids}

    store = CaseStore(table, write=lambda *a: None, cache_size=10, delete=lambda key, p: table.data.pop(key))
    store.seed({}, {settled.case_id})
    store.load = load
    assert store.evict(let_go.case_id, 0, table.data[let_go.case_id])
    asyncio.run(store.bring_back([let_go.case_id, settled.case_id, "new"]))
    assert asked == [sorted([let_go.case_id, settled.case_id])]
    assert store.read_back == {let_go.case_id} and store.in_store.at_start == set()
    asyncio.run(store.bring_back([let_go.case_id, settled.case_id]))  # the first unit took neither
    assert len(asked) == 1 and store.brought_back == 2
