"""The detectors: pure functions from a case's history and the clock to findings.

Each rule family is one module with `detect(view, now) -> list[Finding]`.
Rules that depend on the clock also give `due(view, now)`: the future moments
at which their verdict could change, which the stream's deadline index keeps so
that a timer looks at a case only when something about it is due.
"""

from __future__ import annotations

from calendar import monthrange
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any, Mapping

from alerts.calendar import WorkCalendar
from alerts.catalog import Item
from alerts.config import RuleConfig
from alerts.events import CaseEvent, Channel
from alerts.timeline import Timeline


@dataclass(frozen=True, slots=True)
class CaseView:
    timeline: Timeline
    item: Item
    calendar: WorkCalendar
    config: RuleConfig
    # The peer groups' outlier verdicts on the case's decisions: event_id -> evidence.
    verdicts: Mapping[str, Mapping[str, Any]] = field(default_factory=dict)
    # The case's department runs its own system and pushes its cases (the catalog's `self_built`).
    self_built: bool = False
    # The case came by import (its acceptance registered first did, or none has come yet): a
    # history imported (`alerts.evaluate.came_by_import`).
    imported: bool = True
    # The case's events that name another item than the one it is judged under (set aside:
    # `alerts.evaluate.judge_case`), ratings aside: how each was registered is judged all the same
    # (`backfill`).
    others: tuple[CaseEvent, ...] = ()

    def pushed(self, event: CaseEvent) -> bool:
        """Whether `event` came in a self-built system's push: channel import, or no channel stated
        by a self-built department. Its registration is the push, a month at once by design: it is
        judged against the push deadline (`push_limit`), and says nothing of when it was recorded
        in the department's own system.

        Channel import from a department the catalog does not mark self-built is a push only in a
        case that came by import (its acceptance registered first did too: a history imported).
        Joining a case accepted online or at a window, it is judged as that case's events are:
        naming the channel must not move a registration off the 48-hour rule (a department whose
        back-dated closing, sent as `import` weeks later, withdrew a standing red card with no
        backfill card: found by a black-box test), nor may another acceptance sent as `import`
        later (`imported`: found by review)."""
        if event.channel is Channel.IMPORT:
            return self.self_built or self.imported
        return event.channel is None and self.self_built

    def push_limit(self, event: CaseEvent) -> datetime:
        """Self-built systems push a month's cases by `import_push_day` of the next month (24:00)."""
        occurred = self.calendar.local(event.occurred_at)
        year, month = (occurred.year + 1, 1) if occurred.month == 12 else (occurred.year, occurred.month + 1)
        day = min(self.config.import_push_day, monthrange(year, month)[1])
        return self.calendar.midnight(occurred.date().replace(year=year, month=month, day=day)) + timedelta(days=1)

    def pushed_in_time(self, event: CaseEvent) -> bool:
        """Pushed (`pushed`), and by the push deadline."""
        return self.pushed(event) and event.recorded_at <= self.push_limit(event)
