"""`sunlight notices resend`: the tickets' notices that failed, delivered again."""

from __future__ import annotations

import asyncio
import sys

import orjson

from streams.commands.common import parse_now, push_events, command_clock, catalog_if_any, catalog_path_for, open_store
from streams.settings import Settings


def cmd_notices_resend(args, settings: Settings) -> int:
    """Deliver again the notices whose latest outcome is `failed` (a mail server down for longer
    than the notifier's attempts), as they were recorded: each as the notifier's next resend round
    of it; not those of tickets closed or withdrawn since, nor of a round ended since. On the embedded defaults a short
    pipeline sends them (the channels of SUNLIGHT_SMTP, SUNLIGHT_WEBHOOK) and the outcome of each is
    printed; with SUNLIGHT_KAFKA they are published to the running workers' notifier."""
    import dataclasses

    from sinks.queries import (failed_notices, failed_notices_and_their_tickets, notice_statuses, ticket_state,
                               unfinished_notices)
    from alerts.notices import no_longer_news
    from streams.clock import wall_now
    from streams.console.links import reply_links
    from streams.notices import FINISHED, FINISHED_VERSION, notice_from_json, resend_request, to_send_again

    if not settings.kafka and not (settings.smtp or settings.webhook):  # with Kafka the workers send
        raise SystemExit("sunlight: resending needs a channel: SUNLIGHT_SMTP (with SUNLIGHT_MAIL_FROM) or "
                         "SUNLIGHT_WEBHOOK")
    if args.ticket:
        with open_store(settings) as client:
            unknown = [ticket_id for ticket_id in args.ticket if ticket_state(client, ticket_id) is None]
        if unknown:  # (before, "no failed notices of NOPE", status 0: found by a black-box test)
            print(f"sunlight: no ticket {', '.join(unknown)} in the store (`sunlight tickets list` gives the "
                  f"tickets); nothing was sent", file=sys.stderr)
            return 2
    catalog, backlog, behind = None, [], False
    if not settings.kafka:
        with open_store(settings) as client:
            # Recorded and never tried (the last process stopped first): any pipeline on these defaults
            # sends them, this one too (a run below), and says so.
            backlog = unfinished_notices(client, FINISHED)
            failed = failed_notices(client, args.ticket)
            behind = _steps_due_by(client, {record["ticket_id"] for record in failed},
                                   parse_now(args.now) or wall_now())
        if backlog or failed:
            catalog = catalog_path_for(args, settings, "notices resend on the embedded defaults runs the pipeline and "
                                                    "needs a catalog")
        if behind:
            # The tickets brought to this clock first: a step that fell due meanwhile (a level 2) is taken
            # and its notice sent, and a notice resent after it tells it (before, a level 1 resent after the
            # referral's moment still promised it by a day gone, and the same command made it a second
            # later: found by a black-box test). The workers' tickets are at their clock already. Only
            # when one of these tickets has a step due by then: otherwise the run would change nothing
            # they tell, and it costs a pipeline's start and stop.
            asyncio.run(push_events(dataclasses.replace(settings, notify=True), [], catalog, parse_now(args.now),
                                    show_progress=False, topic=settings.notices_topic, clock=command_clock(args)))
    with open_store(settings) as client:
        failed, standing = failed_notices_and_their_tickets(client, args.ticket)
        stale = [r for r in failed
                 if no_longer_news(r["step"], standing.get(r["ticket_id"]), r["of_round"], r["ticket_round"])]
        failed = [r for r in failed if r not in stale]
    for record in stale:
        since = f"its ticket is since {standing[record['ticket_id']]}"
        if record["of_round"] < record["ticket_round"]:
            since = f"its round {record['of_round']} has ended (the ticket is in round {record['ticket_round']})"
        print(f"{record['notice_id']}: not sent again, {since}", file=sys.stderr)
    if not failed and not backlog:
        print("no failed notices" + (f" of {', '.join(args.ticket)}" if args.ticket else ""), file=sys.stderr)
        return 0
    # Each to its recipient as the catalog names them now, when it can be read (a notice that failed
    # for want of an address goes to the one since added), else as recorded.
    named = getattr(args, "catalog", None) or settings.catalog
    try:
        current = catalog_if_any(named)
    except ValueError as exc:  # CatalogError, a YAML error: said in one line, as every command says it
        raise SystemExit(f"sunlight: the catalog {named} is refused: {exc}") from None
    # Renewed from the command's clock when it is later than the wall clock (a catch-up run with
    # --now): from the wall clock alone, a link resent at a later --now kept its old, passed end
    # (found by a black-box test).
    asked = parse_now(args.now)
    links = reply_links(settings, clock=lambda: max(wall_now(), asked) if asked is not None else wall_now())
    messages, addressed = [], {}
    for record in failed:
        notice = notice_from_json(record)
        if current is not None:  # its reply link valid from now, as a first sending's
            notice = to_send_again(record, current, links.renewed if links is not None else None)
            if notice.recipient_email != record["recipient_email"]:
                print(f"{record['notice_id']}: to {notice.recipient_name} <{notice.recipient_email}>, as the catalog "
                      f"names them now (recorded: {record['recipient_email'] or 'no address'})", file=sys.stderr)
        addressed[record["notice_id"]] = notice.recipient_name
        messages.append((record["ticket_id"].rpartition("/")[0].encode(),
                         orjson.dumps(resend_request(notice, record["version"] - FINISHED_VERSION + 1))))
    if settings.kafka:
        from streams.runtime import produce

        asyncio.run(produce(settings.kafka, settings.notices_topic, messages))
        print(f"published {len(messages)} failed notice(s) to {settings.notices_topic} to be sent again",
              file=sys.stderr)
        return 0
    asyncio.run(push_events(dataclasses.replace(settings, notify=True), messages, catalog, parse_now(args.now),
                      show_progress=False, topic=settings.notices_topic, clock=command_clock(args)))
    with open_store(settings) as client:
        outcome = notice_statuses(client, [record["notice_id"] for record in failed + backlog])
        again = {record["notice_id"]: record for record in failed_notices(client)}
    for record in failed + backlog:
        status = outcome.get(record["notice_id"], ("recorded", 0))[0]
        why = f": {again[record['notice_id']]['last_error']}" if record["notice_id"] in again else ""
        name = addressed.get(record["notice_id"]) or record["recipient_name"]
        print(f"{record['notice_id']} → {name or record['recipient_role']}: {status}{why}")
    still = sum(record["notice_id"] in again for record in failed)
    print(f"{len(failed) - still} of {len(failed)} failed notice(s) sent"
          + (f"; {still} failed again" if still else ""), file=sys.stderr)
    if backlog:
        sent = sum(outcome.get(record["notice_id"], ("",))[0] == "sent" for record in backlog)
        print(f"also {sent} of {len(backlog)} notice(s) recorded and never tried (the last process stopped before "
              f"sending them) sent", file=sys.stderr)
    return 1 if still or any(record["notice_id"] in again for record in backlog) else 0


def _steps_due_by(client, ticket_ids: set[str], moment) -> bool:
    """Whether any of these tickets, as the store holds it, has a step the clock takes by `moment`
    (an escalation, the end of a silence that held a notice, a coming round's opening)."""
    from alerts.tickets import case_of
    from sinks.queries import stored_ticket_states
    from streams.app import silences_in_store
    from streams.ticket_codec import ticket_from_json

    if not ticket_ids:
        return False
    silences = silences_in_store(client)
    for _, state in stored_ticket_states(client, sorted({case_of(ticket_id) for ticket_id in ticket_ids})):
        ticket = ticket_from_json(orjson.loads(state))
        due = ticket.due_under(silences) if ticket.ticket_id in ticket_ids else None
        if due is not None and due <= moment:
            return True
    return False
