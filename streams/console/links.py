"""Signed, expiring reply links: a department answers one ticket without an account.

A link is ``SUNLIGHT_PUBLIC_URL/reply/<token>``; the token names the ticket, its department, the
ticket's version when the link was made and the moment the link expires, signed (HMAC,
itsdangerous) with ``SUNLIGHT_SECRET_KEY``. Whoever holds it may read that ticket and answer it, nothing else; an altered token fails its signature,
an expired one is refused even though its signature holds. The console checks the ticket's
department against the link's on every use, so a link never reaches another department's ticket,
and the ticket's history against the link's version: a ticket closed and opened again (the same
case and rule) is a new round, which an older round's link does not answer.
"""

from __future__ import annotations

import hashlib
import hmac
import re
from dataclasses import dataclass, replace
from datetime import datetime, timedelta, timezone
from typing import Callable

from itsdangerous import BadSignature, URLSafeSerializer

from alerts.catalog import Catalog
from alerts.notices import RenderedNotice, ReplyLink, link_valid_until
from alerts.tickets import Notice, Ticket
from streams.clock import wall_now

SALT = "sunlight.reply-link.v1"
DEFAULT_DAYS = 14.0


class LinkRefused(Exception):
    """A link that is altered (`invalid`) or past its time (`expired`)."""

    def __init__(self, reason: str):
        super().__init__(reason)
        self.reason = reason


@dataclass(frozen=True)
class ReplyGrant:
    """What a valid link allows: answering `ticket_id` as `department`, until `expires_at`, while
    the ticket has not been opened again after `version` (the ticket's version the link was made at)."""
    ticket_id: str
    department: str
    expires_at: datetime
    version: int


class Links:
    def __init__(self, public_url: str, secret_key: str, days: float = DEFAULT_DAYS,
                 clock: Callable[[], datetime] = wall_now):
        self.base = public_url.rstrip("/")
        self.secret_key = secret_key
        self.days = days
        self.clock = clock
        self.serializer = URLSafeSerializer(secret_key, salt=SALT)

    def token(self, ticket_id: str, department: str, expires_at: datetime, version: int) -> str:
        return self.serializer.dumps({"t": ticket_id, "d": department, "e": int(expires_at.timestamp()),
                                      "v": int(version)})

    def make(self, ticket_id: str, department: str, expires_at: datetime, version: int) -> ReplyLink:
        return ReplyLink(f"{self.base}/reply/{self.token(ticket_id, department, expires_at, version)}", expires_at)

    def for_notice(self, ticket: Ticket, notice: Notice) -> ReplyLink:
        """The link a notice carries: valid `days` from when it is made (the later of the wall
        clock and the notice's moment on the stream's clock, so that a replayed notice's link
        is not born expired)."""
        start = max(self.clock(), notice.at)
        expires = (start + timedelta(days=self.days)).replace(microsecond=0)
        return self.make(ticket.ticket_id, ticket.department, expires, ticket.version)

    def read(self, token: str, now: datetime | None = None) -> ReplyGrant:
        grant = self._signed(token)
        if (now or self.clock()) >= grant.expires_at:
            raise LinkRefused("expired")
        return grant

    def _signed(self, token: str) -> ReplyGrant:
        """What a token grants, its expiry not checked; LinkRefused("invalid") if altered."""
        try:
            payload = self.serializer.loads(token)
        except BadSignature:
            raise LinkRefused("invalid") from None
        if not (isinstance(payload, dict) and isinstance(payload.get("t"), str)
                and isinstance(payload.get("d"), str) and isinstance(payload.get("e"), int)
                and isinstance(payload.get("v"), int)):
            raise LinkRefused("invalid")
        try:
            expires = datetime.fromtimestamp(payload["e"], timezone.utc)
        except (OverflowError, OSError, ValueError):  # signed, but no moment at all
            raise LinkRefused("invalid") from None
        return ReplyGrant(payload["t"], payload["d"], expires, payload["v"])

    def renewed(self, notice: RenderedNotice, catalog: Catalog) -> RenderedNotice:
        """A notice sent again (it failed: its recipient never had it) with its reply link valid
        `days` from now, as a first sending's is: it kept the link made when it was first rendered,
        and one that failed for want of an address, resent weeks later, arrived expired (found by a
        black-box test). Only the link of this notice's own ticket and department is renewed, the
        same round (version), the last one in its text (where `how_to_reply` puts it): another
        link quoted in its free text (a case id, an inspector's reason) stays as written (found by
        review). Only how long it is valid changes, in the link and in the sentence that says it.
        A notice without such a link is sent as it was."""
        found = None
        for match in re.finditer(re.escape(f"{self.base}/reply/") + r"([A-Za-z0-9_.\-]+)", notice.body):
            try:
                grant = self._signed(match.group(1))
            except LinkRefused:
                continue
            if (grant.ticket_id, grant.department) == (notice.ticket_id, notice.department):
                found = (match, grant)
        if found is None:
            return notice
        match, grant = found
        expires = (self.clock() + timedelta(days=self.days)).replace(microsecond=0)
        if expires <= grant.expires_at:
            return notice
        link = self.make(grant.ticket_id, grant.department, expires, grant.version)
        body = notice.body[:match.start()] + link.url + notice.body[match.end():]
        said, now_said = link_valid_until(grant.expires_at, catalog), link_valid_until(expires, catalog)
        head, sep, tail = body[:match.start()].rpartition(said)  # the sentence just before the link
        if sep:
            body = head + now_said + tail + body[match.start():]
        return replace(notice, body=body)

    def csrf(self, token: str) -> str:
        """The reply form's CSRF token, tied to the link (a link page has no session)."""
        return hmac.new(self.secret_key.encode(), b"reply-csrf:" + token.encode(), hashlib.sha256).hexdigest()


def reply_links(settings, clock: Callable[[], datetime] = wall_now) -> Links | None:
    """The reply links of notices, or None when the console has no public address
    (SUNLIGHT_PUBLIC_URL): then notices say how to reply otherwise. A public address without a
    strong SUNLIGHT_SECRET_KEY is refused (ConsoleConfigError). `clock`: when a link made (or
    renewed) now starts."""
    from streams.console.auth import check_secret_key

    if not settings.public_url:
        return None
    return Links(settings.public_url, check_secret_key(settings.secret_key), settings.reply_link_days, clock=clock)


def notice_links(settings) -> Callable[[Ticket, Notice], ReplyLink] | None:
    """What makes the reply link of a notice (for `NoticeText.with_links`), or None (`reply_links`)."""
    links = reply_links(settings)
    return links.for_notice if links is not None else None
