"""Rule thresholds: configuration with the contract's defaults."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class RuleConfig:
    # backfill (网下运行、网上登记): a whole case registered in a burst ...
    burst_registration_minutes: float = 10.0
    # ... while the times it states span at least this long,
    burst_stated_span_hours: float = 24.0
    burst_min_events: int = 3
    # or an event registered this long after it happened (online and window channels),
    registration_lag_hours: float = 48.0
    # while self-built systems (channel import) may push a month's cases by this day of
    # the next month (seed 000: by the 5th).
    import_push_day: int = 5
    # discretion_outlier: at least this many peer penalties for the same item and violation,
    outlier_min_peers: int = 8
    # and a robust z-score (median / MAD) at least this far out.
    outlier_z: float = 3.5
    # The peers are the group's latest decisions, at most this many (by decision time): a
    # group's state must fit one changelog record (Kafka's 1 MB), whatever the province's size.
    outlier_window: int = 2000
