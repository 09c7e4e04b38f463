"""The Faust app: topics, the case and peer-group tables, the agents and their timers.

The case agent consumes two co-partitioned topics, ``case-events`` (the contract's
input) and ``sunlight-case-ticks`` (internal: a timer asking for a case to be
re-judged, or a peer group's verdict on one of the case's decisions). Faust changes a
table only inside stream iteration, so the timers never touch the table: they send a
tick to the partition that holds the case.

For each message the agent converts wire bytes to a domain `CaseEvent` (bad input goes
to ``case-events-dlq`` and to the store's ``dead_letters`` with the reason), runs the
pure `alerts.evaluate.step`, stores the new state in the table, and hands rows and
alerts to the batching sink. A fining decision goes to its peer group (the peer agent,
``sunlight-penalty-peers``), whose verdicts come back to the case. The message is
acknowledged only after the sink has written its rows and its alerts are published, so
Faust never commits an offset past unwritten data.
"""

from __future__ import annotations

import asyncio
from collections import OrderedDict
import logging
from dataclasses import dataclass, field
from datetime import datetime, timezone

import faust
import orjson
from faust.types import Message

from alerts.evaluate import Judge, Outcome, UnknownItem, UnknownNode, evaluate, judge_case, judge_verdict, step
from alerts.detectors.discretion import penalty_of
from alerts.events import CaseEvent, EventType, InvalidEvent, parse_event
from alerts.letters import DeadLetter, make_letter
from alerts.peers import PeerGroup, PenaltyFact, Verdict, add_decision, fact_of, seed_group
from alerts.model import Alert
from alerts.state import CaseState
from sinks.rows import alert_row, case_row, dead_letter_row, event_row
from sinks.writer import Batch, ClickHouseWriter
from streams import broker as broker_mod, faust_fixes, metrics
from streams.catalog_source import CatalogSource
from streams.records import CaseTick
from streams.settings import Settings
from streams.timers import DeadlineIndex

log = logging.getLogger(__name__)

TABLE_NAME = "cases"
PEERS_TABLE = "penalty-peers"
STATE_CACHE_SIZE = 200_000
MAX_MESSAGE_BYTES = 1_000_000
# A case's state is one changelog record, and Kafka refuses records over 1 MB. No real case has
# thousands of events; one that would pass this bound is refused (case_too_large), not stored.
MAX_STATE_BYTES = 900_000
_EPOCH = datetime(1970, 1, 1, tzinfo=timezone.utc)


@dataclass
class Hole:
    """Offsets start..end-1 of a partition that Faust did not deliver, waiting to be read directly."""
    start: int
    end: int
    next_try: float = 0.0  # loop time of the next attempt to read them
    delay: float = 0.5  # doubles with each failed attempt, up to 30 s


class PipelineFailed(RuntimeError):
    """The worker cannot go on (its deadline index could not be rebuilt): it must stop, loudly."""


def encoded(data: dict) -> bytes:
    """A table value: the JSON of a state. orjson's bytes keep its 4 KiB output buffer whatever
    their length, so they are copied to their size before a table holds them."""
    return bytes(memoryview(orjson.dumps(data)))


def decoded(stored) -> dict:
    return orjson.loads(stored)


faust_fixes.apply()


@dataclass
class Progress:
    """What the agent has done, for `replay` to know when everything is processed."""
    case_events_topic: str = "case-events"
    taken: dict[tuple[str, int], int] = field(default_factory=dict)  # (topic, partition) -> last offset
    ticks_sent: int = 0
    verdicts_sent: int = 0
    events_new: int = 0
    events_duplicate: int = 0
    dead_letters: int = 0
    alerts_changed: int = 0

    @property
    def processed_offsets(self) -> dict[int, int]:
        """The last case-events offset processed, by partition."""
        return {p: offset for (topic, p), offset in self.taken.items() if topic == self.case_events_topic}


def utcnow() -> datetime:
    return datetime.now(timezone.utc)


def topic_names(settings: Settings) -> list[tuple[str, int]]:
    """Every topic the app uses, with its partition count (created explicitly: Tansu quirk)."""
    p = settings.partitions
    return [
        (settings.case_events_topic, p), (settings.ticks_topic, p), (settings.alerts_topic, p),
        (settings.dlq_topic, p), (f"{settings.app_id}-{TABLE_NAME}-changelog", p),
        (settings.peers_topic, p), (f"{settings.app_id}-{PEERS_TABLE}-changelog", p),
        (f"{settings.app_id}-__assignor-__leader", 1),
    ]


class Pipeline:
    def __init__(self, settings: Settings, bootstrap: str, catalog: CatalogSource, writer: ClickHouseWriter,
                 clock, tansu: bool):
        self.settings = settings
        self.bootstrap = bootstrap
        self.catalog = catalog
        self.writer = writer
        self.clock = clock
        self.index = DeadlineIndex()
        self.progress = Progress(case_events_topic=settings.case_events_topic)
        self.flush_lock = asyncio.Lock()
        self.fire_lock = asyncio.Lock()
        self.index_ready = False
        self.stopping = False  # set when the worker is asked to stop (a signal, the end of a replay)
        self.failure: BaseException | None = None  # set when the worker cannot go on
        self.failed = asyncio.Event()
        # What the store already holds, by case: the seed of a case's state when the table has
        # none (a fresh embedded broker, see streams.runtime.restore_from_store).
        self.prior_states: dict[str, CaseState] = {}
        self.prior_groups: dict[str, PeerGroup] = {}
        # Cases whose state came from the store and has not changed since: their rows are in the
        # store already, so a redelivery or an unchanged judgement writes and publishes nothing.
        self.from_store: set[str] = set()
        # Cases whose withdrawals wait for the end of a replay's input: case -> partition.
        self.held: dict[str, int] = {}
        # Written batches whose alerts are not all published yet, or whose messages are not acked.
        self.unfinished: list[Batch] = []
        # By topic partition: the next offset expected, and the ranges not yet read (see _missing_before).
        self.next_offsets: dict = {}
        self.holes: dict = {}
        self.start_offsets: dict[str, dict[int, int]] = {}  # by topic, read when first needed
        # Decoded case states of the partitions this worker holds; the table stays the durable copy.
        self.states: OrderedDict[str, CaseState] = OrderedDict()
        # Tansu quirk: group joins wait about half the session timeout, so keep it short there.
        session = settings.session_timeout if tansu else max(settings.session_timeout, 30.0)
        self.app = faust.App(
            settings.app_id,
            broker=f"kafka://{bootstrap}",
            store="memory://",
            datadir=str(settings.data_dir / "faust"),
            topic_partitions=settings.partitions,
            topic_allow_declare=not tansu,  # Tansu quirk: every topic is created explicitly
            processing_guarantee="at_least_once",
            web_enabled=False,
            autodiscover=False,
            consumer_auto_offset_reset="earliest",
            broker_session_timeout=session,
            broker_heartbeat_interval=min(session / 3, 3.0),
            broker_commit_interval=1.0,
            table_standby_replicas=0,
            stream_buffer_maxsize=4096,
            # Table changelogs and alerts are many small records: let them share requests.
            producer_linger=0.005,
            producer_max_batch_size=1_048_576,
        )
        app = self.app
        self.events_topic = app.topic(settings.case_events_topic, settings.ticks_topic,
                                      key_serializer="raw", value_serializer="raw",
                                      partitions=settings.partitions)
        self.ticks_topic = app.topic(settings.ticks_topic, key_serializer="raw", value_type=CaseTick,
                                     partitions=settings.partitions)
        self.alerts_topic = app.topic(settings.alerts_topic, key_serializer="raw", value_serializer="raw",
                                      partitions=settings.partitions)
        self.dlq_topic = app.topic(settings.dlq_topic, key_serializer="raw", value_serializer="raw",
                                   partitions=settings.partitions)
        # Peer groups' verdicts travel on the ticks topic, to the partition of the decision's case.
        self.verdicts_topic = app.topic(settings.ticks_topic, key_serializer="raw", value_serializer="raw",
                                        partitions=settings.partitions)
        # The tables keep each state as its encoded JSON (`value_type=bytes`: the changelog's
        # bytes as they are, the same JSON as before): a third of the memory of the decoded
        # dict. Decoded states of recently used cases sit in `self.states`.
        self.table = app.Table(TABLE_NAME, default=None, partitions=settings.partitions, value_type=bytes)
        self.peers_topic = app.topic(settings.peers_topic, key_serializer="raw", value_serializer="json",
                                     partitions=settings.partitions)
        self.peers = app.Table(PEERS_TABLE, default=None, partitions=settings.partitions, value_type=bytes)
        app.agent(self.events_topic, name="case-agent")(self.case_agent)
        app.agent(self.peers_topic, name="peer-agent")(self.peer_agent)
        app.timer(settings.tick_interval)(self.fire_due)
        app.timer(settings.flush_interval)(self.flush)
        app.timer(settings.catalog_reload_interval)(self.reload_catalog)
        app.timer(1.0)(self.retry_holes)
        app.on_partitions_revoked.connect(self._on_revoked)
        app.on_partitions_assigned.connect(self._on_assigned)

    # -- the agents ---------------------------------------------------------------------------

    async def case_agent(self, stream):
        await self._consume(stream, self._on_case_message)

    async def peer_agent(self, stream):
        """Penalty peer groups: a decision joins its group, and the verdicts that change go to their cases."""
        await self._consume(stream, self._on_peer_message)

    async def _consume(self, stream, handle) -> None:
        """Each message (and those Faust failed to deliver before it) handled, then acknowledged
        once its rows are written. A stop (SIGTERM, the end of a replay) cancels the agent: that
        is the end of its work, not a crash to log."""
        try:
            async for event in stream.noack().events():
                for missing in await self._missing_before(event.message):
                    await handle(missing)
                    self.writer.on_written(lambda m=missing: self.app.consumer.ack(m))
                await handle(event.message)
                self.writer.on_written(lambda e=event, s=stream: s.ack(e))
                await self._hold_back()
        except asyncio.CancelledError:
            if not self.stopping:
                raise

    async def _hold_back(self) -> None:
        """Flush a full batch; while the sink is failing or slow, take no more messages."""
        if self.writer.full:
            await self.flush()
        while self.writer.over_capacity:  # backpressure
            await asyncio.sleep(self.settings.flush_interval)
            await self.flush()

    async def _on_case_message(self, message) -> None:
        try:
            if message.topic == self.settings.ticks_topic:
                signal = orjson.loads(message.value)
                if "nudge" in signal:
                    return  # only to have the partition's holes read (retry_holes)
                if "verdict" in signal:
                    self._on_verdict(Verdict.from_json(signal["verdict"]), message.partition)
                else:
                    self._on_tick(message, CaseTick(case_id=signal["case_id"], now=signal["now"]))
            else:
                await self._on_case_event(message)
        except Exception:  # never stop the worker on one message
            log.exception("unexpected error on %s[%s]@%s", message.topic, message.partition, message.offset)
            await self._dead_letter(message, "internal_error", "unexpected error; see the worker log")
        finally:
            self._taken(message)

    async def _missing_before(self, message) -> list[Message]:
        """The messages of this partition that Faust did not deliver before this one, read directly.

        Faust 0.15 can drop messages it has fetched when the consumer group rebalances (seen
        after a restart, while the dead worker's membership expires): the agent then receives
        a partition's messages with a hole before them, and Faust may even take the hole for
        one in the log and commit past it. Seeking Faust's consumer back does not help (its
        fetch loop has already moved its read offset past them and drops them again). So each
        partition's offsets are checked against the next one expected (at first the committed
        offset), and the missing messages are read with a consumer of their own and processed
        here, before this one, and acknowledged like any other. A hole that cannot be read
        now stays uncommitted and is tried again with the partition's next messages. Offsets
        that are not in the log at all (Tansu's s3 storage leaves some after a crash) stay as
        Faust marked them.
        """
        tp, offset = message.tp, message.offset
        expected = self.next_offsets.get(tp)
        if expected is None:  # the first message since the partition was assigned
            expected = await self._start_offset(tp)
        self.next_offsets[tp] = max(offset + 1, expected or 0)
        gaps = getattr(self.app.consumer, "_gap", {}).get(tp)
        if expected is not None and offset > expected:
            metrics.OFFSET_GAPS.labels(tp.topic).inc(offset - expected)
            if gaps is not None:  # never acknowledged, so never committed until it is read
                gaps.chop(expected, offset)
            self.holes.setdefault(tp, []).append(Hole(expected, offset))
        missing: list[Message] = []
        now = asyncio.get_running_loop().time()
        # Holes of any topic this agent reads, in this partition: processed in this message's
        # partition, so that the table writes go to the right changelog partition.
        agent_topics = self._agent_topics(tp.topic)
        due = [(hole_tp, hole) for hole_tp, holes in self.holes.items() for hole in list(holes)
               if hole_tp.partition == tp.partition and hole_tp.topic in agent_topics and hole.next_try <= now]
        for hole_tp, hole in due:
            tp = hole_tp
            start, end = hole.start, hole.end
            try:
                records = await broker_mod.fetch_range(self.bootstrap, tp.topic, tp.partition, start, end,
                                                       timeout=10.0)
            except Exception as exc:
                metrics.HOLE_READ_FAILURES.labels(tp.topic).inc()
                hole.delay = min(2 * hole.delay, 30.0)
                hole.next_try = now + hole.delay
                log.error("%s[%s]: offsets %d..%d were not delivered and could not be read yet (%s); they stay "
                          "uncommitted and are tried again with the partition's messages after %.0f s", tp.topic,
                          tp.partition, start, end - 1, exc, hole.delay)
                continue
            self.holes[tp].remove(hole)
            log.warning("%s[%s]: offsets %d..%d were not delivered to the agent; read %d of them directly",
                        tp.topic, tp.partition, start, end - 1, len(records))
            for record in records:
                missing.append(Message(topic=tp.topic, partition=tp.partition, offset=record.offset,
                                       timestamp=record.timestamp / 1000.0, timestamp_type=record.timestamp_type,
                                       headers=record.headers, key=record.key, value=record.value,
                                       checksum=None, tp=tp))
        return missing

    def _agent_topics(self, topic: str) -> tuple[str, ...]:
        settings = self.settings
        if topic == settings.peers_topic:
            return (settings.peers_topic,)
        return (settings.case_events_topic, settings.ticks_topic)

    async def retry_holes(self) -> None:
        """Nudge each partition with a hole due to be read again: its agent reads holes only while
        it handles a message of that partition (stream context), and the partition may have none."""
        now = asyncio.get_running_loop().time()
        nudged = set()
        for tp, holes in self.holes.items():
            if not any(hole.next_try <= now for hole in holes):
                continue
            topic = self.settings.peers_topic if tp.topic == self.settings.peers_topic else self.settings.ticks_topic
            if (topic, tp.partition) in nudged:
                continue
            nudged.add((topic, tp.partition))
            if topic == self.settings.peers_topic:
                await self.peers_topic.send(key=b"", value={"nudge": True}, partition=tp.partition)
            else:
                await self.verdicts_topic.send(key=b"", value=orjson.dumps({"nudge": True}), partition=tp.partition)

    async def _start_offset(self, tp) -> int | None:
        """Where the consumer group starts reading a partition: its committed offset, or with none
        the log's start (asked of the broker: Faust's own copy is not always there yet)."""
        starts = self.start_offsets.get(tp.topic)
        if starts is None:
            try:
                committed = await broker_mod.committed_offsets(self.bootstrap, self.settings.app_id, tp.topic,
                                                               self.settings.partitions)
                starts = {**await broker_mod.beginning_offsets(self.bootstrap, tp.topic), **committed}
            except Exception as exc:
                log.error("could not read where %s starts, so messages missing before the first one "
                          "delivered would go unnoticed: %s", tp.topic, exc)
                return None
            self.start_offsets[tp.topic] = starts
        return starts.get(tp.partition)

    def _taken(self, message) -> None:
        """Record the partition's processed offset (`replay` waits for them)."""
        partition, offset = message.partition, message.offset
        key = (message.topic, partition)
        self.progress.taken[key] = max(self.progress.taken.get(key, -1), offset)

    # -- case events, ticks and verdicts ---------------------------------------------------------

    @property
    def holding(self) -> bool:
        """Are withdrawals held (a replay whose input is not complete yet)?"""
        return self.clock.holds_withdrawals

    async def _on_case_event(self, message) -> None:
        raw = message.value
        if not raw or len(raw) > MAX_MESSAGE_BYTES:
            await self._dead_letter(message, "too_large" if raw else "empty", f"message of {len(raw or b'')} bytes")
            return
        try:
            event = parse_event(orjson.loads(raw))
        except orjson.JSONDecodeError as exc:
            try:
                raw.decode("utf-8")
                reason = "invalid_json"
            except UnicodeDecodeError:
                reason = "invalid_utf8"
            await self._dead_letter(message, reason, str(exc))
            return
        except InvalidEvent as exc:
            await self._dead_letter(message, exc.reason, exc.detail)
            return
        judge = self.catalog.judge
        state = self._load(event.case_id, message.partition)
        now = self.clock.observe(message.partition, event.occurred_at)
        try:
            outcome = step(state, event, judge, now, utcnow(), self.holding)
        except UnknownItem as exc:
            await self._dead_letter(message, "unknown_item", str(exc))
            return
        except UnknownNode as exc:
            await self._dead_letter(message, "unknown_node", str(exc))
            return
        if outcome.is_new:
            stored = self._encode(outcome.state, message.partition)
            if len(stored) > MAX_STATE_BYTES:
                await self._dead_letter(message, "case_too_large",
                                        f"case {event.case_id} would hold {len(outcome.state.events)} events, "
                                        f"{len(stored)} bytes of state, more than the {MAX_STATE_BYTES} bytes one "
                                        f"changelog record may hold; the case keeps its earlier events")
                return
            department = judge.item(event.item_code).department
            self.writer.add("case_events", event_row(event, department, utcnow()))
            self.progress.events_new += 1
            metrics.EVENTS_PROCESSED.labels("new").inc()
            self._store(outcome.state, message.partition, stored)
            self._emit(outcome)
            await self._send_penalty(event, judge)
        else:
            # A redelivery: the state already holds the event, but its rows may not have been
            # written, nor its alerts published, before a crash: write them again (the tables
            # are keyed, so this changes nothing stored twice). Judging again is not needed.
            self.progress.events_duplicate += 1
            metrics.EVENTS_PROCESSED.labels("duplicate").inc()
            if event.case_id not in self.from_store:
                department = judge.item(event.item_code).department
                self.writer.add("case_events", event_row(event, department, utcnow()))
                self._rewrite(outcome.state, judge)
            if event.type is EventType.DECIDED:  # its peer fact may have been lost with the crash too
                await self._send_penalty(event, judge)

    async def _send_penalty(self, event: CaseEvent, judge: Judge) -> None:
        """A fining decision joins its peer group (same item, same violation) for discretion_outlier."""
        if event.type is not EventType.DECIDED:
            return
        penalty = penalty_of(event)
        if penalty is None:
            return
        violation, amount = penalty
        tiers = judge.item(event.item_code).discretion.get(violation, ())
        fact = fact_of(event, violation, amount, within_benchmark=not tiers or any(t.contains(amount) for t in tiers))
        await self.peers_topic.send(key=fact.group.encode(), value=fact.to_json())

    def _on_tick(self, message, tick: CaseTick) -> None:
        # The tick was due at `tick.now`; it may be handled after the partition's clock has moved
        # on. Judge at the latest clock known (the case's own is applied in judge_case).
        now = max(datetime.fromisoformat(tick.now), self.clock.now(message.partition))
        state = self._load(tick.case_id, message.partition)
        if state is None or not state.events:
            return
        judge = self.catalog.judge
        try:
            outcome = judge_case(state, judge, now, utcnow(), self.holding)
        except UnknownItem as exc:
            # The item left the catalog: the case is no longer judged. Said, counted and kept
            # with the dead letters, so that nobody takes its silence for a clean case.
            metrics.CASES_UNWATCHED.inc()
            log.error("case %s is no longer watched: %s (it is judged again when an event arrives after "
                      "the item returns to the catalog)", tick.case_id, exc)
            self._keep_letter(make_letter(message.topic, message.partition, message.offset, message.key,
                                          message.value, "item_left_catalog",
                                          f"case {tick.case_id} is no longer watched: {exc}",
                                          self.catalog.judge.catalog))
            return
        if outcome.state is not state:
            self._store(outcome.state, message.partition)
            self._emit(outcome)
        elif tick.case_id not in self.from_store:
            # Nothing changed: maybe a redelivered tick whose rows a crash kept from the store.
            self._rewrite(state, judge)

    def _on_verdict(self, verdict: Verdict, partition: int) -> None:
        state = self._load(verdict.case_id, partition)
        if state is None:
            log.warning("a verdict on decision %s of case %s, which this worker does not hold", verdict.event_id,
                        verdict.case_id)
            return
        judge = self.catalog.judge
        outcome = judge_verdict(state, verdict, judge, self.clock.now(partition), utcnow(), self.holding)
        if outcome.state is not state:
            self._store(outcome.state, partition)
            self._emit(outcome)
        elif verdict.case_id not in self.from_store:  # a verdict sent again after a crash
            self._rewrite(state, judge)

    # -- peer groups ------------------------------------------------------------------------------

    async def _on_peer_message(self, message) -> None:
        try:
            value = orjson.loads(message.value)
            if "nudge" in value:
                return  # only to have the partition's holes read (retry_holes)
            fact = PenaltyFact.from_json(value)
            stored = self.peers.get(fact.group)
            group = PeerGroup.from_json(decoded(stored)) if stored else self.prior_groups.pop(fact.group, None)
            group, verdicts = add_decision(group, fact, self.catalog.judge.config)
            self.peers[group.key] = encoded(group.to_json())
            for verdict in verdicts:
                self.progress.verdicts_sent += 1
                await self.verdicts_topic.send(key=verdict.case_id.encode(),
                                               value=orjson.dumps({"verdict": verdict.to_json()}))
        except Exception:
            log.exception("unexpected error on %s[%s]@%s", message.topic, message.partition, message.offset)
            await self._dead_letter(message, "internal_error", "unexpected error; see the worker log")
        finally:
            self._taken(message)

    # -- restoring from the store -------------------------------------------------------------------

    def restore(self, states: dict[str, CaseState], facts: list[PenaltyFact]) -> None:
        """Seed case states and peer groups from the store (see streams.runtime.restore_from_store)."""
        self.prior_states = dict(states)
        by_group: dict[str, list[PenaltyFact]] = {}
        for fact in facts:
            by_group.setdefault(fact.group, []).append(fact)
        config = self.catalog.judge.config
        self.prior_groups = {key: seed_group(group, config) for key, group in by_group.items()}

    async def judge_restored_cases(self) -> int:
        """Judge, at the current clock, every restored case that received no new event, and every
        case whose withdrawals waited for the end of the input."""
        partitions = list(range(self.settings.partitions))
        pending = {case_id: _partition_of(case_id, partitions) for case_id in self.prior_states}
        pending.update(self.held)
        for case_id, partition in pending.items():
            self.index.schedule(case_id, _EPOCH, partition)
        return len(pending)

    # -- state and output ----------------------------------------------------------------------

    def _load(self, case_id: str, partition: int) -> CaseState | None:
        state = self.states.get(case_id)
        if state is not None:
            self.states.move_to_end(case_id)
            return state
        stored = self.table.get(case_id)
        if stored:
            return CaseState.from_json(decoded(stored))
        state = self.prior_states.pop(case_id, None)
        if state is not None:
            self.from_store.add(case_id)
            self._store(state, partition)  # the seed becomes the table's state
        return state

    def _encode(self, state: CaseState, partition: int) -> bytes:
        data = state.to_json()
        data["partition"] = partition
        return encoded(data)

    def _store(self, state: CaseState, partition: int, stored: bytes | None = None) -> None:
        previous = self.states.get(state.case_id)
        if previous is not None and previous is not state:
            self.from_store.discard(state.case_id)
        self.table[state.case_id] = stored if stored is not None else self._encode(state, partition)
        self.states[state.case_id] = state
        self.states.move_to_end(state.case_id)
        if len(self.states) > STATE_CACHE_SIZE:
            self.states.popitem(last=False)
        self.index.schedule(state.case_id, state.next_due, partition)
        if state.held_withdrawals:
            self.held[state.case_id] = partition
        else:
            self.held.pop(state.case_id, None)
        metrics.OPEN_DEADLINES.set(len(self.index))

    def _emit(self, outcome: Outcome) -> None:
        labels = outcome.labels
        self.writer.add("cases", case_row(outcome.state, labels.item_code, labels.department, labels.region,
                                          outcome.deadline, utcnow()))
        for alert in outcome.changed:
            self._publish(alert)

    def _rewrite(self, state: CaseState, judge: Judge) -> None:
        """Write a case's current rows again, and publish its alerts again (at least once)."""
        result = evaluate(state, judge, state.judged_at or self.clock.now())
        self.writer.add("cases", case_row(state, result.labels.item_code, result.labels.department,
                                          result.labels.region, result.deadline, utcnow()))
        for alert in state.alerts.values():
            self._publish(alert)

    def _publish(self, alert: Alert) -> None:
        """Buffer an alert version for ClickHouse; it goes to the alerts topic once written."""
        self.progress.alerts_changed += 1
        metrics.ALERTS_PUBLISHED.labels(alert.rule.value, alert.status.value).inc()
        self.writer.add("alerts", alert_row(alert))
        payload = orjson.dumps(alert.to_json())
        key = alert.case_id.encode()
        self.writer.batch.after_write.append(lambda k=key, v=payload: self.alerts_topic.send(key=k, value=v))

    async def _dead_letter(self, message, reason: str, detail: str) -> None:
        """Refuse a message: to the DLQ topic and the store's dead letters, with the reason. Never
        raises: a letter that cannot be sent is logged, so one message can never stop the worker."""
        raw = message.value if isinstance(message.value, bytes) else orjson.dumps(message.value)
        letter = make_letter(message.topic, message.partition, message.offset, message.key, raw, reason, detail,
                             self.catalog.judge.catalog)
        log.warning("dead-lettered %s[%s]@%s: %s: %s", message.topic, message.partition, message.offset,
                    reason, detail[:300])
        self._keep_letter(letter)
        try:
            await self.dlq_topic.send(key=message.key, value=orjson.dumps(letter.to_json()))
        except Exception:
            log.exception("could not send the dead letter for %s[%s]@%s (%s) to the DLQ topic; it is kept in "
                          "the store", message.topic, message.partition, message.offset, reason)

    def _keep_letter(self, letter: DeadLetter) -> None:
        self.progress.dead_letters += 1
        metrics.EVENTS_DEAD_LETTERED.labels(letter.reason).inc()
        self.writer.add("dead_letters", dead_letter_row(letter, utcnow()))

    async def _dead_letter_row(self, item) -> None:
        """A row ClickHouse refused while it accepted the rest of its batch: to the DLQ, not lost."""
        key = str(item.row.get("case_id") or "")
        payload = orjson.dumps(item.row, default=str)
        letter = make_letter(f"clickhouse:{item.table}", -1, -1, key or None, payload, "store_refused", item.error,
                             self.catalog.judge.catalog)
        log.error("ClickHouse refused a %s row of case %s, sent to the DLQ: %s", item.table, key, item.error[:300])
        if item.table != "dead_letters":
            self._keep_letter(letter)
        else:
            self.progress.dead_letters += 1
            metrics.EVENTS_DEAD_LETTERED.labels("store_refused").inc()
        try:
            await self.dlq_topic.send(key=key.encode() or None, value=orjson.dumps(letter.to_json()))
        except Exception:
            log.exception("could not send the dead letter for a refused %s row of case %s", item.table, key)

    # -- timers ------------------------------------------------------------------------------------

    async def fire_due(self) -> int:
        """Send a tick for every case whose next due moment has come (event time in replay). One
        at a time: when it returns, everything it took from the index has been sent (`replay`
        relies on that)."""
        async with self.fire_lock:
            if not self.index_ready:
                return 0
            due = self.index.pop_due(self.clock.now)
            for case_id, partition, now in due:
                self.progress.ticks_sent += 1
                await self.ticks_topic.send(key=case_id.encode(),
                                            value=CaseTick(case_id=case_id, now=now.isoformat()), partition=partition)
            if due:
                metrics.TICKS_SENT.inc(len(due))
                metrics.OPEN_DEADLINES.set(len(self.index))
            return len(due)

    async def flush(self) -> bool:
        """Write what is buffered, then publish its alerts and acknowledge its messages.

        A batch is acknowledged only once its rows are written and every alert of it is
        published: a batch whose publishing fails stays, written, and is finished first by the
        next flush (its rows are not written twice)."""
        async with self.flush_lock:
            if not await self._finish_written():
                return False
            batch = self.writer.take()
            if batch.count == 0 and not batch.acks and not batch.after_write:
                return True
            loop = asyncio.get_running_loop()
            try:
                seconds = await loop.run_in_executor(self.writer.executor, self.writer.write, batch)
            except Exception as exc:
                self.writer.failures += 1
                self.writer.last_error = str(exc)
                metrics.SINK_FAILURES.inc()
                refused = None
                if batch.failed_attempts + 1 >= self.writer.isolate_after:
                    try:  # is it the store, or some rows it refuses?
                        refused = await loop.run_in_executor(self.writer.executor, self.writer.isolate, batch)
                    except Exception as again:
                        log.error("ClickHouse is unavailable, %d rows kept for retry: %s", batch.count, again)
                if refused is None:
                    self.writer.put_back(batch)
                    log.error("ClickHouse write failed, %d rows kept for retry: %s", batch.count, exc)
                    return False
                for item in refused:
                    await self._dead_letter_row(item)
                seconds = 0.0
            metrics.SINK_FLUSH_SECONDS.observe(seconds)
            for table, rows in batch.rows.items():
                metrics.SINK_ROWS.labels(table).inc(len(rows))
            self.writer.written(batch)
            self.unfinished.append(batch)
            finished = await self._finish_written()
            metrics.SINK_PENDING_ROWS.set(self.writer.pending_rows)
            return finished

    async def _finish_written(self) -> bool:
        """Publish the alerts of written batches, then acknowledge their messages, oldest first."""
        while self.unfinished:
            batch = self.unfinished[0]
            while batch.after_write:
                try:
                    await batch.after_write[0]()
                except Exception as exc:
                    metrics.PUBLISH_FAILURES.inc()
                    log.error("publishing a written alert failed, %d left to publish; its messages stay "
                              "unacknowledged until it is published: %s", len(batch.after_write), exc)
                    return False
                batch.after_write.pop(0)
            for ack in batch.acks:
                result = ack()
                if asyncio.iscoroutine(result):
                    await result
            self.unfinished.pop(0)
        return True

    async def reload_catalog(self) -> None:
        self.catalog.maybe_reload()

    # -- rebalancing ---------------------------------------------------------------------------------

    async def _on_revoked(self, sender, revoked, **kwargs) -> None:
        await self.flush()
        for tp in revoked:  # the next owner starts from the committed offsets
            self.next_offsets.pop(tp, None)
            self.holes.pop(tp, None)
        self.start_offsets.clear()
        self.states.clear()
        self.index.drop_partitions({tp.partition for tp in revoked
                                    if tp.topic == self.settings.case_events_topic})

    async def _on_assigned(self, sender, assigned, **kwargs) -> None:
        self.index_ready = False
        asyncio.ensure_future(self._rebuild_index())

    async def _rebuild_index(self) -> None:
        """After recovery, index the open deadlines of the cases this worker now holds. If that
        fails, the worker cannot fire deadlines: it says so and stops (`failed`), never hangs."""
        recovery = self.app.tables.recovery
        while not recovery.completed.is_set():
            await asyncio.sleep(0.1)
        try:
            for case_id, data in self.indexed_cases():
                partition = data.get("partition", 0)
                if data.get("next_due"):
                    self.index.schedule(case_id, datetime.fromisoformat(data["next_due"]), partition)
                if data.get("held_withdrawals"):
                    self.held[case_id] = partition
        except Exception as exc:
            log.exception("could not rebuild the deadline index from the case table; the worker stops")
            self.fail(PipelineFailed(f"the deadline index could not be rebuilt from the case table: {exc}"))
            return
        self.index_ready = True
        metrics.OPEN_DEADLINES.set(len(self.index))

    def indexed_cases(self):
        """(case_id, stored state) of every case in the table this worker holds."""
        for case_id, stored in list(self.table.items()):
            if stored:
                yield case_id, decoded(stored)

    def fail(self, error: BaseException) -> None:
        self.failure = error
        self.failed.set()

    def topics(self) -> list[tuple[str, int]]:
        return topic_names(self.settings)


def _partition_of(case_id: str, partitions: list[int]) -> int:
    """The partition a producer keyed by case sends to (Kafka's default partitioner)."""
    from aiokafka.partitioner import DefaultPartitioner

    return DefaultPartitioner()(case_id.encode(), partitions, partitions)
