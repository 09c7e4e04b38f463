"""Case states as the changelog holds them: records written by earlier versions still read.

A running deployment's changelog keeps the records its workers wrote, whatever version wrote them;
a worker that cannot read one cannot recover its partition. The literals below are records as
`streams.codec.encode_state` wrote them at commit 4b70d8d (before the replay's held withdrawals
were removed), pasted as it gave them, not made again by the code under test."""

from __future__ import annotations

from datetime import datetime, timezone

import orjson

from alerts.describe import REJUDGED
from alerts.evaluate import JUDGE_AT_ONCE, judge_case
from alerts.model import AlertStatus
from streams.codec import decode_state, encode_state, stored_index_entry
from tests.unit.helpers import at, judge

RAISED = datetime(2026, 1, 1, tzinfo=timezone.utc)

# Case OLD1 of the licence item (accepted 03-02, 承办 03-03, 批准 03-05, then 审核 03-04), fed in
# that order to `alerts.evaluate.step(..., hold_withdrawals=True)` at 2026-03-07 10:00, partition 3:
# the 审核 event came last and took away the 跳过环节 and 环节超时 cards it had raised, but a replay
# whose input was incomplete held their withdrawals back: both open, with their causes in the tenth
# element ({alert_id: cause}), next due at the deadline, 03-16.
HELD = (
    '[2,"OLD1",3,8,"2026-03-16T00:00:00+08:00","2026-03-07T10:00:00+08:00",[["o1","320200-XK-SCJG-0001",'
    '"accepted","2026-03-02T10:00:00+08:00","2026-03-02T10:05:00+08:00",null,"P01",null,null,null,null],'
    '["o2","320200-XK-SCJG-0001","node_completed","2026-03-03T10:00:00+08:00","2026-03-03T10:05:00+08:00",'
    '"undertake","P01",null,null,null,null],["o3","320200-XK-SCJG-0001","node_completed",'
    '"2026-03-04T10:00:00+08:00","2026-03-04T10:05:00+08:00","review","P01",null,null,null,null],["o4",'
    '"320200-XK-SCJG-0001","node_completed","2026-03-05T10:00:00+08:00","2026-03-05T10:05:00+08:00",'
    '"approve","P01",null,null,null,null]],{"5c026e6b9fa74691ce70766d784e0895":{'
    '"alert_id":"5c026e6b9fa74691ce70766d784e0895","rule":"node_overdue","severity":"yellow",'
    '"case_id":"OLD1","item_code":"320200-XK-SCJG-0001","department":"SCJG","region":"320200",'
    '"officer_id":"P01","node":"review","raised_at":"2026-01-01T00:00:00+00:00",'
    '"event_time":"2026-03-06T00:00:00+08:00","evidence":{"node_name":"审核","node_days":2,'
    '"clock_started_at":"2026-03-03T10:00:00+08:00","node_deadline":"2026-03-06T00:00:00+08:00",'
    '"completed_at":null,"suspensions":[]},"status":"open","version":1,"title":"黄牌·环节超时"},'
    '"0a774c1a36b2bed24014c6db5c0b81c5":{"alert_id":"0a774c1a36b2bed24014c6db5c0b81c5","rule":"skipped_node",'
    '"severity":"red","case_id":"OLD1","item_code":"320200-XK-SCJG-0001","department":"SCJG",'
    '"region":"320200","officer_id":"P01","node":"review","raised_at":"2026-01-01T00:00:00+00:00",'
    '"event_time":"2026-03-05T10:00:00+08:00","evidence":{"skipped_node":"review","skipped_node_name":"审核",'
    '"went_ahead":"node","went_ahead_event":"node_completed","went_ahead_node":"approve",'
    '"went_ahead_node_name":"批准","went_ahead_event_id":"o4","went_ahead_at":"2026-03-05T10:00:00+08:00"},'
    '"status":"open","version":1,"title":"红牌·跳过环节"}},{},{'
    '"5c026e6b9fa74691ce70766d784e0895":"2026-03-05 10:00 的“环节办结”事件（环节 批准）（o4）表明该情形不成立",'
    '"0a774c1a36b2bed24014c6db5c0b81c5":"2026-03-04 10:00 的“环节办结”事件（环节 审核）（o3）表明该情形不成立"}]'
).encode()

# Case OLD2, as every record has been written since a replay stopped holding withdrawals: the tenth
# element empty; accepted and judged, then a node event taken while a replay's input was
# incomplete (`judging=False`: due at once, `arrived`) and an event refused (`refusals`); partition 1.
CURRENT = (
    '[2,"OLD2",1,5,"1970-01-01T00:00:00+00:00","2026-03-02T11:00:00+08:00",[["p1","320200-XK-SCJG-0001",'
    '"accepted","2026-03-02T10:00:00+08:00","2026-03-02T10:05:00+08:00",null,"P01",null,null,null,null],'
    '["p2","320200-XK-SCJG-0001","node_completed","2026-03-03T10:00:00+08:00","2026-03-03T10:05:00+08:00",'
    '"undertake","P01",null,null,null,null]],{},{},{},{"p9":"invalid_event"},["p2"]]'
).encode()


def test_a_record_with_the_held_withdrawals_of_an_earlier_replay_reads_and_its_case_is_due_at_once():
    """Its withdrawals waited for the judgement at the end of the replay's input (the pipeline kept
    such cases apart to judge them then): the case is now due at once, so that judgement is made,
    and the cards its facts no longer support are withdrawn."""
    state, partition = decode_state(HELD)
    assert (state.case_id, partition, state.revision) == ("OLD1", 3, 8)
    assert [e.event_id for e in state.events] == ["o1", "o2", "o3", "o4"]
    assert sorted((a.rule.value, a.status) for a in state.alerts.values()) == [
        ("node_overdue", AlertStatus.OPEN), ("skipped_node", AlertStatus.OPEN)]
    assert state.judged_at == at(2026, 3, 7)
    assert state.next_due == JUDGE_AT_ONCE
    # The deadline index rebuilt from the table says the same without building the state.
    assert stored_index_entry(HELD) == (3, JUDGE_AT_ONCE.isoformat(), None)
    judged = judge_case(state, judge(), at(2026, 3, 8), RAISED)
    # No event came since its last judgement: it says so (the rules it was held under are gone).
    rejudged = f"{REJUDGED}：上次评判 2026-03-07 10:00 之后没有登记新的事件，按现行事项目录、工作日历和评判规则重新评判"
    assert sorted((a.rule.value, a.status, a.withdrawn_reason) for a in judged.changed) == [
        ("node_overdue", AlertStatus.WITHDRAWN, rejudged), ("skipped_node", AlertStatus.WITHDRAWN, rejudged)]
    assert judged.state.next_due == at(2026, 3, 16, 0)  # the case's own deadline again
    # Written again, the slot is empty, and the state reads back as it is.
    stored = encode_state(judged.state, 3)
    assert orjson.loads(stored)[9] == {}
    assert decode_state(stored) == (judged.state, 3)


def test_a_record_as_written_since_reads_and_is_written_again_byte_for_byte():
    """The layout is kept (the tenth element written empty), so a worker of either version reads
    what the other wrote, during a rolling upgrade or after a rollback."""
    state, partition = decode_state(CURRENT)
    assert (state.case_id, partition, state.revision) == ("OLD2", 1, 5)
    assert [e.event_id for e in state.events] == ["p1", "p2"]
    assert (state.refused, state.arrived, state.next_due) == ({"p9": "invalid_event"}, ("p2",), JUDGE_AT_ONCE)
    assert state.judged_at == at(2026, 3, 2, 11)
    assert stored_index_entry(CURRENT) == (1, JUDGE_AT_ONCE.isoformat(), None)
    assert encode_state(state, partition) == CURRENT


def test_a_state_of_the_earlier_json_form_with_held_withdrawals_reads_and_is_due_at_once():
    """The form before FORMAT 2 (`CaseState.to_json` and the partition) named them
    `held_withdrawals`."""
    state, _ = decode_state(CURRENT)
    old = orjson.dumps({**state.to_json(), "next_due": None, "partition": 1,
                        "held_withdrawals": {"5c026e6b9fa74691ce70766d784e0895": "a cause"}})
    read, partition = decode_state(old)
    assert (read.case_id, partition, read.next_due) == ("OLD2", 1, JUDGE_AT_ONCE)
    assert stored_index_entry(old) == (1, JUDGE_AT_ONCE.isoformat(), None)
    without = orjson.dumps({**state.to_json(), "next_due": None, "partition": 1, "held_withdrawals": {}})
    assert decode_state(without)[0].next_due is None


def test_a_stated_deadline_and_times_below_the_millisecond_read_back_as_the_rules_read_them():
    """Found by review: the events' times are judged to the millisecond (`to_the_millisecond`), but a
    state read back from the table gave its stated deadline (kept as written, in the attrs) to the
    microsecond: every open card of the case was published again with another deadline."""
    from alerts.events import parse_event
    from alerts.evaluate import step

    accepted = parse_event({"event_id": "d1", "case_id": "MS1", "item_code": "320200-XK-SCJG-0001",
                            "type": "accepted", "occurred_at": "2026-03-02T10:00:00.123456+08:00",
                            "recorded_at": "2026-03-02T10:00:00.654321+08:00",
                            "attrs": {"deadline": "2026-03-04T17:00:00.123456+08:00"}})
    j = judge()
    state = step(None, accepted, j, at(2026, 3, 10), RAISED).state
    assert state.alerts  # late: its cards are open
    read, _ = decode_state(encode_state(state, 0))
    assert read.events == state.events and read.events[0].stated_deadline.microsecond == 123000
    again = judge_case(read, j, at(2026, 3, 10), RAISED)
    assert again.changed == [], [(a.rule.value, a.evidence) for a in again.changed]


def test_every_time_of_an_event_is_stored_as_isoformat_writes_it_whatever_its_offset():
    """The stored times are written by orjson where it writes what `isoformat` does, which it does
    not for an offset with seconds (it rounds +08:05:43, a valid input, to +08:06: another moment)."""
    from alerts.events import parse_event
    from alerts.evaluate import step

    j = judge()
    for offset in ("+08:00", "+00:00", "-03:30", "+05:45", "+08:05:43", "-00:00:30", "Z"):
        for fraction in ("", ".250", ".123456"):
            occurred, recorded = f"2026-03-02T10:00:00{fraction}{offset}", f"2026-03-03T10:05:00{fraction}+08:00"
            accepted = parse_event({"event_id": "t1", "case_id": "TZ1", "item_code": "320200-XK-SCJG-0001",
                                    "type": "accepted", "occurred_at": occurred, "recorded_at": recorded})
            state = step(None, accepted, j, at(2026, 3, 5), RAISED).state
            stored = orjson.loads(encode_state(state, 0))[6][0]
            assert stored[3:5] == [accepted.occurred_at.isoformat(), accepted.recorded_at.isoformat()], offset
            read, _ = decode_state(encode_state(state, 0))
            assert read.events == state.events
            assert read.events[0].occurred_at.utcoffset() == accepted.occurred_at.utcoffset()


def test_the_clock_and_due_moment_of_a_state_are_stored_as_isoformat_writes_them_whatever_their_zone():
    """`next_due` and `judged_at` are written by orjson where it writes what `isoformat` does (as an
    event's times), else by `isoformat`: a zone of the calendar, an offset with seconds, UTC."""
    from datetime import timedelta
    from zoneinfo import ZoneInfo

    from alerts.state import CaseState

    zones = (timezone.utc, timezone(timedelta(hours=8)), timezone(timedelta(hours=8, minutes=5, seconds=43)),
             timezone(-timedelta(hours=3, minutes=30)), ZoneInfo("Asia/Shanghai"))
    for zone in zones:
        for micro in (0, 250000, 123456):
            due = datetime(2026, 3, 16, 0, 0, 0, micro, zone)
            judged = datetime(2026, 3, 7, 10, 0, 1, micro, zone)
            state = CaseState(case_id="Z1", next_due=due, judged_at=judged, revision=2)
            stored = encode_state(state, 1)
            assert orjson.loads(stored)[4:6] == [due.isoformat(), judged.isoformat()], zone
            read, partition = decode_state(stored)
            assert (read.next_due, read.judged_at, partition) == (due, judged, 1)
            assert read.next_due.utcoffset() == due.utcoffset()
            assert stored_index_entry(stored)[1] == due.isoformat()
