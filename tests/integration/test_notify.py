"""The notice senders against real local servers: aiosmtpd for SMTP, an aiohttp server for the webhook."""

from __future__ import annotations

import asyncio
from datetime import datetime, timezone

import pytest
from aiohttp import web

from alerts.notices import RenderedNotice, message_id
from alerts.tickets import Step
from sinks.notify import ChannelError, NoticeError, SmtpSender, WebhookSender

NOTICE = RenderedNotice("C-1/overdue/level_1", "C-1/overdue", Step.LEVEL_1, "head", "市场监管局局长",
                        "scjg-head@example.gov.cn", "【督办升级】督办件 C-1/overdue 逾期未答复", "市场监管局局长：\n请督促答复。\n",
                        "SCJG", "320200", datetime(2026, 3, 21, tzinfo=timezone.utc), message_id("C-1/overdue/level_1"))


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


def test_the_webhook_posts_json_with_the_notice_id_as_idempotency_key():
    received = []

    async def run():
        async def handle(request):
            received.append((request.headers.get("Idempotency-Key"), await request.json()))
            return web.json_response({"ok": True})

        app = web.Application()
        app.router.add_post("/hook", handle)
        runner = web.AppRunner(app)
        await runner.setup()
        site = web.TCPSite(runner, "127.0.0.1", 0)
        await site.start()
        port = site._server.sockets[0].getsockname()[1]
        try:
            await WebhookSender(f"http://127.0.0.1:{port}/hook?token=t0k3n").send(NOTICE)
            with pytest.raises(NoticeError) as failed:
                await WebhookSender(f"http://127.0.0.1:{port}/missing?token=t0k3n").send(NOTICE)
            return str(failed.value)
        finally:
            await runner.cleanup()

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
    for port in ("notaport", "99999"):  # a traceback before (found by a black-box test)
        with pytest.raises(ChannelError, match="port after the host must be a number"):
            SmtpSender(f"smtp://u:p@mail.city.example:{port}", "x@y")
