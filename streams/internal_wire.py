"""The messages Sunlight sends itself on its internal topics, written and read in one place.

Sunlight's own topics carry JSON objects that only Sunlight writes:

- on the ticks topic (`Settings.ticks_topic`) and the ticket ticks topic
  (`Settings.ticket_ticks_topic`), a tick `{"case_id", "now"}`: the timers ask the case agent
  (or the ticket agent) to judge a case at `now` (`streams.app.Pipeline.fire_due`);
- on the ticks topic, a verdict `{"verdict": alerts.peers.Verdict}`: a peer group's verdict on a
  penalty, sent to its case's partition;
- on the ticket ticks topic, an action `{"action": alerts.tickets.Action}`: a department's or an
  inspector's action on a ticket, routed there from the ticket-actions topic by its case
  (`streams.tickets.route_unit`);
- on any of them, the nudge `{"nudge": true}`: only to have a partition's holes read
  (`streams.delivery.DeliveryWatch.retry`), nothing to apply.

The ticket-actions topic is written by the console and the CLI (and may be by other systems:
docs/tickets.md); each record is one `Action` in its JSON form (`ticket_action`).
Penalty facts (`alerts.peers.PenaltyFact`), notices (`streams.notices`) and dead letters
(`alerts.letters.DeadLetter`) are their own JSON forms on their own topics.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

import orjson

from alerts.peers import Verdict
from alerts.tickets import Action

NUDGE = orjson.dumps({"nudge": True})


def tick(case_id: str, now: datetime) -> bytes:
    return orjson.dumps({"case_id": case_id, "now": now.isoformat()})


def verdict_signal(verdict: Verdict) -> bytes:
    return orjson.dumps({"verdict": verdict.to_json()})


def refusal_signal(case_id: str, event_id: str, kept: str) -> bytes:
    """A case event refused outside its case's partition and too large to be sent on there: its
    case's partition is told of the refusal (`alerts.state.refusal`'s record), so that the case
    waits for it there as for one refused in its own partition."""
    return orjson.dumps({"refused": {"case_id": case_id, "event_id": event_id, "kept": kept}})


def release_signal(case_id: str, event_id: str) -> bytes:
    """An operator closed the letter of a refused event of the case as no event of it (`sunlight dlq
    close --judge-without`): its case's partition stops waiting for it (`alerts.state.release`)."""
    return orjson.dumps({"released": {"case_id": case_id, "event_id": event_id}})


def routed_action(action: Action) -> bytes:
    return orjson.dumps({"action": action.to_json()})


def ticket_action(action: Action) -> bytes:
    """An action as the console and the CLI publish it on the ticket-actions topic."""
    return orjson.dumps(action.to_json())


def is_nudge(signal: Any) -> bool:
    return signal == {"nudge": True}
