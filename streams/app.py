"""The Faust app: topics, the case table, the case agent and its timers.

One agent consumes two co-partitioned topics, ``case-events`` (the contract's
input) and ``sunlight-case-ticks`` (internal: a timer asking for a case to be
re-judged). Faust changes a table only inside stream iteration, so the timers
never touch the table: they send a tick to the partition that holds the case.

For each message the agent converts wire bytes to a domain `CaseEvent` (bad
input goes to ``case-events-dlq`` with the reason), runs the pure
`alerts.evaluate.step`, stores the new state in the table, and hands rows and
alerts to the batching sink. The message is acknowledged only after the sink
has written its rows, so Faust never commits an offset past unwritten data.
"""

from __future__ import annotations

import asyncio
import base64
from collections import OrderedDict
import logging
from dataclasses import dataclass, field, replace
from datetime import datetime, timezone

import faust
import orjson
from faust.types import Message

from alerts.evaluate import Outcome, UnknownItem, UnknownNode, item_of, judge_case, labels_of, step
from alerts.detectors.discretion import penalty_of
from alerts.events import CaseEvent, EventType, InvalidEvent, parse_event
from alerts.lifecycle import Labels
from alerts.peers import PeerGroup, PenaltyFact, add_fact, fact_of, group_key, judge_group
from alerts.model import Alert, Rule
from alerts.state import CaseState
from sinks.rows import alert_row, case_row, event_row
from sinks.writer import ClickHouseWriter
from streams import broker as broker_mod, faust_fixes, metrics
from streams.catalog_source import CatalogSource
from streams.records import CaseTick, DeadLetter
from streams.settings import Settings
from streams.timers import DeadlineIndex

log = logging.getLogger(__name__)

TABLE_NAME = "cases"
PEERS_TABLE = "penalty-peers"
STATE_CACHE_SIZE = 200_000
MAX_MESSAGE_BYTES = 1_000_000
DLQ_PAYLOAD_BYTES = 256 * 1024  # base64 of this stays well under Kafka's 1 MB record limit


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
        self.dirty_groups: dict[str, int] = {}  # peer group -> partition, judged on the next tick
        # Alerts already in the store, by case: the seed of a case's state when the table has
        # none (a fresh embedded broker, see streams.runtime.restore_from_store).
        self.prior_events: dict[str, list[CaseEvent]] = {}
        self.prior_alerts: dict[str, dict[str, Alert]] = {}
        self.prior_revisions: dict[str, int] = {}
        self.prior_groups: dict[str, PeerGroup] = {}
        # By topic partition: the next offset expected (see _missing_before).
        self.next_offsets: dict = {}
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
        self.dlq_topic = app.topic(settings.dlq_topic, key_serializer="raw", value_type=DeadLetter,
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
        app.on_partitions_revoked.connect(self._on_revoked)
        app.on_partitions_assigned.connect(self._on_assigned)

    # -- the agent ---------------------------------------------------------------------------

    async def case_agent(self, stream):
        async for event in stream.noack().events():
            for missing in await self._missing_before(event.message):
                await self._on_case_message(missing)
                self.writer.on_written(lambda m=missing: self.app.consumer.ack(m))
            await self._on_case_message(event.message)
            self.writer.on_written(lambda e=event, s=stream: s.ack(e))
            await self._hold_back()

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
                self._on_tick(message)
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
        here, in order, before this one, and acknowledged like any other. Offsets that are
        not in the log at all (Tansu's s3 storage leaves some after a crash) stay as Faust
        marked them.
        """
        tp, offset = message.tp, message.offset
        expected = self.next_offsets.get(tp)
        if expected is None:  # the first message since the partition was assigned
            expected = await self._start_offset(tp)
        self.next_offsets[tp] = max(offset + 1, expected or 0)
        if expected is None or offset <= expected:
            return []
        metrics.OFFSET_GAPS.labels(tp.topic).inc(offset - expected)
        gaps = getattr(self.app.consumer, "_gap", {}).get(tp)
        try:
            records = await broker_mod.fetch_range(self.bootstrap, tp.topic, tp.partition, expected, offset)
        except Exception as exc:
            if gaps is not None:  # never acknowledged, so never committed: the next start has them
                gaps.chop(expected, offset)
            log.error("%s[%s]: offsets %d..%d were not delivered and could not be read (%s); they stay "
                      "uncommitted and come again on the next start", tp.topic, tp.partition, expected,
                      offset - 1, exc)
            return []
        log.warning("%s[%s]: offsets %d..%d were not delivered to the agent; read %d of them directly",
                    tp.topic, tp.partition, expected, offset - 1, len(records))
        missing = []
        for record in records:
            if gaps is not None:  # Faust may count it as a hole in the log, done: it is not done yet
                gaps.chop(record.offset, record.offset + 1)
            missing.append(Message(topic=tp.topic, partition=tp.partition, offset=record.offset,
                                   timestamp=record.timestamp / 1000.0, timestamp_type=record.timestamp_type,
                                   headers=record.headers, key=record.key, value=record.value,
                                   checksum=None, tp=tp))
        return missing

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

    async def _on_case_event(self, message) -> None:
        raw = message.value
        if not raw or len(raw) > MAX_MESSAGE_BYTES:
            await self._dead_letter(message, "too_large" if raw else "empty",
                                    f"message of {len(raw or b'')} bytes")
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
            outcome = step(state, event, judge, now, utcnow())
        except UnknownItem as exc:
            await self._dead_letter(message, "unknown_item", str(exc))
            return
        except UnknownNode as exc:
            await self._dead_letter(message, "unknown_node", str(exc))
            return
        department = judge.item(event.item_code).department
        self.writer.add("case_events", event_row(event, department, utcnow()))
        if outcome.is_new:
            self.progress.events_new += 1
            metrics.EVENTS_PROCESSED.labels("new").inc()
            self._store(outcome.state, message.partition)
            self._emit(outcome)
            await self._send_penalty(event, outcome.labels)
        else:
            # A redelivery: the state already holds the event, but its rows may not have been
            # written before a crash. Writing the case's alerts again is harmless (the tables are
            # keyed); judging again is not needed, nothing about the case changed.
            self.progress.events_duplicate += 1
            metrics.EVENTS_PROCESSED.labels("duplicate").inc()
            for alert in outcome.state.alerts.values():
                self._publish(alert)
            if event.type is EventType.DECIDED:  # its peer fact may have been lost with the crash too
                await self._send_penalty(event, labels_of(outcome.state, item_of(outcome.state, judge), judge))

    async def _send_penalty(self, event, labels) -> None:
        """A fining decision joins its peer group (same item, same violation) for discretion_outlier."""
        if event.type is not EventType.DECIDED or labels is None:
            return
        penalty = penalty_of(event)
        if penalty is None:
            return
        fact = fact_of(event, penalty[0], penalty[1], labels)
        await self.peers_topic.send(key=fact.group.encode(), value=fact.to_json())

    async def peer_agent(self, stream):
        """Penalty peer groups: decisions join their group; a timer asks for the group to be judged."""
        async for event in stream.noack().events():
            for missing in await self._missing_before(event.message):
                self._on_peer_message(missing)
                self.writer.on_written(lambda m=missing: self.app.consumer.ack(m))
            self._on_peer_message(event.message)
            self.writer.on_written(lambda e=event, s=stream: s.ack(e))
            await self._hold_back()

    def _on_peer_message(self, message) -> None:
        value: dict = {}
        try:
            value = message.value if isinstance(message.value, dict) else orjson.loads(message.value)
            if "judge" in value:
                self._judge_group(value["judge"])
            else:
                fact = PenaltyFact.from_json(value)
                stored = self.peers.get(fact.group)
                group, changed = add_fact(PeerGroup.from_json(decoded(stored)) if stored else self._seed_group(fact),
                                          fact, self.catalog.judge.config.outlier_window)
                if changed:
                    self._store_group(group, message.partition)
        except Exception:
            log.exception("unexpected error on %s[%s]@%s", message.topic, message.partition, message.offset)
        finally:
            self._taken(message)

    def _store_group(self, group: PeerGroup, partition: int) -> None:
        data = group.to_json()
        data["partition"] = partition
        self.peers[group.key] = encoded(data)
        if group.pending:
            self.dirty_groups[group.key] = partition

    def _seed_group(self, fact: PenaltyFact) -> PeerGroup | None:
        """A group new to the table starts from the decisions and outlier alerts already in the store."""
        return self.prior_groups.pop(fact.group, None)

    def restore(self, events: list[CaseEvent], alerts: list[Alert], revisions: dict[str, int]) -> None:
        """Seed case and peer-group states from the store (see streams.runtime.restore_from_store)."""
        catalog = self.catalog.judge.catalog
        groups: dict[str, PeerGroup] = {}
        for event in events:
            self.prior_events.setdefault(event.case_id, []).append(event)
            penalty = penalty_of(event) if event.type is EventType.DECIDED else None
            item = catalog.item(event.item_code)
            if penalty and item is not None:
                labels = Labels(event.item_code, event.department or item.department, event.region)
                fact = fact_of(event, penalty[0], penalty[1], labels)
                groups[fact.group], _ = add_fact(groups.get(fact.group), fact, self.catalog.judge.config.outlier_window)
        for alert in alerts:
            if alert.rule is Rule.DISCRETION_OUTLIER:
                violation = alert.evidence.get("violation_code")
                key = group_key(alert.item_code, str(violation))
                if key in groups:
                    groups[key] = replace(groups[key], alerts={**groups[key].alerts, alert.alert_id: alert})
            else:
                self.prior_alerts.setdefault(alert.case_id, {})[alert.alert_id] = alert
        self.prior_groups = groups
        self.prior_revisions = dict(revisions)

    async def judge_restored_cases(self) -> int:
        """Judge, at the current clock, every restored case that received no new event."""
        from aiokafka.partitioner import DefaultPartitioner

        partitioner = DefaultPartitioner()
        partitions = list(range(self.settings.partitions))
        cases = list(self.prior_events)
        for case_id in cases:
            partition = partitioner(case_id.encode(), partitions, partitions)
            self.index.schedule(case_id, datetime(1970, 1, 1, tzinfo=timezone.utc), partition)
        return len(cases)

    def _judge_group(self, key: str) -> None:
        stored = self.peers.get(key)
        if not stored:
            return
        data = decoded(stored)
        group = PeerGroup.from_json(data)
        judged, changed = judge_group(group, self.catalog.judge.config, utcnow())
        if judged is not group:
            self._store_group(judged, data.get("partition", 0))
        for alert in changed:
            self._publish(alert)

    async def judge_dirty_groups(self) -> int:
        """Ask for every group that gained decisions since the last tick to be judged once."""
        dirty, self.dirty_groups = self.dirty_groups, {}
        for key, partition in dirty.items():
            await self.peers_topic.send(key=key.encode(), value={"judge": key}, partition=partition)
        return len(dirty)

    def _on_tick(self, message) -> None:
        tick = CaseTick.loads(message.value, serializer="json") if isinstance(message.value, bytes) \
            else message.value
        now = datetime.fromisoformat(tick.now)
        state = self._load(tick.case_id, message.partition)
        if state is None or not state.events:
            return
        judge = self.catalog.judge
        try:
            outcome = judge_case(state, judge, now, utcnow())
        except UnknownItem:
            return  # the item left the catalog; the case's events stay as they are
        if outcome.state is not state:
            self._store(outcome.state, message.partition)
            self._emit(outcome)
        else:  # maybe a redelivered tick whose rows a crash kept from the store: write them again
            for alert in state.alerts.values():
                self._publish(alert)

    # -- state and output ----------------------------------------------------------------------

    def _load(self, case_id: str, partition: int) -> CaseState | None:
        state = self.states.get(case_id)
        if state is not None:
            self.states.move_to_end(case_id)
            return state
        stored = self.table.get(case_id)
        if stored:
            return CaseState.from_json(decoded(stored))
        events = self.prior_events.pop(case_id, None)
        if not events:
            return None
        alerts = self.prior_alerts.pop(case_id, {})
        ordered = tuple(sorted(events, key=lambda e: e.order_key))
        state = CaseState(case_id=case_id, events=ordered, alerts=alerts,
                          revision=self.prior_revisions.pop(case_id, 0))
        self._store(state, partition)  # the seed becomes the table's state
        return state

    def _store(self, state: CaseState, partition: int) -> None:
        data = state.to_json()
        data["partition"] = partition
        self.table[state.case_id] = encoded(data)
        self.states[state.case_id] = state
        self.states.move_to_end(state.case_id)
        if len(self.states) > STATE_CACHE_SIZE:
            self.states.popitem(last=False)
        self.index.schedule(state.case_id, state.next_due, partition)
        metrics.OPEN_DEADLINES.set(len(self.index))

    def _emit(self, outcome: Outcome, changed: list[Alert] | None = None) -> None:
        labels = outcome.labels
        self.writer.add("cases", case_row(outcome.state, labels.item_code, labels.department, labels.region,
                                          outcome.deadline, utcnow()))
        for alert in outcome.changed if changed is None else changed:
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
        """Send the message to the DLQ with the reason. Never raises: a letter that cannot be
        sent is logged, so one message can never stop the worker."""
        raw = message.value if isinstance(message.value, bytes) else b""
        payload = raw[:DLQ_PAYLOAD_BYTES]
        try:
            text, encoding = payload.decode("utf-8"), "utf-8"
        except UnicodeDecodeError:
            text, encoding = base64.b64encode(payload).decode(), "base64"
        if len(raw) > DLQ_PAYLOAD_BYTES:
            encoding += f"; truncated from {len(raw)} bytes"
        key = message.key.decode("utf-8", "replace") if isinstance(message.key, bytes) else message.key
        letter = DeadLetter(reason=reason, error=detail[:2000], topic=message.topic, partition=message.partition,
                            offset=message.offset, key=key, payload=text, payload_encoding=encoding)
        self.progress.dead_letters += 1
        metrics.EVENTS_DEAD_LETTERED.labels(reason).inc()
        log.warning("dead-lettered %s[%s]@%s: %s: %s", message.topic, message.partition, message.offset,
                    reason, detail[:300])
        try:
            await self.dlq_topic.send(key=message.key, value=letter)
        except Exception:
            log.exception("could not send the dead letter for %s[%s]@%s (%s)", message.topic,
                          message.partition, message.offset, reason)

    async def _dead_letter_row(self, item) -> None:
        """A row ClickHouse refused while it accepted the rest of its batch: to the DLQ, not lost."""
        key = str(item.row.get("case_id") or "")
        payload = orjson.dumps(item.row, default=str).decode()
        letter = DeadLetter(reason="store_refused", error=item.error, topic=f"clickhouse:{item.table}",
                            partition=-1, offset=-1, key=key or None, payload=payload[:DLQ_PAYLOAD_BYTES],
                            payload_encoding="utf-8")
        self.progress.dead_letters += 1
        metrics.EVENTS_DEAD_LETTERED.labels("store_refused").inc()
        log.error("ClickHouse refused a %s row of case %s, sent to the DLQ: %s", item.table, key, item.error[:300])
        try:
            await self.dlq_topic.send(key=key.encode() or None, value=letter)
        except Exception:
            log.exception("could not send the dead letter for a refused %s row of case %s", item.table, key)

    # -- timers ------------------------------------------------------------------------------------

    async def fire_due(self) -> int:
        """Send a tick for every case whose next due moment has come (event time in replay),
        and a judgement request for every peer group that gained decisions. One at a time: when
        it returns, everything it took from the index has been sent (`replay` relies on that)."""
        async with self.fire_lock:
            await self.judge_dirty_groups()
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
        """Write what is buffered, then publish its alerts and acknowledge its messages."""
        async with self.flush_lock:
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
            self.writer.written_rows += batch.count
            for publish in batch.after_write:
                await publish()
            for ack in batch.acks:
                result = ack()
                if asyncio.iscoroutine(result):
                    await result
            metrics.SINK_PENDING_ROWS.set(self.writer.pending_rows)
            return True

    async def reload_catalog(self) -> None:
        self.catalog.maybe_reload()

    # -- rebalancing ---------------------------------------------------------------------------------

    async def _on_revoked(self, sender, revoked, **kwargs) -> None:
        await self.flush()
        for tp in revoked:  # the next owner starts from the committed offsets
            self.next_offsets.pop(tp, None)
        self.start_offsets.clear()
        self.states.clear()
        self.index.drop_partitions({tp.partition for tp in revoked
                                    if tp.topic == self.settings.case_events_topic})

    async def _on_assigned(self, sender, assigned, **kwargs) -> None:
        self.index_ready = False
        asyncio.ensure_future(self._rebuild_index())

    async def _rebuild_index(self) -> None:
        """After recovery, index the open deadlines of the cases this worker now holds."""
        recovery = self.app.tables.recovery
        while not recovery.completed.is_set():
            await asyncio.sleep(0.1)
        try:
            for case_id, stored in list(self.table.items()):
                data = decoded(stored) if stored else None
                if data and data.get("next_due"):
                    self.index.schedule(case_id, datetime.fromisoformat(data["next_due"]), data.get("partition", 0))
            for key, stored in list(self.peers.items()):  # groups a crash left unjudged
                data = decoded(stored) if stored else None
                if data and data.get("pending"):
                    self.dirty_groups[key] = data.get("partition", 0)
        except Exception:  # a worker that cannot fire deadlines must say so, not hang quietly
            log.exception("could not rebuild the deadline index from the case table")
            raise
        self.index_ready = True
        metrics.OPEN_DEADLINES.set(len(self.index))

    def topics(self) -> list[tuple[str, int]]:
        return topic_names(self.settings)
