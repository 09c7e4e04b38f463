"""Reply links (streams/console/links.py) and the notices that carry them (alerts/notices.py)."""

from __future__ import annotations

from dataclasses import replace
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest
import yaml

from alerts.calendar import WorkCalendar
from alerts.catalog import load_catalog
from alerts.model import Alert, AlertStatus, Rule, Severity
from alerts.notices import NO_LINK, render_notice
from alerts.tickets import Step, TicketPolicy, advance, on_alert
from sinks.notify import load_templates
from streams.console.links import LinkRefused, Links

KEY = "unit-test-secret-key-0123456789abcdef"
CST = timezone(timedelta(hours=8))
NOW = datetime(2026, 3, 20, 9, tzinfo=CST)
CATALOG = load_catalog(yaml.safe_load((Path(__file__).resolve().parents[1] / "data" / "contract" /
                                       "catalog.example.yaml").read_text(encoding="utf-8")))


def links(now=NOW) -> Links:
    return Links("https://console.city.example/", KEY, days=14, clock=lambda: now)


def test_a_link_names_its_ticket_and_department_until_it_expires():
    made = links().make("C-1/overdue", "SCJG", NOW + timedelta(days=1), 3)
    assert made.url.startswith("https://console.city.example/reply/")
    token = made.url.rsplit("/", 1)[1]
    grant = links().read(token)
    assert (grant.ticket_id, grant.department, grant.version) == ("C-1/overdue", "SCJG", 3)
    assert links().read(token, now=NOW + timedelta(hours=23)).ticket_id == "C-1/overdue"
    with pytest.raises(LinkRefused) as refused:
        links().read(token, now=NOW + timedelta(days=1))
    assert refused.value.reason == "expired"


def test_an_altered_or_foreign_link_is_invalid():
    token = links().make("C-1/overdue", "SCJG", NOW + timedelta(days=1), 1).url.rsplit("/", 1)[1]
    payload, signature = token.split(".")
    foreign = Links("https://console.city.example", "another-key-" + "y" * 30).token("C-1/overdue", "SCJG",
                                                                                     NOW + timedelta(days=1), 1)
    for altered in (payload + "." + signature[::-1], payload[1:] + "." + signature, payload, foreign, ""):
        with pytest.raises(LinkRefused) as refused:
            links().read(altered)
        assert refused.value.reason == "invalid"
    assert links().csrf(token) != links().csrf(foreign)


def _ticket_and_notices():
    cal = WorkCalendar(on_missing_year=lambda year: None)
    red = Alert(alert_id="a1", rule=Rule.OVERDUE, severity=Severity.RED, case_id="C-1",
                item_code="320200-XK-SCJG-0001", department="SCJG", region="320200", officer_id=None, node=None,
                raised_at=datetime(2026, 3, 2, 10, tzinfo=CST), event_time=datetime(2026, 3, 2, 10, tzinfo=CST),
                evidence={"deadline": "2026-03-02T10:00:00+08:00"}, status=AlertStatus.OPEN, version=1)
    ticket = on_alert(None, red, TicketPolicy(), cal, red.event_time).ticket
    out = advance(ticket, TicketPolicy(), cal, NOW)
    return out.ticket, out.notices


def test_a_notice_carries_its_reply_link_and_says_until_when():
    ticket, notices = _ticket_and_notices()
    texts = load_templates().with_links(links().for_notice)
    rendered = {n.step: render_notice(n, ticket, CATALOG, texts) for n in notices}
    opened = rendered[Step.OPENED]
    assert "https://console.city.example/reply/" in opened.body and "在线答复" in opened.body
    token = opened.body.split("https://console.city.example/reply/")[1].split()[0]
    grant = links().read(token)
    assert (grant.ticket_id, grant.department, grant.version) == (ticket.ticket_id, "SCJG", ticket.version)
    # Valid 14 days from the later of the wall clock and the notice's moment: a replayed notice's
    # link is not born expired.
    assert grant.expires_at == (NOW + timedelta(days=14)).astimezone(timezone.utc)
    assert "2026-04-03 09:00 前有效" in opened.body
    assert "https://console.city.example/reply/" in rendered[Step.LEVEL_1].body  # the head may answer too
    assert "/reply/" not in rendered[Step.LEVEL_2].body  # the inspection office answers nothing


def test_a_notice_sent_again_carries_a_link_valid_from_now():
    """Found by a black-box test: a notice that failed (its recipient had no address) and was sent
    again weeks later by `notices resend` carried the link made when it was first rendered, and
    arrived with it expired. A resend renews it: the same ticket, department and round, valid 14
    days from now, and the sentence that says until when follows."""
    ticket, notices = _ticket_and_notices()
    opened = render_notice(notices[0], ticket, CATALOG, load_templates().with_links(links().for_notice))
    later = NOW + timedelta(days=30)
    renewed = links(later).renewed(opened, CATALOG)
    token = renewed.body.split("https://console.city.example/reply/")[1].split()[0]
    grant = links(later).read(token)
    assert (grant.ticket_id, grant.department, grant.version) == (ticket.ticket_id, "SCJG", ticket.version)
    assert grant.expires_at == (later + timedelta(days=14)).astimezone(timezone.utc)
    assert "2026-05-03 09:00 前有效" in renewed.body and "2026-04-03 09:00 前有效" not in renewed.body
    assert renewed.body.replace(token, "T").replace("2026-05-03", "D") == \
        opened.body.replace(opened.body.split("/reply/")[1].split()[0], "T").replace("2026-04-03", "D")
    assert (renewed.notice_id, renewed.message_id, renewed.subject) == (opened.notice_id, opened.message_id,
                                                                        opened.subject)
    # One still valid longer than a new one would be, another console's, or none: as it was.
    assert links(NOW - timedelta(days=1)).renewed(opened, CATALOG) is opened
    assert Links("https://other.example", KEY, clock=lambda: later).renewed(opened, CATALOG) is opened
    plain = render_notice(notices[0], ticket, CATALOG, load_templates())
    assert links(later).renewed(plain, CATALOG) is plain
    # Another ticket's link quoted in its text, before its own (a case id, an inspector's reason),
    # stays as written and is not signed again; punctuation after a link is kept (found by review).
    other = links(NOW - timedelta(days=40)).make("C-9/overdue", "GTJ", NOW - timedelta(days=26), 7).url
    own = opened.body.split("https://console.city.example/reply/")[1].split()[0]
    quoted = replace(opened, body=f"曾用链接：{other}）。\n" + opened.body.replace(own, own + "）", 1))
    again = links(later).renewed(quoted, CATALOG)
    assert again.body.startswith(f"曾用链接：{other}）。\n") and "2026-05-03 09:00 前有效" in again.body
    token = again.body.rsplit("https://console.city.example/reply/", 1)[1].split("）")[0]
    assert links(later).read(token).ticket_id == ticket.ticket_id
    # One whose only link is another ticket's: as it was.
    foreign = replace(opened, body=f"{other}\n")
    assert links(later).renewed(foreign, CATALOG) is foreign


def test_without_a_link_a_notice_says_how_to_reply_otherwise():
    ticket, notices = _ticket_and_notices()
    opened = render_notice(notices[0], ticket, CATALOG, load_templates())
    assert "/reply/" not in opened.body
    assert "经 OA 系统提交答复" in opened.body and f"督办件 {ticket.ticket_id}" in opened.body
    # No command line in a notice to a department (found by a black-box test)
    assert "sunlight" not in opened.body and "--text" not in opened.body
    custom = replace(load_templates(), templates={**load_templates().templates,
                                                   Step.OPENED: ("{ticket_id}", "链接：{reply_link}\n")})
    assert render_notice(notices[0], ticket, CATALOG, custom).body == f"链接：{NO_LINK}\n"
    linked = render_notice(notices[0], ticket, CATALOG, custom.with_links(links().for_notice))
    assert linked.body.startswith("链接：https://console.city.example/reply/")


def test_notices_carry_links_only_with_a_public_address_and_a_strong_key():
    from streams.console.auth import ConsoleConfigError
    from streams.console.links import notice_links
    from streams.settings import Settings

    assert notice_links(Settings(secret_key=KEY)) is None
    with pytest.raises(ConsoleConfigError, match="SUNLIGHT_SECRET_KEY"):
        notice_links(Settings(public_url="https://console.city.example", secret_key="short"))
    ticket, notices = _ticket_and_notices()
    made = notice_links(Settings(public_url="https://console.city.example", secret_key=KEY))(ticket, notices[0])
    assert links().read(made.url.rsplit("/", 1)[1]).ticket_id == ticket.ticket_id


def test_a_link_without_the_ticket_s_version_is_invalid():
    """The version (of the round of supervision the link was made in) is part of the signed token:
    a token of the earlier format, without it, is refused even though its signature holds."""
    serializer = links().serializer
    expires = int((NOW + timedelta(days=1)).timestamp())
    for payload in ({"t": "C-1/overdue", "d": "SCJG", "e": expires},
                    {"t": "C-1/overdue", "d": "SCJG", "e": expires, "v": "1"}):
        with pytest.raises(LinkRefused) as refused:
            links().read(serializer.dumps(payload))
        assert refused.value.reason == "invalid"
    assert links().read(serializer.dumps({"t": "C-1/overdue", "d": "SCJG", "e": expires, "v": 1})).version == 1


def test_the_catalog_is_reloaded_off_the_event_loop():
    import asyncio
    import threading

    from streams.console.app import reload_off_the_loop

    class Source:
        thread = None

        def maybe_reload(self):
            self.thread = threading.current_thread()

    source = Source()

    async def run():
        await reload_off_the_loop(source)
        return threading.current_thread()

    loop_thread = asyncio.run(run())
    assert source.thread is not None and source.thread is not loop_thread


def test_a_form_s_version_is_a_small_count_or_refused():
    # Found by a black-box test: a version of 25 digits passed int() and failed the action's
    # record with a 500, on the public reply form too; now it is refused as an incomplete form.
    from streams.console.app import form_version

    assert form_version({"version": "3"}) == 3
    for bad in ("9" * 25, "-1", "abc", "", None, "3.0"):
        assert form_version({"version": bad}) is None


def test_an_alert_row_names_its_settling_ticket_unless_the_alert_was_withdrawn():
    """A settling ticket opens by itself within the hour: an open card's row says so. A withdrawn
    card's never opens it: its row names no ticket (it would say 督办件待生成 for ever)."""
    from streams.console.app import ticket_of

    tickets = {"C-1/overdue": {"ticket_id": "C-1/overdue", "status": "settling"},
               "C-2/overdue": {"ticket_id": "C-2/overdue", "status": "open"}}
    assert ticket_of({"case_id": "C-1", "rule": "overdue", "status": "open"}, tickets)["status"] == "settling"
    assert ticket_of({"case_id": "C-1", "rule": "overdue", "status": "withdrawn"}, tickets) is None
    assert ticket_of({"case_id": "C-2", "rule": "overdue", "status": "withdrawn"}, tickets)["status"] == "open"
    assert ticket_of({"case_id": "C-3", "rule": "overdue", "status": "open"}, tickets) is None


def test_a_card_a_closed_ticket_did_not_answer_reads_as_its_next_round_to_come():
    """A card raised after its ticket's round was closed waits for the next round (the dashboards'
    待处置): its row read 已办结, the closed round's status, though nobody had handled it. A ticket
    opened by hand is opened again by hand only: such a card has no ticket coming."""
    from streams.console.app import ticket_of

    closed = {"ticket_id": "C-1/skipped_node", "status": "closed", "manual": False, "alert_ids": ["a1"],
              "coming": ["a3"]}
    tickets = {"C-1/skipped_node": closed}

    def row(alert_id, status="open"):
        return ticket_of({"case_id": "C-1", "rule": "skipped_node", "alert_id": alert_id, "status": status}, tickets)

    assert row("a1") is closed  # answered by the closed round
    assert row("a2")["status"] == "settling" and row("a2")["next_round"]  # raised since
    assert row("a3")["next_round"]  # held for the next round
    assert row("a2", "withdrawn") is closed
    tickets["C-1/skipped_node"] = {**closed, "manual": True, "coming": []}
    assert row("a2") is None and row("a1")["status"] == "closed"
