"""The notifier: recorded notices in, sent (or held, or failed) notices out, each exactly once.

The ticket agent records each notice in the store's notice log, then, once that row is written,
publishes it to the internal ``sunlight-notices`` topic (keyed by case). The notifier agent takes
units of it; for each notice not yet finished (the `notice-log` table, keyed by notice id, says):

* sending is off (`replay` without `--notify`): *held*, recorded and never sent, so that
  replaying history mails nobody by surprise, now or later;
* otherwise each configured channel (SMTP, webhook) is tried, with back-off between attempts;
  the notice is *sent*, or *failed* with the reason (no password or token in it) and counted.

The outcome goes to the table and its changelog with the unit, and to the notice log as a new
version of the notice's row; the unit is committed after that row is written. A crash between a
server's acceptance and that record sends the notice again on redelivery, with the same
Message-ID and idempotency key.

A failed notice is tried again when asked (`sunlight notices resend`, once the mail server is
back) and by the clock (`streams.notice_resend`, after a wait that doubles with each round), as it
was recorded but addressed as the catalog names its recipient now
(`alerts.notices.readdressed`): the request
is the notice again with its round (`resend`: 1, 2, ...), and a notice that failed in an earlier
round is delivered again; its row's version is `FINISHED_VERSION` plus the round, so the latest
outcome stands in the store. A request for a notice sent meanwhile, or for a round already
taken, does nothing.
"""

from __future__ import annotations

import asyncio
import logging
from datetime import datetime
from typing import Any, Callable

import orjson

from alerts.catalog import Catalog
from alerts.notices import RenderedNotice, readdressed, resent
from alerts.tickets import Step, taken_back
from sinks.notify import NoticeError, Undeliverable
from sinks.rows import notice_row
from streams import metrics
from streams.internal_wire import is_nudge
from streams.clock import wall_now
from streams.codec import exact
from streams.steps import Unit

log = logging.getLogger(__name__)

FINISHED = ("sent", "held", "failed")
HELD = "recorded only: sending was off (replay without --notify)"
# A notice of a ticket its department was told of (made by a process that sends), reached by a
# process that sends none: recorded as failed, for `sunlight notices resend` or a worker's resend
# (held, an escalation to a head was lost for good: found by a black-box test).
UNSENT = ("not sent: this process sends no notices (a replay or import without --notify), and the ticket's "
          "department was told of it: `sunlight notices resend` (or a worker) sends it")
# The failure recorded (and shown on the case page) when no channel is configured.
NO_CHANNEL = "no channel: set SUNLIGHT_SMTP (with SUNLIGHT_MAIL_FROM) or SUNLIGHT_WEBHOOK"


def channel_missing(settings) -> str | None:
    """A warning for a process that delivers notices with no channel configured: each would fail."""
    if settings.smtp or settings.webhook:
        return None
    return ("no notice channel: set SUNLIGHT_SMTP (with SUNLIGHT_MAIL_FROM) or SUNLIGHT_WEBHOOK; until then every "
            "ticket notice fails (recorded as failed; `sunlight notices resend` sends them once a channel is set)")

QUIET_HELD = ("recorded only: the ticket was made from history (a replay or import without --notify) and its "
              "department never had its opening notice")
# The notice log's versions: recorded (1); held as recorded, by a process with sending off (2); the
# notifier's outcome (3). A later row of a lower version never replaces a higher one, so a notice
# recorded again (a redelivery, the step reached again) keeps what happened to it.
HELD_VERSION = 2
FINISHED_VERSION = 3


NEVER_REACHED = ("recorded only: the notice this withdrawal or closing follows up never reached its recipient "
                 "(not sent, or failed), so there is nothing to take back or close")


def notice_error_text(last_error: str) -> str:
    """Why a notice was held or failed, in words for the page and `sunlight tickets show`: the pipeline
    records it for the log and the operators, in English, with the sender's own error."""
    # Said after the notice's status (发送失败, 仅记录未发送), so only why (before, 发送失败 twice).
    if last_error == NO_CHANNEL:
        return "原因：系统未配置发送渠道（邮件或 Webhook），运维人员配置后将自动重发"
    if last_error == HELD:
        return "原因：发送功能未开启（回放或导入时未加 --notify）"
    if last_error == UNSENT:
        return "原因：该次回放或导入未开启发送（未加 --notify）；该部门此前已收到督办通知，运维人员重发（sunlight notices resend）后送达"
    if last_error == QUIET_HELD:
        return "原因：督办件由历史数据生成，该部门未收到过立件通知"
    if last_error == NEVER_REACHED:
        return "原因：此前的督办通知未送达该收件人，无需告知撤销或办结"
    return f"原因（系统记录）：{last_error}"


def notice_reason(status: str, last_error: str) -> str:
    """Why a notice failed or was only recorded (`notice_error_text`), shown after its status; empty
    for one sent or waiting: what the case page and `sunlight tickets show` both say."""
    return notice_error_text(last_error) if status in ("failed", "held") and last_error else ""


def _takes_back(notice: RenderedNotice) -> str | None:
    """The notice a withdrawal's or a closing's notice follows up with its recipient, if it is one."""
    if notice.step not in (Step.WITHDRAWN, Step.CLOSED):
        return None
    return taken_back(notice.notice_id, notice.ticket_id, notice.recipient_role)


def notice_to_json(notice: RenderedNotice) -> dict[str, Any]:
    return {"notice_id": notice.notice_id, "ticket_id": notice.ticket_id, "step": notice.step.value,
            "recipient_role": notice.recipient_role, "recipient_name": notice.recipient_name,
            "recipient_email": notice.recipient_email, "subject": notice.subject, "body": notice.body,
            "department": notice.department, "region": notice.region, "due_at": notice.due_at.isoformat(),
            "message_id": notice.message_id}


def resend_request(notice: RenderedNotice, round_: int) -> dict[str, Any]:
    """The notifier's input asking it to deliver a failed notice again, in resend round `round_`."""
    return {**notice_to_json(notice), "resend": round_}


def notice_from_json(obj: dict[str, Any]) -> RenderedNotice:
    return RenderedNotice(obj["notice_id"], obj["ticket_id"], Step(obj["step"]), obj["recipient_role"],
                          obj["recipient_name"], obj["recipient_email"], obj["subject"], obj["body"],
                          obj["department"], obj["region"], datetime.fromisoformat(obj["due_at"]), obj["message_id"])


def to_send_again(record: dict[str, Any], catalog: Catalog,
                  renew: Callable[[RenderedNotice, Catalog], RenderedNotice] | None = None) -> RenderedNotice:
    """A failed notice as `failed_notices_and_their_tickets` gives it, as it is sent again, by the
    clock (`streams.notice_resend`) or when asked (`sunlight notices resend`): to its recipient as
    the catalog names them now (`readdressed`), saying when it was due and what its ticket went
    through since (`resent`: its steps, a round opened since), and with `renew` its reply link
    valid from now (`streams.console.links.Links.renewed`)."""
    later_round = record.get("ticket_round", 1)
    notice = resent(readdressed(notice_from_json(record), catalog), record.get("later_steps", {}), catalog,
                    later_round if later_round > record.get("of_round", 1) else None,
                    answered=record.get("ticket_status") == "replied" and later_round == record.get("of_round", 1))
    return renew(notice, catalog) if renew is not None else notice


class NoticeLog:
    """Which notices are finished, by notice id: a Faust table (its changelog survives a crash)
    holds each finished notice until its row is written to the store's notice log, then lets it go
    (`let_go`); a notice the table does not hold is read back from the store (`read_back`), so that
    neither the table nor its changelog grows with every notice ever sent."""

    def __init__(self, table, write: Callable[[str, bytes, int], None],
                 delete: Callable[[str, int], None] | None = None):
        self.table = table
        self.write = write
        self.delete = delete  # (notice_id, partition): out of the table's data, a tombstone in its changelog
        # Reading statuses back: async (notice_ids) -> {notice_id: (status, row version)} of those the store holds.
        self.load: Callable | None = None
        self.keep: set[str] = set()  # notices whose row the store refused: the table answers for them

    async def read_back(self, notice_ids) -> dict[str, tuple[str, int]]:
        """The stored (status, row version) of those of these notices that the table does not hold."""
        asked = [notice_id for notice_id in dict.fromkeys(notice_ids) if not self.table.data.get(notice_id)]
        if asked and self.load is not None:
            return await self.load(asked)
        return {}

    def standing(self, notice_id: str, read: dict[str, tuple[str, int]]) -> tuple[str | None, int]:
        """The notice's status and resend round: the table's, or else what `read_back` found in the
        store (its status and row version); (None, 0) when neither knows it."""
        stored = self.table.data.get(notice_id)
        if stored:
            record = orjson.loads(stored)
            return record["status"], record.get("round", 0)
        found = read.get(notice_id)
        if found is None:
            return None, 0
        status, version = found
        return status, max(0, version - FINISHED_VERSION)

    def status(self, notice_id: str, read: dict[str, tuple[str, int]]) -> str | None:
        return self.standing(notice_id, read)[0]

    def finish(self, notice_id: str, status: str, attempts: int, partition: int, error: str = "",
               round_: int = 0) -> bytes:
        stored = exact(orjson.dumps({"status": status, "attempts": attempts, "error": error, "round": round_,
                                     "partition": partition}))  # kept in the table: of its own size
        self.write(notice_id, stored, partition)
        return stored

    def held_finished(self, notice_id: str) -> tuple[bytes, dict[str, Any]] | None:
        """The table's record of a finished notice (and what it says), if the table holds one: its
        row in the store may never have been written (a crash between the two)."""
        stored = self.table.data.get(notice_id)
        return (stored, orjson.loads(stored)) if stored else None

    def let_go(self, notice_id: str, partition: int, stored: bytes) -> bool:
        """Let a finished notice go from the table once its row is written (the store answers for
        it from then on), if the table still holds that record."""
        if self.delete is None or notice_id in self.keep or self.table.data.get(notice_id) is not stored:
            return False
        self.delete(notice_id, partition)
        return True


def stored_notice_partition(stored: bytes) -> int | None:
    """The partition a notice's record in the table was written in (its case's); None for a record
    written before records named it."""
    return orjson.loads(stored).get("partition")


# How long a notice being sent when a signal stops the worker may still take (a mail server that
# answers slowly), before it is left for the next start (`LeftForTheNextStart`).
STOP_GRACE_SECONDS = 5.0


class LeftForTheNextStart(Exception):
    """A notice not yet sent when a signal stopped the worker: its unit is neither finished nor
    committed, so the next start delivers it (`streams.app.Pipeline._run`)."""


class NoticeSteps:
    """`concurrency`: how many notices of a unit are delivered at once, each ticket's in order (its
    opening before its escalation); one at a time, a burst of notices, or a mail server down (each
    notice two minutes of attempts), queued every later notice behind them. `stopping`: whether a
    signal is stopping the worker: no attempt is begun then, and one under way is given up after
    `STOP_GRACE_SECONDS` (before, a mail server down held every stop for its 50 s, which then
    failed blaming the broker or the store: found by a black-box test)."""

    def __init__(self, notices: NoticeLog, senders: list, notify: bool, writer, attempts: int = 4,
                 retry_seconds: float = 0.5, concurrency: int = 8, stopping: Callable[[], bool] = lambda: False,
                 stop_grace: float = STOP_GRACE_SECONDS):
        self.notices = notices
        self.senders = senders
        self.notify = notify
        self.writer = writer
        self.attempts = max(1, attempts)
        self.retry_seconds = retry_seconds
        self.concurrency = max(1, concurrency)
        self.stopping = stopping
        self.stop_grace = stop_grace
        self._stopping_since: float | None = None

    async def process(self, unit: Unit, dead_letter) -> None:
        notices: list[tuple[RenderedNotice, int]] = []  # each with its resend round (0: not a resend)
        for record in unit.records:
            try:
                value = orjson.loads(record.value)
                if is_nudge(value):
                    continue
                resend = value.get("resend", 0)
                if not isinstance(resend, int) or isinstance(resend, bool) or resend < 0:
                    raise ValueError(f"resend must be a round number, got {resend!r}")
                notices.append((notice_from_json(value), resend))
            except Exception as exc:  # an internal message Sunlight did not write: kept, never fatal
                await dead_letter(record, unit.topic, unit.partition, "internal_error", f"unreadable notice: {exc}")
        if not notices:
            return
        asked = [notice.notice_id for notice, _ in notices]
        asked += [earlier for notice, _ in notices if (earlier := _takes_back(notice)) is not None]
        read = await self.notices.read_back(asked)
        by_ticket: dict[str, list[tuple[RenderedNotice, int]]] = {}
        for notice, resend in notices:
            by_ticket.setdefault(notice.ticket_id, []).append((notice, resend))
        gate = asyncio.Semaphore(self.concurrency)

        async def in_order(ticket_notices: list[tuple[RenderedNotice, int]]) -> None:
            for notice, resend in ticket_notices:
                await self._one(notice, resend, read, unit.partition, gate)

        # A task group: one ticket's failure (an error no sender wraps) cancels the others, rather than
        # leaving them sending for a unit already given up (gather left them running).
        try:
            async with asyncio.TaskGroup() as tasks:
                for ticket_notices in by_ticket.values():
                    tasks.create_task(in_order(ticket_notices))
        except ExceptionGroup as failed:  # the error itself, for the unit's dead letters to name
            raise failed.exceptions[0] from None

    async def _one(self, notice: RenderedNotice, resend: int, read: dict, partition: int,
                   gate: asyncio.Semaphore) -> None:
        """One notice: delivered (or held, or failed) and recorded, unless it is finished already."""
        status, round_ = self.notices.standing(notice.notice_id, read)
        # A notice is delivered once; a failed one again in each later round asked for.
        due = status not in FINISHED if not resend else (status == "failed" and round_ < resend)
        if not due:
            # A redelivery, the same step reached again, or a resend of a round taken (or of a
            # notice sent meanwhile). Finished in the table, its row is written again: a crash
            # after the table's record and before the row left the store saying `recorded`, and a
            # later process sent it again.
            held = self.notices.held_finished(notice.notice_id)
            if held is not None and (not resend or round_ == resend):
                stored, done = held
                self._record(notice, done["status"], done.get("attempts", 0), done.get("error", ""), stored,
                             partition, done.get("round", 0))
            return
        earlier = _takes_back(notice)
        if earlier is not None and self.notices.status(earlier, read) != "sent":
            # The notice it would take back never reached them (no address, sending off, failed):
            # there is nothing to take back from them (before, a head never told was told of a
            # withdrawal, once an address was added; found by a black-box test).
            status, attempts, error = "held", 0, NEVER_REACHED
        else:
            async with gate:
                status, attempts, error = await self.deliver(notice)
        stored = self.notices.finish(notice.notice_id, status, attempts, partition, error, resend)
        self._record(notice, status, attempts, error, stored, partition, resend)
        metrics.NOTICES.labels(notice.step.value, status).inc()
        if resend:
            log.info("notice %s delivered again (resend round %d): %s", notice.notice_id, resend, status)

    def _record(self, notice: RenderedNotice, status: str, attempts: int, error: str, stored: bytes,
                partition: int, round_: int = 0) -> None:
        """The finished notice's row in the store's notice log (a resend's round above the first
        outcome); once written, the store answers for it."""
        self.writer.add("notices", notice_row(notice, wall_now(), status=status, attempts=attempts,
                                              last_error=error, version=FINISHED_VERSION + round_))
        self.writer.batch.after_write.append(
            lambda n=notice.notice_id, p=partition, s=stored: self._let_go(n, p, s))

    async def _let_go(self, notice_id: str, partition: int, stored: bytes) -> None:
        if self.notices.let_go(notice_id, partition, stored):
            metrics.NOTICES_LET_GO.inc()

    async def deliver(self, notice: RenderedNotice) -> tuple[str, int, str]:
        if not self.notify:
            return "held", 0, HELD
        if not self.senders:
            return "failed", 0, NO_CHANNEL
        pending = list(self.senders)
        error = ""
        undeliverable = ""  # a channel that cannot send this notice now, however often tried: not tried again
        for attempt in range(1, self.attempts + 1):
            failed = []
            for sender in pending:
                try:
                    await self._unless_stopped(sender.send(notice), notice, self.stop_grace)
                except Undeliverable as exc:
                    undeliverable = str(exc)
                except NoticeError as exc:
                    failed.append(sender)
                    error = str(exc)
            pending = failed
            if not pending:
                if undeliverable:
                    log.error("notice %s not sent: %s", notice.notice_id, undeliverable)
                    return "failed", attempt, undeliverable
                return "sent", attempt, ""
            if attempt < self.attempts:
                log.warning("notice %s not sent (attempt %d of %d), trying again: %s", notice.notice_id, attempt,
                            self.attempts, error)
                await self._unless_stopped(asyncio.sleep(min(self.retry_seconds * 2 ** (attempt - 1), 30.0)),
                                           notice, 0.0)
        log.error("notice %s failed after %d attempts: %s", notice.notice_id, self.attempts, error)
        return "failed", self.attempts, error

    async def _unless_stopped(self, step, notice: RenderedNotice, grace: float):
        """`step` (an attempt, or the wait before the next), unless a signal stops the worker: then
        it is given up `grace` seconds after the stop began, and the notice left for the next start."""
        if self._given_up(notice, grace):
            step.close()  # (a coroutine never begun)
            raise LeftForTheNextStart(notice.notice_id)
        task = asyncio.ensure_future(step)
        try:
            while True:
                done, _ = await asyncio.wait({task}, timeout=0.1)
                if done:
                    return task.result()
                if self._given_up(notice, grace):
                    raise LeftForTheNextStart(notice.notice_id)
        finally:
            if not task.done():
                task.cancel()

    def _given_up(self, notice: RenderedNotice, grace: float) -> bool:
        """Whether a signal stopped the worker `grace` seconds ago or more (the stop's start noted
        when first seen)."""
        if not self.stopping():
            return False
        now = asyncio.get_running_loop().time()
        self._stopping_since = self._stopping_since or now
        if now - self._stopping_since < grace:
            return False
        log.warning("notice %s not sent yet as the worker stops: left for the next start", notice.notice_id)
        return True
