"""The console's pages of a ticket opened again: the rounds kept apart (a store of its own: chdb
serves one data directory per process, so not beside test_console_security's)."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys

from sinks.clickhouse import connect
from streams.catalog_source import load_judge
from streams.console.app import Backend, create_app
from streams.console.links import Links
from tests.integration.conftest import pipeline_settings
from tests.integration.test_console_security import EXAMPLE, KEY, Client, in_a_week, path_of
from tests.integration.test_scoring_rounds import reopened_ticket, store_tickets


def add_notices(batch, notices, status: str = "held", failed: tuple[str, ...] = (), failed_version: int = 1) -> None:
    """Notices into a batch of rows, as the notifier leaves them: `status`, or failed for those named
    (their row of `failed_version`)."""
    from datetime import timedelta

    for n in notices:
        batch.add("notices", {
            "notice_id": n.notice_id, "ticket_id": n.ticket_id, "step": n.step.value,
            "recipient_role": n.recipient, "recipient_name": n.recipient, "recipient_email": "",
            "subject": n.step.value, "body": "", "department": "SCJG", "region": "320200", "due_at": n.at,
            "status": "failed" if n.notice_id in failed else status, "attempts": 1 if n.notice_id in failed else 0,
            "last_error": "", "message_id": "", "version": failed_version if n.notice_id in failed else 1,
            "updated_at": n.at + timedelta(seconds=1)})


def test_a_failed_notice_resent_tells_the_escalations_of_its_own_round():
    """Found by review: the steps a resent notice says its ticket went through since were taken
    over every round: a second round's failed opening notice missed its own round's escalation (the
    first round's came earlier), and a first round's told the second's as its own."""
    import tempfile
    from datetime import datetime as moment

    from alerts.tickets import advance
    from sinks.queries import failed_notices_and_their_tickets
    from sinks.writer import Batch, ClickHouseWriter
    from tests.integration.test_scoring_rounds import CAL, CST, POLICY

    notices: list = []
    versions, current = reopened_ticket("C-F", "320200-XK-SCJG-0001", "SCJG", notices)
    later = advance(current, POLICY, CAL, moment(2026, 4, 30, tzinfo=CST))  # round 2 escalated too
    versions, notices = versions + list(later.versions), notices + list(later.notices)
    by_id = {n.notice_id: n for n in notices}
    assert {f"C-F/overdue/{step}" for step in ("opened", "level_1", "opened/r2", "level_1/r2")} <= set(by_id)
    with tempfile.TemporaryDirectory() as directory:
        client = connect(None, directory)
        try:
            store_tickets(client, versions)
            batch = Batch()
            add_notices(batch, notices, "sent", failed=("C-F/overdue/opened", "C-F/overdue/opened/r2"))
            ClickHouseWriter(client).write(batch)
            failed, _ = failed_notices_and_their_tickets(client)
        finally:
            client.close()
    told = {record["notice_id"]: record["later_steps"] for record in failed}
    assert told["C-F/overdue/opened/r2"]["level_1"] == by_id["C-F/overdue/level_1/r2"].at
    assert told["C-F/overdue/opened"]["level_1"] == by_id["C-F/overdue/level_1"].at


def test_a_failed_notice_of_a_round_ended_since_is_not_sent_again_but_its_closing_is():
    """Found by review: a first round's failed escalation to the head was resent by the clock while
    the second round ran (its ticket open again), urging the head about a round closed weeks before."""
    import tempfile
    from datetime import datetime as moment
    from datetime import timedelta
    from types import SimpleNamespace

    import orjson

    from alerts.notices import ResendPolicy
    from sinks.queries import failed_notices_and_their_tickets
    from sinks.writer import Batch, ClickHouseWriter
    from streams.notice_resend import NoticeResend
    from streams.notices import FINISHED_VERSION
    from tests.integration.test_scoring_rounds import CST

    notices: list = []
    versions, current = reopened_ticket("C-E", "320200-XK-SCJG-0001", "SCJG", notices)
    assert current.round == 2
    failed = ("C-E/overdue/level_1", "C-E/overdue/closed/head", "C-E/overdue/opened/r2")
    assert set(failed) <= {n.notice_id for n in notices}
    sent: list[str] = []
    bodies: dict[str, str] = {}

    async def send(topic, key, value, partition):
        sent.append(orjson.loads(value)["notice_id"])
        bodies[sent[-1]] = orjson.loads(value)["body"]

    with tempfile.TemporaryDirectory() as directory:
        client = connect(None, directory)
        try:
            store_tickets(client, versions)
            batch = Batch()
            add_notices(batch, notices, "sent", failed=failed, failed_version=FINISHED_VERSION)  # as the notifier
            ClickHouseWriter(client).write(batch)

            async def run_on_store(fn, *args):
                return fn(client, *args)

            catalog = SimpleNamespace(judge=load_judge(EXAMPLE, None))
            may = moment(2026, 5, 1, tzinfo=CST)
            resend = NoticeResend(ResendPolicy(timedelta(minutes=10), rounds=8), run_on_store, catalog, send,
                                  "sunlight-notices", 4, lambda: set(range(4)), now=lambda: may)
            asyncio.run(resend.run())
            records, _ = failed_notices_and_their_tickets(client)
        finally:
            client.close()
    assert {r["notice_id"]: (r["of_round"], r["ticket_round"]) for r in records} == {
        "C-E/overdue/level_1": (1, 2), "C-E/overdue/closed/head": (1, 2), "C-E/overdue/opened/r2": (2, 2)}
    assert sorted(sent) == ["C-E/overdue/closed/head", "C-E/overdue/opened/r2"]
    # The first round's closing says the ticket is open again (it read 已办结 alone: found by review).
    assert "该督办件已重新生效，现为第 2 轮督办（另行通知）" in bodies["C-E/overdue/closed/head"]
    said = bodies["C-E/overdue/opened/r2"].split("\n")[1]  # the line after the salutation
    assert said.startswith("（本通知原定于") and "重新生效" not in said


def signed_in(tmp_path, client, users):
    """The console over `client`'s store, and an inspector of `users` signed in to it."""
    judge = load_judge(EXAMPLE, None)
    settings = pipeline_settings(tmp_path / "data", secret_key=KEY, public_url="https://console.city.example",
                                 users_file=users)
    app = create_app(settings, Backend(client, lambda: judge, lambda messages: asyncio.sleep(0), wait_seconds=0.2))
    inspector = Client(app)
    assert inspector.sign_in("检查员", "inspector-password").status == 303
    return app, inspector


def test_a_reply_page_shows_this_round_and_keeps_the_earlier_ones_apart(tmp_path):
    """Found by a black-box test: a ticket closed and opened again showed the department every
    round's history unmarked (an escalation to the discipline-inspection office of a round it was
    never told of among it), and the system's own steps by "sunlight"."""
    versions, current = reopened_ticket("C-R", "320200-XK-SCJG-0001", "SCJG")
    client = connect(None, tmp_path / "data")
    try:
        store_tickets(client, versions)
        judge = load_judge(EXAMPLE, None)
        settings = pipeline_settings(tmp_path / "data", secret_key=KEY, public_url="https://console.city.example",
                                     users_file=tmp_path / "users.json")
        app = create_app(settings, Backend(client, lambda: judge, lambda messages: asyncio.sleep(0), wait_seconds=0.2))
        links = Links("https://console.city.example", KEY)
        page = Client(app).get(path_of(links.make(current.ticket_id, "SCJG", in_a_week(), current.version)))
    finally:
        client.close()
    assert page.status == 200, page.text
    this_round, _, earlier = page.text.partition("<details data-earlier-rounds>")
    assert "本轮为第 2 轮督办" in this_round and "人工督办" in this_round
    assert "升级至纪检监察机构" not in this_round and "督办办结" not in this_round
    assert "此前各轮督办记录" in earlier and "升级至纪检监察机构" in earlier and "督办办结" in earlier
    assert "电子监察系统 · 升级至部门负责人" in earlier and " · sunlight · " not in page.text



def test_a_case_page_shows_each_round_s_notices_under_that_round(tmp_path):
    """Found by review: a ticket opened again listed every notice after its last round's history,
    so that its second round read as escalated to the head and the inspection office by the first
    round's notices (and `sunlight tickets show` too: found by a black-box test)."""
    from alerts.events import parse_event
    from sinks.rows import event_row
    from sinks.writer import Batch, ClickHouseWriter
    from streams.console.auth import add_user

    notices: list = []
    versions, current = reopened_ticket("C-R", "320200-XK-SCJG-0001", "SCJG", notices)
    steps = {(n.step.value, n.notice_id.endswith("/r2")) for n in notices}
    assert {("opened", False), ("level_1", False), ("level_2", False), ("opened", True)} <= steps, steps
    users = tmp_path / "users.json"
    add_user(users, "检查员", "inspector", None, "inspector-password")
    client = connect(None, tmp_path / "data")
    try:
        store_tickets(client, versions)
        batch = Batch()
        accepted = parse_event({"event_id": "C-R-01", "case_id": "C-R", "item_code": "320200-XK-SCJG-0001",
                                "type": "accepted", "occurred_at": "2026-03-02T09:00:00+08:00",
                                "recorded_at": "2026-03-02T09:01:00+08:00"})
        batch.add("case_events", event_row(accepted, "SCJG", current.opened_at))
        add_notices(batch, notices)
        ClickHouseWriter(client).write(batch)
        app, inspector = signed_in(tmp_path, client, users)
        page = inspector.get("/cases/C-R").text
    finally:
        client.close()
    assert "第 2 轮" in page, page[-3000:]
    first, _, second = page.partition('<ul class="notices" data-round="2">')
    second = second.partition("</ul>")[0]
    assert '<ul class="notices" data-round="1">' in first
    assert "升级至纪检监察机构" in first.partition('<ul class="notices" data-round="1">')[2]
    # The second round's list holds its own notice (its opening) and none of the first's escalations.
    assert "督办通知" in second and "升级至部门负责人" not in second and "升级至纪检监察机构" not in second
    # `sunlight tickets show` lists them the same way.
    shown = subprocess.run([sys.executable, "-m", "streams.cli", "tickets", "show", current.ticket_id],
                           env={**os.environ, "SUNLIGHT_DATA_DIR": str(tmp_path / "data")},
                           capture_output=True, text=True, timeout=120)
    assert shown.returncode == 0, shown.stderr
    told = shown.stdout.partition("通知：")[2]
    first_told, _, second_told = told.partition(" 第 2 轮")
    assert " 第 1 轮（已结束）" in first_told and "升级至纪检监察机构" in first_told, shown.stdout
    assert "督办通知" in second_told and "升级至" not in second_told, shown.stdout

def test_a_ticket_withdrawn_after_it_went_overdue_is_not_shown_or_listed_as_overdue(tmp_path):
    """Found by a black-box test: a ticket whose red card was withdrawn (facts showed it never held)
    after its deadline had passed read 逾期 in red, as one the department is still late with, and
    the list's 仅逾期 showed it; the monthly scoring does not count it. It reads 撤销前已逾期, on the
    department's page and in `sunlight tickets show` and `list` too."""
    import dataclasses
    from datetime import datetime

    from alerts.model import AlertStatus
    from alerts.tickets import advance, on_alert
    from streams.console.auth import add_user
    from tests.integration.test_scoring_rounds import CAL, CST, POLICY, red_card

    versions = []
    late = red_card("C-W", "320200-XK-SCJG-0001", "SCJG")
    out = on_alert(None, late, POLICY, CAL, late.raised_at)
    versions += out.versions
    out = advance(out.ticket, POLICY, CAL, datetime(2026, 3, 31, tzinfo=CST))  # overdue
    versions += out.versions
    assert out.ticket.overdue
    withdrawn_late = dataclasses.replace(late, status=AlertStatus.WITHDRAWN, version=late.version + 1)
    out = on_alert(out.ticket, withdrawn_late, POLICY, CAL, datetime(2026, 4, 1, 9, tzinfo=CST))
    versions += out.versions
    assert out.ticket.status.value == "withdrawn" and out.ticket.overdue
    out_withdrawn = out
    # And one still late, beside it.
    other = red_card("C-L", "320200-XK-SCJG-0001", "SCJG")
    out = on_alert(None, other, POLICY, CAL, other.raised_at)
    versions += out.versions + advance(out.ticket, POLICY, CAL, datetime(2026, 3, 31, tzinfo=CST)).versions
    users = tmp_path / "users.json"
    add_user(users, "检查员", "inspector", None, "inspector-password")
    client = connect(None, tmp_path / "data")
    try:
        store_tickets(client, versions)
        app, inspector = signed_in(tmp_path, client, users)
        listed = inspector.get("/tickets").text
        only_late = inspector.get("/tickets?overdue=1").text
        withdrawn = out_withdrawn.ticket
        reply_page = Client(app).get(path_of(Links("https://console.city.example", KEY).make(
            withdrawn.ticket_id, "SCJG", in_a_week(), withdrawn.version))).text
    finally:
        client.close()
    rows = {ticket: row for row in listed.split("<tr>")[1:]
            for ticket in ("C-W/overdue", "C-L/overdue") if ticket in row}
    assert "撤销前已逾期" in rows["C-W/overdue"] and 'class="tag red">逾期' not in rows["C-W/overdue"]
    assert '<span class="tag red">逾期</span>' in rows["C-L/overdue"]
    # Its escalation too, as it stood before it was withdrawn (it read as escalated now).
    assert "撤销前已升级至纪检监察机构" in rows["C-W/overdue"]
    assert "已升级至纪检监察机构" in rows["C-L/overdue"] and "撤销前" not in rows["C-L/overdue"]
    assert "C-L/overdue" in only_late and "C-W/overdue" not in only_late
    # The department's page of it says the same.
    assert "已撤销" in reply_page and "撤销前已逾期" in reply_page and 'class="tag red">逾期' not in reply_page
    shown = subprocess.run([sys.executable, "-m", "streams.cli", "tickets", "show", "C-W/overdue"],
                           env={**os.environ, "SUNLIGHT_DATA_DIR": str(tmp_path / "data")},
                           capture_output=True, text=True, timeout=120)
    assert shown.returncode == 0, shown.stderr
    assert "状态：已撤销，撤销前已逾期，撤销前已升级至纪检监察机构" in shown.stdout, shown.stdout
    listed = subprocess.run([sys.executable, "-m", "streams.cli", "tickets", "list"],
                            env={**os.environ, "SUNLIGHT_DATA_DIR": str(tmp_path / "data")},
                            capture_output=True, text=True, timeout=120)
    rows = {line.split()[0]: line.split() for line in listed.stdout.splitlines() if "/overdue" in line}
    assert rows["C-W/overdue"][3] == "撤销前已逾期" and rows["C-L/overdue"][3] == "是", listed.stdout
    # Its escalation in words, as before it was withdrawn (a bare "2": found by a black-box test).
    assert rows["C-W/overdue"][4] == "撤销前已升级至纪检监察机构" and rows["C-L/overdue"][4] == "已升级至纪检监察机构", \
        listed.stdout
