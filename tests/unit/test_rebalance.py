"""What a worker holds after a rebalance, in its real Pipeline (no broker): the tables let go of the
partitions it no longer holds once assigned others (`Pipeline.forget_unassigned`), and the deadline
index of an assignment is rebuilt once that assignment's partitions are recovered
(`Pipeline._on_assigned`, `streams.faust_patches.recovery_begins`).

Found by a review of Faust's memory store (faust-streaming 0.15.3): it drops only the keys it
recovered from a changelog, and only once the next recovery is over, so every state a worker
wrote stayed in its table after its partition went to another worker; and Faust's recovery sets
`completed` once, at the first recovery, so every later index was rebuilt before its recovery."""

from __future__ import annotations

import asyncio
from dataclasses import replace
from datetime import timedelta
from types import SimpleNamespace

from aiokafka import TopicPartition

from alerts.peers import PenaltyFact, group_key, seed_group
from streams.app import Pipeline
from streams.catalog_source import CatalogSource
from streams.clock import WallClock
from streams.codec import encode_state
from streams.settings import Settings
from streams.steps import home_partition
from streams.store import held_keys
from streams.tickets import CaseTickets
from tests.unit.helpers import CONTRACT, PENALTY, at, ev, run


async def _nothing(*args, **kwargs) -> bool:
    return True


def pipeline(tmp_path) -> Pipeline:
    """A worker's pipeline of two partitions, holding both; nothing reaches a broker or a store."""
    settings = Settings(data_dir=tmp_path, partitions=2)
    writer = SimpleNamespace(full=False, over_capacity=False)
    worker = Pipeline(settings, "127.0.0.1:9", CatalogSource(CONTRACT / "catalog.example.yaml"), writer, WallClock(),
                      True)
    worker.flush = _nothing
    worker.outbox.send = _nothing  # what is written stays in `outbox.pending`, to be looked at
    worker.delivery.on_assigned(partitions(worker, {0, 1}), 0.0)
    # No standby copies: the tables let go of every partition not assigned (`forget_unassigned`),
    # which would drop a standby's keys while Faust kept reading its changelog.
    assert worker.app.conf.table_standby_replicas == 0
    return worker


def partitions(worker: Pipeline, numbers: set[int]) -> set[TopicPartition]:
    return {TopicPartition(topic, n) for topic in worker.agent_topics for n in numbers}


def case_in(partition: int) -> str:
    return next(f"C-{n}" for n in range(100) if home_partition(f"C-{n}", 2) == partition)


def violation_in(partition: int) -> str:
    return next(f"V{n}" for n in range(100) if home_partition(group_key(PENALTY, f"V{n}"), 2) == partition)


def open_case(case_id: str):
    """An accepted licence: its deadline is due (`next_due`)."""
    state = run([ev("accepted", at(2026, 3, 2), case=case_id)], at(2026, 3, 2, 11))
    assert state.next_due is not None
    return state


def write_both_partitions(worker: Pipeline) -> dict[int, dict[str, str]]:
    """A case, its tickets, a peer group and a notice in each partition, written as the agents write
    them (into the table's data, and the changelog), not recovered; by partition, each table's key."""
    keys = {}
    for partition in (0, 1):
        case_id, violation = case_in(partition), violation_in(partition)
        state = open_case(case_id)
        asyncio.run(worker.store.put(state, partition, encode_state(state, partition)))
        worker.ticket_store.put(CaseTickets(case_id), partition)
        facts = [PenaltyFact(f"{case_id}-{n}", f"E{n}", PENALTY, violation, 1000.0 + n,
                             at(2026, 3, 2) + timedelta(hours=n)) for n in range(3)]
        worker.groups.put(seed_group(facts), partition)
        notice_id = f"{case_id}/overdue/opened"
        worker.notice_log.finish(notice_id, "sent", 1, partition)
        keys[partition] = {"cases": case_id, "tickets": case_id, "peers": group_key(PENALTY, violation),
                           "notices": notice_id}
    worker.outbox.pending.clear()  # sent
    worker.store.written.clear()
    return keys


def held(worker: Pipeline) -> dict[str, set[str]]:
    return {"cases": set(worker.table.data.keys()), "tickets": set(worker.tickets_table.data.keys()),
            "peers": set(worker.peers.data.keys()), "notices": set(worker.notice_table.data.keys())}


def test_a_partition_revoked_leaves_the_tables_and_nothing_of_it_is_judged_or_written_here(tmp_path):
    worker = pipeline(tmp_path)
    keys = write_both_partitions(worker)
    assert held(worker) == {table: {keys[0][table], keys[1][table]} for table in keys[0]}

    async def revoke_then_assign():
        await worker._on_revoked(None, partitions(worker, {1}))
        await worker._on_assigned(None, partitions(worker, {0}))
        worker.app.tables.recovery.completed.set()  # this assignment's recovery (partition 0: nothing new)
        for _ in range(50):
            if worker.index_ready:
                break
            await asyncio.sleep(0.02)

    asyncio.run(revoke_then_assign())
    # Partition 1 went to another worker: none of its keys stays here.
    assert held(worker) == {table: {keys[0][table]} for table in keys[0]}
    # The deadlines indexed again are of the cases held (the other's were ticked on stale deadlines).
    assert worker.index_ready
    assert keys[0]["cases"] in worker.index and keys[1]["cases"] not in worker.index
    # A catalog reload judges again the cases held, and their peer groups only.
    worker.index.drop_partitions({0, 1})
    assert worker.catalog_reload.judge_cases_again() == 1 and keys[0]["cases"] in worker.index
    assert held_keys(worker.groups) == [keys[0]["peers"]]
    judge = worker.catalog_source.judge
    before = SimpleNamespace(config=replace(judge.config, outlier_margin=judge.config.outlier_margin + 0.5))
    asyncio.run(worker.catalog_reload.rejudge_groups(before))
    changelog = worker.peers.changelog_topic.get_topic_name()
    written = {partition: [key for key, _, _ in records] for (topic, partition), records in worker.outbox.pending.items()
               if topic == changelog}
    # The group held is written again; the other worker's is not overwritten with this one's stale copy.
    assert list(written) == [0], written


def test_a_rebalance_that_revokes_every_partition_keeps_those_assigned_again(tmp_path):
    """aiokafka's rebalance is eager: the revocation names every partition the worker held, those
    it is given again too. Their keys stay (the recovery of a partition kept reads its changelog
    from where it had read, not from the start: a key dropped at the revocation would be lost)."""
    worker = pipeline(tmp_path)
    keys = write_both_partitions(worker)

    async def rebalance():
        await worker._on_revoked(None, partitions(worker, {0, 1}))
        await worker._on_assigned(None, partitions(worker, {0}))

    asyncio.run(rebalance())
    assert held(worker) == {table: {keys[0][table]} for table in keys[0]}


def test_the_index_of_a_later_assignment_is_rebuilt_once_its_partitions_are_recovered(tmp_path):
    worker = pipeline(tmp_path)
    recovery = worker.app.tables.recovery
    recovery.completed.set()  # the first assignment's recovery, long over
    given = case_in(1)

    async def assigned_again():
        await worker._on_assigned(None, partitions(worker, {0, 1}))  # partition 1 given back
        await asyncio.sleep(0.3)
        rebuilt_early = worker.index_ready
        # The recovery reads partition 1's changelog into the table, then completes.
        state = open_case(given)
        worker.table.data[given] = encode_state(state, 1)
        recovery.completed.set()
        for _ in range(50):
            if worker.index_ready:
                break
            await asyncio.sleep(0.02)
        return rebuilt_early

    assert not asyncio.run(assigned_again()), "the index was rebuilt before the partitions given were recovered"
    assert worker.index_ready and given in worker.index


def test_a_rebuild_overtaken_by_the_next_rebalance_indexes_no_partition_on_its_way_out(tmp_path):
    """The recovery of an assignment can end after the next revocation has come (found by review):
    its rebuild, still waiting, then indexed every case of the table, those of the partitions
    going to another worker too, whose ticks the next assignment's rebuild never took back."""
    worker = pipeline(tmp_path)
    keys = write_both_partitions(worker)
    recovery = worker.app.tables.recovery

    async def overtaken():
        await worker._on_assigned(None, partitions(worker, {0, 1}))  # its recovery not over yet
        await worker._on_revoked(None, partitions(worker, {0, 1}))  # the next rebalance (eager)
        recovery.completed.set()  # the first assignment's recovery ends now
        await asyncio.sleep(0.3)
        await worker._on_assigned(None, partitions(worker, {0}))
        recovery.completed.set()
        for _ in range(50):
            if worker.index_ready:
                break
            await asyncio.sleep(0.02)

    asyncio.run(overtaken())
    assert worker.index_ready
    assert keys[0]["cases"] in worker.index and keys[1]["cases"] not in worker.index


def test_a_silence_expired_early_has_the_tickets_held_here_looked_at_now(tmp_path):
    """The tickets that wait out a silence are due at its end; one expired early (`sunlight
    silences expire`) left them waiting for the old end: the reload of the silences has every case
    whose tickets this worker holds looked at at once (streams.app.Pipeline.reload_silences)."""
    from datetime import datetime, timezone

    from alerts.tickets import Silence, ended_sooner

    worker = pipeline(tmp_path)
    worker.index_ready = True
    case = case_in(1)
    worker.tickets_table.data[case] = b"{}"  # a case whose tickets this worker holds
    silence = Silence("S1", datetime(2030, 1, 1, tzinfo=timezone.utc), "机构调整", department="SCJG")
    worker.silences = (silence,)
    now = datetime(2026, 3, 5, tzinfo=timezone.utc)
    worker.clock = SimpleNamespace(now=lambda partition=None: now)

    async def stored(fn):  # the store's silences: the same, expired
        return (Silence("S1", datetime(2026, 3, 4, tzinfo=timezone.utc), "机构调整", department="SCJG"),)

    worker.writer.run = stored
    asyncio.run(worker.reload_silences())
    assert worker.ticket_index.pop_due(lambda partition: now) == [(case, 1, now)]
    # Unchanged, or only a new silence: nothing is looked at again.
    assert not ended_sooner((silence,), (silence,))
    assert not ended_sooner((), (silence,)) and ended_sooner((silence,), ())


def test_a_long_session_timeout_gets_a_request_timeout_above_it(tmp_path):
    """Found by a black-box test: SUNLIGHT_SESSION_TIMEOUT=120 crashed the worker's consumer
    (Faust: the session timeout cannot be greater than the request timeout, 90 s by default)."""
    settings = Settings(data_dir=tmp_path, partitions=2, session_timeout=120.0)
    worker = Pipeline(settings, "127.0.0.1:9", CatalogSource(CONTRACT / "catalog.example.yaml"),
                      SimpleNamespace(full=False, over_capacity=False), WallClock(), False)
    assert worker.app.conf.broker_request_timeout > worker.app.conf.broker_session_timeout == 120.0
    assert pipeline(tmp_path / "short").app.conf.broker_request_timeout == 90.0  # Faust's default otherwise
