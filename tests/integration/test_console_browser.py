"""The console in a real browser (Debian's chromium, headless, driven by Playwright) against
`sunlight serve` on the embedded defaults (its pipeline in its own process) and a real SMTP server
(aiosmtpd): an inspector signs in, finds a red alert and opens a ticket; the department follows
the link in the mail it received and replies; the inspector returns the reply; the department
answers again through the link of the return notice; the inspector accepts: the page shows the
ticket closed. Screenshots of the alert list, the case page and the reply page (desktop and phone)
are taken on every run; they replace the pictures in docs/images/console/ when asked to:
`SUNLIGHT_CONSOLE_SCREENSHOTS=docs/images/console python -m pytest tests/integration/test_console_browser.py`."""

from __future__ import annotations

import os
import re
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from datetime import datetime, timedelta, timezone
from pathlib import Path

import orjson
import pytest

REPO = Path(__file__).resolve().parents[2]
CATALOG = REPO / "tests" / "data" / "contract" / "catalog.example.yaml"
ITEM = "320200-XK-SCJG-0001"  # 食品经营许可, 10 working days, SCJG (contact 法规科)
CHROMIUM = Path("/usr/bin/chromium")
KEY = "browser-test-secret-key-0123456789abcdef"
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync"]

pytestmark = pytest.mark.skipif(not CHROMIUM.exists(), reason="Debian's chromium is not installed "
                                "(apt-get install chromium); the browser test drives /usr/bin/chromium")


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def environment(data: Path, policy: Path, **extra: str) -> dict[str, str]:
    env = {**os.environ, "SUNLIGHT_DATA_DIR": str(data), "SUNLIGHT_TICKETS": str(policy),
           "SUNLIGHT_MAIL_FROM": "sunlight@city.example", "SUNLIGHT_NOTICE_ATTEMPTS": "2",
           "SUNLIGHT_NOTICE_RETRY_SECONDS": "0.1", **extra}
    for name in ("SUNLIGHT_KAFKA", "SUNLIGHT_CLICKHOUSE", "SUNLIGHT_WEBHOOK"):
        env.pop(name, None)
    return env


def sunlight(env: dict, *args: str) -> subprocess.CompletedProcess:
    done = subprocess.run([sys.executable, "-m", "streams.cli", *args], env=env, capture_output=True, text=True,
                          timeout=300, cwd=REPO)
    assert done.returncode == 0, done.stderr[-3000:]
    return done


# A case number as long as the contract allows (128), with no place to break it: it widened the alert
# list past a phone's and a desktop's width, for everyone viewing that page (found by a black-box test).
LONG = "C-" + "7" * 126
# A link to a department's OA, as replies hold them (it widened the case page: a black-box test).
OA_LINK = "https://oa.wuxi.gov.cn/document/attachment/" + "2026120512345678" * 7 + "/整改报告.pdf"


def city(now: datetime) -> list[dict]:
    """Three licence cases of SCJG, accepted weeks ago and never finished (red: overdue), and one
    finished in time."""
    cst = timezone(timedelta(hours=8))
    events = []
    for number, days_ago in ((1, 30), (2, 26), (3, 35), (LONG, 33), ("..", 31)):
        accepted = (now - timedelta(days=days_ago)).astimezone(cst).replace(hour=9, minute=30, second=0,
                                                                             microsecond=0)
        case, first = ((f"C-W{number}", f"C-W{number}-01") if number not in (LONG, "..") else
                       (number, "C-WL-01" if number == LONG else "C-DOTS-01"))
        events.append({"event_id": first, "case_id": case, "item_code": ITEM,
                       "type": "accepted", "occurred_at": accepted.isoformat(),
                       "recorded_at": (accepted + timedelta(minutes=2)).isoformat(), "department": "SCJG",
                       "region": "320200", "channel": "window", "officer_id": f"scjg-{len(events) + 1:02d}"})
    accepted = (now - timedelta(days=6)).astimezone(cst).replace(hour=10, minute=0, second=0, microsecond=0)
    for seq, (kind, node, hours) in enumerate([("accepted", None, 0), ("node_completed", "undertake", 20),
                                               ("node_completed", "review", 30), ("node_completed", "approve", 40),
                                               ("closed", None, 41)], start=1):
        at = accepted + timedelta(hours=hours)
        event = {"event_id": f"C-W4-0{seq}", "case_id": "C-W4", "item_code": ITEM, "type": kind,
                 "occurred_at": at.isoformat(), "recorded_at": (at + timedelta(minutes=1)).isoformat(),
                 "department": "SCJG", "region": "320200", "channel": "online", "officer_id": "scjg-04"}
        if node:
            event["node"] = node
        events.append(event)
    # C-W5: its acceptance is refused (promised days written as text), its other steps came: it
    # waits for the corrected acceptance (before, a red skipped_node: "closed without 受理").
    for event in [e for e in events if e["case_id"] == "C-W4"]:
        event = {**event, "case_id": "C-W5", "event_id": event["event_id"].replace("W4", "W5")}
        if event["type"] == "accepted":
            event["attrs"] = {"promised_days": "五"}
        events.append(event)
    return events


def wait_for_mail(box, ticket_id: str, count: int, timeout: float = 90.0) -> list[tuple[str, str]]:
    """(subject, body) of the mails about `ticket_id`, once there are `count` of them."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        found = [(str(m["Subject"]), m.get_content()) for _, m in box.received if ticket_id in m.get_content()]
        if len(found) >= count:
            return found
        time.sleep(0.3)
    raise AssertionError(f"no {count} mails about {ticket_id}: {[str(m['Subject']) for _, m in box.received]}")


def reply_link(body: str, base: str) -> str:
    found = re.findall(re.escape(base) + r"/reply/[A-Za-z0-9_.\-]+", body)
    assert found, body
    return found[-1]


@pytest.fixture
def console(tmp_path, mail_server):
    box, smtp = mail_server
    data = tmp_path / "data"
    policy = tmp_path / "tickets.yaml"
    # Skipped nodes open tickets by themselves (after a short settling time); an overdue case's red
    # card waits for an inspector to open its ticket.
    policy.write_text("settle_hours: 0.01\nreply_days: 3\nrules:\n  - rule: skipped_node\n", encoding="utf-8")
    now = datetime.now(timezone.utc)
    events = tmp_path / "events.jsonl"
    events.write_bytes(b"".join(orjson.dumps(e) + b"\n" for e in city(now)))
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    env = environment(data, policy, SUNLIGHT_HTTP_PORT=str(port), SUNLIGHT_SECRET_KEY=KEY, SUNLIGHT_PUBLIC_URL=base,
                      SUNLIGHT_SMTP=smtp, SUNLIGHT_NEW_USER_PASSWORD="inspector-password")
    sunlight(env, "replay", str(events), "--catalog", str(CATALOG), "--now", now.isoformat())
    sunlight(env, "users", "add", "张督查", "--role", "inspector")
    server = subprocess.Popen([sys.executable, "-m", "streams.cli", "serve", "--catalog", str(CATALOG), "--host",
                               "127.0.0.1"], env=env, cwd=REPO, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                              text=True)
    try:
        deadline = time.monotonic() + 120
        while True:
            try:
                with urllib.request.urlopen(f"{base}/healthz", timeout=2) as answer:
                    if answer.status == 200:
                        break
            except OSError:
                pass
            if server.poll() is not None or time.monotonic() > deadline:
                server.kill()
                raise AssertionError(f"sunlight serve did not start: {server.communicate()[1][-3000:]}")
            time.sleep(0.3)
        yield base, box
    finally:
        if server.poll() is None:
            server.send_signal(signal.SIGTERM)
            try:
                server.wait(timeout=60)
            except subprocess.TimeoutExpired:
                server.kill()
                server.wait()


def test_an_inspector_and_a_department_work_a_ticket_to_its_close(console, tmp_path):
    from playwright.sync_api import expect, sync_playwright

    base, box = console
    ticket = "C-W1/overdue"
    IMAGES = Path(os.environ.get("SUNLIGHT_CONSOLE_SCREENSHOTS") or tmp_path / "screenshots")
    IMAGES.mkdir(parents=True, exist_ok=True)
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=str(CHROMIUM), headless=True, args=CHROMIUM_ARGS)
        try:
            inspector = browser.new_page(viewport={"width": 1280, "height": 900}, locale="zh-CN")
            inspector.set_default_timeout(60_000)
            inspector.goto(f"{base}/alerts")
            expect(inspector).to_have_url(f"{base}/login")
            inspector.fill("#name", "张督查")
            inspector.fill("#password", "inspector-password")
            inspector.click("button:has-text('登录')")
            expect(inspector).to_have_url(f"{base}/alerts")

            # By keyboard, the first Tab is a link past the header to the page's content, shown only
            # while it has the focus; the next Tab is the first control of the page, not the header's.
            skip = inspector.locator("a.skip")
            assert skip.bounding_box()["x"] < 0
            inspector.keyboard.press("Tab")
            expect(skip).to_be_focused()
            expect(skip).to_have_text("跳到正文")
            assert 0 <= skip.bounding_box()["x"] < 1280
            inspector.keyboard.press("Enter")
            expect(inspector.locator("main")).to_be_focused()
            inspector.keyboard.press("Tab")
            assert inspector.evaluate("document.activeElement.closest('main') !== null")

            # A case whose acceptance was refused says it waits for it, and has no alert.
            inspector.goto(f"{base}/cases/C-W5")
            expect(inspector.locator("[data-waiting]")).to_contain_text("暂缓评判")
            expect(inspector.locator("[data-waiting]")).to_contain_text("被拒收的事件 C-W5-01：字段不符合格式")
            expect(inspector.locator(".alert")).to_have_count(0)
            # The list of refused events leads to it too, with why it was refused.
            inspector.click("nav a:has-text('被拒收事件')")
            refusal = inspector.locator("tr[data-letter]", has=inspector.locator("a", has_text="C-W5"))
            expect(refusal).to_contain_text("字段不符合格式")
            expect(refusal).to_contain_text("C-W5-01")
            refusal.locator("a", has_text="C-W5").click()
            expect(inspector.locator("[data-waiting]")).to_contain_text("暂缓评判")
            inspector.goto(f"{base}/alerts")

            # Finds a red alert: the overdue case C-W1.
            inspector.select_option("select[name=severity]", "red")
            inspector.click("button:has-text('筛选')")
            row = inspector.locator("tr", has=inspector.locator("a", has_text="C-W1"))
            expect(inspector.locator("tr", has=inspector.locator("a", has_text=LONG))).to_contain_text("红牌")
            assert inspector.evaluate("document.documentElement.scrollWidth") <= 1280  # the long number wraps
            # Links at least 24 px high to tap (WCAG 2.2, 2.5.8; 20 px before: found by a black-box test).
            heights = inspector.evaluate("[...document.querySelectorAll('header nav a, td a')]"
                                         ".map(a => a.getBoundingClientRect().height)")
            assert heights and min(heights) >= 24, heights
            expect(row).to_contain_text("红牌")
            expect(row).to_contain_text("办理超时")
            expect(row).to_contain_text("未督办")
            # A case numbered `..` (a dot segment, which the browser removes from a path) is reached
            # from the list all the same (its link led to the console's home: a black-box test).
            inspector.locator("a", has_text=re.compile(r"^\.\.$")).click()
            expect(inspector.locator("h1")).to_have_text("办件 ..")
            expect(inspector.locator(".alert[data-rule=overdue][data-severity=red]")).to_have_count(1)
            inspector.go_back()
            inspector.screenshot(path=str(IMAGES / "alerts.png"), full_page=True)
            row.locator("a", has_text="C-W1").click()
            expect(inspector.locator("h1")).to_have_text("办件 C-W1")

            # Opens a ticket from it: the contact receives the notice, with the reply link.
            red = inspector.locator(".alert[data-rule=overdue][data-severity=red]")
            expect(red).to_contain_text("时限届满时案件仍未办结")  # the evidence in words
            red.locator("textarea").fill("超期未办结，请核实原因并整改")
            red.locator("button:has-text('发起督办')").click()
            expect(inspector.locator(".flash[role=status]")).to_have_text("已办理。")
            status = inspector.locator("#t-overdue [data-ticket-status]")
            expect(status).to_have_text("待答复")
            mails = wait_for_mail(box, ticket, 1)
            subject, body = mails[0]
            assert "【督办通知】" in subject and "在线答复" in body
            first_link = reply_link(body, base)

            # The department follows the link (no account), on a phone, and replies.
            phone = browser.new_context(viewport={"width": 390, "height": 844}, device_scale_factor=2,
                                        is_mobile=True, has_touch=True, locale="zh-CN")
            department = phone.new_page()
            department.set_default_timeout(60_000)
            department.goto(first_link)
            expect(department.locator("h1")).to_have_text("答复督办件")
            expect(department.locator("[data-ticket-status]")).to_have_text("待答复")
            department.screenshot(path=str(IMAGES / "reply-phone.png"), full_page=True)
            desktop = browser.new_page(viewport={"width": 1280, "height": 900}, locale="zh-CN")
            desktop.goto(first_link)
            desktop.screenshot(path=str(IMAGES / "reply.png"), full_page=True)
            desktop.close()
            # A blank answer (spaces pass the browser's `required`) comes back with the name typed.
            department.fill("#actor", "法规科 李科长")
            department.fill("#text", "   ")
            department.click("button:has-text('提交答复')")
            expect(department.locator(".error[role=alert]")).to_contain_text("请填写核实情况及整改措施")
            expect(department.locator("#actor")).to_have_value("法规科 李科长")
            # Too long: the browser sends it whole (a `maxlength` cut what was pasted at 2,000
            # characters without a word: found by a black-box test), and it comes back, kept, with
            # the limit said; the field says the limit beforehand.
            expect(department.locator("label[for=text]")).to_contain_text("最多 2000 字")
            department.fill("#text", "长" * 2000 + "结尾。")
            department.click("button:has-text('提交答复')")
            expect(department.locator(".error[role=alert]")).to_contain_text("内容过长（最多 2000 字）")
            assert department.locator("#text").input_value().endswith("结尾。")
            department.fill("#text", f"经核实，因承办人员休假交接不到位造成超期，已于当日办结。整改材料见 {OA_LINK}")
            department.click("button:has-text('提交答复')")
            expect(department.locator(".flash[role=status]")).to_have_text("已办理。")
            expect(department.locator("[data-ticket-status]")).to_have_text("已答复待审核")

            # The inspector returns the reply: a return notice, with its link, goes to the contact.
            inspector.reload()
            expect(status).to_have_text("已答复待审核")
            expect(inspector.locator("#t-overdue")).to_contain_text("交接不到位")
            assert inspector.evaluate("document.documentElement.scrollWidth") <= 1280  # the long link wraps
            # A blank reason comes back on the case page, in its form, with what to write.
            inspector.fill("#t-overdue textarea[name=text] >> nth=0", "  ")
            inspector.click("#t-overdue button:has-text('退回重办')")
            expect(inspector.locator(".error[role=alert]")).to_contain_text("请填写退回理由")
            expect(inspector.locator("h1")).to_have_text("办件 C-W1")
            inspector.fill("#t-overdue textarea[name=text] >> nth=0", "请补充整改措施及责任追究情况")
            inspector.click("#t-overdue button:has-text('退回重办')")
            expect(inspector.locator(".flash[role=status]")).to_have_text("已办理。")
            expect(status).to_have_text("已退回重办")
            mails = wait_for_mail(box, ticket, 2)
            subject, body = mails[1]
            assert "【督办退回】" in subject
            second_link = reply_link(body, base)

            # The department answers again, through the link of the return notice.
            department.goto(second_link)
            expect(department.locator("[data-ticket-status]")).to_have_text("已退回重办")
            expect(department.locator(".history")).to_contain_text("请补充整改措施及责任追究情况")
            department.fill("#text", "已建立办理时限到期前两日提醒机制，并对承办人员进行了约谈。")
            form = {name: department.locator(f"input[name={name}]").input_value()
                    for name in ("csrf", "action_id", "version")}
            department.click("button:has-text('提交答复')")
            expect(department.locator(".flash[role=status]")).to_have_text("已办理。")
            # The same form sent again with another text (a second submit after an edit): said to be
            # applied as first sent, the new text given back to copy (before, 已办理 to both, and the
            # second text dropped without a word: found by a black-box test).
            again = department.request.post(second_link, form={**form, "actor": "", "text": "补充：另附整改报告。"})
            assert again.status == 409, again.status
            resent = again.text()
            assert "此表单此前已提交并已办理，以先前提交的内容为准" in resent and "补充：另附整改报告。" in resent
            assert "已建立办理时限到期前两日提醒机制" in resent  # the reply applied, in the history

            # The inspector accepts: the page shows the ticket closed.
            inspector.reload()
            expect(status).to_have_text("已答复待审核")
            inspector.click("#t-overdue button:has-text('审核通过')")
            expect(inspector.locator(".flash[role=status]")).to_have_text("已办理。")
            expect(status).to_have_text("已办结")
            expect(status).to_have_attribute("data-ticket-status", "closed")
            history = inspector.locator("#t-overdue .history li")
            expect(history).to_have_count(5)  # opened by hand, reply, return, reply, accept
            # Beside the history, the notices and what became of each (before, only `sunlight
            # tickets show` said that a notice had failed).
            notices = inspector.locator("#t-overdue .notices li")
            for _ in range(120):  # the notifier records "sent" just after the server took the mail
                if [notices.nth(i).get_attribute("data-notice-status") for i in range(notices.count())] == \
                        ["sent", "sent", "sent"]:
                    break
                time.sleep(0.5)
                inspector.reload()
            expect(notices).to_have_count(3)
            expect(notices.nth(0)).to_contain_text("督办通知")
            expect(notices.nth(1)).to_contain_text("退回重办通知")
            expect(notices.nth(2)).to_contain_text("办结通知")
            expect(notices.nth(2)).to_contain_text("已发送")
            inspector.screenshot(path=str(IMAGES / "case.png"), full_page=True)

            # The department's link now shows the ticket closed, and offers no form.
            department.goto(second_link)
            expect(department.locator("[data-ticket-status]")).to_have_text("已办结")
            expect(department.locator("textarea")).to_have_count(0)
            assert department.evaluate("document.documentElement.scrollWidth") <= 390  # the long link wraps

            # A case number as long as the contract allows wraps on its case page and on its reply
            # page on a phone (both were three times a phone's width: found by a black-box test).
            inspector.goto(f"{base}/cases/{LONG}")
            red = inspector.locator(".alert[data-rule=overdue][data-severity=red]")
            red.locator("textarea").fill("请核实")
            red.locator("button:has-text('发起督办')").click()
            expect(inspector.locator(".flash[role=status]")).to_have_text("已办理。")
            assert inspector.evaluate("document.documentElement.scrollWidth") <= 1280
            (_, body), = wait_for_mail(box, f"{LONG}/overdue", 1)
            department.goto(reply_link(body, base))
            expect(department.locator("h1")).to_have_text("答复督办件")
            assert department.evaluate("document.documentElement.scrollWidth") <= 390
            phone.close()
        finally:
            browser.close()
    # opened, returned, closed: once each
    assert len([m for _, m in box.received if ticket in m.get_content()]) == 3
    for name in ("alerts", "case", "reply", "reply-phone"):
        assert (IMAGES / f"{name}.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
