"""The Faust app: topics, the case and peer-group tables, the agents and their timers.

The case agent consumes two co-partitioned topics, ``case-events`` (the contract's input)
and ``sunlight-case-ticks`` (internal: a timer asking for a case to be re-judged, or a peer
group's verdict on one of the case's decisions). The peer agent consumes
``sunlight-penalty-peers`` (fining decisions, keyed by item and violation). Both take *units*,
what one fetch returned for one partition (`streams.faust_patches`), and run them through their
steps (`streams.steps.CaseSteps`, `streams.peer_steps.PeerSteps`): decode, apply and evaluate,
write; a unit is acknowledged once its rows are written and its alerts published, so Faust never
commits an offset past unwritten data. Faust changes a table only inside stream iteration, so the
timers never touch the tables: they send a tick to the partition that holds the case.
"""

from __future__ import annotations

import asyncio
import functools
import logging
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta, timezone

import faust
import orjson

from alerts.notices import ResendPolicy
from alerts.peers import PenaltyFact
from alerts.state import CaseState
from sinks.writer import ClickHouseWriter
from streams import faust_patches, metrics
from streams.catalog_reload import CatalogReload
from streams.catalog_source import CatalogSource
from streams.delivery import DeliveryWatch
from streams.internal_wire import tick
from streams.let_go import LetGo
from streams.settings import DEFAULT_MAIL_FROM, Settings
from streams.codec import stored_index_entry
from streams.console.links import reply_links
from streams.peer_steps import PeerSteps
from streams.steps import CaseSteps, Outputs, Unit, decode_case_unit, home_partition
from streams.store import CaseStore, GroupStore, HeldDecisions, forget_partitions, held_keys
from streams.notice_resend import NoticeResend
from streams.notices import LeftForTheNextStart, NoticeLog, NoticeSteps, stored_notice_partition
from streams.read_back import StoreReadBack
from streams.tickets import TicketStore, TicketSteps, decode_ticket_unit, route_unit
from streams.timers import DeadlineIndex
from streams.write_step import WriteStep

log = logging.getLogger(__name__)

TABLE_NAME = "cases"
PEERS_TABLE = "penalty-peers"
TICKETS_TABLE = "tickets"
NOTICES_TABLE = "notice-log"
TICKET_CACHE_SIZE = 20_000
STATE_CACHE_SIZE = 50_000
GROUP_CACHE_SIZE = 2_000
_EPOCH = datetime(1970, 1, 1, tzinfo=timezone.utc)

faust_patches.apply()


def split_store(settings, held: set[int]) -> str | None:
    """What to say when a worker on a Kafka cluster, with the embedded store, holds only some of the
    case partitions: another worker is in its group with a store of its own, and a case one of them
    lets go and reads back from its store lacks what the other wrote (false red skipped_node cards:
    found by a black-box test). docs/deploy.md says the workers need a ClickHouse server; before,
    nothing said so to one that was given none."""
    if not settings.kafka or settings.clickhouse or len(held) >= settings.partitions:
        return None
    return (f"this worker holds {len(held)} of the {settings.partitions} partitions of {settings.case_events_topic}: "
            f"another worker is in its group ({settings.app_id}), and each keeps the embedded store of its own "
            f"SUNLIGHT_DATA_DIR (SUNLIGHT_CLICKHOUSE is not set), so the store is split between them, and a case "
            f"either lets go is read back without the events the other wrote (this worker lets no case go from "
            f"now on): give every worker the same ClickHouse server (SUNLIGHT_CLICKHOUSE; docs/deploy.md)")


class PipelineFailed(RuntimeError):
    """The worker cannot go on (its deadline index could not be rebuilt): it must stop, loudly."""


@dataclass
class Progress:
    """What the agents have done, for `replay` to know when everything is processed."""
    case_events_topic: str = "case-events"
    taken: dict[tuple[str, int], int] = field(default_factory=dict)  # (topic, partition) -> last offset
    events_new: int = 0
    events_duplicate: int = 0
    dead_letters: int = 0
    letters_by_reason: dict[str, int] = field(default_factory=dict)
    alerts_changed: int = 0

    @property
    def processed_offsets(self) -> dict[int, int]:
        """The last case-events offset processed, by partition."""
        return {p: offset for (topic, p), offset in self.taken.items() if topic == self.case_events_topic}


def _tick_delivered(index: DeadlineIndex, case_id: str, partition: int, now: datetime, ticked: set[str] | None,
                    delivery: asyncio.Future) -> None:
    """A tick the broker never took (the producer gave up on it) is due again, unless its case was
    scheduled anew meanwhile: else the card it was to raise was lost until a restart."""
    if delivery.cancelled() or delivery.exception() is None:
        return
    if ticked is not None:
        ticked.discard(case_id)
    if case_id not in index:
        index.schedule(case_id, now, partition)
    log.warning("the due moment of %s was not delivered (%s): tried again at the next tick", case_id,
                delivery.exception())


def case_changelog_topic(settings: Settings) -> str:
    """The case table's changelog topic."""
    return f"{settings.app_id}-{TABLE_NAME}-changelog"


def topic_names(settings: Settings) -> list[tuple[str, int]]:
    """Every topic the app uses, with its partition count (created explicitly: Tansu quirk)."""
    p = settings.partitions
    return [
        (settings.case_events_topic, p), (settings.ticks_topic, p), (settings.alerts_topic, p),
        (settings.dlq_topic, p), (case_changelog_topic(settings), p),
        (settings.peers_topic, p), (f"{settings.app_id}-{PEERS_TABLE}-changelog", p),
        (settings.ticket_actions_topic, p), (settings.ticket_ticks_topic, p),
        (f"{settings.app_id}-{TICKETS_TABLE}-changelog", p), (settings.notices_topic, p),
        (f"{settings.app_id}-{NOTICES_TABLE}-changelog", p),
        (f"{settings.app_id}-__assignor-__leader", 1),
    ]


class Pipeline:
    def __init__(self, settings: Settings, bootstrap: str, catalog: CatalogSource, writer: ClickHouseWriter,
                 clock, tansu: bool):
        self.settings = settings
        self.bootstrap = bootstrap
        self.catalog_source = catalog
        self.writer = writer
        # What the tables let go, read back from the store when needed.
        self.read_back = StoreReadBack(writer, settings.flush_interval, lambda: self.stopping, catalog.ticket_policy)
        self.clock = clock
        self.index = DeadlineIndex()
        self.progress = Progress(case_events_topic=settings.case_events_topic)
        self.fire_lock = asyncio.Lock()
        self.index_ready = False
        self.seeded = False  # seeded from the store at start (a fresh embedded broker: `restore`)
        self.stopping = False  # set when the worker is asked to stop (a signal, the end of a replay)
        self.stop_signalled = False  # and when a signal asked it (`streams.runtime._stop_on_signals`)
        # Set when a signal asks a worker on its own broker to take what that broker holds, then stop
        # (`streams.runtime._drain_then_stop`): not ready from then on, though still taking events.
        self.draining = False
        self.failure: BaseException | None = None  # set when the worker cannot go on
        self.failed = asyncio.Event()
        self.assigned: set = set()  # the partitions of the agents' topics this worker holds
        self.assignments = 0  # how many assignments this worker was given (`_rebuild_index`)
        # Cases whose state or tickets were written since streams.health.Watch last counted them
        # (sets while a watch counts them, as `sunlight worker` does; None: nobody counts).
        self.touched_cases: set[str] | None = None
        self.touched_tickets: set[str] | None = None
        # Tansu quirk: group joins wait about half the session timeout, so keep it short there.
        session = settings.session_timeout or (6.0 if tansu else 30.0)
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
            # Faust refuses a session timeout above the request timeout (90 s by default): the
            # consumer's thread crashed with 230 lines of tracebacks for SUNLIGHT_SESSION_TIMEOUT=120
            # (found by a black-box test).
            broker_request_timeout=max(90.0, session + 30.0),
            broker_heartbeat_interval=min(session / 3, 3.0),
            broker_commit_interval=1.0,
            table_standby_replicas=0,
            stream_buffer_maxsize=16,  # units, not messages
            broker_max_poll_records=settings.unit_max_messages,
            # Table changelogs and alerts are many small records: let them share requests.
            producer_linger=0.005,
            producer_max_batch_size=1_048_576,
        )
        app = self.app
        # Each agent's topics, by topic; the last of them is the one a nudge goes through (its
        # internal topic, or its only one: see streams.delivery).
        self.agent_topics: dict[str, tuple[str, ...]] = {topic: group for group in (
            (settings.case_events_topic, settings.ticks_topic), (settings.peers_topic,),
            (settings.alerts_topic, settings.ticket_ticks_topic), (settings.ticket_actions_topic,),
            (settings.notices_topic,)) for topic in group}
        faust_patches.deliver_units(self.agent_topics)
        self.delivery = DeliveryWatch(app, bootstrap, settings, self.agent_topics, self.assigned, self.send)
        units = faust_patches.UNIT_CODEC
        self.events_topic = app.topic(settings.case_events_topic, settings.ticks_topic, key_serializer="raw",
                                      value_serializer=units, partitions=settings.partitions)
        self.peers_topic = app.topic(settings.peers_topic, key_serializer="raw", value_serializer=units,
                                     partitions=settings.partitions)
        # Tickets: the alerts (keyed by case) with the ticket ticks, and the actions to route.
        self.ticket_topic = app.topic(settings.alerts_topic, settings.ticket_ticks_topic, key_serializer="raw",
                                      value_serializer=units, partitions=settings.partitions)
        self.actions_topic = app.topic(settings.ticket_actions_topic, key_serializer="raw", value_serializer=units,
                                       partitions=settings.partitions)
        self.notices_topic = app.topic(settings.notices_topic, key_serializer="raw", value_serializer=units,
                                       partitions=settings.partitions)
        # The tables keep each state as its stored bytes (`value_type=bytes`, see streams.codec);
        # decoded states of recently used cases sit in front of them (CaseStore).
        self.table = app.Table(TABLE_NAME, default=None, partitions=settings.partitions, value_type=bytes)
        self.peers = app.Table(PEERS_TABLE, default=None, partitions=settings.partitions, value_type=bytes)
        self.store = CaseStore(self.table, self._write_case, STATE_CACHE_SIZE, self._delete_case)
        self.store.load = self.read_back.cases
        self.groups = GroupStore(self.peers, self._write_group, GROUP_CACHE_SIZE)
        # A replay's decisions, held by the peer agent until the input is complete (`PeerSteps.process`).
        self.held_decisions = HeldDecisions()
        self.outbox = faust_patches.Outbox(app, settings.partitions)
        self.outputs = Outputs(writer, self.send, self.outbox, settings, self.progress, catalog)
        self.write_step = WriteStep(writer, self.outbox, self._refused_row)
        self.case_steps = CaseSteps(self.store, catalog, clock, self.outputs, self.progress)
        self.case_steps.unwatched = self._unwatched
        self.unwatched_said: set[str] = set()  # the letters of cases no longer watched, kept by this process
        self.case_steps.hold_back = self._hold_back
        self.peer_steps = PeerSteps(self.groups, self.held_decisions, catalog, clock, self.outputs)
        self.peer_steps.hold_back = self._hold_back
        self.tickets_table = app.Table(TICKETS_TABLE, default=None, partitions=settings.partitions, value_type=bytes)
        self.ticket_store = TicketStore(self.tickets_table, self._write_tickets, TICKET_CACHE_SIZE,
                                        self._delete_tickets)
        self.ticket_store.load = self.read_back.tickets
        self.ticket_index = DeadlineIndex()
        self.silences: tuple = ()  # read from the store (sinks.queries.stored_silences), kept current
        self.silences_ended = False  # a silence ended sooner, not yet looked at (`reload_silences`)
        self.ticket_steps = TicketSteps(self.ticket_store, catalog, clock, self.outputs, self.ticket_policy,
                                        catalog.notice_text)
        self.ticket_steps.hold_back = self._hold_back
        self.notice_table = app.Table(NOTICES_TABLE, default=None, partitions=settings.partitions, value_type=bytes)
        self.notice_log = NoticeLog(self.notice_table, self._write_notice, self._delete_notice)
        self.notice_log.load = self.read_back.notice_statuses
        # From the store, for a fresh embedded broker: notices recorded but never handled, and alert
        # versions written but never taken by the ticket agent (streams.runtime.restore_from_store).
        self.unsent_notices: list[tuple[bytes, bytes]] = []
        self.untaken_alerts: list[tuple[bytes, bytes]] = []
        # Settled cases let go of the tables once the store holds them (`streams.let_go`).
        self.let_go = LetGo(self.store, self.table, self.ticket_store, self.tickets_table, self.outputs,
                            self.read_back, self.delivery, clock, self.index, settings, catalog,
                            lambda: self.index_ready)
        self.let_go.noted_case = self._note_case
        self.let_go.noted_tickets = self._note_tickets
        self.catalog_reload = CatalogReload(catalog, self.store, self.groups, self.index, self.outputs, clock,
                                            settings.partitions,
                                            lambda: self.delivery.assigned_partitions(settings.case_events_topic))
        self.notice_steps = NoticeSteps(self.notice_log, notice_senders(settings), settings.notify, writer,
                                        settings.notice_attempts, settings.notice_retry_seconds,
                                        settings.notice_concurrency, lambda: self.stop_signalled)
        self.notice_resend = NoticeResend(
            ResendPolicy(timedelta(seconds=settings.notice_resend_after), settings.notice_resend_rounds),
            lambda fn, *args: writer.run(fn, *args), catalog, self.send, settings.notices_topic, settings.partitions,
            lambda: self.delivery.assigned_partitions(settings.notices_topic),
            sending=bool(settings.notify and self.notice_steps.senders and settings.notice_resend_after > 0),
            renew=links.renewed if (links := reply_links(settings)) is not None else None)
        app.agent(self.events_topic, name="case-agent")(self.case_agent)
        app.agent(self.peers_topic, name="peer-agent")(self.peer_agent)
        app.agent(self.ticket_topic, name="ticket-agent")(self.ticket_agent)
        app.agent(self.actions_topic, name="action-router")(self.action_router)
        app.agent(self.notices_topic, name="notifier")(self.notifier)
        app.timer(settings.tick_interval)(self.fire_due)
        app.timer(settings.tick_interval)(self.fire_ticket_due)
        app.timer(settings.flush_interval)(self.flush)
        app.timer(settings.tick_interval)(self.let_go.settled)
        app.timer(settings.catalog_reload_interval)(self.catalog_reload.run)
        app.timer(settings.catalog_reload_interval)(self.reload_silences)
        app.timer(1.0)(self.delivery.retry)
        # Every minute (sooner with a shorter first wait): the failed notices counted, those due asked for.
        app.timer(min(settings.notice_resend_after or 60.0, 60.0))(self.notice_resend.run)
        app.on_partitions_revoked.connect(self._on_revoked)
        app.on_partitions_assigned.connect(self._on_assigned)

    # -- the agents: take a unit, run the steps, acknowledge it once written ------------------

    async def case_agent(self, stream):
        async def steps(unit: Unit) -> None:
            decoded = decode_case_unit(unit, self.settings.ticks_topic, self.settings.partitions)
            try:
                await self.store.bring_back(decoded.cases)
                await self.case_steps.process(unit, decoded)
            finally:
                self.store.in_hand = set()
                if unit.topic == self.settings.ticks_topic:
                    self.store.ticked.difference_update(c for c, work in decoded.cases.items() if work.tick)
            self.index_states(unit)

        await self._consume(stream, steps)

    async def peer_agent(self, stream):
        """Penalty peer groups: decisions join their group, and the verdicts that change go to their cases."""
        await self._consume(stream, self.peer_steps.process)

    async def ticket_agent(self, stream):
        """Supervision tickets: alert versions, routed actions and ticks, per case (streams.tickets)."""
        async def steps(unit: Unit) -> None:
            cases, letters = decode_ticket_unit(unit, self.settings.ticket_ticks_topic)
            await self.ticket_steps.process(unit, cases, letters)
            self.let_go.tickets_after_their_cases()
            self.index_tickets()

        await self._consume(stream, steps)

    async def action_router(self, stream):
        """Actions from the CLI or an OA system, keyed any way, each to its case's partition."""
        async def steps(unit: Unit) -> None:
            await route_unit(unit, self.outputs, self.settings.ticket_ticks_topic)

        await self._consume(stream, steps)

    async def notifier(self, stream):
        """Recorded notices out by SMTP and webhook, each once (streams.notices)."""
        async def steps(unit: Unit) -> None:
            await self.notice_steps.process(unit, self.outputs.dead_letter)

        await self._consume(stream, steps)

    async def _consume(self, stream, steps) -> None:
        """Each unit (and what Faust failed to deliver before it) through the steps, then
        acknowledged once its rows are written. A stop (SIGTERM, the end of a replay) cancels the
        agent: that is the end of its work, not a crash to log."""
        try:
            async for event in stream.noack().events():
                message = event.message
                unit = Unit(message.topic, message.partition, message.value, message)
                for missing in await self.delivery.missing_before(unit):
                    await self._run(steps, missing)
                await self._run(steps, unit)
                await self._hold_back()
        except asyncio.CancelledError:
            if not self.stopping:
                raise
        except Exception as exc:  # outside a unit's steps (sending its records, say): the agent is gone
            # Faust would log the agent as crashed and run on without it, ready by every probe,
            # its messages never acknowledged, so that a stop would wait for them for ever.
            log.exception("an agent stopped on an unexpected error; the worker stops")
            self.fail(PipelineFailed(f"an agent stopped on an unexpected error: {exc!r}"))

    async def _run(self, steps, unit: Unit) -> None:
        """The steps over a unit; it is acknowledged once its rows are written, or, when the steps
        hold it (True: a replay's decisions, `PeerSteps.process`), once what it holds is judged and written."""
        held = False
        try:
            held = bool(await steps(unit))
        except LeftForTheNextStart:  # a signal stops the worker: neither finished nor committed
            faust_patches.stop_waiting_for(self.app.consumer, unit.message)
            return
        except Exception:  # never stop the worker on one unit: its messages are kept as dead letters
            log.exception("unexpected error on %s[%s]@%s..%s", unit.topic, unit.partition, unit.first_offset,
                          unit.last_offset)
            for record in unit.records:
                await self.outputs.dead_letter(record, unit.topic, unit.partition, "internal_error",
                                               "unexpected error; see the worker log")
        finally:
            await self.outbox.send()  # the unit's changelog records, facts, verdicts and letters
            key = (unit.topic, unit.partition)
            self.progress.taken[key] = max(self.progress.taken.get(key, -1), unit.last_offset)
        consumer, message, first = self.app.consumer, unit.message, unit.first_offset
        acknowledge = lambda: faust_patches.acknowledge_unit(consumer, message, first)  # noqa: E731
        if held:
            self.held_decisions.hold_ack(unit.partition, acknowledge)
        else:
            self.writer.on_written(acknowledge)

    async def _hold_back(self) -> None:
        """Flush a full batch; while the sink is failing or slow, go no further (checked after each
        case of a unit, so the buffer passes its limit by at most one case's rows)."""
        if self.writer.full:
            await self.flush()
        while self.writer.over_capacity:  # backpressure
            await asyncio.sleep(self.settings.flush_interval)
            await self.flush()

    def index_states(self, unit: Unit) -> None:
        """Keep the deadline and eviction indexes in step with the states just written."""
        for case_id in self.store.written:
            state = self.store.cache.get(case_id)
            if state is None:
                continue
            self.index.schedule(case_id, state.next_due, unit.partition)
            self.let_go.schedule(case_id, state, unit.partition)
        if self.touched_cases is not None:  # counted by status on a timer (streams.health.Watch)
            self.touched_cases |= self.store.written
        self.store.written.clear()
        metrics.OPEN_DEADLINES.set(len(self.index))

    def _note_case(self, case_id: str) -> None:
        if self.touched_cases is not None:  # counted by status again (streams.health.Watch)
            self.touched_cases.add(case_id)

    def _note_tickets(self, case_id: str) -> None:
        if self.touched_tickets is not None:
            self.touched_tickets.add(case_id)

    def index_tickets(self) -> None:
        for case_id, partition in self.ticket_store.written.items():
            held = self.ticket_store.cache.get(case_id)
            if held is not None:
                self.ticket_index.schedule(case_id, held.due_under(self.silences), partition)
        if self.touched_tickets is not None:
            self.touched_tickets.update(self.ticket_store.written)
        self.ticket_store.written.clear()
        metrics.OPEN_TICKET_DEADLINES.set(len(self.ticket_index))

    def _write_notice(self, notice_id: str, stored: bytes, partition: int) -> None:
        self.outbox.write_table(self.notice_table, notice_id, stored, partition)

    def _delete_notice(self, notice_id: str, partition: int) -> None:
        self.outbox.delete_table(self.notice_table, notice_id, partition)

    def _write_tickets(self, case_id: str, stored: bytes, partition: int) -> None:
        self.outbox.write_table(self.tickets_table, case_id, stored, partition)

    def _delete_tickets(self, case_id: str, partition: int) -> None:
        self.outbox.delete_table(self.tickets_table, case_id, partition)

    def _write_case(self, case_id: str, stored: bytes, partition: int) -> None:
        self.outbox.write_table(self.table, case_id, stored, partition)

    def _delete_case(self, case_id: str, partition: int) -> None:
        self.outbox.delete_table(self.table, case_id, partition)

    def _write_group(self, key: str, stored: bytes, partition: int) -> None:
        self.outbox.write_table(self.peers, key, stored, partition)

    async def send(self, topic: str, key: bytes | None, value: bytes, partition: int | None) -> None:
        """A record to a topic, through the producer (its future completes once the broker has it;
        Faust flushes the producer before it commits offsets)."""
        await self.app.producer.send(topic, key, value, partition, None, None)

    async def _unwatched(self, record, topic: str, partition: int, case_id: str, error: Exception,
                         state: CaseState | None = None) -> None:
        """A case whose item left the catalog is no longer judged: said, counted and kept with the
        dead letters, so that nobody takes its silence for a clean case. One letter per case and
        item, whatever tick found it: its payload names the case, the item and the department (each
        start judges such a case again, and a letter per tick added one per case at every start,
        without a department: found by a black-box test)."""
        from alerts.letters import make_letter

        first = state.events[0] if state is not None and state.events else None
        # The department its events name, else the one its cards were raised under (the item's).
        known = [e.department for e in state.events] + [a.department for a in state.alerts.values()] if state else []
        department = next((d for d in known if d), None)
        payload = orjson.dumps({"case_id": case_id, "item_code": getattr(error, "item_code", None)
                                or (first.item_code if first else None), "department": department,
                                "region": first.region if first else None})
        letter = make_letter(topic, partition, record.offset, record.key, payload, "item_left_catalog",
                             f"case {case_id} is no longer watched: {error}", self.catalog_source.judge.catalog)
        if letter.letter_id in self.unwatched_said:  # judged again (a reload, a tick): said once a process
            return
        self.unwatched_said.add(letter.letter_id)
        metrics.CASES_UNWATCHED.inc()
        log.error("case %s is no longer watched: %s (it is judged again when an event arrives after the item "
                  "returns to the catalog)", case_id, error)
        await self.outputs.keep_letter(letter, record.key)

    # -- restoring from the store -------------------------------------------------------------------

    def restore(self, states: dict[str, CaseState], facts: list[PenaltyFact], settled: set[str],
                held_verdicts: dict[tuple[str, str], str] | None = None) -> None:
        """Seed case states and peer groups from the store, and name the settled cases it keeps (see
        streams.runtime.restore_from_store); `held_verdicts`: the verdicts the cases hold
        (`PeerSteps.restore`)."""
        self.store.seed(states, settled)
        self.seeded = True
        self.peer_steps.restore(facts, held_verdicts)

    def restore_tickets(self, cases: dict, at_rest: set[str]) -> None:
        """Seed cases' tickets from the store (their moments are indexed once the index is rebuilt),
        and name the settled cases whose tickets, at rest, it keeps."""
        self.ticket_store.seed(cases, at_rest)

    async def judge_restored_cases(self) -> int:
        """Judge, at the current clock, every case restored from the store that no new fact has
        changed (`restored_unjudged`)."""
        pending = self.restored_unjudged()
        for case_id, partition in pending.items():
            self.index.schedule(case_id, _EPOCH, partition)
        return len(pending)

    def restored_unjudged(self) -> dict[str, int]:
        """The cases restored from the store and not judged since, by partition: the seeds no unit
        has taken, and those a unit took without changing them (events they already held, as a
        re-import sends). A case rebuilt from the store has no moment due of its own, so this is
        what judges it at the clock, under the catalog in force."""
        partitions = list(range(self.settings.partitions))
        return {case_id: partition_of(case_id, partitions) for case_id in (*self.store.seeds, *self.store.from_store)}

    # -- timers ------------------------------------------------------------------------------------

    async def fire_due(self) -> int:
        """Send a tick for every case whose next due moment has come (event time in replay). One
        at a time: when it returns, everything it took from the index has been sent (`replay`
        relies on that)."""
        sent = await self._fire(self.index, self.settings.ticks_topic, self.store.ticked)
        if sent:
            metrics.TICKS_SENT.inc(sent)
            metrics.OPEN_DEADLINES.set(len(self.index))
        return sent

    async def fire_ticket_due(self) -> int:
        """Send a tick for every case whose tickets have a moment due (opening, deadline, level 2)."""
        if self.clock.tickets_held:  # a replay's cases are judged first (streams.clock.EventTimeClock.tickets_held)
            return 0
        sent = await self._fire(self.ticket_index, self.settings.ticket_ticks_topic)
        if sent:
            metrics.OPEN_TICKET_DEADLINES.set(len(self.ticket_index))
        return sent

    async def _fire(self, index: DeadlineIndex, topic: str, ticked: set[str] | None = None) -> int:
        """Pop what is due from a deadline index and send each case a tick on `topic` (noting it in
        `ticked` until taken). Nothing while a replay's input is incomplete: nothing is judged before
        its end, its cases' then its tickets' (`streams.clock.EventTimeClock.input_incomplete`)."""
        async with self.fire_lock:
            if not self.index_ready or self.clock.input_incomplete:
                return 0
            due = index.pop_due(self.clock.now)
            for n, (case_id, partition, now) in enumerate(due):
                try:
                    delivery = await self.app.producer.send(
                        topic, case_id.encode(), tick(case_id, now),
                        partition, None, None)
                except Exception as exc:
                    # Not sent (the broker unreachable): this case and those after it are due again
                    # at the next tick; popped and dropped, their cards were lost until a restart.
                    for left, left_partition, left_now in due[n:]:
                        index.schedule(left, left_now, left_partition)
                    log.warning("%d due moment(s) not sent to %s, tried again at the next tick: %s", len(due) - n,
                                topic, exc)
                    return n
                if ticked is not None:
                    ticked.add(case_id)
                delivery.add_done_callback(functools.partial(_tick_delivered, index, case_id, partition, now, ticked))
            return len(due)

    async def flush(self) -> bool:
        """Write what is buffered, publish its alerts, acknowledge its messages (`streams.write_step`)."""
        return await self.write_step.flush()

    async def _refused_row(self, item) -> None:
        """A row ClickHouse refused while it accepted the rest of its batch: to the DLQ, not lost."""
        from alerts.letters import make_letter

        key = str(item.row.get("case_id") or "")
        if key:  # the store cannot give this case back whole: it stays
            self.store.keep.add(key)
        if item.table == "notices":  # nor say that this notice is finished: the notifier's table keeps it
            self.notice_log.keep.add(str(item.row.get("notice_id")))
        payload = orjson.dumps(item.row, default=str)
        letter = make_letter(f"clickhouse:{item.table}", -1, -1, key or None, payload, "store_refused", item.error,
                             self.catalog_source.judge.catalog)
        log.error("ClickHouse refused a %s row of case %s, sent to the DLQ: %s", item.table, key, item.error[:300])
        await self.outputs.keep_letter(letter, key.encode() or None)

    def ticket_policy(self):
        """The catalog's ticket policy with the silences in force."""
        return replace(self.catalog_source.ticket_policy(), silences=self.silences)

    def read_silences(self) -> tuple:
        with self.writer.lock:
            return silences_in_store(self.writer.client)

    async def reload_silences(self) -> None:
        """Silences added or expired (by `sunlight silences`, in the store) take effect here. One
        that ends sooner (expired early) has every case's tickets this worker holds looked at now:
        those waiting it out open, and the notices it held are sent (they waited for its old end)."""
        from alerts.tickets import ended_sooner

        try:
            silences = await self.writer.run(silences_in_store)
        except Exception as exc:  # the store is down: the silences in force stay
            log.warning("could not read the silences from the store, keeping %d: %s", len(self.silences), exc)
            return
        before, self.silences = self.silences, silences
        # Seen while the index is rebuilt (a rebalance), it is looked at once the index is ready.
        self.silences_ended = self.silences_ended or ended_sooner(before, silences)
        if self.silences_ended and self.index_ready:
            self.silences_ended = False
            for case_id in held_keys(self.ticket_store):
                partition = home_partition(case_id, self.settings.partitions)
                self.ticket_index.schedule(case_id, self.clock.now(partition), partition)

    # -- rebalancing ---------------------------------------------------------------------------------

    async def _on_revoked(self, sender, revoked, **kwargs) -> None:
        await self.flush()
        await self.outbox.send()  # states and tombstones in hand reach the changelog before it is read again
        self.delivery.on_revoked(revoked)  # the next owner starts from the committed offsets
        self.store.forget_cache()
        self.groups.forget_cache()
        # Decisions held for the end of a replay's input: the next owner has them again (unacknowledged).
        self.held_decisions.drop_partitions({tp.partition for tp in revoked if tp.topic == self.settings.peers_topic})
        self.index.drop_partitions({tp.partition for tp in revoked
                                    if tp.topic == self.settings.case_events_topic})
        case_partitions = {tp.partition for tp in revoked if tp.topic == self.settings.case_events_topic}
        self.let_go.drop_partitions(case_partitions)
        ticks_revoked = {tp.partition for tp in revoked if tp.topic == self.settings.ticks_topic}
        if ticks_revoked:  # their ticks go to the next owner
            partitions = list(range(self.settings.partitions))
            self.store.ticked = {c for c in self.store.ticked if partition_of(c, partitions) not in ticks_revoked}
        self.ticket_store.forget_cache()
        self.ticket_index.drop_partitions({tp.partition for tp in revoked if tp.topic == self.settings.alerts_topic})

    def forget_unassigned(self, assigned) -> None:
        """Out of the tables' data, what they hold of the partitions this worker no longer holds
        (their next owner's now), once an assignment is known: a revocation names every partition
        (aiokafka's rebalance is eager), kept ones too. Faust's memory store drops only the keys
        it recovered, once the next recovery is over, never those written since. Kept, another
        worker's cases were indexed again at the next assignment and ticked on their stale
        deadlines, judged again at a catalog reload, and its peer groups judged again there too,
        their stale copies written over their owner's in the changelog and their verdicts sent to
        the cases; and a partition given back was recovered over them, which left the cases,
        tickets and notices its owner had let go meanwhile once compaction had removed their
        tombstones. Each key's partition: the one a case's stored state names (no hash of a
        million keys), a notice's record names, and the key's own (a case's tickets, a peer
        group: `home_partition`)."""
        n = self.settings.partitions

        def not_held(topic: str) -> set[int]:
            return set(range(n)) - {tp.partition for tp in assigned if tp.topic == topic}

        forget_partitions(self.table, not_held(self.settings.case_events_topic),
                          lambda _, stored: stored_index_entry(stored)[0])
        forget_partitions(self.tickets_table, not_held(self.settings.alerts_topic), lambda key, _: home_partition(key, n))
        forget_partitions(self.peers, not_held(self.settings.peers_topic), lambda key, _: home_partition(key, n))
        forget_partitions(self.notice_table, not_held(self.settings.notices_topic),
                          lambda _, stored: stored_notice_partition(stored))

    async def _on_assigned(self, sender, assigned, **kwargs) -> None:
        faust_patches.recovery_begins(self.app)  # the index waits for this assignment's recovery
        self.forget_unassigned(assigned)
        self.delivery.on_assigned(assigned, asyncio.get_running_loop().time())
        split = split_store(self.settings, {tp.partition for tp in assigned
                                            if tp.topic == self.settings.case_events_topic})
        if split:
            log.error("%s", split)
            self.let_go.store_split = True
        self.index_ready = False
        self.assignments += 1
        asyncio.ensure_future(self._rebuild_index(self.assignments))

    async def _rebuild_index(self, assignment: int | None = None) -> None:
        """After recovery, index the open deadlines of the cases this worker now holds. If that
        fails, the worker cannot fire deadlines: it says so and stops (`failed`), never hangs.
        `assignment`: the assignment it is for (`assignments`); one that a later assignment
        overtook while it waited does nothing (the later one's rebuild does it), and each indexes
        the partitions held only (found by review: a rebuild still waiting when the next
        revocation came indexed the partitions on their way to another worker)."""
        while not faust_patches.recovery_done(self.app):
            await asyncio.sleep(0.1)
        if assignment is not None and assignment != self.assignments:
            return
        try:
            assigned_partitions = self.delivery.assigned_partitions(self.settings.case_events_topic)
            for case_id, partition, next_due, settled in self.indexed_cases():
                if partition not in assigned_partitions:
                    continue
                if next_due:
                    self.index.schedule(case_id, datetime.fromisoformat(next_due), partition)
                elif settled is not None:
                    self.let_go.recovered(case_id, settled, partition)
            partitions = list(range(self.settings.partitions))
            if self.clock.live:  # the cases restored from the store: judged at the next tick
                for case_id, partition in self.restored_unjudged().items():
                    if partition in assigned_partitions:
                        self.index.schedule(case_id, _EPOCH, partition)
            assigned_ticket_partitions = self.delivery.assigned_partitions(self.settings.alerts_topic)
            seeds = [(case_id, held.due_under(self.silences)) for case_id, held in self.ticket_store.seeds.items()]
            for case_id, next_due in [*self.ticket_store.stored(self.silences), *seeds]:
                partition = partition_of(case_id, partitions)
                if partition in assigned_ticket_partitions:
                    self.ticket_index.schedule(case_id, next_due, partition)
        except Exception as exc:
            log.exception("could not rebuild the deadline index from the case table; the worker stops")
            self.fail(PipelineFailed(f"the deadline index could not be rebuilt from the case table: {exc}"))
            return
        self.index_ready = True
        metrics.OPEN_DEADLINES.set(len(self.index))
        metrics.OPEN_TICKET_DEADLINES.set(len(self.ticket_index))
        if not self.seeded and self.clock.live:
            # The table recovered from the changelog (a broker that outlives the process: a Kafka
            # cluster) was judged under whatever catalog was in force then: the cases judged under
            # another are looked up in the store on the reload timer (a fresh embedded broker seeds
            # them from the store instead: `streams.runtime.restore_from_store`).
            self.catalog_reload.stored_pending = True

    def indexed_cases(self):
        """(case_id, partition, next_due, settled since) of every case in the table this worker holds."""
        return self.store.stored()

    def fail(self, error: BaseException) -> None:
        """Stop the process on `error`; the first failure is the one said (what follows it is its
        consequence: an agent that could not reach the broker that had exited said so over why)."""
        if self.failure is None:
            self.failure = error
        self.failed.set()

    def topics(self) -> list[tuple[str, int]]:
        return topic_names(self.settings)


def silences_in_store(client) -> tuple:
    """The silences in force, as the store holds them (`sunlight silences`)."""
    from alerts.tickets import Silence
    from sinks.queries import stored_silences

    return tuple(Silence.from_record(record) for record in stored_silences(client))


def notice_senders(settings: Settings) -> list:
    """The channels configured for notices (none: notices are recorded, and fail as unsendable)."""
    from sinks.notify import SmtpSender, WebhookSender

    senders: list = []
    if settings.smtp:
        if settings.mail_from == DEFAULT_MAIL_FROM:
            log.warning("SUNLIGHT_MAIL_FROM is not set: notice mail goes out from %s, which mail servers may refuse or "
                        "file as spam; set it to the mailbox the notices are sent from", DEFAULT_MAIL_FROM)
        senders.append(SmtpSender(settings.smtp, settings.mail_from))
    if settings.webhook:
        senders.append(WebhookSender(settings.webhook))
    return senders


def partition_of(case_id: str, partitions: list[int]) -> int:
    """The partition a producer keyed by case sends to (Kafka's default partitioner), of
    `partitions` (0..n-1: every topic of the pipeline has that many)."""
    return home_partition(case_id, len(partitions))
