"""`sunlight demo`, `sunlight replay` and `sunlight worker`: the commands that run the pipeline."""

from __future__ import annotations

import asyncio
import logging
import sys
from datetime import datetime
from pathlib import Path

from streams.commands.common import parse_now, through_pipeline, notify_settings, CONFLICTING_NOTE, catalog_path_for, open_store
from streams.settings import Settings

log = logging.getLogger("sunlight")


async def _replay(settings: Settings, events: Path, catalog: Path, now: datetime | None,
                  show_progress: bool = True) -> dict:
    """The file is sent by a process of its own (`streams.replay_feed`), which reads it while the
    pipeline starts."""
    from streams.replay_feed import FileFeed
    from streams.runtime import check_running

    feed = await FileFeed.start(events, settings.case_events_topic)
    try:
        return await through_pipeline(
            settings, catalog, now, show_progress,
            lambda running, on_total, on_sent: feed.send(running.bootstrap, on_total, on_sent,
                                                         check=lambda: check_running(running.pipeline)))
    finally:
        await feed.close()


def cmd_replay(args, settings: Settings) -> int:
    settings = notify_settings(settings, args)
    summary = asyncio.run(_replay(settings, Path(args.events), Path(args.catalog), parse_now(args.now),
                                  show_progress=sys.stderr.isatty()))
    print(f"replayed {summary['events']} events: {summary['new']} new, {summary['duplicates']} duplicates, "
          f"{summary['dead_lettered']} to the dead-letter topic; {summary['alert_changes']} alert changes",
          file=sys.stderr)
    if summary.get("conflicting"):
        print(CONFLICTING_NOTE.format(n=summary["conflicting"], what="replay").strip(), file=sys.stderr)
    say_failed_notices(settings)
    return 0


def say_failed_notices(settings: Settings) -> None:
    """After sending notices: how many failed for good, and how to send them again (a mail server
    down for the whole run said nothing before: found by a black-box test). After a run that sends
    none: how many of tickets already told it did not send (`streams.notices.UNSENT`)."""
    from sinks.notify import CHANNEL_REFUSED, RECIPIENT_REFUSED
    from sinks.queries import failed_notices
    from streams.notices import UNSENT

    if settings.kafka:
        return  # the workers send them, later
    if not settings.notify and not unsent_here():
        return  # nothing to say, and a store not to open again
    with open_store(settings) as client:
        failed = failed_notices(client)
    unsent = [n for n in failed if n.get("last_error") == UNSENT]
    failed = [n for n in failed if n.get("last_error") != UNSENT] if settings.notify else []
    if unsent:
        print(f"note: {len(unsent)} notice(s) of tickets whose departments were told of them were not sent: a run "
              f"without --notify reached them; `sunlight notices resend` sends them (a worker does by itself)",
              file=sys.stderr)
    # A notice to no one (the catalog names no address for its recipient) waits for the catalog, not
    # for the mail server (said so, a resend was the advice: found by a black-box test).
    unaddressed = [n for n in failed if not n.get("recipient_email")]
    # One refused for good (550: no such mailbox) waits for a corrected address or setting, not for the server.
    addressed = [n for n in failed if n.get("recipient_email")]
    refused = {why: [n for n in addressed if (n.get("last_error") or "").startswith(why)]
               for why in (RECIPIENT_REFUSED, CHANNEL_REFUSED)}
    unreached = len(addressed) - sum(map(len, refused.values()))
    if unreached:
        print(f"note: the notice log holds {unreached} notice(s) not delivered (the mail server or webhook "
              f"failed or was unreachable for all attempts): `sunlight notices resend` sends them again once it "
              f"is back", file=sys.stderr)
    for why, remedy in ((RECIPIENT_REFUSED, "correct the recipient's address in the catalog (or have the "
                                            "recipient's server accept it)"),
                        (CHANNEL_REFUSED, "correct SUNLIGHT_SMTP, SUNLIGHT_MAIL_FROM or SUNLIGHT_WEBHOOK")):
        if refused[why]:
            print(f"note: {len(refused[why])} notice(s) not delivered because they were refused for good (as "
                  f"{refused[why][-1]['last_error'][len(why) + 1:]}): {remedy}, then `sunlight notices resend` "
                  f"sends them", file=sys.stderr)
    if unaddressed:
        roles = sorted({n.get("recipient_role") or "recipient" for n in unaddressed})
        print(f"note: {len(unaddressed)} notice(s) not delivered because the catalog names no email address for "
              f"their recipient ({', '.join(roles)}): add the department's contact or head email, or the "
              f"inspection_office's, to the catalog, then `sunlight notices resend` sends them", file=sys.stderr)


def unsent_here() -> int:
    """How many notices this process recorded unsent (`streams.notices.UNSENT`), by its counter."""
    from alerts.tickets import Step
    from streams import metrics

    return int(sum(metrics.REGISTRY.get_sample_value("sunlight_notices_total",
                                                     {"step": step.value, "status": "unsent"}) or 0
                   for step in Step))


def where_things_are(settings: Settings, catalog) -> str:
    """What an operator needs at a worker's start, in one line: the store, the health endpoints, the
    catalog, the partitions and the application id (the start said only the broker's address:
    found by a black-box test). A store's password is never shown."""
    from sinks.clickhouse import redact

    store = f"ClickHouse {redact(settings.clickhouse)}" if settings.clickhouse else \
        f"the embedded store in {settings.data_dir.resolve()}"
    health = (f"/metrics, /healthz and /readyz on port {settings.metrics_port}" if settings.metrics_port
              else "no /metrics, /healthz or /readyz (SUNLIGHT_METRICS_PORT=0)")
    return (f"store: {store}; {health}; catalog: {Path(catalog).resolve()}; {settings.partitions} partitions of "
            f"{settings.case_events_topic}; application id {settings.app_id}")


def cmd_worker(args, settings: Settings) -> int:
    from streams.notices import channel_missing
    from streams.runtime import running_worker

    catalog = catalog_path_for(args, settings, "worker needs a catalog")

    async def run() -> int:
        async with running_worker(settings, catalog) as running:  # serves /metrics, /healthz, /readyz
            log.warning("worker running against %s; Ctrl-C to stop", running.bootstrap)
            log.warning("%s", where_things_are(settings, catalog))
            missing = channel_missing(settings) if settings.notify else None
            if missing:
                log.warning("%s", missing)
            stopped = asyncio.ensure_future(running.worker.wait_until_stopped())  # SIGINT / SIGTERM
            failed = asyncio.ensure_future(running.pipeline.failed.wait())
            await asyncio.wait([stopped, failed], return_when=asyncio.FIRST_COMPLETED)
            for waiter in (stopped, failed):
                waiter.cancel()
            if running.pipeline.failure is not None:
                # A worker that cannot fire deadlines must not run on quietly: exit non-zero, so
                # that its supervisor restarts it.
                print(f"sunlight: the worker stops: {running.pipeline.failure}", file=sys.stderr)
                return 1
            crashed = running.worker.crash_reason
            if crashed is not None and not running.pipeline.stopping:
                # A service of Faust's crashed (its fetcher, say, on a batch it cannot read), and the
                # worker stopped by itself: not a clean stop.
                print(f"sunlight: the worker stopped on an error: {crashed!r} (see the log above)", file=sys.stderr)
                return 1
        # The last line of a clean stop: an operator reading the log knows it ended so, not cut short
        # (found by a black-box test: a clean stop ended on the start lines).
        log.warning("worker stopped")
        return 0

    try:
        return asyncio.run(run())
    except KeyboardInterrupt:
        return 0


def cmd_demo(args, settings: Settings) -> int:
    from streams.demo import run_demo

    import dataclasses

    # The demo's notices are sent only where a channel is configured (a demo mails nobody by surprise).
    settings = dataclasses.replace(settings, notify=bool(settings.smtp or settings.webhook))
    return asyncio.run(run_demo(settings, duration=args.duration, cases=args.cases, seed=args.seed))
