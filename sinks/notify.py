"""Notices out: templates from files (a city edits them), and the senders (SMTP, webhook)."""

from __future__ import annotations

from pathlib import Path

from alerts.catalog import is_mail_address
from alerts.notices import NoticeText, RenderedNotice, TemplateError
from alerts.tickets import Step

DEFAULT_TEMPLATES = Path(__file__).with_name("templates")


def load_templates(directory: Path | None = None) -> NoticeText:
    """One file per step (`opened.txt`, `returned.txt`, `level_1.txt`, `level_2.txt`, `withdrawn.txt`,
    `closed.txt`): the first line is the subject, the rest the body. A missing file falls back to
    the default. A directory that is none, or holds no template of these names (misspelt: `opend.txt`),
    is a TemplateError: a setting that changes nothing is said, not run with the default wording
    (found by a black-box test)."""
    if directory is not None:
        directory = Path(directory)
        if not directory.is_dir():
            raise TemplateError(f"the notice templates directory {directory} does not exist or is not a directory")
        names = {f"{step.value}.txt" for step in Step}
        if not any((directory / name).is_file() for name in names):
            found = sorted(p.name for p in directory.iterdir())[:10]
            raise TemplateError(f"the notice templates directory {directory} holds none of {', '.join(sorted(names))}"
                                f" (it holds: {', '.join(found) or 'nothing'})")
    templates = {}
    for step in Step:
        path = (directory or DEFAULT_TEMPLATES) / f"{step.value}.txt"
        if not path.is_file():
            path = DEFAULT_TEMPLATES / f"{step.value}.txt"
        text = path.read_text(encoding="utf-8")
        subject, _, body = text.partition("\n")
        if not subject.strip() or not body.strip():
            raise TemplateError(f"{path}: the first line is the subject, then the body")
        templates[step] = (subject.strip(), body.strip() + "\n")
    return NoticeText.of(templates)


# -- senders ----------------------------------------------------------------------------------------

class NoticeError(RuntimeError):
    """A notice could not be sent; the message never holds a password or token."""


def no_address(role: str, department: str) -> str:
    """Why a notice has no address, for the inspectors who correct the catalog: a contact without
    one has the head stand in (`alerts.catalog.Department.ticket_contact`), so the contact's notice
    fails only when neither has one (it named the contact alone, beside the head's name as its
    recipient: found by a black-box test)."""
    from alerts.notices import RECIPIENT_TITLE

    whose = "部门联系人及代收的部门负责人" if role == "contact" else RECIPIENT_TITLE.get(role, "收件人")
    return f"职权目录未登记{whose}的邮箱（部门 {department}）"


class Undeliverable(NoticeError):
    """Trying this notice again at once cannot help: the notifier fails it without its back-off
    attempts (the resend rounds may try it later, once the catalog or the mailbox is corrected)."""


class NoAddress(Undeliverable):
    """The catalog names no address for the recipient."""


class Refused(Undeliverable):
    """The notice was refused for good: an SMTP reply of 5xx (RFC 5321's permanent failure: an
    unknown mailbox, a message refused, a sender or login refused), an HTTP answer of 4xx other
    than 408, 425 and 429 (the request itself is wrong). Its text begins with who must act
    (`RECIPIENT_REFUSED`, `CHANNEL_REFUSED`). 4xx SMTP replies, HTTP 5xx and lost connections are
    tried again."""


# Said before the server's reply, for the case page and `sunlight tickets show`: who reads them acts.
RECIPIENT_REFUSED = "收件方拒收，重试无效（请核对职权目录中的收件邮箱，或请收件方放行后重发）"
CHANNEL_REFUSED = ("发送渠道被拒，重试无效（请运维人员核对 SUNLIGHT_SMTP、SUNLIGHT_MAIL_FROM 或 SUNLIGHT_WEBHOOK "
                   "的设置后重发）")


def smtp_refusal(exc: Exception) -> str | None:
    """Who must act on aiosmtplib's error if it is a permanent SMTP reply (5xx): the recipient's side
    (every recipient refused, or the mail itself) or the channel's settings (the sender, the login,
    the greeting); None for one worth trying again."""
    from aiosmtplib import SMTPDataError, SMTPRecipientRefused, SMTPRecipientsRefused, SMTPResponseException

    if isinstance(exc, SMTPRecipientsRefused):
        refused = bool(exc.recipients) and all(500 <= each.code < 600 for each in exc.recipients)
        return RECIPIENT_REFUSED if refused else None
    if not isinstance(exc, SMTPResponseException) or not 500 <= exc.code < 600:
        return None
    return RECIPIENT_REFUSED if isinstance(exc, (SMTPRecipientRefused, SMTPDataError)) else CHANNEL_REFUSED


def http_refused_for_good(status: int) -> bool:
    return 400 <= status < 500 and status not in (408, 425, 429)


class ChannelError(ValueError):
    """A notice channel is configured wrongly (SUNLIGHT_SMTP, SUNLIGHT_WEBHOOK)."""


def redact(text: str, *secrets: str | None) -> str:
    for secret in secrets:
        if secret:
            text = text.replace(secret, "***")
    return text


class SmtpSender:
    """Mail through SMTP with aiosmtplib: `smtp://user:pass@host:587?starttls=1` (`smtps://` for
    TLS from the start). The Message-ID is the notice's own, so a notice sent twice (a crash
    between the server's acceptance and the record of it) is recognisably the same mail."""

    channel = "smtp"

    def __init__(self, url: str, mail_from: str, timeout: float = 30.0):
        from urllib.parse import parse_qs, unquote, urlsplit

        parts = urlsplit(url)
        if parts.scheme not in ("smtp", "smtps") or not parts.hostname:
            raise ChannelError("SUNLIGHT_SMTP must look like smtp://user:password@host:587?starttls=1")
        query = parse_qs(parts.query)
        self.hostname = parts.hostname
        try:
            port = parts.port
        except ValueError:  # a port that is none (a traceback before: found by a black-box test)
            raise ChannelError("SUNLIGHT_SMTP: the port after the host must be a number from 1 to 65535, as in "
                               "smtp://user:password@host:587?starttls=1") from None
        self.port = port or (465 if parts.scheme == "smtps" else 25)
        self.username = unquote(parts.username) if parts.username else None
        self.password = unquote(parts.password) if parts.password else None
        self.use_tls = parts.scheme == "smtps"
        # STARTTLS when asked (starttls=1), never when not (starttls=0), else when the server offers it.
        asked = query.get("starttls", [None])[0]
        no, yes = ("0", "false", "no"), ("1", "true", "yes")
        if asked is not None and asked not in no + yes:
            # (before, taken as "when the server offers it": a typo chose for the operator; a black-box test)
            raise ChannelError(f"SUNLIGHT_SMTP: starttls must be 1 or 0 (true/false, yes/no), got {asked!r}")
        self.start_tls = False if self.use_tls or asked in no else (True if asked in yes else None)
        if not is_mail_address(mail_from):
            raise ChannelError(f"SUNLIGHT_MAIL_FROM must be one mail address, as name@domain, got {mail_from!r}")
        self.mail_from = mail_from
        self.timeout = timeout

    def message(self, notice: RenderedNotice):
        from email.message import EmailMessage
        from datetime import datetime, timezone
        from email.utils import format_datetime

        message = EmailMessage()
        message["From"] = self.mail_from
        message["To"] = notice.recipient_email
        message["Subject"] = notice.subject
        message["Message-ID"] = notice.message_id
        # In UTC, said so (+0000): formatdate's -0000 reads "zone unknown" (RFC 5322; found by a black-box test).
        message["Date"] = format_datetime(datetime.now(timezone.utc))
        message["X-Sunlight-Notice"] = notice.notice_id
        message.set_content(notice.body, charset="utf-8")
        return message

    async def send(self, notice: RenderedNotice) -> None:
        import aiosmtplib

        if not notice.recipient_email:
            raise NoAddress(no_address(notice.recipient_role, notice.department))
        if not is_mail_address(notice.recipient_email):  # a notice rendered under an older catalog
            raise Refused(f"{RECIPIENT_REFUSED}：收件地址 {notice.recipient_email!r} 不是一个邮箱地址")
        try:
            await aiosmtplib.send(self.message(notice), hostname=self.hostname, port=self.port,
                                  username=self.username, password=self.password, use_tls=self.use_tls,
                                  start_tls=self.start_tls, timeout=self.timeout)
        except Exception as exc:
            said = redact(f"SMTP {self.hostname}:{self.port}: {type(exc).__name__}: {exc}", self.password,
                          self.username)
            refusal = smtp_refusal(exc)
            if refusal:
                raise Refused(f"{refusal}：{said}") from None
            raise NoticeError(said) from None


class WebhookSender:
    """A generic JSON webhook (for WeCom or DingTalk bridges): one POST per notice, with the
    notice id as `Idempotency-Key`, so that a bridge can drop a notice sent twice."""

    channel = "webhook"

    def __init__(self, url: str, timeout: float = 30.0):
        from urllib.parse import urlsplit

        parts = urlsplit(url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ChannelError("SUNLIGHT_WEBHOOK must be an http(s) URL")
        self.url = url
        self.secret = parts.password or parts.query or None  # never in an error
        self.timeout = timeout

    @staticmethod
    def payload(notice: RenderedNotice) -> dict:
        return {"notice_id": notice.notice_id, "ticket_id": notice.ticket_id, "step": notice.step.value,
                "recipient": {"role": notice.recipient_role, "name": notice.recipient_name,
                              "email": notice.recipient_email},
                "department": notice.department, "region": notice.region, "subject": notice.subject,
                "text": notice.body, "due_at": notice.due_at.isoformat(), "message_id": notice.message_id}

    async def send(self, notice: RenderedNotice) -> None:
        import aiohttp

        try:
            async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=self.timeout)) as session:
                async with session.post(self.url, json=self.payload(notice),
                                        headers={"Idempotency-Key": notice.notice_id}) as response:
                    if response.status >= 300:
                        said = f"webhook answered HTTP {response.status}"
                        if http_refused_for_good(response.status):
                            raise Refused(f"{CHANNEL_REFUSED}：{said}")
                        raise NoticeError(said)
        except NoticeError:
            raise
        except Exception as exc:
            raise NoticeError(redact(f"webhook: {type(exc).__name__}: {exc}", self.url, self.secret)) from None
