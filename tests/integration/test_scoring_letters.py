"""Which dead letters dock a self-built department's 数据对接 (−5: data pushed not to the standard),
and in which month (sinks.scoring_inputs.month_facts)."""

from __future__ import annotations

from dataclasses import replace
from datetime import datetime, timezone
from zoneinfo import ZoneInfo

import orjson

from alerts.letters import DeadLetter
from sinks.clickhouse import connect
from sinks.migrations import migrate
from sinks.rows import dead_letter_row, to_arrow
from sinks.scoring_inputs import month_facts

SHANGHAI = ZoneInfo("Asia/Shanghai")
NOVEMBER_3 = datetime(2026, 11, 3, 2, tzinfo=timezone.utc)


def letter(letter_id: str, reason: str, department: str, **event) -> tuple[DeadLetter, datetime]:
    payload = {"event_id": letter_id, "case_id": f"C-{letter_id}", "item_code": "I1", "type": "accepted",
               "department": department, "occurred_at": "2026-10-15T10:00:00+08:00",
               "recorded_at": "2026-11-02T10:00:00+08:00", **event}
    payload = {k: v for k, v in payload.items() if v is not None}
    return DeadLetter(letter_id, reason, "refused", "case-events", 0, 1, f"C-{letter_id}",
                      orjson.dumps(payload).decode(), "utf-8", case_id=f"C-{letter_id}", event_id=letter_id,
                      department=department, region="320200"), NOVEMBER_3


def test_a_push_refused_for_its_channel_or_its_time_s_offset_docks_the_month_it_is_about(tmp_path):
    """Found by a black-box test: a self-built system's event sent with `"channel": "Import"` was
    refused and listed under its department, yet its 数据对接 stayed 10 (only `import` and none
    counted: the misspelt channel, itself data not to the standard, escaped); and an October push
    whose times lacked their offset (`bad_time`) docked November, the month the letter came."""
    letters = [letter("misspelt", "schema", "SA", channel="Import"),
               letter("no-offset", "bad_time", "SC", channel="import", occurred_at="2026-10-15 10:00:00",
                      recorded_at="2026-11-02 10:00:00"),
               letter("none", "unknown_item", "SB"),
               letter("online", "schema", "SD", channel="online"),
               letter("window", "schema", "SE", channel="window"),
               letter("last-night", "bad_time", "SF", channel="import", occurred_at="2026-10-31T23:30:00"),
               # the platform's own registrations, misspelt: not pushed data
               letter("misspelt-online", "schema", "SG", channel=" Online"),
               # not a possible time (review: .NET's empty date crashed the scoring; a mistyped year
               # counted in no month): the month the letter came
               letter("empty-date", "bad_time", "SH", channel="import", occurred_at="0001-01-01T00:00:00"),
               letter("mistyped-year", "bad_time", "SI", channel="import", occurred_at="2062-10-15T10:00:00"),
               letter("out-of-range", "impossible_time", "SJ", channel="import", occurred_at="2126-10-15T10:00:00+08:00")]
    client = connect(None, tmp_path / "data")
    try:
        migrate(client)
        client.insert_arrow("dead_letters", to_arrow("dead_letters", [dead_letter_row(*pair) for pair in letters]))
        october = month_facts(client, "2026-10", SHANGHAI)
        november = month_facts(client, "2026-11", SHANGHAI)
    finally:
        client.close()
    assert sorted(f.department for f in october.letters) == ["SA", "SB", "SC", "SF"]
    assert sorted(f.department for f in november.letters) == ["SH", "SI", "SJ"]
    (pushed,) = [f for f in october.letters if f.department == "SC"]
    assert pushed.pushed_at == datetime(2026, 11, 2, 2, tzinfo=timezone.utc)  # its recorded_at, at local time


def test_an_applicants_rating_is_no_push_of_the_departments_data(tmp_path):
    """Found by an independent scorer: a self-built department's rating (the applicant's 评议, no
    channel) registered on 7 November made its October push, on time on the 3rd, late (−5), and a
    rating the contract refuses (`very_satisfied`) docked it for data not to the standard. The rules
    dock 办件数据 pushed late or not to the standard; a rating is the applicant's, not the
    department's handling (as the backfill rule reads it)."""
    from alerts.events import parse_event
    from sinks.rows import event_row

    def event(event_id, kind, recorded, **extra):
        return parse_event({"event_id": event_id, "case_id": "P1", "item_code": "I1", "type": kind,
                            "department": "SA", "occurred_at": "2026-10-15T10:00:00+08:00",
                            "recorded_at": recorded, **extra})

    events = [event("a", "accepted", "2026-11-03T10:00:00+08:00", channel="import"),
              event("c", "closed", "2026-11-03T10:00:00+08:00", channel="import"),
              event("r", "rated", "2026-11-07T10:00:00+08:00", attrs={"rating": "satisfied"})]
    refused = letter("bad-rating", "schema", "SA", type="rated", attrs={"rating": "very_satisfied"})
    client = connect(None, tmp_path / "data")
    try:
        migrate(client)
        client.insert_arrow("case_events", to_arrow("case_events", [event_row(e, "SA", NOVEMBER_3) for e in events]))
        client.insert_arrow("dead_letters", to_arrow("dead_letters", [dead_letter_row(*refused)]))
        october = month_facts(client, "2026-10", SHANGHAI)
    finally:
        client.close()
    (push,) = october.pushes
    assert (push.department, push.events) == ("SA", 2)
    assert push.last_recorded_at == datetime(2026, 11, 3, 2, tzinfo=timezone.utc)
    assert october.letters == ()


def test_a_self_built_departments_data_entered_online_or_at_a_window_is_not_silence(tmp_path):
    """Found by a black-box test: a self-built department whose October cases were registered at a
    window as they happened (填报, no push) lost 5 as 未推送 ("截至 … 未推送当月数据"): the rules dock
    "未及时推送、填报或导入". Entered late, the data is late all the same."""
    from alerts.catalog import load_catalog
    from alerts.events import parse_event
    from alerts.scoring import score_month
    from sinks.rows import event_row
    from streams.catalog_source import default_rulebook

    def event(event_id, case_id, kind, recorded, department):
        return parse_event({"event_id": event_id, "case_id": case_id, "item_code": "I1", "type": kind,
                            "department": department, "channel": "window",
                            "occurred_at": "2026-10-15T10:00:00+08:00", "recorded_at": recorded})

    events = [event("a", "W1", "accepted", "2026-10-15T10:00:00+08:00", "SA"),
              event("c", "W1", "closed", "2026-10-15T10:00:00+08:00", "SA"),
              event("b", "W2", "accepted", "2026-11-09T10:00:00+08:00", "SB")]  # entered after the 5th
    client = connect(None, tmp_path / "data")
    try:
        migrate(client)
        client.insert_arrow("case_events", to_arrow("case_events", [event_row(e, e.department, NOVEMBER_3)
                                                                    for e in events]))
        october = month_facts(client, "2026-10", SHANGHAI)
    finally:
        client.close()
    assert sorted((f.department, f.events) for f in october.entered) == [("SA", 2), ("SB", 1)]
    assert october.pushes == ()
    catalog = load_catalog({
        "departments": [{"code": code, "name": code, "region": "320200", "self_built": True}
                        for code in ("SA", "SB", "SC")],
        "items": [{"code": "I1", "name": "事项", "category": "licensing", "department": "SA", "promised_days": 5,
                   "nodes": [{"id": "n1", "name": "承办"}]}]})
    scores = score_month(default_rulebook(), "department", catalog,
                         replace(october, as_of=datetime(2026, 11, 10, tzinfo=SHANGHAI)))
    exchange = {s.code: next(p for p in s.parts if p.key == "data_exchange") for s in scores.all}
    on_time = exchange["SA"]
    assert (on_time.points, on_time.inputs["late"], on_time.inputs["not_pushed"]) == (10, False, [])
    assert exchange["SB"].points == 5 and exchange["SB"].inputs["not_pushed"] == ["SB"]  # entered on the 9th
    assert exchange["SC"].points == 5 and exchange["SC"].inputs["not_pushed"] == ["SC"]  # nothing at all
