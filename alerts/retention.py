"""When a worker may let go of a case: its state leaves the worker's table (and the table's
changelog) some retention after the case has settled, and comes back from the store if anything
about it arrives later (`streams.store.CaseStore`).

A case has *settled* when nothing more can be due for it by the clock alone: it is closed or
withdrawn and nothing is due for it (`next_due`: a moment its last judgement left, or at once
while it waits for the end of a replay's input). From then on only a new fact (a late event, a
rating, a peer group's verdict) can change its alerts, and the store holds everything needed
to judge that fact: the case's events, its alerts and its clock.

The store keeps an event that names no department under its item's department, and since
migration 0012 whether the event named it, so that such a case comes back as it came. Rows
written before do not say: a case whose first event names none while a later one names a
department could come back labelled with a different department, and its alerts would change, so
such a case still never settles (it stays).
"""

from __future__ import annotations

from datetime import datetime, timedelta

from alerts.state import CaseState



def settled_since(state: CaseState) -> datetime | None:
    """The event time from which the case has settled (its latest event), or None while it has not."""
    if state.next_due is not None or state.refused or state.judged_at is None or not state.events:
        return None
    if state.ended_by is None:
        return None
    if state.events[0].department is None and any(event.department for event in state.events):
        return None  # the store would give it back under another department (see above)
    return max(event.occurred_at for event in state.events)


def evict_at(state: CaseState, retention: timedelta | None) -> datetime | None:
    """The moment (on the partition's stream clock) the worker may let the case go; None: keep it
    (it has not settled, or `retention` is None: keep every case)."""
    if retention is None:
        return None
    since = settled_since(state)
    return since + retention if since is not None else None
