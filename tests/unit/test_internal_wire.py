"""The messages the worker sends itself are read back as what they were written as, and a
nudge is nothing to apply, on every internal topic."""

import asyncio
from datetime import datetime, timezone
from types import SimpleNamespace

from alerts.peers import Verdict
from alerts.tickets import Action, ActionKind
from streams.internal_wire import NUDGE, routed_action, tick, ticket_action, verdict_signal
from streams.notices import NoticeSteps
from streams.steps import Unit, decode_case_unit, decode_peer_unit
from streams.tickets import decode_ticket_unit, route_action

AT = datetime(2026, 3, 2, 10, tzinfo=timezone.utc)


def record(offset: int, value: bytes):
    return SimpleNamespace(offset=offset, key=b"C1", value=value, headers=[])


def test_ticks_verdicts_and_nudges_on_the_ticks_topic_are_read_as_written():
    verdict = Verdict("C1", "e1", "ITEM", "V1", {"median": 100.0})
    unit = Unit("ticks", 0, [record(0, tick("C1", AT)), record(1, verdict_signal(verdict)), record(2, NUDGE)])
    decoded = decode_case_unit(unit, "ticks")
    assert not decoded.letters and list(decoded.cases) == ["C1"]
    work = decoded.cases["C1"]
    assert work.tick == AT and work.verdicts == [verdict]


def test_actions_routed_and_ticks_on_the_ticket_ticks_topic_are_read_as_written():
    action = Action("a1", "C1/overdue", 2, "张三", "SCJG", ActionKind.REPLY, "已整改", AT)
    assert route_action(ticket_action(action)) == ("C1", action)  # as the console and the CLI publish it
    assert route_action(NUDGE) is None
    unit = Unit("ticket-ticks", 0, [record(0, routed_action(action)), record(1, tick("C2", AT)), record(2, NUDGE)])
    cases, letters = decode_ticket_unit(unit, "ticket-ticks")
    assert not letters
    assert [a for _, a in cases["C1"].actions] == [action] and cases["C2"].tick


def test_a_nudge_is_nothing_to_apply_on_the_peers_and_notices_topics():
    groups, letters = decode_peer_unit(Unit("peers", 0, [record(0, NUDGE)]))
    assert groups == {} and letters == []
    refused = []

    async def dead_letter(*args):
        refused.append(args)

    steps = NoticeSteps(notices=None, senders=[], notify=False, writer=None)  # nothing to send: none used
    asyncio.run(steps.process(Unit("notices", 0, [record(0, NUDGE)]), dead_letter))
    assert refused == []
