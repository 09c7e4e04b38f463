"""The notifier's log of finished notices (streams/notices.py): held until the store has the row."""

from __future__ import annotations

import asyncio
from types import SimpleNamespace

from streams.notices import NoticeLog


def log_with_table():
    table = SimpleNamespace(data={})
    deleted = []

    def write(notice_id, stored, partition):
        table.data[notice_id] = stored

    def delete(notice_id, partition):
        table.data.pop(notice_id, None)
        deleted.append(notice_id)

    return NoticeLog(table, write, delete), table, deleted


def test_a_finished_notice_is_let_go_once_written_and_then_read_from_the_store():
    log, table, deleted = log_with_table()
    stored = log.finish("C-1/overdue/opened", "sent", 1, 0)
    assert log.status("C-1/overdue/opened", {}) == "sent"
    assert log.let_go("C-1/overdue/opened", 0, stored) and deleted == ["C-1/overdue/opened"]

    async def store(ids):
        return {i: ("sent", 3) for i in ids}

    log.load = store
    read = asyncio.run(log.read_back(["C-1/overdue/opened", "C-1/overdue/opened"]))
    assert log.status("C-1/overdue/opened", read) == "sent"


def test_a_notice_whose_row_the_store_refused_stays_in_the_table():
    """Let go, its status would be read back from a store that never got it: sent again."""
    log, table, deleted = log_with_table()
    stored = log.finish("C-1/overdue/opened", "sent", 1, 0)
    log.keep.add("C-1/overdue/opened")  # as the pipeline marks a refused notice row
    assert not log.let_go("C-1/overdue/opened", 0, stored) and deleted == []
    assert log.status("C-1/overdue/opened", {}) == "sent"


def test_a_notice_finished_in_the_table_but_not_in_the_store_has_its_row_written_on_redelivery():
    """Found by a black-box test: killed after the table's record of a sent notice and before its
    row was written, the restarted notifier skipped the redelivered notice (finished, said the
    table), so the store kept it `recorded` and a later process mailed it again."""
    from datetime import datetime, timezone

    import orjson

    from alerts.notices import RenderedNotice
    from alerts.tickets import Step
    from streams.notices import FINISHED_VERSION, NoticeSteps, notice_to_json
    from streams.steps import Unit

    log, table, deleted = log_with_table()
    notice = RenderedNotice("C-1/overdue/level_2", "C-1/overdue", Step.LEVEL_2, "inspection_office", "纪检组",
                            "jijian@example.gov.cn", "【督办升级】", "正文", "SCJG", "320200",
                            datetime(2026, 3, 10, tzinfo=timezone.utc), "<m@sunlight.local>")
    log.finish(notice.notice_id, "sent", 1, 0)  # the table's record, restored from its changelog
    rows, after_write, sent = [], [], []
    writer = SimpleNamespace(add=lambda table, row: rows.append((table, row)),
                             batch=SimpleNamespace(after_write=after_write))

    class Sender:
        async def send(self, n):
            sent.append(n)

    steps = NoticeSteps(log, [Sender()], True, writer)
    record = SimpleNamespace(offset=7, key=b"C-1", value=orjson.dumps(notice_to_json(notice)))
    asyncio.run(steps.process(Unit("sunlight-notices", 0, [record]), None))
    assert sent == []  # not sent again
    assert [(t, r["notice_id"], r["status"], r["version"]) for t, r in rows] == [
        ("notices", notice.notice_id, "sent", FINISHED_VERSION)]
    for let_go in after_write:  # once the row is written, the table lets it go
        asyncio.run(let_go())
    assert deleted == [notice.notice_id]


def test_a_mail_server_down_for_a_minute_loses_no_notice_with_the_default_settings(monkeypatch):
    """Found by a black-box test: with 4 attempts (3.5 s of back-off) a mail server restarted for
    half a minute failed, for good, every notice due meanwhile. Time here is virtual: the
    notifier's sleeps move a clock that the sender reads."""
    from datetime import datetime, timezone

    import streams.notices as notices
    from alerts.notices import RenderedNotice
    from alerts.tickets import Step
    from sinks.notify import NoticeError
    from streams.settings import Settings

    clock = [0.0]

    async def sleep(seconds):
        clock[0] += seconds

    monkeypatch.setattr(notices.asyncio, "sleep", sleep)

    class Server:
        def __init__(self, down_for):
            self.down_for = down_for

        async def send(self, notice):
            if clock[0] < self.down_for:
                raise NoticeError("Error connecting to 127.0.0.1 on port 25: [Errno 111] Connection refused")

    settings = Settings.from_env({})
    notice = RenderedNotice("C-1/overdue/opened", "C-1/overdue", Step.OPENED, "contact", "法规科", "fgk@example.gov.cn",
                            "【督办通知】", "正文", "SCJG", "320200", datetime(2026, 3, 10, tzinfo=timezone.utc), "<m@x>")

    def deliver(down_for):
        clock[0] = 0.0
        steps = notices.NoticeSteps(None, [Server(down_for)], True, None, attempts=settings.notice_attempts,
                                    retry_seconds=settings.notice_retry_seconds)
        return asyncio.run(steps.deliver(notice))

    assert deliver(60.0)[0] == "sent"
    status, attempts, error = deliver(3600.0)  # an hour: failed, with why and how often it was tried
    assert (status, attempts) == ("failed", settings.notice_attempts) and "Connection refused" in error
    assert 100 <= clock[0] <= 180


def test_a_failed_notice_is_delivered_again_once_per_resend_round_and_a_sent_one_never():
    from datetime import datetime, timezone

    import orjson

    from alerts.notices import RenderedNotice
    from alerts.tickets import Step
    from sinks.notify import NoticeError
    from streams.notices import FINISHED_VERSION, NoticeSteps, notice_to_json, resend_request
    from streams.steps import Unit

    log, table, deleted = log_with_table()
    stored_rows: dict[str, tuple[str, int]] = {}

    async def store(ids):  # the store's notice log: the latest status and version of each
        return {i: stored_rows[i] for i in ids if i in stored_rows}

    log.load = store
    notice = RenderedNotice("C-1/overdue/opened", "C-1/overdue", Step.OPENED, "contact", "法规科", "fgk@example.gov.cn",
                            "【督办通知】", "正文", "SCJG", "320200", datetime(2026, 3, 10, tzinfo=timezone.utc), "<m@x>")
    rows, after_write, sent = [], [], []
    writer = SimpleNamespace(add=lambda table, row: rows.append(row), batch=SimpleNamespace(after_write=after_write))
    server = SimpleNamespace(down=True)

    class Sender:
        async def send(self, n):
            if server.down:
                raise NoticeError("SMTP 127.0.0.1:25: Connection refused")
            sent.append(n.notice_id)

    steps = NoticeSteps(log, [Sender()], True, writer, attempts=1)

    def take(value: dict) -> list[tuple[str, int]]:
        rows.clear()
        record = SimpleNamespace(offset=1, key=b"C-1", value=orjson.dumps(value))
        asyncio.run(steps.process(Unit("sunlight-notices", 0, [record]), None))
        for let_go in after_write:  # written: the store answers for it, the table lets it go
            asyncio.run(let_go())
        after_write.clear()
        for row in rows:
            stored_rows[row["notice_id"]] = (row["status"], row["version"])
        return [(row["status"], row["version"]) for row in rows]

    assert take(notice_to_json(notice)) == [("failed", FINISHED_VERSION)]
    assert take(notice_to_json(notice)) == []  # a redelivery: finished, not tried again
    assert take(resend_request(notice, 1)) == [("failed", FINISHED_VERSION + 1)]  # still down
    assert take(resend_request(notice, 1)) == []  # that round is taken
    server.down = False
    assert take(resend_request(notice, 2)) == [("sent", FINISHED_VERSION + 2)]
    assert take(resend_request(notice, 2)) == [] and take(resend_request(notice, 3)) == []  # sent: never again
    assert sent == [notice.notice_id]
    assert table.data == {}  # every finished record let go once its row was written


def test_notices_of_different_tickets_are_delivered_at_once_and_each_ticket_s_in_order():
    """Found by a black-box test: the notifier sent one notice at a time, so a mail server that
    did not answer (two minutes of attempts a notice) held every later notice of its partition
    back, a month-start burst queued one mail after another. Now up to `concurrency` at once, a
    ticket's own in order (its opening before its escalation)."""
    from datetime import datetime, timezone

    import orjson

    from alerts.notices import RenderedNotice
    from alerts.tickets import Step
    from streams.notices import NoticeSteps, notice_to_json
    from streams.steps import Unit

    def notice(ticket: str, step: Step) -> RenderedNotice:
        return RenderedNotice(f"{ticket}/{step.value}", ticket, step, "contact", "科室", "k@example.gov.cn", "主题",
                              "正文", "SCJG", "320200", datetime(2026, 3, 10, tzinfo=timezone.utc), f"<{ticket}{step}>")

    flight = {"now": 0, "most": 0}
    events: list[tuple[str, str]] = []

    class Sender:
        async def send(self, n):
            flight["now"] += 1
            flight["most"] = max(flight["most"], flight["now"])
            events.append(("start", n.notice_id))
            await asyncio.sleep(0.01)
            events.append(("end", n.notice_id))
            flight["now"] -= 1

    log, table, deleted = log_with_table()
    writer = SimpleNamespace(add=lambda table, row: None, batch=SimpleNamespace(after_write=[]))
    given = [notice(f"C-{n}/overdue", Step.OPENED) for n in range(5)] + [notice("C-0/overdue", Step.LEVEL_1)]
    records = [SimpleNamespace(offset=i, key=b"k", value=orjson.dumps(notice_to_json(n))) for i, n in enumerate(given)]
    for concurrency, most in ((3, 3), (1, 1)):
        log, table, deleted = log_with_table()
        flight["most"], events[:] = 0, []
        steps = NoticeSteps(log, [Sender()], True, writer, concurrency=concurrency)
        asyncio.run(steps.process(Unit("sunlight-notices", 0, records), None))
        assert flight["most"] == most
        assert sorted(n for kind, n in events if kind == "end") == sorted(n.notice_id for n in given)
        # C-0's escalation starts only once its opening went out.
        assert events.index(("end", "C-0/overdue/opened")) < events.index(("start", "C-0/overdue/level_1"))
        assert all(log.status(n.notice_id, {}) == "sent" for n in given)


def test_an_error_delivering_one_ticket_s_notice_stops_the_others_of_its_unit():
    """Found by review: delivered at once (gather), an error no sender wraps failed the unit while
    the other tickets' notices went on being sent for a unit already given up."""
    from datetime import datetime, timezone

    import orjson
    import pytest

    from alerts.notices import RenderedNotice
    from alerts.tickets import Step
    from streams.notices import NoticeSteps, notice_to_json
    from streams.steps import Unit

    def notice(ticket: str) -> RenderedNotice:
        return RenderedNotice(f"{ticket}/opened", ticket, Step.OPENED, "contact", "科室", "k@example.gov.cn", "主题",
                              "正文", "SCJG", "320200", datetime(2026, 3, 10, tzinfo=timezone.utc), f"<{ticket}>")

    finished: list[str] = []

    class Sender:
        async def send(self, n):
            if n.ticket_id == "C-bad/overdue":
                raise RuntimeError("a bug in a sender")
            await asyncio.sleep(0.05)
            finished.append(n.notice_id)

    log, table, deleted = log_with_table()
    writer = SimpleNamespace(add=lambda table, row: None, batch=SimpleNamespace(after_write=[]))
    records = [SimpleNamespace(offset=i, key=b"k", value=orjson.dumps(notice_to_json(notice(t))))
               for i, t in enumerate(("C-1/overdue", "C-bad/overdue", "C-2/overdue"))]

    async def run():
        with pytest.raises(RuntimeError, match="a bug in a sender"):
            await NoticeSteps(log, [Sender()], True, writer).process(Unit("sunlight-notices", 0, records), None)
        await asyncio.sleep(0.1)  # nothing left running sends afterwards

    asyncio.run(run())
    assert finished == [] and not table.data


def test_a_withdrawal_is_sent_only_to_those_its_ticket_reached():
    """Found by a black-box test: a head without an address was never told of level 1 (failed), yet
    the ticket's withdrawal was recorded for them, failed too, counted among the undelivered, and
    sent once an address was added: a head told of the withdrawal of a ticket they never heard of."""
    from dataclasses import replace
    from datetime import datetime, timezone

    import orjson

    from alerts.notices import RenderedNotice
    from alerts.tickets import Step, taken_back
    from sinks.notify import NoAddress
    from streams.notices import NEVER_REACHED, NoticeSteps, notice_to_json
    from streams.steps import Unit

    assert taken_back("C-1/overdue/withdrawn/head/r2", "C-1/overdue", "head") == "C-1/overdue/level_1/r2"
    assert taken_back("C-1/overdue/withdrawn/contact", "C-1/overdue", "contact") is None  # the department: always
    assert taken_back("C-1/overdue/level_1", "C-1/overdue", "head") is None
    # A closing's notice to the office follows up its level 2 (found by a black-box test: the office
    # was never told of the end of a referral it had)
    assert taken_back("C-1/overdue/closed/inspection_office/r2", "C-1/overdue", "inspection_office") == \
        "C-1/overdue/level_2/r2"
    assert taken_back("C-1/overdue/closed", "C-1/overdue", "contact") is None
    log, table, deleted = log_with_table()
    rows, sent = [], []
    writer = SimpleNamespace(add=lambda table, row: rows.append(row), batch=SimpleNamespace(after_write=[]))

    class Sender:
        async def send(self, n):
            if not n.recipient_email:
                raise NoAddress("职权目录未登记部门负责人的邮箱")
            sent.append(n.notice_id)

    def notice(notice_id: str, step: Step, role: str, email: str) -> RenderedNotice:
        return RenderedNotice(notice_id, "C-1/overdue", step, role, "某某", email, "主题", "正文", "SCJG", "320200",
                              datetime(2026, 3, 10, tzinfo=timezone.utc), "<m@x>")

    told = [notice("C-1/overdue/opened", Step.OPENED, "contact", "fgk@example.gov.cn"),
            notice("C-1/overdue/level_1", Step.LEVEL_1, "head", "")]
    taken = [notice("C-1/overdue/withdrawn/contact", Step.WITHDRAWN, "contact", "fgk@example.gov.cn"),
             notice("C-1/overdue/withdrawn/head", Step.WITHDRAWN, "head", "head@example.gov.cn")]  # an address now
    steps = NoticeSteps(log, [Sender()], True, writer, attempts=1)
    records = [SimpleNamespace(offset=n, key=b"C-1", value=orjson.dumps(notice_to_json(x)))
               for n, x in enumerate([*told, *taken])]
    asyncio.run(steps.process(Unit("sunlight-notices", 0, records), None))
    status = {row["notice_id"]: (row["status"], row["last_error"]) for row in rows}
    assert sent == ["C-1/overdue/opened", "C-1/overdue/withdrawn/contact"]
    assert status["C-1/overdue/level_1"][0] == "failed"
    assert status["C-1/overdue/withdrawn/head"] == ("held", NEVER_REACHED)
    # One the head was told of is taken back from them.
    reached = replace(taken[1], notice_id="C-1/overdue/withdrawn/head/r2")
    log.finish("C-1/overdue/level_1/r2", "sent", 1, 0)
    asyncio.run(steps.process(Unit("sunlight-notices", 0, [SimpleNamespace(
        offset=9, key=b"C-1", value=orjson.dumps(notice_to_json(reached)))]), None))
    assert sent[-1] == "C-1/overdue/withdrawn/head/r2"


def test_a_failed_notice_is_due_again_after_a_wait_that_doubles_each_round_up_to_a_cap():
    """Found by a black-box test: a mail server down for longer than the notifier's attempts
    (about two minutes) lost every notice due meanwhile until an operator asked for them again."""
    from datetime import datetime, timedelta, timezone

    from alerts.notices import ResendPolicy

    policy = ResendPolicy(timedelta(minutes=10), rounds=3, longest_wait=timedelta(minutes=30))
    failed = datetime(2026, 3, 17, 9, tzinfo=timezone.utc)
    assert not policy.due(failed, 0, failed + timedelta(minutes=9, seconds=59))
    assert policy.due(failed, 0, failed + timedelta(minutes=10))
    assert not policy.due(failed, 1, failed + timedelta(minutes=19)) and policy.due(failed, 1, failed + timedelta(minutes=20))
    assert not policy.due(failed, 2, failed + timedelta(minutes=29)) and policy.due(failed, 2, failed + timedelta(minutes=30))
    assert not policy.due(failed, 3, failed + timedelta(days=30))  # its rounds are spent: only when asked
    assert not ResendPolicy(timedelta(0), rounds=3).due(failed, 0, failed + timedelta(days=1))  # turned off
    assert ResendPolicy(timedelta(hours=1), rounds=99).due(failed, 90, failed + timedelta(hours=6))  # no overflow
    # A first wait of a day, 40 rounds: no overflow at round 30 (found by review), never capped below it.
    daily = ResendPolicy(timedelta(days=1), rounds=40)
    assert daily.wait(30) == timedelta(days=1) and daily.due(failed, 30, failed + timedelta(days=1))


def test_the_clock_asks_again_for_the_failed_notices_due_of_its_own_partitions_only():
    """What a worker's resend timer asks the notifier for (streams.notice_resend): the failed
    notices whose wait is over, as the catalog addresses them now; not a notice of a ticket since
    closed, not one whose recipient still has no address, not one of another worker's partition."""
    from datetime import datetime, timedelta, timezone

    import orjson

    from alerts.notices import RenderedNotice, ResendPolicy
    from alerts.tickets import Step
    from streams.notice_resend import NoticeResend
    from streams.notices import FINISHED_VERSION, notice_to_json
    from streams.steps import home_partition
    from dataclasses import replace

    from tests.unit.helpers import example_catalog

    now = datetime(2026, 3, 17, 10, tzinfo=timezone.utc)

    def failed(case_id: str, step: Step, email: str, rounds: int = 0, ago: timedelta = timedelta(hours=1),
               role: str = "contact") -> dict:
        notice = RenderedNotice(f"{case_id}/overdue/{step.value}", f"{case_id}/overdue", step, role, "某人", email,
                                "【督办通知】", "某人：正文", "SCJG", "320200", now - timedelta(days=1), "<m@x>")
        return {**notice_to_json(notice), "version": FINISHED_VERSION + rounds,
                "updated_at": (now - ago).isoformat(), "status": "failed", "of_round": 1, "ticket_round": 1}

    # Case ids of both partitions of two.
    mine = [f"C-{n}" for n in range(40) if home_partition(f"C-{n}", 2) == 0][:5]
    theirs = next(f"C-{n}" for n in range(40) if home_partition(f"C-{n}", 2) == 1)
    records = [
        failed(mine[0], Step.OPENED, "a@example.gov.cn"),  # due: an hour since, first round
        failed(mine[1], Step.OPENED, "b@example.gov.cn", rounds=1, ago=timedelta(minutes=15)),  # waits 20 min
        failed(mine[2], Step.LEVEL_2, "c@example.gov.cn"),  # its ticket is closed since: not news
        failed(mine[3], Step.OPENED, ""),  # no address then; the catalog gives the contact one now
        failed(mine[4], Step.OPENED, "", role="inspection_office"),  # still none (see below): not asked
        failed(theirs, Step.OPENED, "d@example.gov.cn"),  # the other worker's
    ]
    standing = {f"{mine[2]}/overdue": "closed", f"{mine[0]}/overdue": "open"}
    sent = []

    async def run_on_store(fn):
        return records, standing

    async def send(topic, key, value, partition):
        sent.append((topic, key, orjson.loads(value), partition))

    no_office = SimpleNamespace(judge=SimpleNamespace(catalog=replace(example_catalog(), inspection_office=None)))
    step = NoticeResend(ResendPolicy(timedelta(minutes=10), rounds=8), run_on_store, no_office, send,
                        "sunlight-notices", 2, lambda: {0}, now=lambda: now)
    from streams import metrics

    assert asyncio.run(step.run()) == 2
    assert metrics.NOTICES_FAILED._value.get() == 5  # all but the escalation of a ticket closed since
    contact = no_office.judge.catalog.departments["SCJG"].ticket_contact.email  # as the catalog names them now
    assert [(topic, key, value["notice_id"], value["resend"], value["recipient_email"], partition)
            for topic, key, value, partition in sent] == [
        ("sunlight-notices", mine[0].encode(), f"{mine[0]}/overdue/opened", 1, contact, 0),
        ("sunlight-notices", mine[3].encode(), f"{mine[3]}/overdue/opened", 1, contact, 0)]
    # Asked again before its outcome reached the store: not asked twice for one round (found by
    # review: every run asked again, each a notice's two minutes of attempts while the server is down).
    sent.clear()
    assert asyncio.run(step.run()) == 0 and sent == []
    # No outcome once that round's wait has passed (the request lost): asked again, once.
    clock = [now + timedelta(minutes=11)]
    later = NoticeResend(ResendPolicy(timedelta(minutes=10), rounds=8), run_on_store, no_office, send,
                         "sunlight-notices", 2, lambda: {0}, now=lambda: clock[0])
    later.asked = dict(step.asked)
    assert asyncio.run(later.run()) == 3  # and the one whose 20-minute wait has passed meanwhile
    assert {(value["notice_id"], value["resend"]) for _, _, value, _ in sent} == {
        (f"{mine[0]}/overdue/opened", 1), (f"{mine[3]}/overdue/opened", 1), (f"{mine[1]}/overdue/opened", 2)}
    assert asyncio.run(later.run()) == 0  # asked again just now
    sent.clear()
    records[0] = {**records[0], "version": FINISHED_VERSION + 1, "updated_at": (now - timedelta(hours=1)).isoformat()}
    assert asyncio.run(step.run()) == 1 and sent[0][2]["resend"] == 2  # failed again: its next round
    # A return the department has answered since is not news; one it has not is.
    from alerts.notices import no_longer_news

    assert no_longer_news("returned", "replied") and not no_longer_news("returned", "returned")
    assert not no_longer_news("level_1", "replied") and no_longer_news("level_2", "closed")
    # A notice of a round ended since is not news, but for that round's own ending.
    assert no_longer_news("level_1", "open", 1, 2) and no_longer_news("opened", "returned", 1, 3)
    assert not no_longer_news("closed", "open", 1, 2) and not no_longer_news("withdrawn", "open", 2, 3)
    assert not no_longer_news("level_1", "open", 2, 2)
    # With no channel, the failed notices are counted and none is asked for.
    counting = NoticeResend(ResendPolicy(timedelta(minutes=10), rounds=8), run_on_store, no_office, send,
                            "sunlight-notices", 2, lambda: {0}, now=lambda: now, sending=False)
    sent.clear()
    assert asyncio.run(counting.run()) == 0 and sent == [] and metrics.NOTICES_FAILED._value.get() == 5


def test_the_clock_sends_a_failed_notice_again_with_its_reply_link_renewed():
    """Found by a black-box test: a notice sent again carried the reply link made when it first
    failed, which could have expired by then. The worker's resend renews it (as `notices resend`
    does: `streams.console.links.Links.renewed`, tested in test_console_links)."""
    from dataclasses import replace
    from datetime import datetime, timedelta, timezone

    import orjson

    from alerts.notices import RenderedNotice, ResendPolicy
    from alerts.tickets import Step
    from streams.notice_resend import NoticeResend
    from streams.notices import FINISHED_VERSION, notice_to_json
    from streams.steps import home_partition
    from tests.unit.helpers import example_catalog

    now = datetime(2026, 3, 17, 10, tzinfo=timezone.utc)
    case_id = next(f"C-{n}" for n in range(40) if home_partition(f"C-{n}", 2) == 0)
    notice = RenderedNotice(f"{case_id}/overdue/opened", f"{case_id}/overdue", Step.OPENED, "contact", "某人",
                            "a@example.gov.cn", "【督办通知】", "某人：正文 旧链接", "SCJG", "320200",
                            now - timedelta(days=20), "<m@x>")
    record = {**notice_to_json(notice), "version": FINISHED_VERSION, "updated_at": (now - timedelta(hours=1)).isoformat(),
              "status": "failed", "of_round": 1, "ticket_round": 1}
    sent = []

    async def run_on_store(fn):
        return [record], {f"{case_id}/overdue": "open"}

    async def send(topic, key, value, partition):
        sent.append(orjson.loads(value))

    catalog = SimpleNamespace(judge=SimpleNamespace(catalog=example_catalog()))
    step = NoticeResend(ResendPolicy(timedelta(minutes=10), rounds=8), run_on_store, catalog, send,
                        "sunlight-notices", 2, lambda: {0}, now=lambda: now,
                        renew=lambda n, c: replace(n, body=n.body.replace("旧链接", "新链接")))
    assert asyncio.run(step.run()) == 1
    assert "新链接" in sent[0]["body"] and sent[0]["notice_id"] == notice.notice_id


def test_a_notice_being_retried_when_a_signal_stops_the_worker_is_left_for_the_next_start():
    """Found by a black-box test: with the mail server down, a SIGTERM waited for the notifier's
    retries (ten attempts, minutes), and the stop failed after its 50 s blaming the broker or the
    store. Once a signal stops the worker no attempt is begun, one under way is given up after a
    grace, and the notice is neither finished nor its unit committed: the next start sends it."""
    import time
    from datetime import datetime, timezone

    import orjson
    import pytest

    from alerts.notices import RenderedNotice
    from alerts.tickets import Step
    from sinks.notify import NoticeError
    from streams.notices import LeftForTheNextStart, NoticeSteps, notice_to_json
    from streams.steps import Unit

    notice = RenderedNotice("C-1/overdue/opened", "C-1/overdue", Step.OPENED, "contact", "法规科", "fgk@example.gov.cn",
                            "【督办通知】", "正文", "SCJG", "320200", datetime(2026, 3, 10, tzinfo=timezone.utc), "<m@x>")
    record = SimpleNamespace(offset=0, key=b"k", value=orjson.dumps(notice_to_json(notice)))
    unit = Unit("sunlight-notices", 0, [record])
    stopping = [False]
    tried = []

    class Down:
        async def send(self, n):
            tried.append(n.notice_id)
            stopping[0] = True  # the signal comes during the first attempt
            raise NoticeError("Error connecting to 127.0.0.1 on port 25: [Errno 111] Connection refused")

    class Hanging:  # accepts the connection and never answers
        async def send(self, n):
            tried.append(n.notice_id)
            await asyncio.Event().wait()

    def stop_with(sender, grace: float) -> float:
        log, table, _ = log_with_table()
        writer = SimpleNamespace(add=lambda table, row: None, batch=SimpleNamespace(after_write=[]))
        steps = NoticeSteps(log, [sender], True, writer, attempts=10, retry_seconds=0.5,
                            stopping=lambda: stopping[0], stop_grace=grace)
        started = time.monotonic()
        with pytest.raises(LeftForTheNextStart):
            asyncio.run(steps.process(unit, None))
        assert not table.data  # not finished: delivered again at the next start
        return time.monotonic() - started

    assert stop_with(Down(), 5.0) < 1.0 and tried == ["C-1/overdue/opened"]  # no second attempt, no back-off
    stopping[0] = True
    assert 0.3 <= stop_with(Hanging(), 0.3) < 1.5  # the attempt under way, given up after its grace

    class Slow:  # answers within the grace: sent, as any other
        async def send(self, n):
            await asyncio.sleep(0.2)

    log, table, _ = log_with_table()
    writer = SimpleNamespace(add=lambda table, row: None, batch=SimpleNamespace(after_write=[]))
    assert asyncio.run(NoticeSteps(log, [Slow()], True, writer, stopping=lambda: True).deliver(notice))[0] == "sent"
