"""Faults: the store failing for a while, and hostile input in bulk."""

from __future__ import annotations

import asyncio
from collections import Counter

import orjson
import pytest
from hypothesis import HealthCheck, Phase, given, settings, strategies as st

from sinks.clickhouse import connect
from sinks.queries import export_alerts
from sinks.scope import Scope
from streams import runtime
from streams.broker import EmbeddedBroker, committed_offsets as broker_committed, end_offsets
from streams.runtime import committed_offsets, produce, replay_clock, running_pipeline, topic_ends, \
    wait_until_processed
from tests.integration.conftest import NOW, as_messages, identity, pipeline_settings, read_all, replay, \
    write_inputs


class FailingStore:
    """The real chdb client, whose inserts fail while `failing` is set (as a server that went away)."""

    def __init__(self, client):
        self.client = client
        self.failing = False
        self.refused = 0
        self.poison_case: str | None = None  # case_events rows of this case are refused, as a bad row would be

    def insert_arrow(self, table, data, *args, **kwargs):
        if self.failing:
            self.refused += 1
            raise ConnectionError("ClickHouse is unreachable (injected fault)")
        if table == "case_events" and self.poison_case in data.column("case_id").to_pylist():
            raise ValueError(f"Cannot parse input: a value of case {self.poison_case} (injected fault)")
        return self.client.insert_arrow(table, data, *args, **kwargs)

    def command(self, *args, **kwargs):
        if self.failing:
            raise ConnectionError("ClickHouse is unreachable (injected fault)")
        return self.client.command(*args, **kwargs)

    def __getattr__(self, name):
        return getattr(self.client, name)


@pytest.fixture
def failing_store(monkeypatch):
    """The store the pipeline opens, wrapped in a `FailingStore`."""
    store: list[FailingStore] = []
    real_connect = runtime.connect

    def connect(*args, **kwargs):
        store.append(FailingStore(real_connect(*args, **kwargs)))
        return store[-1]

    monkeypatch.setattr(runtime, "connect", connect)
    return store


def stored_events(client) -> int:
    return client.query("SELECT count() FROM case_events FINAL").result_rows[0][0]


def test_a_failing_store_holds_the_stream_back_and_loses_nothing(scenario, baseline, tmp_path, failing_store):
    expected = baseline[0]
    catalog, _ = write_inputs(tmp_path, scenario)
    messages = as_messages(scenario.events)
    half = len(messages) // 2
    settings = pipeline_settings(tmp_path / "data", sink_max_pending_rows=300, flush_rows=100)

    async def run():
        async with running_pipeline(settings, catalog, clock=replay_clock(NOW)) as running:
            pipeline, client = running.pipeline, running.client
            # First half with a healthy store.
            ends = await produce(running.bootstrap, settings.case_events_topic, messages[:half])
            while any(pipeline.progress.processed_offsets.get(p, -1) < end - 1 for p, end in ends.items()):
                await asyncio.sleep(0.05)
            while not await pipeline.flush():
                await asyncio.sleep(0.1)
            with pipeline.writer.lock:
                written_before = stored_events(client.client)
            assert written_before == half

            # The store goes away; the second half arrives.
            client.failing = True
            await produce(running.bootstrap, settings.case_events_topic, messages[half:])
            loop = asyncio.get_running_loop()
            deadline = loop.time() + 120
            while pipeline.writer.failures < 3 or not pipeline.writer.over_capacity:
                assert loop.time() < deadline, "the sink never reached its pending-row limit"
                await asyncio.sleep(0.1)
            # Backpressure: the stream stops taking messages instead of buffering without bound
            # (the message in hand when the limit was reached is finished first).
            await asyncio.sleep(1.0)
            taken = dict(pipeline.progress.processed_offsets)
            await asyncio.sleep(2.0)
            assert pipeline.progress.processed_offsets == taken
            # Each agent checks the limit after each case of a unit, so the buffer passes it by at most
            # one case's rows per agent: the case agent's (its events, its case row, its alerts, a
            # dead letter) and the ticket agent's (a red alert's ticket: a row per version, opened
            # and two escalation levels, and a notice for each).
            red = Counter(a["case_id"] for a in expected if a["severity"] == "red")
            most = 2 + max(Counter(e["case_id"] for e in scenario.events).values()) \
                + max(Counter(a["case_id"] for a in expected).values()) + 6 * max(red.values(), default=0)
            assert pipeline.writer.pending_rows <= settings.sink_max_pending_rows + most
            # Units are counted as taken once done: the one held back is in the buffer, not yet taken.
            processed = sum(o + 1 for o in taken.values())
            assert half <= processed < len(messages)
            assert pipeline.writer.pending_rows >= settings.sink_max_pending_rows
            # No offset is committed past what was written.
            await asyncio.sleep(2 * pipeline.app.conf.broker_commit_interval)
            committed = await committed_offsets(pipeline, running.bootstrap)
            assert sum(committed.values()) <= half
            with pipeline.writer.lock:
                assert stored_events(client.client) == half

            # The store comes back: everything buffered and everything held back is written.
            client.failing = False
            await wait_until_processed(pipeline, await topic_ends(running), timeout=300)
            with pipeline.writer.lock:
                alerts = list(export_alerts(client.client, Scope.everything(), include_withdrawn=True))
                events = stored_events(client.client)
            return alerts, events, client.refused

    alerts, events, refused = asyncio.run(run())
    assert refused >= 3
    assert events == len(messages)
    assert identity(alerts) == identity(expected)


@pytest.fixture
def dropping_faust(monkeypatch):
    """Faust's consumer, made to lose chosen fetched batches once, as it does in a rebalance: a
    unit holding one of the chosen offsets never reaches its agent.

    Returns the set of (topic, partition, offset) to drop, and the list of every position lost."""
    from faust.transport import consumer as faust_consumer

    real = faust_consumer.Consumer.getmany
    drop: set[tuple[str, int, int]] = set()
    dropped: list[tuple[str, int, int]] = []

    async def getmany(self, timeout):
        async for tp, message in real(self, timeout):
            records = message.value if isinstance(message.value, list) else [message]
            positions = [(tp.topic, tp.partition, r.offset) for r in records]
            if drop.intersection(positions):
                drop.difference_update(positions)
                dropped.extend(positions)
                continue
            yield tp, message

    monkeypatch.setattr(faust_consumer.Consumer, "getmany", getmany)
    return drop, dropped


def test_messages_faust_fails_to_deliver_are_read_directly_and_nothing_is_lost(scenario, baseline, tmp_path,
                                                                               dropping_faust):
    from streams.metrics import REGISTRY

    expected = baseline[0]
    catalog, _ = write_inputs(tmp_path, scenario)
    settings = pipeline_settings(tmp_path / "data")
    drop, dropped = dropping_faust
    targets = {(settings.case_events_topic, 0, 10), (settings.case_events_topic, 0, 11),
               (settings.case_events_topic, 1, 0), (settings.ticks_topic, 1, 3), (settings.peers_topic, 0, 1)}
    drop.update(targets)

    def gaps(topic):
        return REGISTRY.get_sample_value("sunlight_offset_gaps_total", {"topic": topic}) or 0.0

    before = {topic: gaps(topic) for topic, _, _ in targets}
    with EmbeddedBroker() as broker:
        alerts, progress = replay(settings, catalog, as_messages(scenario.events), broker=broker)
        committed = asyncio.run(broker_committed(broker.bootstrap, settings.app_id, settings.case_events_topic,
                                                 settings.partitions))
        ends = asyncio.run(end_offsets(broker.bootstrap, settings.case_events_topic, True))
    assert targets <= set(dropped) and drop == set()  # Faust's consumer really left these out
    for topic in {t for t, _, _ in targets}:  # every lost message noticed as a hole, and read
        assert gaps(topic) - before[topic] == sum(1 for t, _, _ in dropped if t == topic)
    assert progress.events_new == len(scenario.events)
    assert identity(alerts) == identity(expected)
    assert committed == ends  # every message committed, none held back by a hole


def test_rows_the_store_refuses_go_to_the_dead_letter_topic_and_the_rest_flows(scenario, baseline, tmp_path,
                                                                                failing_store):
    """A row ClickHouse refuses for good (while it accepts the others) is isolated and dead-lettered."""
    expected = baseline[0]
    catalog, _ = write_inputs(tmp_path, scenario)
    poison = scenario.events[len(scenario.events) // 3]["case_id"]
    poison_events = {e["event_id"] for e in scenario.events if e["case_id"] == poison}
    settings = pipeline_settings(tmp_path / "data", flush_rows=200)

    async def run():
        async with running_pipeline(settings, catalog, clock=replay_clock(NOW)) as running:
            running.client.poison_case = poison
            await produce(running.bootstrap, settings.case_events_topic, as_messages(scenario.events))
            await wait_until_processed(running.pipeline, await topic_ends(running), timeout=300)
            with running.pipeline.writer.lock:
                alerts = list(export_alerts(running.client.client, Scope.everything(), include_withdrawn=True))
                stored = {r[0] for r in running.client.client.query(
                    "SELECT event_id FROM case_events FINAL").result_rows}
            letters = await read_all(running.bootstrap, settings.dlq_topic)
            return alerts, stored, letters

    alerts, stored, letters = asyncio.run(run())
    letters = [orjson.loads(r.value) for r in letters]
    assert letters and {letter["reason"] for letter in letters} == {"store_refused"}
    assert {orjson.loads(letter["payload"])["event_id"] for letter in letters} == poison_events
    assert all(letter["topic"] == "clickhouse:case_events" and "injected fault" in letter["error"]
               for letter in letters)
    assert stored == {e["event_id"] for e in scenario.events} - poison_events
    assert identity(alerts) == identity(expected)


# -- hostile input -----------------------------------------------------------------------------

HOSTILE_COUNT = 10_000
VALID = {"event_id": "E1", "case_id": "H1", "item_code": "320200-XK-SCJG-0001", "type": "accepted",
         "occurred_at": "2026-03-02T09:00:00+08:00", "recorded_at": "2026-03-02T09:00:00+08:00",
         "channel": "online"}
WRONG_TYPES = st.one_of(st.integers(-2**63, 2**63 - 1), st.floats(allow_nan=False), st.booleans(), st.none(),
                        st.lists(st.integers(0, 9), max_size=3), st.dictionaries(st.text(max_size=3), st.integers(0, 9),
                                                                              max_size=2))


KINDS = [(100, "not_json"), (200, "invalid_utf8"), (280, "not_object"), (430, "wrong_type"), (530, "missing"),
         (580, "huge_field"), (585, "too_large"), (680, "year_9999"), (760, "bad_time"), (860, "unknown_item"),
         (920, "backwards"), (1000, "bad_attrs")]


@st.composite
def hostile_message(draw) -> tuple[bytes, set[str]]:
    """One message the pipeline must refuse, and the reasons it may give."""
    # Weighted so that the few messages of a megabyte stay few (the broker keeps them in memory).
    roll = draw(st.randoms(use_true_random=False)).randrange(1000)
    kind = next(name for limit, name in KINDS if roll < limit)
    event = dict(VALID, event_id=f"X{draw(st.integers(0, 10**9))}", case_id=f"H{draw(st.integers(0, 10**6))}")
    if kind == "not_json":
        text = draw(st.text(min_size=1, max_size=200))
        raw = ("{" + text).encode("utf-8", "surrogatepass")
        try:
            orjson.loads(raw)
            raw = b"{" + raw
        except orjson.JSONDecodeError:
            pass
        return raw, {"invalid_json", "invalid_utf8"}
    if kind == "invalid_utf8":
        good = orjson.dumps(event)
        at = draw(st.integers(1, len(good) - 2))
        junk = draw(st.sampled_from([b"\xff", b"\xc3\x28", b"\xed\xa0\x80", b"\xf8\x88\x80\x80\x80", b"\x80"]))
        return good[:at] + junk + good[at:], {"invalid_utf8", "invalid_json"}
    if kind == "not_object":
        value = draw(st.one_of(st.integers(-2**63, 2**63 - 1), st.text(max_size=50), st.lists(st.integers(0, 9), max_size=5),
                               st.none(), st.booleans()))
        return orjson.dumps(value), {"schema"}
    if kind == "wrong_type":
        field = draw(st.sampled_from(["event_id", "case_id", "item_code", "type", "occurred_at", "recorded_at",
                                      "node", "officer_id", "department", "channel", "attrs"]))
        value = draw(WRONG_TYPES.filter(lambda v: not (field == "attrs" and isinstance(v, dict))))
        event[field] = value
        return orjson.dumps(event), {"schema", "bad_time"}
    if kind == "missing":
        for field in draw(st.sets(st.sampled_from(["event_id", "case_id", "item_code", "type", "occurred_at",
                                                    "recorded_at"]), min_size=1)):
            event.pop(field)
        return orjson.dumps(event), {"schema", "bad_time"}
    if kind == "huge_field":
        field = draw(st.sampled_from(["event_id", "case_id", "item_code", "officer_id", "department", "node",
                                      "region", "attrs"]))
        size = draw(st.integers(20_000, 200_000))
        filler = draw(st.sampled_from(["x", "案", "\U0001F600"])) * size
        # Over 16 KiB of attrs in a list (a long text alone is cut to fit, not refused: an opinion)
        event[field] = {"scan": [filler]} if field == "attrs" else filler
        return orjson.dumps(event), {"schema"}
    if kind == "too_large":  # over a megabyte (under the broker's limit), and no long text that can be cut
        event["attrs"] = {"scan": ["x" * draw(st.integers(1_000_001, 1_040_000))]}
        return orjson.dumps(event), {"schema"}
    if kind == "year_9999":
        field = draw(st.sampled_from(["occurred_at", "recorded_at"]))
        event[field] = draw(st.sampled_from(["9999-12-31T23:59:59+08:00", "9999-01-01T00:00:00Z",
                                             "0001-01-01T00:00:00+00:00", "1900-02-28T12:00:00+08:00"]))
        return orjson.dumps(event), {"impossible_time"}
    if kind == "bad_time":
        event["occurred_at"] = draw(st.sampled_from(["2026-02-30T09:00:00+08:00", "2026-03-02T09:00:00",
                                                     "yesterday", "2026-13-01T00:00:00Z", "", "2026-03-02T25:00Z"]))
        return orjson.dumps(event), {"bad_time"}
    if kind == "unknown_item":
        event["item_code"] = "NO-SUCH-" + draw(st.text(alphabet="ABCDEFG0123456789", min_size=1, max_size=20))
        return orjson.dumps(event), {"unknown_item"}
    if kind == "backwards":
        event["recorded_at"] = "2026-02-01T09:00:00+08:00"  # registered a month before it happened
        return orjson.dumps(event), {"impossible_time"}
    # bad_attrs
    event["type"] = "decided"
    event["attrs"] = draw(st.sampled_from([{"penalty_amount": -5}, {"penalty_amount": "lots"},
                                           {"decision": "maybe"}, {"promised_days": 99999},
                                           {"penalty_amount": True}, {"rating": "meh"}]))
    return orjson.dumps(event), {"schema"}


def hostile_messages(count: int) -> list[tuple[bytes, set[str]]]:
    collected: list[tuple[bytes, set[str]]] = []

    @settings(max_examples=count, database=None, deadline=None, phases=[Phase.generate],
              suppress_health_check=list(HealthCheck))
    @given(hostile_message())
    def collect(message):
        collected.append(message)

    collect()
    return collected[:count]


def test_ten_thousand_hostile_messages_all_reach_the_dead_letter_topic(scenario, baseline, tmp_path):
    hostile = hostile_messages(HOSTILE_COUNT)
    assert len(hostile) == HOSTILE_COUNT
    expected, _, _, _ = baseline
    catalog, _ = write_inputs(tmp_path, scenario)
    valid = as_messages(scenario.events)
    # Interleave: each valid event among the hostile ones, in order.
    messages = []
    step = max(1, HOSTILE_COUNT // len(valid))
    hostile_iter = iter(enumerate(hostile))
    for message in valid:
        messages.append(message)
        for _ in range(step):
            item = next(hostile_iter, None)
            if item is not None:
                messages.append((f"hostile-{item[0]}".encode(), item[1][0]))
    messages += [(f"hostile-{n}".encode(), raw) for n, (raw, _) in hostile_iter]
    alerts, progress, letters = replay(pipeline_settings(tmp_path / "data"), catalog, messages,
                                       read_topic="case-events-dlq")
    assert progress.dead_letters == HOSTILE_COUNT
    assert len(letters) == HOSTILE_COUNT
    wrong = []
    for record in letters:
        letter = orjson.loads(record.value)
        number = int(letter["key"].removeprefix("hostile-"))
        if letter["reason"] not in hostile[number][1] or not letter["error"]:
            wrong.append((letter["reason"], hostile[number][1], letter["error"][:100]))
    assert not wrong, wrong[:10]
    assert {orjson.loads(r.value)["key"] for r in letters} == {f"hostile-{n}" for n in range(HOSTILE_COUNT)}
    # The valid events around them are unaffected: the same alerts as the clean run.
    assert progress.events_new == len(valid)
    assert identity(alerts) == identity(expected)


def test_a_worker_stopped_while_the_store_is_down_stops_and_redelivers_later(scenario, tmp_path, failing_store):
    """Stopping cannot wait for rows that cannot be written: it stops, commits nothing unwritten,
    and the next start gets those messages again."""

    catalog, _ = write_inputs(tmp_path, scenario)
    messages = as_messages(scenario.events[:300])
    settings = pipeline_settings(tmp_path / "data")

    async def down(broker):
        async with running_pipeline(settings, catalog, clock=replay_clock(NOW), broker=broker) as running:
            running.client.failing = True
            await produce(running.bootstrap, settings.case_events_topic, messages)
            while running.pipeline.writer.failures < 2:
                await asyncio.sleep(0.1)
            # Leave as an error would: the body raises while rows are unwritten.
            raise KeyboardInterrupt

    async def committed(bootstrap):
        return await broker_committed(bootstrap, settings.app_id, settings.case_events_topic, settings.partitions)

    async def up(broker):
        async with running_pipeline(settings, catalog, clock=replay_clock(NOW), broker=broker) as running:
            await wait_until_processed(running.pipeline, await topic_ends(running), timeout=120)
            with running.pipeline.writer.lock:
                stored = {r[0] for r in running.client.client.query(
                    "SELECT event_id FROM case_events FINAL").result_rows}
            return stored, running.pipeline.progress

    with EmbeddedBroker() as broker:
        with pytest.raises(KeyboardInterrupt):
            asyncio.run(asyncio.wait_for(down(broker), timeout=120))
        assert not any(asyncio.run(committed(broker.bootstrap)).values())  # nothing unwritten was committed
        stored, progress = asyncio.run(up(broker))
        after = asyncio.run(committed(broker.bootstrap))
        records = asyncio.run(read_all(broker.bootstrap, settings.case_events_topic))
    # At least once: every message below the committed offset has its row in the store, and
    # whatever is not stored is not committed, so the next start delivers it again.
    by_position = {(r.partition, r.offset): orjson.loads(r.value)["event_id"] for r in records}
    committed_ids = {e for (p, o), e in by_position.items() if o < (after.get(p) or 0)}
    assert committed_ids <= stored, (sorted(committed_ids - stored), after, progress)


def test_a_pipeline_left_with_a_write_in_flight_stops_without_waiting_for_its_acknowledgements(
        scenario, tmp_path, monkeypatch):
    """Left on an error while a write is in flight, the worker stops at once: the messages of that
    write are not committed and come again on the next start. Before, Faust waited for their
    acknowledgements, which only that write could give (the suite once hung so)."""
    import threading
    import time

    from sinks.writer import ClickHouseWriter

    catalog, _ = write_inputs(tmp_path, scenario)
    settings = pipeline_settings(tmp_path / "data")
    release = threading.Event()
    write, close = ClickHouseWriter.write, ClickHouseWriter.close

    def held_write(self, batch):
        release.wait(40)  # a write that takes its time (a slow or stuck store)
        return write(self, batch)

    def closing(self):
        release.set()  # the worker has stopped: let the write end, so that its thread can
        return close(self)

    monkeypatch.setattr(ClickHouseWriter, "write", held_write)
    monkeypatch.setattr(ClickHouseWriter, "close", closing)
    stopped = {}

    async def run():
        async with running_pipeline(settings, catalog, clock=replay_clock(NOW)) as running:
            await produce(running.bootstrap, settings.case_events_topic, as_messages(scenario.events))
            while not running.pipeline.writer.in_flight:
                await asyncio.sleep(0.05)
            stopped["from"] = time.monotonic()
            raise RuntimeError("the replay gives up")

    with pytest.raises(RuntimeError, match="gives up"):
        asyncio.run(run())
    release.set()
    assert time.monotonic() - stopped["from"] < 20


def test_a_unit_that_finishes_while_the_worker_stops_is_written_and_the_stop_ends(scenario, tmp_path, monkeypatch):
    """A unit still being processed when the worker is asked to stop finishes meanwhile: Faust has
    stopped the timers (the flush among them) and waits for its acknowledgement, which only a
    flush gives. The stop writes it and ends; before, it waited for ever (a live worker's tick
    taken at the end once hung the suite so). A watchdog flushes after 20 s to end the test."""
    import time

    from streams.steps import CaseSteps

    catalog, _ = write_inputs(tmp_path, scenario)
    settings = pipeline_settings(tmp_path / "data")
    case_id = scenario.events[0]["case_id"]
    events = [e for e in scenario.events if e["case_id"] == case_id]
    entered, released = asyncio.Event(), asyncio.Event()
    process = CaseSteps.process

    async def held(self, unit, decoded):
        if case_id in decoded.cases and not released.is_set():
            entered.set()
            await released.wait()  # still being processed when the stop begins
        return await process(self, unit, decoded)

    monkeypatch.setattr(CaseSteps, "process", held)
    took = {}

    async def run():
        loop = asyncio.get_running_loop()
        async with running_pipeline(settings, catalog, clock=replay_clock(NOW)) as running:
            await produce(running.bootstrap, settings.case_events_topic, as_messages(events))
            await asyncio.wait_for(entered.wait(), 60)
            pipeline = running.pipeline
            loop.call_later(0.5, released.set)
            watchdog = loop.call_later(20, lambda: (took.setdefault("watchdog", True),
                                                     asyncio.ensure_future(pipeline.flush())))
            took["from"] = time.monotonic()
        took["stop"] = time.monotonic() - took["from"]
        watchdog.cancel()

    asyncio.run(run())
    assert "watchdog" not in took and took["stop"] < 10, took
    client = connect(None, tmp_path / "data")
    try:
        written = client.query("SELECT count() FROM case_events FINAL WHERE case_id = {c:String}",
                               parameters={"c": case_id}).result_rows[0][0]
    finally:
        client.close()
    assert written == len(events)  # the unit finished during the stop was written


def test_a_worker_whose_store_fails_after_sigterm_stops_and_redelivers_later(scenario, tmp_path, failing_store,
                                                                             monkeypatch):
    """SIGTERM with units taken and not yet written, the store healthy: the stop writes them while
    Faust waits for their acknowledgements. If the store fails right then, no flush can give those
    acknowledgements: the stop ends anyway (before, it waited for ever), commits nothing unwritten,
    and the next start gets the rest."""
    import os
    import signal
    import time

    catalog, _ = write_inputs(tmp_path, scenario)
    messages = as_messages(scenario.events[:300])
    # No timer flush while the units are taken: their rows wait for the stop's own flush.
    settings = pipeline_settings(tmp_path / "data", flush_interval=60.0)
    stop_worker = runtime._stop_worker

    async def store_fails_as_the_stop_begins(pipeline, worker):
        failing_store[0].failing = True  # the writer's client (the reader's opens after it)
        await stop_worker(pipeline, worker)

    monkeypatch.setattr(runtime, "_stop_worker", store_fails_as_the_stop_begins)
    took = {}

    async def terminated(broker):
        async with running_pipeline(settings, catalog, clock=replay_clock(NOW), broker=broker) as running:
            pipeline = running.pipeline
            ends = await produce(running.bootstrap, settings.case_events_topic, messages)
            while any(pipeline.progress.taken.get((settings.case_events_topic, p), -1) < end - 1
                      for p, end in ends.items()):
                await asyncio.sleep(0.05)
            assert pipeline.writer.batch.acks and not pipeline.writer.last_error  # taken, unwritten, store healthy
            took["from"] = time.monotonic()
            os.kill(os.getpid(), signal.SIGTERM)
            while not pipeline.stopping:
                await asyncio.sleep(0.05)
            consumer = running.worker.app.consumer  # the watchdog ends a wait that never would, to fail, not hang
            watchdog = asyncio.get_running_loop().call_later(
                30, lambda: (took.setdefault("watchdog", True), consumer._unacked_messages.clear()))
        took["stop"] = time.monotonic() - took["from"]
        watchdog.cancel()

    async def committed(bootstrap):
        return await broker_committed(bootstrap, settings.app_id, settings.case_events_topic, settings.partitions)

    with EmbeddedBroker() as broker:
        asyncio.run(terminated(broker))
        assert "watchdog" not in took and took["stop"] < 20, took
        assert failing_store[0].refused  # the stop's flush did meet the failing store
        assert not any(asyncio.run(committed(broker.bootstrap)).values())  # nothing unwritten was committed
        monkeypatch.setattr(runtime, "_stop_worker", stop_worker)

        async def up():
            async with running_pipeline(settings, catalog, clock=replay_clock(NOW), broker=broker) as running:
                await wait_until_processed(running.pipeline, await topic_ends(running), timeout=120)
                with running.pipeline.writer.lock:
                    return Counter(r[0] for r in running.client.client.query(
                        "SELECT event_id FROM case_events FINAL").result_rows)

        stored = asyncio.run(up())
    assert sorted(stored) == sorted({orjson.loads(m[1])["event_id"] for m in messages})
    assert set(stored.values()) == {1}
