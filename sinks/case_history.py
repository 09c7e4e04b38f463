"""Cases' states rebuilt from what the store holds: their events, their alerts (withdrawn ones
too) and the revision and clock of their latest stored state (`alerts.state.restored`).

A fresh embedded broker seeds the cases that have not settled from it
(`streams.runtime.restore_from_store`), and a worker reads back a case it let go, or one that had
settled before it started, when something about it arrives (`streams.store.CaseStore`).
"""

from __future__ import annotations

from alerts.events import CaseEvent, parse_event
from alerts.model import Alert
from alerts.state import CaseState, restored
from sinks.queries import (cases_with_events, export_alerts, refused_case_events, settled_cases, stored_case_clocks,
                           stored_events)
from sinks.scope import Scope

# Cases read at once when a process seeds its table from the store.
SEED_CHUNK = 20_000


def stored_case_events(client, case_ids: list[str] | None = None,
                       types: tuple[str, ...] | None = None) -> dict[str, list[CaseEvent]]:
    """The stored events of every case (or of `case_ids`; of some types, with `types`), by case,
    in event-time order."""
    events: dict[str, list[CaseEvent]] = {}
    for obj in stored_events(client, Scope.everything(), case_ids, types):
        event = parse_event(obj)
        events.setdefault(event.case_id, []).append(event)
    return events


def stored_case_alerts(client, case_ids: list[str] | None = None) -> dict[str, list[Alert]]:
    """The latest version of every stored alert, withdrawn ones too, by case."""
    alerts: dict[str, list[Alert]] = {}
    for record in export_alerts(client, Scope.everything(), include_withdrawn=True, case_ids=case_ids):
        alert = Alert.from_json(record)
        alerts.setdefault(alert.case_id, []).append(alert)
    return alerts


def stored_states(client, events: dict[str, list[CaseEvent]], alerts: dict[str, list[Alert]],
                  case_ids: list[str] | None = None,
                  refused: dict[str, dict[str, str]] | None = None) -> dict[str, CaseState]:
    """The state of each case with stored events (the pipeline restores its own state, not a user's
    view), with the events it waits for (`refused`, else read: `refused_case_events`)."""
    clocks = stored_case_clocks(client, Scope.everything(), case_ids)
    if refused is None:
        refused = refused_case_events(client, case_ids, as_kept=True)
    return {case_id: restored(case_id, case_events, alerts.get(case_id, []), *clocks.get(case_id, (0, None, None)),
                              refused=refused.get(case_id))
            for case_id, case_events in events.items()}


def waiting_only(refused: dict[str, dict[str, str]], states: dict[str, CaseState]) -> dict[str, CaseState]:
    """The cases the store knows only by refused events (its first events were dead letters): a
    state that waits for them, so that the case's next events are not judged without them."""
    return {case_id: restored(case_id, [], [], refused=waiting) for case_id, waiting in refused.items()
            if case_id not in states}


def states_of(client, case_ids: list[str]) -> dict[str, CaseState]:
    """The states of those of `case_ids` the store holds (a case is there once it has events, or
    a dead letter that holds it back). A cheap look first which of them it holds (usually none: a
    unit's cases are mostly new)."""
    held = sorted(cases_with_events(client, case_ids))
    refused = refused_case_events(client, case_ids, as_kept=True)
    states = stored_states(client, stored_case_events(client, held), stored_case_alerts(client, held), held,
                           refused) if held else {}
    return {**states, **waiting_only(refused, states)}


def store_seeds(client, basis: str) -> tuple[dict[str, CaseState], set[str], dict[str, list[Alert]]]:
    """What a process judging under `basis` (`alerts.evaluate.judging_basis`) that starts on this
    store seeds its table with: the states of the cases that have not settled under it, the ids of
    those that have (`sinks.queries.settled_cases`: read back only if something about them
    arrives), and every case's alerts (the tickets are restored from them).
    Read `SEED_CHUNK` cases at a time, so that what is held at once is the open cases, not the
    store's history."""
    settled = set(settled_cases(client, basis))
    alerts = stored_case_alerts(client)
    refused = refused_case_events(client, as_kept=True)
    with_events = cases_with_events(client)
    pending = sorted(with_events - settled)
    states: dict[str, CaseState] = {}
    for start in range(0, len(pending), SEED_CHUNK):
        chunk = pending[start:start + SEED_CHUNK]
        states.update(stored_states(client, stored_case_events(client, chunk), alerts, chunk, refused))
    states.update(waiting_only({k: v for k, v in refused.items() if k not in with_events}, states))
    return states, settled, alerts
