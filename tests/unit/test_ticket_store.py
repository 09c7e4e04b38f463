"""The ticket agent's store without a broker: a case's tickets at rest are let go with the case and
read back from the store when an alert or an action about them arrives; a seed from the store
stays once a unit has taken it."""

from __future__ import annotations

import asyncio
import tracemalloc
from dataclasses import replace
from datetime import datetime, timedelta, timezone
from zoneinfo import ZoneInfo
from types import SimpleNamespace

import orjson

from alerts.evaluate import step
from alerts.events import parse_event
from alerts.model import AlertStatus, Rule
from alerts.tickets import TicketStatus
from sinks.writer import Batch
from streams.app import Progress
from streams.catalog_source import CatalogSource
from streams.clock import EventTimeClock
from streams.steps import Outputs, Unit
from streams.tickets import CaseTickets, TicketStore, TicketSteps, decode_ticket_unit
from tests.unit.helpers import CONTRACT, judge
from tests.unit.test_steps import HISTORY, record

NOW = datetime(2026, 5, 1, tzinfo=timezone.utc)


def case_alerts():
    """U1's alerts judged from its history: an overdue red card (it opens a ticket) and a yellow
    deadline_near (it opens none: kept for an inspector to open one by hand)."""
    state, j = None, judge()
    for raw in HISTORY:
        state = step(state, parse_event(raw), j, NOW, NOW).state
    by_rule = {a.rule: a for a in state.alerts.values()}
    return by_rule[Rule.OVERDUE], by_rule[Rule.DEADLINE_NEAR]


class Harness:
    """TicketSteps with a dict for the table, lists for the changelog, a Batch for the writer."""

    def __init__(self, cache_size: int = 10):
        self.table = SimpleNamespace(data={})
        self.changelog: list[tuple[str, bool]] = []  # (case, a value or a tombstone)
        self.writer = SimpleNamespace(batch=Batch())
        self.writer.add = self.writer.batch.add
        self.writer.corrected = self.writer.batch.correct
        source = CatalogSource(CONTRACT / "catalog.example.yaml")
        settings = SimpleNamespace(alerts_topic="alerts", notices_topic="notices", dlq_topic="dlq", notify=True)
        outbox = SimpleNamespace(add=lambda topic, key, value, partition=None: None)
        outputs = Outputs(self.writer, self.send, outbox, settings, Progress(), source)
        self.store = TicketStore(self.table, self.write, cache_size, self.delete)
        clock = EventTimeClock(NOW)
        clock.finished = True  # at NOW: the input is all in
        self.steps = TicketSteps(self.store, source, clock, outputs, source.ticket_policy, source.notice_text)
        self.asked: list[list[str]] = []

    def write(self, key, stored, partition):
        self.table.data[key] = stored
        self.changelog.append((key, True))

    def delete(self, key, partition):
        self.table.data.pop(key, None)
        self.changelog.append((key, False))

    async def send(self, topic, key, value, partition):
        pass

    def reads_back_from(self, other: "Harness") -> None:
        """Read back what `other`'s table held when this was called (the store keeps every row)."""
        held = dict(other.table.data)

        async def load(case_ids):
            self.asked.append(list(case_ids))
            return {c: CaseTickets.decode(c, held[c]) for c in case_ids if c in held}

        self.store.load = load

    def alerts(self, *alerts) -> None:
        unit = Unit("alerts", 0, [record(i, a.to_json()) for i, a in enumerate(alerts)])
        asyncio.run(self.steps.process(unit, *decode_ticket_unit(unit, "ticket-ticks")))

    def held(self, case_id: str = "U1") -> CaseTickets:
        return CaseTickets.decode(case_id, self.table.data[case_id])

    def ticket_rows(self) -> list[tuple[str, int]]:
        return [(r["ticket_id"], r["version"]) for r in self.writer.batch.rows.get("tickets", [])]


def test_tickets_at_rest_are_let_go_and_read_back_when_an_alert_wakes_them():
    red, yellow = case_alerts()
    withdrawn = replace(red, status=AlertStatus.WITHDRAWN, version=red.version + 1)
    first = Harness()
    first.alerts(red, yellow)
    assert first.held().tickets["overdue"].status is TicketStatus.OPEN
    assert not first.store.evict("U1", 0), "an open ticket waits for its department: it stays"
    first.alerts(withdrawn)
    before = first.held()
    assert before.tickets["overdue"].status is TicketStatus.WITHDRAWN and before.at_rest
    assert set(before.others) == {yellow.alert_id}

    # Let go: out of the table and its changelog (a tombstone), the cache too.
    second = Harness()
    second.reads_back_from(first)
    second.table.data = dict(first.table.data)
    assert second.store.evict("U1", 0)
    assert "U1" not in second.table.data and second.changelog == [("U1", False)]
    # The red card stands again: the ticket read back reopens, its versions go on from the store's.
    second.alerts(replace(red, version=red.version + 2))
    assert second.asked == [["U1"]]
    after = second.held()
    ticket = after.tickets["overdue"]
    assert ticket.status is TicketStatus.OPEN
    # A new round, its versions going on from the store's: opened after the round it follows ended,
    # never from the finding's business time weeks back (it escalated at once then: found by review).
    assert second.ticket_rows() == [(ticket.ticket_id, v)
                                    for v in range(before.tickets["overdue"].version + 1, ticket.version + 1)]
    assert ticket.round == 2 and ticket.opened_at >= before.tickets["overdue"].last.at
    assert [r[1] for r in second.ticket_rows()][0] == before.tickets["overdue"].version + 1
    assert after.others == before.others, "the yellow card an inspector may still open a ticket from"


def test_a_cases_tickets_in_the_table_take_their_own_size_not_orjsons_buffer():
    # orjson 3.12 on returns its whole write buffer (about 4 KiB) whatever it wrote; the table keeps
    # a value for every case with a ticket, a fifth of a city's cases.
    red, yellow = case_alerts()
    harness = Harness()
    harness.alerts(red, yellow)
    tickets = harness.held()
    size = len(tickets.encode())
    tracemalloc.start()
    try:
        kept = [tickets.encode() for _ in range(100)]
        held, _ = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert len(kept) == 100 and held < 100 * (size + 200), (held, size)


def test_a_seeded_process_asks_the_store_only_for_the_cases_it_left_there():
    red, yellow = case_alerts()
    first = Harness()
    first.alerts(red, replace(red, status=AlertStatus.WITHDRAWN, version=red.version + 1), yellow)
    harness = Harness()
    harness.reads_back_from(first)
    harness.store.seed({}, {"U1"})
    harness.alerts(replace(yellow, case_id="U2", alert_id="other"))
    assert harness.asked == [], "a case the store was not left holding is new"
    harness.alerts(replace(yellow, version=yellow.version + 1))
    assert harness.asked == [["U1"]]
    # The red card and its withdrawal came in one unit: the ticket never opened (it opens once the
    # unit's cards are all in its bundle), and it is read back as it was left.
    held = harness.held().tickets["overdue"]
    assert held.status is TicketStatus.SETTLING and held.next_due is None and not held.visible


def test_a_seed_a_unit_took_without_changing_it_stays_after_the_cache_drops_it():
    """Before, a seed taken from the store by a unit that changed nothing (a redelivered alert)
    lived only in the cache: once the cache dropped it, the case's next alert version found no
    tickets and started them anew, at version 1 again."""
    red, yellow = case_alerts()
    first = Harness()
    first.alerts(red, yellow)
    seed = first.held()
    harness = Harness(cache_size=1)
    harness.store.seed({"U1": seed}, set())
    harness.alerts(red)  # a redelivery: nothing changes
    harness.alerts(replace(yellow, case_id="U2", alert_id="other"))  # the cache takes another case
    harness.store.forget_cache()
    harness.alerts(replace(red, status=AlertStatus.WITHDRAWN, version=red.version + 1))
    ticket = harness.held().tickets["overdue"]
    assert ticket.status is TicketStatus.WITHDRAWN
    assert ticket.version == seed.tickets["overdue"].version + 1
    assert set(harness.held().others) == {yellow.alert_id}


def test_tickets_are_at_rest_when_nothing_but_an_alert_or_an_inspector_can_change_them():
    red, yellow = case_alerts()
    harness = Harness()
    harness.alerts(yellow)
    assert harness.held().at_rest, "alerts that open no ticket"
    harness.alerts(red)
    assert not harness.held().at_rest
    assert orjson.loads(harness.table.data["U1"])["tickets"]


def test_tickets_go_with_their_case_only_as_the_written_rows_left_them():
    """Before, tickets found at rest when their case was let go went, even when a unit had
    changed them since the batch that was just written (their newest rows still in the next
    one), or when the store had refused one of the case's rows: read back, they were stale."""
    from streams.let_go import LetGo

    red, yellow = case_alerts()
    harness = Harness()
    harness.alerts(replace(red, status=AlertStatus.WITHDRAWN), yellow)
    assert harness.held().at_rest
    written = harness.table.data["U1"]
    noted: set[str] = set()
    let_go = LetGo(SimpleNamespace(keep=set()), {}, harness.store, harness.table, None, None, None, None, None,
                   SimpleNamespace(case_retention=None), None, lambda: True)
    let_go.noted_tickets = noted.add
    harness.alerts(replace(yellow, version=yellow.version + 1))  # changed since: its rows are not written yet
    let_go.tickets_now("U1", 0, written)
    assert "U1" in harness.table.data
    let_go.store.keep.add("U1")  # a row of the case refused by the store: the store cannot give it back whole
    let_go.tickets_now("U1", 0, harness.table.data["U1"])
    assert "U1" in harness.table.data
    let_go.store.keep.clear()
    let_go.tickets_now("U1", 0, harness.table.data["U1"])
    assert "U1" not in harness.table.data and noted == {"U1"}


def test_a_ticket_made_from_history_tells_no_one_of_its_steps_in_a_process_that_sends():
    """A replay without --notify opened the ticket (its notice held, never sent); `serve` or a
    worker took it over later and mailed its escalations at once, to the head and the inspection
    office, about a ticket the department had never been told of (found by a black-box test)."""
    from alerts.tickets import QUIET_NOTE
    from streams.notices import QUIET_HELD

    red, _ = case_alerts()
    replay = Harness()
    replay.steps.out.settings.notify = False
    replay.steps.clock = EventTimeClock(red.event_time + timedelta(hours=2))
    replay.steps.clock.finished = True
    replay.alerts(red)
    opened = replay.held().tickets["overdue"]
    assert opened.status is TicketStatus.OPEN and opened.quiet and not opened.overdue
    assert [r["status"] for r in replay.writer.batch.rows["notices"]] == ["held"]

    live = Harness()  # sends notices; its clock is weeks later
    live.reads_back_from(replay)
    unit = Unit("ticket-ticks", 0, [record(0, {"case_id": "U1", "now": NOW.isoformat()})])
    asyncio.run(live.steps.process(unit, *decode_ticket_unit(unit, "ticket-ticks")))
    ticket = live.held().tickets["overdue"]
    assert ticket.overdue and ticket.escalation_level == 2 and ticket.quiet
    assert QUIET_NOTE in ticket.last.text
    notices = live.writer.batch.rows["notices"]
    assert [(r["step"], r["status"], r["last_error"]) for r in notices] == [
        ("level_1", "held", QUIET_HELD), ("level_2", "held", QUIET_HELD)]
    assert not live.writer.batch.after_write  # nothing handed to the notifier
    # An inspector closing it (history cleared up) tells the department nothing either.
    close = {"action_id": "close-1", "ticket_id": "U1/overdue", "version": ticket.version, "actor": "张督查",
             "department": "inspection", "kind": "close", "text": "历史件，不再督办", "at": NOW.isoformat()}
    unit = Unit("ticket-ticks", 0, [record(1, {"action": close})])
    asyncio.run(live.steps.process(unit, *decode_ticket_unit(unit, "ticket-ticks")))
    assert live.held().tickets["overdue"].status is TicketStatus.CLOSED
    closing = [r for r in live.writer.batch.rows["notices"] if r["step"] == "closed"]
    assert [(r["recipient_role"], r["status"], r["last_error"]) for r in closing] == [
        ("contact", "held", QUIET_HELD), ("head", "held", QUIET_HELD), ("inspection_office", "held", QUIET_HELD)]
    assert not live.writer.batch.after_write


def test_a_told_tickets_escalations_reached_by_a_process_that_sends_none_wait_to_be_resent():
    """Found by a black-box test: a process that sends (`replay --notify`) opened the ticket and told
    its contact; a routine `import` of another department's push (no --notify) then reached the
    ticket's level 1 and level 2, and held both as recorded only: the head and the inspection office
    were never told, and `notices resend` found nothing. They are recorded as failed (UNSENT), at a
    notifier's outcome's version, for a resend."""
    from streams.notices import FINISHED_VERSION, UNSENT

    red, _ = case_alerts()
    live = Harness()  # sends notices
    live.steps.clock = EventTimeClock(red.event_time + timedelta(hours=2))
    live.steps.clock.finished = True
    live.alerts(red)
    opened = live.held().tickets["overdue"]
    assert not opened.quiet and [r["status"] for r in live.writer.batch.rows["notices"]] == ["recorded"]

    record_only = Harness()
    record_only.steps.out.settings.notify = False
    record_only.reads_back_from(live)
    unit = Unit("ticket-ticks", 0, [record(0, {"case_id": "U1", "now": NOW.isoformat()})])
    asyncio.run(record_only.steps.process(unit, *decode_ticket_unit(unit, "ticket-ticks")))
    assert record_only.held().tickets["overdue"].escalation_level == 2
    notices = record_only.writer.batch.rows["notices"]
    assert [(r["step"], r["status"], r["last_error"], r["version"]) for r in notices] == [
        ("level_1", "failed", UNSENT, FINISHED_VERSION), ("level_2", "failed", UNSENT, FINISHED_VERSION)]
    assert not record_only.writer.batch.after_write  # this process hands nothing to a notifier


def test_a_ticket_opens_with_every_card_its_unit_brought():
    """Found by a black-box test: one event raised three skipped_node cards; a replay's ticket opened
    at the first, holding one card, and the other two were "added" at the replay's clock, after its
    opening and its escalations, though the notices named all three."""
    red, _ = case_alerts()
    cards = [replace(red, rule=Rule.SKIPPED_NODE, alert_id=f"skip-{node}", node=node)
             for node in ("undertake", "review", "approve")]
    harness = Harness()
    harness.alerts(*cards)
    ticket = harness.held().tickets["skipped_node"]
    assert ticket.status is not TicketStatus.SETTLING and set(ticket.alerts) == {c.alert_id for c in cards}
    rows = [r for r in harness.writer.batch.rows["tickets"] if r["ticket_id"] == ticket.ticket_id]
    assert rows[0]["kind"] == "opened" and sorted(rows[0]["alert_ids"]) == sorted(c.alert_id for c in cards)
    assert "alerts" not in [r["kind"] for r in rows]  # nothing "added" after the opening


def test_each_notice_of_a_unit_is_worded_as_its_own_version_of_the_ticket():
    """Found by review: every notice of a unit was rendered with the ticket as the unit left it. A
    round's withdrawal and the next round's opening in one unit: the withdrawal read （第 2 轮）, dated
    the new round's opening, voiding "第 2 轮督办通知" nobody had received; and a return's reason was
    lost to a level 2 the clock took after it in the same unit."""
    red, _ = case_alerts()
    cards = [replace(red, rule=Rule.SKIPPED_NODE, alert_id=f"skip-{node}", node=node) for node in ("review", "approve")]
    harness = Harness()
    harness.alerts(cards[0])
    first = harness.held().tickets["skipped_node"]
    assert first.round == 1 and first.escalation_level == 2  # weeks ago: escalated twice by NOW
    harness.writer.batch = Batch()
    harness.writer.add, harness.writer.corrected = harness.writer.batch.add, harness.writer.batch.correct
    harness.alerts(replace(cards[0], status=AlertStatus.WITHDRAWN, version=cards[0].version + 1), cards[1])
    second = harness.held().tickets["skipped_node"]
    assert second.round == 2 and second.status is TicketStatus.OPEN
    notices = {r["notice_id"]: r for r in harness.writer.batch.rows["notices"]}
    withdrawn = [r for r in notices.values() if r["step"] == "withdrawn"]
    assert sorted(r["recipient_role"] for r in withdrawn) == ["contact", "head", "inspection_office"]
    opened_at = first.opened_at.astimezone(ZoneInfo("Asia/Shanghai")).strftime("%Y-%m-%d %H:%M")
    for row in withdrawn:
        assert "第 2 轮" not in row["subject"] + row["body"], row["body"]
        assert f"于 {opened_at} 生成" in row["body"] and "此前就本督办件发出的督办及升级通知一并作废" in row["body"]
    opening = notices["U1/skipped_node/opened/r2"]
    assert "（第 2 轮）" in opening["subject"] and "第 2 轮督办" in opening["body"]
