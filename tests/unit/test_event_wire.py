"""The compiled fast path for case events (streams/event_wire.py) against the contract's parser.

Whatever the fast path returns must be what `parse_event(orjson.loads(raw))` returns, to the
type of every attribute and the shared time zone; whatever the parser refuses, the fast path
must leave to it (None)."""

import json
from datetime import datetime, timezone
from pathlib import Path

import orjson
import pytest
import yaml
from hypothesis import given, settings, strategies as st

from alerts.events import InvalidEvent, parse_event
from alerts.mapping import load_mapping
from alerts.scenario import generate
from streams.event_wire import wire_event
from streams.importers import convert
from streams.steps import decode_event

REAL = Path(__file__).resolve().parents[1] / "data" / "real"
VALID = {"event_id": "e1", "case_id": "C1", "item_code": "X", "type": "accepted",
         "occurred_at": "2026-03-02T09:15:00+08:00", "recorded_at": "2026-03-02T09:16:00+08:00"}
TIMES = ("occurred_at", "recorded_at", "stated_deadline")


def parsed(raw: bytes):
    """The contract's parser, as the stream called it before the fast path: the event or the refusal."""
    try:
        return parse_event(orjson.loads(raw))
    except (InvalidEvent, orjson.JSONDecodeError) as exc:
        return exc


def assert_same(fast, slow) -> None:
    assert fast == slow
    for name in TIMES:  # equal instants are not enough: the same offset, and the one shared zone
        a, b = getattr(fast, name), getattr(slow, name)
        assert (a is None) == (b is None)
        if a is not None:
            assert a.tzinfo is b.tzinfo and a.isoformat() == b.isoformat()
    # 1 == 1.0 in Python, but not in the stored form or the rows
    assert orjson.dumps(dict(fast.attrs)) == orjson.dumps(dict(slow.attrs))
    assert type(fast.attrs) is type(slow.attrs)
    for name in ("node", "officer_id", "department", "region", "item_code"):
        value = getattr(fast, name)
        assert value is None or value is getattr(slow, name), name  # interned, as the parser interns


def check(raw: bytes) -> None:
    fast, slow = wire_event(raw), parsed(raw)
    if isinstance(slow, Exception):
        assert fast is None, f"the fast path accepted what the parser refuses: {slow}"
    elif fast is not None:
        assert_same(fast, slow)


def test_a_generated_citys_events_all_take_the_fast_path_and_are_built_as_the_parser_builds_them():
    scenario = generate(cases=400, seed=3, now=datetime(2026, 6, 1, tzinfo=timezone.utc))
    for obj in scenario.events:
        raw = orjson.dumps(obj)
        fast = wire_event(raw)
        assert fast is not None, obj
        assert_same(fast, parse_event(orjson.loads(raw)))


def test_the_events_imported_from_a_real_log_take_the_fast_path_too():
    mapping = load_mapping(yaml.safe_load((REAL / "receipt.mapping.yaml").read_text()))
    events = convert(REAL / "receipt.csv", mapping).events
    assert len(events) > 1000
    for obj in events:
        raw = orjson.dumps(obj)
        fast = wire_event(raw)
        assert fast is not None, obj
        assert_same(fast, parse_event(orjson.loads(raw)))


@pytest.mark.parametrize("raw", [
    # what the parser repairs, or reads another way, goes to it
    orjson.dumps({**VALID, "occurred_at": " 2026-03-02T09:15:00+08:00 "}),
    orjson.dumps({**VALID, "occurred_at": "2026-03-02t01:15:00z"}),
    json.dumps({**VALID, "attrs": {"big": 123456789012345678901234567890}}).encode(),  # orjson: a float
    orjson.dumps({**VALID, "attrs": {"deadline": "2026-03-09T18:00:00+08:00", "promised_days": 5}}),
    orjson.dumps({**VALID, "attrs": {}}),
    orjson.dumps({**VALID, "department": "", "region": "320200", "channel": "window"}),
    b'{"event_id":"e1","case_id":"C1","item_code":"X","type":"accepted","occurred_at":"2026-03-02T09:15:00+08:00",'
    b'"recorded_at":"2026-03-02T09:16:00+08:00","type":"closed"}',  # a repeated key: the last one counts
    # what the parser refuses, the fast path must not take
    b'{"event_id":"e1","case_id":"C1","item_code":"X","type":"accepted","occurred_at":"2026-03-02T09:15:00+08:00",'
    b'"recorded_at":"2026-03-02T09:16:00+08:00","other":1e400}',  # orjson refuses an infinite number
    b'{"event_id":"e1","case_id":"C1","item_code":"X","type":"accepted","occurred_at":"2026-03-02T09:15:00+08:00",'
    b'"recorded_at":"2026-03-02T09:16:00+08:00","attrs":{"x":1e400}}',
    orjson.dumps({**VALID, "node": None}),
    orjson.dumps({**VALID, "channel": None}),
    orjson.dumps({**VALID, "attrs": None}),
    orjson.dumps({**VALID, "attrs": []}),
    orjson.dumps({**VALID, "attrs": {"promised_days": -1}}),
    orjson.dumps({**VALID, "attrs": {"deadline": "tomorrow"}}),
    orjson.dumps({**VALID, "type": "node_completed", "node": ""}),
    orjson.dumps({**VALID, "type": "returned"}),
    orjson.dumps({**VALID, "case_id": ""}),
    orjson.dumps({**VALID, "case_id": "案" * 129}),
    orjson.dumps({**VALID, "region": "x" * 33}),
    orjson.dumps({**VALID, "occurred_at": "2026-03-02T09:15:00.1234567890123456789+08:00"}),
    orjson.dumps({**VALID, "occurred_at": "2026-03-02T09:15:00"}),
    orjson.dumps({**VALID, "occurred_at": "1989-12-31T09:15:00+08:00"}),
    orjson.dumps({**VALID, "occurred_at": "1990-01-01T01:00:00+08:00"}),  # 1989 in UTC
    orjson.dumps({**VALID, "occurred_at": "1989-12-31T23:00:00-05:00"}),  # 1990 in UTC
    orjson.dumps({**VALID, "occurred_at": "2099-06-01T00:00:00+00:00", "recorded_at": "2099-06-01T00:00:00Z"}),
    orjson.dumps({**VALID, "occurred_at": "2099-12-31T23:00:00-05:00", "recorded_at": "2099-12-31T23:00:00-05:00"}),
    orjson.dumps({**VALID, "recorded_at": "2026-03-01T09:15:00+08:00"}),
    b'{"event_id":"e1","case_id":"C1\\ud800","item_code":"X","type":"accepted",'
    b'"occurred_at":"2026-03-02T09:15:00+08:00","recorded_at":"2026-03-02T09:16:00+08:00"}',
    b'[1, 2]', b'"text"', b'{"event_id": "e1"', b'\xff\xfe',
    *(orjson.dumps({**VALID, "attrs": {"x": 0}}).replace(b'"x":0', b'"x":' + b"[" * depth + b"]" * depth)
      for depth in (150, 199, 200, 260, 1000, 1021, 1022, 1100)),  # orjson reads 1024 levels, writes 254
], ids=lambda raw: f"{len(raw)} bytes, ends {raw[-12:]!r}")
def test_edge_cases_agree_with_the_parser(raw):
    check(raw)


def test_what_the_fast_path_leaves_to_the_parser_is_still_accepted_or_refused_for_the_parsers_reason():
    refused = orjson.dumps({**VALID, "attrs": {"promised_days": -1}})
    with pytest.raises(InvalidEvent) as info:
        decode_event(refused)
    assert info.value.reason == "schema" and "promised_days" in info.value.detail
    repaired = orjson.dumps({**VALID, "occurred_at": "2026-03-02t01:15:00z"})
    assert wire_event(repaired) is None
    assert decode_event(repaired).occurred_at == datetime(2026, 3, 2, 1, 15, tzinfo=timezone.utc)


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False, allow_infinity=False) | st.text(),
    lambda children: st.lists(children) | st.dictionaries(st.text(), children), max_leaves=6)
times = st.sampled_from(["2026-03-02T09:15:00+08:00", "2026-03-02T09:15:00Z", "2026-03-02T09:15:00.5+00:00",
                         "2026-03-02 09:15:00+05:30", "2026-03-02T09:15:00", "2026-03-01T09:15:00-03:00"])
fields = st.fixed_dictionaries({}, optional={
    "type": st.sampled_from(["accepted", "node_completed", "returned", "closed", "rated", "other"]),
    "node": st.none() | st.text(max_size=3), "department": st.text(max_size=3) | st.integers(),
    "region": st.text(max_size=40), "channel": st.sampled_from(["online", "window", "import", "fax"]),
    "occurred_at": times, "recorded_at": times, "event_id": st.text(max_size=3) | st.none(),
    "attrs": st.dictionaries(st.sampled_from(["promised_days", "decision", "rating", "penalty_amount",
                                              "deadline", "reason", "other"]), json_values) | json_values,
    "other": json_values,
})


@settings(max_examples=400, deadline=None)
@given(fields)
def test_any_change_to_a_valid_event_gets_the_parsers_answer(change):
    check(json.dumps({**VALID, **change}).encode())  # any integer, and lone surrogates as escapes


def test_a_message_that_is_not_utf8_says_where_its_bad_byte_is():
    """The letter's detail said "surrogates not allowed: line 1 column 1 (char 0)", JSON's error
    about the first character, wherever the bad byte was."""
    good = orjson.dumps({"event_id": "e1", "case_id": "B6b", "item_code": "X", "type": "accepted",
                         "occurred_at": "2026-03-02T10:00:00+08:00", "recorded_at": "2026-03-02T10:00:00+08:00",
                         "officer_id": "王"})
    bad = good.replace("王".encode(), b"\xe7\x8e")  # the officer's name cut in the middle of a character
    with pytest.raises(InvalidEvent) as refused:
        decode_event(bad)
    assert refused.value.reason == "invalid_utf8"
    at = bad.index(b"\xe7\x8e")
    assert f"byte 0xe7 at offset {at} of the message's {len(bad)} bytes" in refused.value.detail


def test_a_record_that_begins_with_a_byte_order_mark_is_the_event_it_holds():
    """Found by a black-box test: a record from a producer that writes a UTF-8 byte order mark
    (.NET, PowerShell) was a dead letter ('BOM is not supported', naming no case), while the same
    line in a file given to `sunlight replay` was taken. RFC 8259 lets a parser ignore it."""
    raw = orjson.dumps({"event_id": "b1", "case_id": "B-1", "item_code": "I", "type": "accepted",
                        "occurred_at": "2026-03-02T10:00:00+08:00", "recorded_at": "2026-03-02T10:01:00+08:00"})
    assert decode_event(b"\xef\xbb\xbf" + raw) == decode_event(raw)
    with pytest.raises(InvalidEvent) as refused:
        decode_event(b"\xef\xbb\xbf")
    assert refused.value.reason == "empty"
