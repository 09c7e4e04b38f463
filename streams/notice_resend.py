"""Failed notices sent again by the clock: a step on a timer of every long-lived pipeline.

A notice fails for good once the notifier's attempts (about two minutes) are spent: a mail server
down for an afternoon. Before, it stayed failed until an operator ran `sunlight notices resend`,
which `sunlight serve` on the embedded defaults kept from the store it holds; a department head
was never told of an escalation while nobody looked (found by a black-box test).

Each run reads the notices whose latest outcome is `failed` from the store, with their tickets'
status, and asks the notifier to deliver again, as `sunlight notices resend` does, each one that
`alerts.notices.ResendPolicy` says is due (its wait after the failure doubling with each round),
addressed as the catalog names its recipient now, its reply link valid from the resend. Not sent
again: a notice of a ticket closed or withdrawn since, or of a round ended since (`no_longer_news`),
one whose recipient still has no address (it would fail again, and a webhook that took it would be
posted again), and those of partitions another worker holds (it asks for them). Each round is asked
for once, and again only if its wait passes with no outcome in the store (a request lost); a request
the notifier already took changes nothing (its round is taken), so one published twice is harmless.
"""

from __future__ import annotations

import logging
from datetime import datetime
from typing import Awaitable, Callable

import orjson

from alerts.catalog import Catalog
from alerts.notices import RenderedNotice, ResendPolicy, no_longer_news
from alerts.tickets import case_of
from streams import metrics
from streams.catalog_source import CatalogSource
from streams.clock import wall_now
from streams.notices import FINISHED_VERSION, resend_request, to_send_again
from streams.steps import home_partition

log = logging.getLogger(__name__)


class NoticeResend:
    def __init__(self, policy: ResendPolicy, run_on_store: Callable[..., Awaitable], catalog: CatalogSource,
                 send: Callable[[str, bytes, bytes, int], Awaitable], topic: str, partitions: int,
                 held_partitions: Callable[[], set[int]], now: Callable[[], datetime] = wall_now,
                 sending: bool = True, renew: Callable[[RenderedNotice, Catalog], RenderedNotice] | None = None):
        self.policy = policy
        self.renew = renew  # its reply link valid from now (`streams.console.links.Links.renewed`)
        self.sending = sending  # a channel is set and sending is on: else the run only counts them
        # The round last asked for of each failed notice, and when: asked once, not again at every
        # run while its outcome has not reached the store (found by review: 100 failed notices gave
        # 500 requests in five runs, each a notice's two minutes of attempts while the server is
        # down); asked again once that round's wait has passed with no outcome (a request lost).
        self.asked: dict[str, tuple[int, datetime]] = {}
        self.run_on_store = run_on_store  # async (fn, *args): fn(client, *args) on the store's thread
        self.catalog_source = catalog
        self.send = send  # async (topic, key, value, partition)
        self.topic = topic
        self.partitions = partitions
        self.held_partitions = held_partitions  # () -> the notices topic's partitions this worker holds
        self.now = now

    async def run(self) -> int:
        """Count the failed notices that are still news (`sunlight_notices_failed`), and ask the
        notifier to send again those due; returns how many were asked for."""
        from sinks.queries import failed_notices_and_their_tickets

        try:
            failed, standing = await self.run_on_store(failed_notices_and_their_tickets)
        except Exception as exc:  # the store is down: asked on the next run
            log.warning("could not read the failed notices from the store (will try again): %s", exc)
            return 0
        news = [r for r in failed
                if not no_longer_news(r["step"], standing.get(r["ticket_id"]), r["of_round"], r["ticket_round"])]
        metrics.NOTICES_FAILED.set(len(news))
        self.asked = {r["notice_id"]: self.asked[r["notice_id"]] for r in news if r["notice_id"] in self.asked}
        if not self.sending:
            return 0
        now, held, catalog = self.now(), self.held_partitions(), self.catalog_source.judge.catalog
        asked = 0
        for record in news:
            case_id = case_of(record["ticket_id"])
            partition = home_partition(case_id, self.partitions)
            rounds = record["version"] - FINISHED_VERSION
            asked_round, asked_at = self.asked.get(record["notice_id"], (0, now))
            if (partition not in held or (asked_round > rounds and now - asked_at < self.policy.wait(rounds))
                    or not self.policy.due(datetime.fromisoformat(record["updated_at"]), rounds, now)):
                continue
            notice = to_send_again(record, catalog, self.renew)
            if not notice.recipient_email:
                continue
            await self.send(self.topic, case_id.encode(), orjson.dumps(resend_request(notice, rounds + 1)), partition)
            self.asked[record["notice_id"]] = (rounds + 1, now)
            asked += 1
        if asked:
            metrics.NOTICES_RESENT.inc(asked)
            log.info("%d failed notice(s) sent to the notifier to be delivered again", asked)
        return asked
