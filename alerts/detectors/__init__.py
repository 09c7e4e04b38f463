"""The detectors: pure functions from a case's history and the clock to findings.

Each rule family is one module with `detect(view, now) -> list[Finding]`.
Rules that depend on the clock also give `due(view, now)`: the future moments
at which their verdict could change, which the stream's deadline index keeps so
that a timer looks at a case only when something about it is due.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Mapping

from alerts.calendar import WorkCalendar
from alerts.catalog import Item
from alerts.config import RuleConfig
from alerts.timeline import Timeline


@dataclass(frozen=True, slots=True)
class CaseView:
    timeline: Timeline
    item: Item
    calendar: WorkCalendar
    config: RuleConfig
    # The peer groups' outlier verdicts on the case's decisions: event_id -> evidence.
    verdicts: Mapping[str, Mapping[str, Any]] = field(default_factory=dict)
