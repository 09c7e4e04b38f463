"""The notice senders against real local servers: aiosmtpd for SMTP, an aiohttp server for the webhook."""

from __future__ import annotations

import asyncio
import contextlib
from datetime import datetime, timezone

import pytest
from aiohttp import web

from alerts.notices import RenderedNotice, message_id
from alerts.tickets import Step
from sinks.notify import ChannelError, NoticeError, SmtpSender, WebhookSender

NOTICE = RenderedNotice("C-1/overdue/level_1", "C-1/overdue", Step.LEVEL_1, "head", "市场监管局局长",
                        "scjg-head@example.gov.cn", "【督办升级】督办件 C-1/overdue 逾期未答复", "市场监管局局长：\n请督促答复。\n",
                        "SCJG", "320200", datetime(2026, 3, 21, tzinfo=timezone.utc), message_id("C-1/overdue/level_1"))


@contextlib.asynccontextmanager
async def webhook(path: str, handle):
    """A local aiohttp server answering POSTs to `path` with `handle`: its base URL."""
    app = web.Application()
    app.router.add_post(path, handle)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    try:
        yield f"http://127.0.0.1:{site._server.sockets[0].getsockname()[1]}"
    finally:
        await runner.cleanup()


def test_a_mail_carries_the_notice_s_own_message_id_and_chinese_text(mail_server):
    box, smtp = mail_server
    sender = SmtpSender(smtp, "sunlight@city.example")
    asyncio.run(sender.send(NOTICE))
    asyncio.run(sender.send(NOTICE))  # sent again (a crash before its record): the same Message-ID
    assert [rcpt for rcpt, _ in box.received] == [["scjg-head@example.gov.cn"]] * 2
    first, second = (m for _, m in box.received)
    assert first["Message-ID"] == second["Message-ID"] == NOTICE.message_id
    assert first["Subject"] == NOTICE.subject and first["From"] == "sunlight@city.example"
    assert first.get_content().replace("\r\n", "\n") == NOTICE.body
    assert first["Date"].endswith("+0000")  # its zone said (-0000 reads "zone unknown": found by a black-box test)


def test_a_notice_without_an_address_fails_with_the_reason(mail_server):
    _, smtp = mail_server
    sender = SmtpSender(smtp, "sunlight@city.example")
    from dataclasses import replace

    nobody = replace(NOTICE, recipient_email="")
    with pytest.raises(NoticeError, match="职权目录未登记部门负责人的邮箱"):
        asyncio.run(sender.send(nobody))
    # The notifier fails it at once: no attempt can give it an address (before, four attempts
    # with back-off, holding the notifier's partition meanwhile).
    from streams.notices import NoticeSteps

    steps = NoticeSteps(None, [sender], True, None, attempts=4, retry_seconds=5.0)
    status, attempts, error = asyncio.run(asyncio.wait_for(steps.deliver(nobody), 3.0))
    assert (status, attempts) == ("failed", 1) and "未登记部门负责人的邮箱" in error
    # A contact's notice fails only when the head who stands in has no address either: both said
    # (found by a black-box test: it named the contact alone, beside the head's name).
    with pytest.raises(NoticeError, match="职权目录未登记部门联系人及代收的部门负责人的邮箱"):
        asyncio.run(sender.send(replace(nobody, recipient_role="contact")))


def test_a_mailbox_refused_for_good_fails_at_once_and_one_refused_for_now_is_tried_again(mail_server):
    # Found by a black-box test: a 550 (no such mailbox) was tried four times with back-off, as a
    # server down a moment is, holding the notifier's partition for nothing.
    from dataclasses import replace

    from streams.notices import NoticeSteps

    box, smtp = mail_server
    box.refusals = {"gone@example.gov.cn": "550 5.1.1 mailbox unavailable",
                    "full@example.gov.cn": "452 4.2.2 mailbox full, try later"}
    steps = NoticeSteps(None, [SmtpSender(smtp, "sunlight@city.example")], True, None, attempts=3,
                        retry_seconds=0.05)
    status, attempts, error = asyncio.run(steps.deliver(replace(NOTICE, recipient_email="gone@example.gov.cn")))
    assert (status, attempts) == ("failed", 1) and "550" in error and "mailbox unavailable" in error
    assert error.startswith("收件方拒收，重试无效")  # read on the case page: who must do what
    assert box.asked == ["gone@example.gov.cn"]
    status, attempts, error = asyncio.run(steps.deliver(replace(NOTICE, recipient_email="full@example.gov.cn")))
    assert (status, attempts) == ("failed", 3) and "452" in error
    assert box.asked == ["gone@example.gov.cn"] + ["full@example.gov.cn"] * 3
    status, attempts, _ = asyncio.run(steps.deliver(NOTICE))
    assert (status, attempts) == ("sent", 1) and [rcpt for rcpt, _ in box.received] == [[NOTICE.recipient_email]]
    # The sender refused for good: the channel's settings are wrong, not the catalog's address.
    box.mail_from_reply = "553 5.7.1 sender not allowed"
    status, attempts, error = asyncio.run(steps.deliver(NOTICE))
    assert (status, attempts) == ("failed", 1) and error.startswith("发送渠道被拒，重试无效") and "553" in error
    assert "SUNLIGHT_MAIL_FROM" in error and len(box.received) == 1


def test_an_address_that_is_not_one_mailbox_fails_at_once_and_a_bad_sender_is_refused_at_start(mail_server):
    """Found by a black-box test: a notice to "a@b@example.gov.cn" (rendered under a catalog that
    took it) was tried ten times over two minutes with a raw ValueError, as if the mail server were
    down; one to two addresses went to both. And SUNLIGHT_MAIL_FROM was used whatever it said."""
    from dataclasses import replace

    from streams.notices import NoticeSteps

    box, smtp = mail_server
    steps = NoticeSteps(None, [SmtpSender(smtp, "sunlight@city.example")], True, None, attempts=3,
                        retry_seconds=0.05)
    for address in ("a@b@example.gov.cn", "d1@example.gov.cn, evil@example.com", "d4@x.cn\r\nBcc: e@x.cn"):
        status, attempts, error = asyncio.run(steps.deliver(replace(NOTICE, recipient_email=address)))
        assert (status, attempts) == ("failed", 1) and error.startswith("收件方拒收，重试无效"), address
        assert "不是一个邮箱地址" in error
    assert box.asked == [] and box.received == []
    for sender in ("not-an-address", "阳光监察 <sunlight@city.example>", "a@x.cn, b@x.cn"):
        with pytest.raises(ChannelError, match="SUNLIGHT_MAIL_FROM must be one mail address"):
            SmtpSender(smtp, sender)


def test_a_webhook_refused_for_good_fails_at_once_and_one_unavailable_is_tried_again():
    from streams.notices import NoticeSteps

    posts = []

    async def run():
        async def handle(request):
            posts.append(request.path)
            return web.Response(status=int(request.path.rsplit("/", 1)[1]))

        async with webhook("/hook/{status}", handle) as base:
            outcomes = {}
            for status in (400, 404, 429, 503):
                steps = NoticeSteps(None, [WebhookSender(f"{base}/hook/{status}")], True, None, attempts=2,
                                    retry_seconds=0.05)
                outcomes[status] = await steps.deliver(NOTICE)
            return outcomes

    outcomes = asyncio.run(run())
    assert {status: outcome[:2] for status, outcome in outcomes.items()} == {
        400: ("failed", 1), 404: ("failed", 1), 429: ("failed", 2), 503: ("failed", 2)}
    assert posts == ["/hook/400", "/hook/404"] + ["/hook/429"] * 2 + ["/hook/503"] * 2
    assert all(f"HTTP {status}" in outcome[2] for status, outcome in outcomes.items())
    refused = [outcome[2].startswith("发送渠道被拒，重试无效") for outcome in outcomes.values()]
    assert refused == [True, True, False, False]


def test_the_webhook_posts_json_with_the_notice_id_as_idempotency_key():
    received = []

    async def run():
        async def handle(request):
            received.append((request.headers.get("Idempotency-Key"), await request.json()))
            return web.json_response({"ok": True})

        async with webhook("/hook", handle) as base:
            await WebhookSender(f"{base}/hook?token=t0k3n").send(NOTICE)
            with pytest.raises(NoticeError) as failed:
                await WebhookSender(f"{base}/missing?token=t0k3n").send(NOTICE)
            return str(failed.value)

    error = asyncio.run(run())
    assert received == [(NOTICE.notice_id, {**WebhookSender.payload(NOTICE)})]
    assert received[0][1]["text"] == NOTICE.body and received[0][1]["recipient"]["email"] == NOTICE.recipient_email
    assert "404" in error and "t0k3n" not in error


def test_an_smtp_url_is_read_and_its_password_never_shown():
    sender = SmtpSender("smtp://user%40city:p%40ss@mail.city.example:587?starttls=1", "sunlight@city.example")
    assert (sender.hostname, sender.port, sender.username, sender.password, sender.start_tls) == (
        "mail.city.example", 587, "user@city", "p@ss", True)
    assert SmtpSender("smtps://mail.city.example", "x@y").port == 465
    with pytest.raises(ChannelError):
        SmtpSender("http://mail.city.example", "x@y")
    with pytest.raises(ChannelError, match="starttls must be 1 or 0"):  # (taken as "if offered" before)
        SmtpSender("smtp://u:p@mail.city.example:587?starttls=maybe", "x@y")
    for port in ("notaport", "99999"):  # a traceback before (found by a black-box test)
        with pytest.raises(ChannelError, match="port after the host must be a number"):
            SmtpSender(f"smtp://u:p@mail.city.example:{port}", "x@y")


def test_a_sender_left_unset_is_said_at_start(caplog):
    """Found by a black-box test: with SUNLIGHT_SMTP set and SUNLIGHT_MAIL_FROM not, mail went out
    from sunlight@localhost, which mail servers may refuse, and nothing said so."""
    import logging

    from streams.app import notice_senders
    from streams.settings import Settings

    with caplog.at_level(logging.WARNING, logger="streams.app"):
        notice_senders(Settings.from_env({"SUNLIGHT_SMTP": "smtp://127.0.0.1:25"}))
        assert any("SUNLIGHT_MAIL_FROM is not set" in r.getMessage() for r in caplog.records)
        caplog.clear()
        notice_senders(Settings.from_env({"SUNLIGHT_SMTP": "smtp://127.0.0.1:25",
                                          "SUNLIGHT_MAIL_FROM": "sunlight@city.example"}))
        assert caplog.records == []
