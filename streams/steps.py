"""The stream core, as small steps over units of messages (in the manner of arroyo's strategies).

A *unit* is what one fetch returned for one partition (`streams.faust_patches`): the agents
take units, not messages. Each unit goes through the same steps:

1. **take**: the unit, and before it any messages of its partition Faust failed to deliver
   (`DeliveryWatch.missing_before`, streams/delivery.py, read directly);
2. **decode**: wire bytes to domain values, per message: case events (checked against the
   contract), ticks and verdicts; what cannot be read becomes a dead letter with its reason
   (`decode_case_unit`, `decode_peer_unit`);
3. **apply and evaluate**: per case, its events and verdicts of the unit applied one by one,
   then one judgement at the unit's clock (`alerts.evaluate.step_many`); per peer group, its
   decisions added (`alerts.peers.add_decision`);
4. **write**: one state per case per unit into the table and its changelog; rows into the
   batching writer; alerts, peer facts, verdicts and dead letters to their topics (`Outputs`);
5. **commit**: the unit is acknowledged once the writer has written its rows and published
   its alerts (`streams.write_step`), so no offset is committed past unwritten data.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Callable

import orjson
from aiokafka.partitioner import murmur2

from alerts.detectors.discretion import penalty_of
from alerts.evaluate import (Judge, NotInCatalog, Outcome, UnknownItem, cause_of, evaluate, item_of, judge_case,
                             labels_of, stated_labels, step, step_many)
from alerts.events import CaseEvent, EventType, InvalidEvent, parse_event
from alerts.letters import (UTF8_BOM, DeadLetter, RefusedRecord, filed_under, make_letter, refused_event,
                            kept_refusal, wrapped_event_hint)
from alerts.model import Alert
from alerts.peers import PenaltyFact, Verdict, fact_of
from alerts.retention import settled_since
from alerts.state import CaseState, catalog_refusal, refuse, release
from alerts.tickets import facts_registered_at
from sinks.rows import alert_row, case_row, dead_letter_row, event_row
from sinks.writer import Correction
from streams import metrics
from streams.clock import wall_now
from streams.codec import encode_state
from streams.event_wire import wire_event
from streams.faust_patches import UndecidedRecord
from streams.internal_wire import is_nudge, refusal_signal, verdict_signal

log = logging.getLogger(__name__)
letters_log = logging.getLogger(__name__ + ".dead_letters")  # limited: `streams.runtime._quiet_faust_logging`

# A message read as an event may be this large: the contract sets no bound, and a long text in it
# is cut (`alerts.events.read_attrs`); refused at 1,000,000 bytes before, a valid closing with a long
# reason held its case back with a false red overdue standing (found by a black-box test with other
# clients). Larger, it is scanned for its ids only (`alerts.letters.LABELLED_BYTES`).
MAX_MESSAGE_BYTES = 16 * 1024 * 1024
# What Sunlight's own producers send (an import's events, an event sent on to its case's partition):
# under Kafka's default limit of a record (message.max.bytes, about 1 MB), which the producer's own follows.
MAX_SENT_BYTES = 1_000_000
# A case's state is one changelog record, and Kafka refuses records over 1 MB (the producer's
# `max_request_size`, 1,000,000 bytes with the record's own overhead). An event that would take the
# state past the first bound is refused (case_too_large), not stored; a judgement (its alerts, its
# clock) may take it to the second, so that a case filled with events is still judged on them.
MAX_STATE_BYTES = 900_000
MAX_JUDGED_STATE_BYTES = 980_000
# A record of a transaction its producer did not end (Tansu: `faust_patches.set_transactions_from_markers`).
NOT_ENDED = ("a record of a transaction its producer neither committed nor aborted within SUNLIGHT_TRANSACTION_TIMEOUT "
             "(a Kafka broker aborts such a transaction): not taken as an event")


@dataclass
class Unit:
    """The records one fetch returned for one partition, and the Faust message standing for them
    (None for records read directly, which are acknowledged one by one)."""
    topic: str
    partition: int
    records: list  # each with .offset, .key, .value
    message: Any = None
    started: datetime = field(default_factory=wall_now)  # when it was taken (before any letter of it)

    @property
    def first_offset(self) -> int:
        return self.records[0].offset

    @property
    def last_offset(self) -> int:
        return self.records[-1].offset


@dataclass
class CaseWork:
    """What one unit holds for one case."""
    events: list[tuple[Any, CaseEvent]] = field(default_factory=list)  # (record, event)
    tick: datetime | None = None  # the latest moment a tick asks the case to be judged at
    tick_record: Any = None
    verdicts: list[Verdict] = field(default_factory=list)
    # (event_id, case_id, reason) of the case's events refused before they could be read as
    # events (`alerts.evaluate.step_many`): the case is held back until they come corrected
    refusals: list[tuple[str, str, str]] = field(default_factory=list)
    refused_at: dict[str, int] = field(default_factory=dict)  # event_id -> the offset of its first refusal
    releases: list[str] = field(default_factory=list)  # refused events an operator closed as none of the case


@dataclass
class Letter:
    record: Any
    topic: str
    partition: int
    reason: str
    detail: str
    read: RefusedRecord | None = None  # the record as its refusal read it (`RefusedEvent`)


@dataclass
class Decoded:
    cases: dict[str, CaseWork] = field(default_factory=dict)
    letters: list[Letter] = field(default_factory=list)
    latest: datetime | None = None  # the latest event time in the unit
    # (record, case id, its case's partition) of the events that are not in their case's partition,
    # in the unit's order, refused ones that name their case too (`SENT_FROM`)
    elsewhere: list[tuple[Any, str, int]] = field(default_factory=list)
    # (case id, event id, the refusal as kept, its case's partition) of events refused outside
    # their case's partition as too large to be sent on: lettered here, their cases told there
    refused_elsewhere: list[tuple[str, str, str, int]] = field(default_factory=list)


def home_partition(case_id: str, partitions: int) -> int:
    """The partition of `case-events` a case's events belong in: where a producer keyed by the
    case id sends them with Kafka's default partitioner (murmur2), as the contract asks and as
    Sunlight keys its own records about the case (ticks, verdicts, alerts)."""
    return (murmur2(case_id.encode()) & 0x7FFFFFFF) % partitions


# The headers of a record sent on to its case's partition (a client that keys by something else,
# or places by another partitioner, sends a case's events to another partition, whence they are
# all sent on, in order, refused ones that name their case too): where it came in, as
# b"partition:offset", and the key it came with, if any. A letter for it is written in its case's
# partition, once, naming those (`letter_origin`); a client's record that carries the headers
# can only misname them.
SENT_FROM = "sunlight-sent-from"
SENT_KEY = "sunlight-sent-key"


_MAX_PARTITION = 2 ** 31 - 1  # Kafka's partition numbers and offsets (int32, int64)
_MAX_OFFSET = 2 ** 63 - 1


def letter_origin(record, partition: int) -> tuple[int, int, bytes | None]:
    """(partition, offset, key) a letter for `record` names: where and how the client's record came
    in. A header that is not a position Kafka can have (no value, not text, numbers out of range:
    another client may send anything) is ignored, and the record's own position named: before, a
    null value or a 24-digit offset failed every unit that held the record, and the worker with it,
    at every start (found by a black-box test)."""
    headers = dict(getattr(record, "headers", None) or ())
    sent_from = headers.get(SENT_FROM)
    if isinstance(sent_from, bytes):
        try:
            origin, offset = (int(part) for part in sent_from.decode().split(":"))
        except (UnicodeDecodeError, ValueError):
            pass
        else:
            key = headers.get(SENT_KEY)
            if 0 <= origin <= _MAX_PARTITION and 0 <= offset <= _MAX_OFFSET:
                return origin, offset, key if isinstance(key, bytes) else None
    return partition, record.offset, record.key


def sent_on_headers(record, partition: int) -> list[tuple[str, bytes]]:
    origin, offset, key = letter_origin(record, partition)
    return [(SENT_FROM, b"%d:%d" % (origin, offset)), *(((SENT_KEY, key),) if key is not None else ())]


class RefusedEvent(InvalidEvent):
    """A record refused as a case event, with the reading of it its refusal began (`read`): the
    hint, the letter and what its case waits for read the record once (`alerts.letters.RefusedRecord`)."""

    def __init__(self, reason: str, detail: str, read: RefusedRecord):
        super().__init__(reason, detail)
        self.read = read


def decode_event(raw: bytes | None, read: RefusedRecord | None = None) -> CaseEvent:
    """A case event from its wire bytes, or RefusedEvent (an InvalidEvent) with the reason.
    `read`: the reading of the record as it came (for the bytes after a byte order mark)."""
    if raw is None:  # a tombstone, as a client deleting a key sends: no event (said so, not "0 bytes")
        raise RefusedEvent("empty", "a record without a value (null: a tombstone), not an event", RefusedRecord(raw))
    if not raw or len(raw) > MAX_MESSAGE_BYTES:
        raise RefusedEvent("too_large" if raw else "empty", f"message of {len(raw)} bytes" + (
            f", more than the {MAX_MESSAGE_BYTES:,} an event may have" if raw else ""), read or RefusedRecord(raw))
    event = wire_event(raw)  # compiled decoding; None sends the message to the contract's parser
    if event is not None:
        return event
    try:
        return parse_event(orjson.loads(raw))
    except InvalidEvent as exc:
        read = read or RefusedRecord(raw)
        hint = wrapped_event_hint(raw, read) if exc.reason == "schema" else None  # (an event sent wrapped,
        raise RefusedEvent(exc.reason, f"{exc.detail}; {hint}" if hint else exc.detail, read) from None  # or twice encoded)
    except orjson.JSONDecodeError as exc:
        read = read or RefusedRecord(raw)
        if raw.startswith(UTF8_BOM):  # RFC 8259 lets a parser ignore one (.NET and PowerShell producers write it),
            return decode_event(raw[len(UTF8_BOM):], read)  # as `sunlight replay` does a file's
        try:
            raw.decode("utf-8")
        except UnicodeDecodeError as bad:  # JSON's own message names the first character, wherever the byte is
            hint = wrapped_event_hint(raw, read)  # UTF-16
            raise RefusedEvent("invalid_utf8", f"not UTF-8 text: byte 0x{raw[bad.start]:02x} at offset {bad.start} "
                                               f"of the message's {len(raw)} bytes ({bad.reason})"
                                               + (f"; {hint}" if hint else ""), read) from None
        hint = wrapped_event_hint(raw, read)  # NaN, or several events in one record
        raise RefusedEvent("invalid_json", f"{exc}; {hint}" if hint else str(exc), read) from None


def decode_case_unit(unit: Unit, ticks_topic: str, partitions: int | None = None) -> Decoded:
    """A unit's events (or ticks and verdicts) by case, and its letters. With `partitions`, an
    event that is not in its case's partition (`home_partition`: a client that keyed it by
    something else, sent it without a key, or used another partitioner, such as librdkafka's
    default) is set apart in `elsewhere`, to be sent on there: a case's events are applied in
    one partition, by one worker, where its ticks and verdicts go too."""
    out = Decoded()
    cases = out.cases
    if unit.topic == ticks_topic:
        for record in unit.records:
            try:
                signal = orjson.loads(record.value)
                if is_nudge(signal):
                    continue  # only to have the partition's holes read
                if "verdict" in signal:
                    verdict = Verdict.from_json(signal["verdict"])
                    cases.setdefault(verdict.case_id, CaseWork()).verdicts.append(verdict)
                elif "released" in signal:  # a letter closed as no event of the case (`release_signal`)
                    released = signal["released"]
                    cases.setdefault(str(released["case_id"]), CaseWork()).releases.append(str(released["event_id"]))
                elif "refused" in signal:  # refused in another partition, too large to be sent on
                    refused = signal["refused"]
                    case_id = str(refused["case_id"])
                    cases.setdefault(case_id, CaseWork()).refusals.append(
                        (str(refused["event_id"]), case_id, str(refused["kept"])))
                else:
                    work = cases.setdefault(str(signal["case_id"]), CaseWork())
                    moment = datetime.fromisoformat(signal["now"])
                    if work.tick is None or moment > work.tick:
                        work.tick, work.tick_record = moment, record
            except Exception as exc:  # an internal message Sunlight did not write: kept, never fatal
                out.letters.append(Letter(record, unit.topic, unit.partition, "internal_error",
                                          f"unreadable internal message: {exc}"))
        return out
    latest = None
    homes: dict[str, int] = {}
    for record in unit.records:
        if type(record) is UndecidedRecord:
            out.letters.append(Letter(record, unit.topic, unit.partition, "transaction_not_ended", NOT_ENDED))
            continue
        try:
            event = decode_event(record.value)
            if partitions is not None and len(record.value) > MAX_SENT_BYTES \
                    and home_partition(event.case_id, partitions) != unit.partition:
                raise RefusedEvent("too_large", f"message of {len(record.value):,} bytes in another partition than "
                                                f"its case's, more than the {MAX_SENT_BYTES:,} bytes a message sent on "
                                                f"to it may have: send it keyed by its case_id",
                                   RefusedRecord(record.value))
        except RefusedEvent as exc:
            read = exc.read
            named = refused_event(record.value, exc.reason, record.key, read)
            home = unit.partition if named is None or partitions is None else home_partition(named[0], partitions)
            if home != unit.partition and exc.reason != "too_large":  # (a producer would refuse to send
                out.elsewhere.append((record, named[0], home))  # that on) lettered in its case's partition,
                continue  # where its case waits for it
            out.letters.append(Letter(record, unit.topic, unit.partition, exc.reason, exc.detail, read))
            if named is not None:  # its case waits for it (`alerts.state.refuse`)
                case_id, event_id = named
                kept = kept_refusal(exc.reason, record.value, read)
                if home != unit.partition:  # too large to be sent on: its case's partition told of it
                    out.refused_elsewhere.append((case_id, event_id, kept, home))
                    continue
                work = cases.setdefault(case_id, CaseWork())
                work.refusals.append((event_id, case_id, kept))
                work.refused_at.setdefault(event_id, record.offset)
            continue
        if partitions is not None:
            home = homes.get(event.case_id)
            if home is None:
                home = homes[event.case_id] = home_partition(event.case_id, partitions)
            if home != unit.partition:
                out.elsewhere.append((record, event.case_id, home))
                continue
        work = cases.get(event.case_id)  # (not `setdefault`, which would make a CaseWork for every event)
        if work is None:
            work = cases[event.case_id] = CaseWork()
        work.events.append((record, event))
        if latest is None or event.occurred_at > latest:
            latest = event.occurred_at
    out.latest = latest
    return out


def decode_peer_unit(unit: Unit) -> tuple[dict[str, list[PenaltyFact]], list[Letter]]:
    groups: dict[str, list[PenaltyFact]] = {}
    letters = []
    for record in unit.records:
        try:
            value = orjson.loads(record.value)
            if is_nudge(value):
                continue
            fact = PenaltyFact.from_json(value)
        except Exception as exc:
            letters.append(Letter(record, unit.topic, unit.partition, "internal_error",
                                  f"unreadable penalty fact: {exc}"))
            continue
        groups.setdefault(fact.group, []).append(fact)
    return groups, letters


def penalty_fact(event: CaseEvent, judge: Judge) -> PenaltyFact | None:
    """The peer-group fact of a fining decision (same item, same violation), else None."""
    if event.type is not EventType.DECIDED:
        return None
    penalty = penalty_of(event)
    if penalty is None:
        return None
    violation, amount = penalty
    return fact_of(event, violation, amount, within_benchmark=benchmark_of(judge, event.item_code, violation)(amount))


def benchmark_of(judge: Judge, item_code: str, violation: str) -> Callable[[float], bool]:
    """Whether an amount is within the benchmark of an item's violation (inside one of its tiers,
    or it has none): a fine outside every tier is judged, but is no one's peer. UnknownItem when
    the catalog lacks the item."""
    tiers = judge.item(item_code).tiers(violation)
    return lambda amount: not tiers or any(tier.contains(amount) for tier in tiers)


class Outputs:
    """Where a unit's results go: the batching writer's rows, and records for Kafka topics sent
    through the producer (alerts only after their rows are written)."""

    def __init__(self, writer, send: Callable, outbox, settings, progress, catalog):
        self.writer = writer
        self.send = send  # async (topic, key, value, partition): a record now (alerts, once written)
        self.outbox = outbox  # .add(topic, key, value, partition=None): a record with the unit's others
        self.settings = settings
        self.progress = progress
        self.catalog_source = catalog

    def event(self, event: CaseEvent, department: str, at: datetime | None = None) -> None:
        """`at`: when it is taken (the wall clock, once for a case's events of a unit)."""
        self.writer.add("case_events", event_row(event, department, at or wall_now()))

    def corrected(self, event: CaseEvent, correction: Correction) -> None:
        """A refused event that came since, corrected: its letters are marked once its row is written."""
        self.writer.corrected(event.case_id, event.event_id, correction)

    def case(self, state: CaseState, outcome_labels, deadline, at: datetime | None = None) -> None:
        labels = outcome_labels
        self.writer.add("cases", case_row(state, labels.item_code, labels.department, labels.region, deadline,
                                          at or wall_now(), self.catalog_source.basis))

    def alert(self, alert: Alert, state: CaseState | None = None) -> None:
        """Buffer an alert version for ClickHouse; it goes to the alerts topic once written (a new
        version, or one published again: at least once). With its case's `state`, the record says
        when the facts the finding rests on were registered (`facts_registered_at`, an addition to
        the contract's alert: `alerts.tickets.facts_registered_at`): a history pushed late (a
        self-built system's month, a monthly import) has its tickets settle from then, not from
        business times long past, in a replay or an import as live."""
        metrics.ALERTS_PUBLISHED.labels(alert.rule.value, alert.status.value).inc()
        self.writer.add("alerts", alert_row(alert))
        tz = self.catalog_source.judge.calendar.tz
        record = alert.to_json(tz)
        registered = facts_registered_at(alert, state.events) if state is not None else None
        if registered is not None:
            record["facts_registered_at"] = registered.astimezone(tz).isoformat()
        payload, key = orjson.dumps(record), alert.case_id.encode()
        topic = self.settings.alerts_topic
        self.writer.batch.after_write.append(lambda k=key, v=payload: self.send(topic, k, v, None))

    def outcome(self, outcome: Outcome, at: datetime | None = None) -> None:
        if outcome.labels is None:  # awaiting its judgement (alerts.evaluate.awaiting_judgement): no row yet
            return
        self.case(outcome.state, outcome.labels, outcome.deadline, at)
        self.progress.alerts_changed += len(outcome.changed)  # not what is published again
        for alert in outcome.changed:
            if alert.version == 1:  # newly raised (a redelivery changes nothing, so counts nothing)
                metrics.ALERTS_RAISED.labels(alert.rule.value, alert.severity.value).inc()
            self.alert(alert, outcome.state)

    def missing_rows(self, state: CaseState, in_store: CaseState | None, judge: Judge, clock_now: datetime) -> None:
        """What the store lacks of a state recovered from the changelog (`in_store`: what it holds):
        its missing events, and its alert versions it lacks, written and published (never
        published before: a version is published once written); with them its case row. Nothing
        when the store has it all: a restart publishes nothing again (the ticket agent would take a
        version it holds for a redelivery)."""
        events = {e.event_id for e in in_store.events} if in_store is not None else set()
        versions = {k: a.version for k, a in in_store.alerts.items()} if in_store is not None else {}
        missing_events = [e for e in state.events if e.event_id not in events]
        missing_alerts = [a for k, a in state.alerts.items() if versions.get(k, 0) < a.version]
        if not missing_events and not missing_alerts:
            return
        for event in missing_events:
            item = judge.catalog.item(event.item_code)
            self.event(event, item.department if item is not None else event.department or "")
        self.rewrite(state, judge, clock_now, missing_alerts)

    def rewrite(self, state: CaseState, judge: Judge, clock_now: datetime, alerts: list[Alert] | None = None) -> None:
        """A case's current rows again, and its alerts (or these of them) published again (at least once)."""
        if not state.events:  # known only by refused events: no rows
            return
        try:
            result = evaluate(state, judge, state.judged_at or clock_now)
        except NotInCatalog:  # its item left the catalog: not judged (said once, `CaseSteps.unwatched`),
            pass              # its alerts stand as they were
        else:
            self.case(state, result.labels, result.deadline)
        for alert in state.alerts.values() if alerts is None else alerts:
            self.alert(alert, state)

    async def fact(self, fact: PenaltyFact) -> None:
        self.outbox.add(self.settings.peers_topic, fact.group.encode(), orjson.dumps(fact.to_json()))

    async def verdict(self, verdict: Verdict) -> None:
        self.outbox.add(self.settings.ticks_topic, verdict.case_id.encode(), verdict_signal(verdict))

    async def dead_letter(self, record: Any, topic: str, partition: int, reason: str, detail: str,
                          read: RefusedRecord | None = None,
                          case_labels: Callable[[str], tuple[str, str] | None] | None = None) -> None:
        """Refuse a message: to the store's dead letters and the DLQ topic, with the reason. Never
        raises: a letter that cannot be sent is logged, and kept in the store. `read`: the record
        as its refusal read it already; `case_labels`: (department, region) of a case the worker
        holds, for a letter that names its case but no department (`alerts.letters.filed_under`)."""
        value = record.value
        # A tombstone (no value) keeps no payload; what is not bytes (an internal record decoded) as JSON.
        raw = value if isinstance(value, bytes) else b"" if value is None else orjson.dumps(value)
        partition, offset, key = letter_origin(record, partition)  # a record sent on: as it came in
        letter = make_letter(topic, partition, offset, key, raw, reason, detail, self.catalog_source.judge.catalog,
                             read)
        if case_labels is not None and letter.case_id and not letter.department:
            labels = case_labels(letter.case_id)
            if labels is not None:
                letter = filed_under(letter, *labels)
        # The reason in the template: each reason's lines are limited apart (`streams.log_limits`).
        letters_log.warning("dead-lettered (" + reason + ") %s[%s]@%s: %s", topic, partition, offset, detail[:300])
        await self.keep_letter(letter, key)

    async def keep_letter(self, letter: DeadLetter, key: bytes | None) -> None:
        self.progress.dead_letters += 1
        by_reason = self.progress.letters_by_reason
        by_reason[letter.reason] = by_reason.get(letter.reason, 0) + 1
        metrics.EVENTS_DEAD_LETTERED.labels(letter.reason).inc()
        self.writer.add("dead_letters", dead_letter_row(letter, wall_now()))
        self.outbox.add(self.settings.dlq_topic, key if isinstance(key, bytes) else None,
                        orjson.dumps(letter.to_json()))


def _as_held(state: CaseState, events: list[CaseEvent]) -> list[CaseEvent]:
    """The versions `state` holds of `events` (new ones, copies of held ones), each once: the rows
    of the store are the events the case holds. A copy's row once replaced the held version's (the
    table keeps the last row of an event), so a case read back from the store, once let go, was
    judged on another channel or region than the one it held (found with a black-box test of a
    history imported, then sent live)."""
    held = {e.event_id: e for e in state.events}
    return list({e.event_id: held.get(e.event_id, e) for e in events}.values())


def _held_already(state: CaseState | None, duplicates) -> list[CaseEvent]:
    """The duplicates the state held before the unit (not those repeated within the unit)."""
    if state is None or not duplicates:
        return []
    before = {event.event_id for event in state.events}
    return [event for event in duplicates if event.event_id in before]


# An event keyed by its case, in another partition: placed by another partitioner than the Java
# client's murmur2 (librdkafka's default is consistent_random; found by a black-box test with
# confluent-kafka, whose clients were told they had keyed wrongly), or by the client itself (a
# partition it named: told of the partitioner alone, found by a black-box test).
PARTITIONER_HINT = ("; it was keyed by its case, but placed by another partitioner than the Java client's "
                    "(murmur2), or sent to a partition the client chose: a librdkafka client (confluent-kafka, "
                    "kcat, .NET, Go) needs partitioner=murmur2_random, and a client should name no partition")


class CaseSteps:
    """Apply and evaluate, then write: what the case agent does with a decoded unit."""

    def __init__(self, store, catalog, clock, outputs: Outputs, progress):
        self.store = store
        self.catalog_source = catalog
        self.clock = clock
        self.out = outputs
        self.progress = progress
        self.unwatched: Callable | None = None  # (record, topic, partition, case_id, error, state): the pipeline's
        self.hold_back: Callable | None = None  # awaited after each case: backpressure, set by the pipeline

    async def process(self, unit: Unit, decoded: Decoded) -> None:
        partition = unit.partition
        if decoded.latest is not None:
            self.clock.observe(partition, decoded.latest)
        now = self.clock.now(partition)
        hold = self.clock.input_incomplete
        known: dict[str, tuple[str, str] | None] = {}  # a case's labels, looked up once per unit

        def labels(case_id: str) -> tuple[str, str] | None:
            if case_id not in known:
                work = decoded.cases.get(case_id)
                known[case_id] = self.case_labels(case_id, [event for _, event in work.events] if work else ())
            return known[case_id]

        for letter in decoded.letters:
            await self.out.dead_letter(letter.record, letter.topic, letter.partition, letter.reason, letter.detail,
                                       read=letter.read, case_labels=labels)
        if decoded.elsewhere:
            await self.send_on(unit, decoded.elsewhere)
        for case_id, event_id, kept, home in decoded.refused_elsewhere:
            # Before, such a case never waited for its event: judged without it, a false red
            # skipped_node for a node that was done (found by review).
            self.out.outbox.add(self.out.settings.ticks_topic, case_id.encode(),
                                refusal_signal(case_id, event_id, kept), home)
        progress = self.progress
        new, duplicates = progress.events_new, progress.events_duplicate
        try:
            for case_id, work in decoded.cases.items():
                await self.case(case_id, work, unit, now, hold)
                if self.hold_back is not None:
                    await self.hold_back()
        finally:  # the metrics once a unit, from the progress its cases made
            if progress.events_new > new:
                metrics.EVENTS_NEW.inc(progress.events_new - new)
            if progress.events_duplicate > duplicates:
                metrics.EVENTS_DUPLICATE.inc(progress.events_duplicate - duplicates)

    def case_labels(self, case_id: str, arriving: list[CaseEvent] | tuple = ()) -> tuple[str, str] | None:
        """(department, region) of a case this worker holds (in its table, or seeded from the store;
        not read back for a letter), as its case row files it, or of one whose first events arrive
        in the same unit (`arriving`: a tombstone right after a case's acceptance was filed under no
        department; found by a black-box test); None for a case it does not hold, or knows only by
        refused events."""
        state = self.store.peek(case_id)
        if (state is None or not state.events) and arriving:
            state = CaseState(case_id=case_id, events=tuple(arriving))
        if state is None or not state.events:
            return None
        judge = self.catalog_source.judge
        try:
            labels = labels_of(state, item_of(state, judge), judge)
        except UnknownItem:  # its item left the catalog: what its handling names, if anything (`labels_of`)
            department, region = stated_labels(state.events)
            return (department, region or "") if department else None
        return labels.department, labels.region or ""

    async def send_on(self, unit: Unit, elsewhere: list[tuple[Any, str, int]]) -> None:
        """Events found outside their case's partition, each to its case's partition keyed by the
        case id, with the unit's other records (committed after them: at least once, and a copy
        sent twice is one event), in the unit's order, marked with where each came in
        (`SENT_FROM`). One that is refused (by the contract or the catalog) is refused there, a
        dead letter naming this position, and its case waits for it in the order of its events."""
        for record, case_id, home in elsewhere:
            self.out.outbox.add(unit.topic, case_id.encode(), record.value, home,
                                headers=sent_on_headers(record, unit.partition))
        metrics.EVENTS_REROUTED.inc(len(elsewhere))
        record, case_id, home = elsewhere[0]
        workers = self.out.settings.partitions
        if unit.partition >= workers:  # the topic has more partitions than the workers use: not the clients
            log.warning("%s[%s]: %d events in a partition beyond the %d the workers use (SUNLIGHT_PARTITIONS=%d, "
                        "fewer than the topic has) sent on to their case's partition among those %d; the clients "
                        "that wrote them are not at fault: set SUNLIGHT_PARTITIONS to the topic's partition count",
                        unit.topic, unit.partition, len(elsewhere), workers, workers, workers)
            return
        keyed_by_case = record.key == case_id.encode()
        log.warning("%s[%s]: %d events not in their case's partition (the contract keys an event by its case_id; "
                    "the first, at offset %s, of case %s, keyed %r) sent on to their case's partition (%s: %d)%s",
                    unit.topic, unit.partition, len(elsewhere), record.offset, case_id,
                    record.key if record.key is None or len(record.key) <= 200 else record.key[:200] + b"...",
                    case_id, home, PARTITIONER_HINT if keyed_by_case else "")

    async def case(self, case_id: str, work: CaseWork, unit: Unit, now: datetime, hold: bool) -> None:
        """`hold`: the input is incomplete (a replay): the case's facts are taken, and it is judged
        once the input is complete (`alerts.evaluate.awaiting_judgement`); a tick has nothing to do."""
        judge = self.catalog_source.judge
        partition = unit.partition
        state = await self.store.get(case_id, partition)
        events = [event for _, event in work.events]
        at = wall_now()  # when this is done: the alerts raised, the rows written
        batch = step_many(state, events, work.verdicts, judge, now, at, judging=not hold,
                          refusals=work.refusals, releases=work.releases)
        records = {id(event): record for record, event in work.events}
        for event, exc in batch.refused:
            await self.out.dead_letter(records[id(event)], unit.topic, partition, exc.reason, str(exc))
        for copy, held, differences in batch.conflicts:
            await self.conflicting(copy, held, differences, records[id(copy)], unit)
        result = batch.outcome
        tick = None if hold else work.tick
        if tick is not None and batch.state is not None and batch.state.events:
            try:
                judged = judge_case(result.state if result else batch.state, judge, max(now, tick), at)
            except UnknownItem as exc:
                if self.unwatched is not None:
                    await self.unwatched(work.tick_record, unit.topic, partition, case_id, exc, batch.state)
                judged = None
            if judged is not None and (result is None or judged.state is not result.state):
                result = judged if result is None else Outcome(judged.state, result.changed + judged.changed,
                                                               judged.labels, judged.deadline)
        if result is not None and result.state is not state:
            stored = encode_state(result.state, partition)
            if len(stored) > (MAX_STATE_BYTES if batch.new or batch.restated else MAX_JUDGED_STATE_BYTES):
                await self.too_large(state, work, unit, now, hold)
                return
            # Some events already in the state: a redelivery after a crash, which may have come
            # after the state's changelog record but before its rows were written; and a unit of
            # the redelivery can hold such events beside new ones.
            restored = case_id in self.store.from_store  # a seed from the store: its rows are there
            again = _held_already(state, batch.duplicates) if not restored else []
            await self.store.put(result.state, partition, stored)
            taken = _as_held(result.state, [*batch.new, *again, *batch.restated]) if again or batch.restated \
                else batch.new  # the events held, as they came
            for event in taken:
                self.out.event(event, judge.item(event.item_code).department, at)
            # The events its case waited for, come corrected: refused before this unit, or earlier in
            # it (a bad copy that comes after the event the case holds corrects nothing: its letter
            # stays, in whatever units the two come).
            waited = state.refused if state is not None else {}
            for event in batch.new:
                self.came_corrected(event, records[id(event)], waited, work, unit)
            self.out.outcome(result, at)
            # A tick that changed no alert, only the clock: it may be one delivered again after a
            # crash that came after the state's changelog record and before its rows were written
            # (taken again at a later clock, the judgement finds its alerts raised already). Its
            # alerts are written and published again, as for an unchanged tick below.
            ticked_only = tick is not None and not batch.new and not result.changed and state is not None \
                and not restored
            if again or ticked_only:  # and the alerts the state held already, which its changes leave out
                changed = {alert.alert_id for alert in result.changed}
                for alert in result.state.alerts.values():
                    if alert.alert_id not in changed:
                        self.out.alert(alert, result.state)
        elif state is not None and case_id not in self.store.from_store:
            # Nothing changed: a redelivery, or a tick or verdict sent again after a crash. Its
            # rows may not have been written, nor its alerts published: write them again (the
            # tables are keyed, so nothing is stored twice). A verdict concerns its decision's
            # alert alone, and a verdict of "not an outlier" that finds none has nothing to write.
            for event in _as_held(state, batch.duplicates):
                self.out.event(event, judge.item(event.item_code).department)
            if batch.duplicates or tick is not None:
                self.out.rewrite(state, judge, now)
            elif work.verdicts:
                decisions = {v.event_id for v in work.verdicts}
                alerts = [a for a in state.alerts.values() if a.evidence.get("event_id") in decisions
                          and a.rule.value == "discretion_outlier"]
                if alerts:
                    self.out.rewrite(state, judge, now, alerts)
        elif result is not None and tick is not None and settled_since(state) is not None:
            # A seed from the store, judged at its stored clock and unchanged, that has settled: the
            # store did not know it (`sinks.queries.settled_cases`), as for rows written before
            # `cases.settled_since`. Its case row again, with it, so that the next process on the
            # store leaves the case there.
            self.out.case(state, result.labels, result.deadline)
        self.progress.events_new += len(batch.new)  # (the metrics: `process`)
        self.progress.events_duplicate += len(batch.duplicates)
        for event in (*batch.new, *batch.duplicates):  # a redelivered decision's fact may have been lost too
            fact = penalty_fact(event, judge)
            if fact is not None:
                await self.out.fact(fact)

    def came_corrected(self, event: CaseEvent, record, waited, work: CaseWork, unit: Unit) -> None:
        """An event the case takes, which it waited for (`waited`: refused before the unit), or
        whose refusal came earlier in the unit: its letters are marked once its row is written
        (`sinks.writer.mark_letters_corrected`). A bad copy that comes after the event the case
        holds corrects nothing: its letter stays, in whatever units the two come."""
        refused_at = work.refused_at.get(event.event_id)
        if event.event_id in waited or (refused_at is not None and refused_at < record.offset):
            self.out.corrected(event, Correction(wall_now(), unit.partition, record.offset, unit.started))

    async def conflicting(self, copy: CaseEvent, held: CaseEvent, differences: list, record, unit: Unit) -> None:
        """An event that came again under an event_id the case holds, with other content: not the
        same event delivered twice, but another fact under its id. The version the case holds
        stands; the copy is a dead letter naming what differs, both values (a corrected fact needs
        an event_id of its own)."""
        metrics.EVENTS_CONFLICTING.inc()
        said = "; ".join(f"{name}: {mine!r} held, {theirs!r} in this copy" for name, mine, theirs in differences)
        await self.out.dead_letter(
            record, unit.topic, unit.partition, "conflicting_duplicate",
            f"case {held.case_id} holds event {held.event_id} ({held.type.value}) already, with other content "
            f"({said}). The case keeps the version it holds: send a corrected fact with an event_id "
            f"of its own")

    async def too_large(self, state: CaseState | None, work: CaseWork, unit: Unit, now: datetime,
                        hold: bool) -> None:
        """The unit's events would make the case's state too large for one changelog record: take
        them one at a time, and refuse each one that would (`MAX_STATE_BYTES`); then judge the case
        once, as any unit's (but while the input is incomplete, `hold`), its judgement allowed up to
        `MAX_JUDGED_STATE_BYTES`. An event the case waited for, taken, marks its letters as in any
        unit; one refused here leaves its case waiting, and its letters open. Before, a case filled
        to the first bound was judged never: the judgement's alerts would pass it, and were dropped
        with no word (a true red overdue lost on a trace of 1,500 steps: found by a black-box
        test)."""
        judge = self.catalog_source.judge
        partition = unit.partition
        before = state
        waited = state.refused if state is not None else {}
        for event_id, case_id, reason in work.refusals:  # as `step_many` records them
            state, _ = refuse(state, case_id, event_id, reason)
        for event_id in work.releases if state is not None else ():
            state = release(state, event_id)
        taken: list[tuple[Any, CaseEvent]] = []
        for record, event in work.events:
            try:
                outcome = step(state, event, judge, now, wall_now(), judging=False)
            except NotInCatalog as exc:  # its letter is written already
                state, _ = refuse(state, event.case_id, event.event_id, catalog_refusal(exc.reason, event))
                continue
            if not outcome.is_new:
                continue
            stored = encode_state(outcome.state, partition)
            if len(stored) > MAX_STATE_BYTES:
                await self.out.dead_letter(record, unit.topic, partition, "case_too_large",
                                           f"case {event.case_id} would hold {len(outcome.state.events)} events, "
                                           f"{len(stored)} bytes of state, more than the {MAX_STATE_BYTES} bytes "
                                           f"one changelog record may hold; the case keeps its earlier events")
                continue
            state = outcome.state
            taken.append((record, event))
        if state is None:
            return
        judged = None
        if not hold and state.events:
            judged = judge_case(state, judge, max(now, work.tick) if work.tick is not None else now, wall_now(),
                                lambda: cause_of([event for _, event in taken], judge))
            stored = encode_state(judged.state, partition)
            if len(stored) > MAX_JUDGED_STATE_BYTES:
                log.error("case %s: its judgement would make its state %d bytes, more than the %d one changelog "
                          "record may hold; its %d alert changes are not kept (the case holds %d events)",
                          state.case_id, len(stored), MAX_JUDGED_STATE_BYTES, len(judged.changed), len(state.events))
                judged = None
            else:
                state = judged.state
        if state is not before:
            await self.store.put(state, partition, encode_state(state, partition))
        for record, event in taken:
            self.out.event(event, judge.item(event.item_code).department)
            self.came_corrected(event, record, waited, work, unit)
            self.progress.events_new += 1
            fact = penalty_fact(event, judge)
            if fact is not None:
                await self.out.fact(fact)
        if judged is not None:
            self.out.outcome(judged)
