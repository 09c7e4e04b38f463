"""Rule thresholds: configuration with the contract's defaults."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class RuleConfig:
    # backfill (网下运行、网上登记): a whole case registered in a burst ...
    burst_registration_minutes: float = 10.0
    # ... while the times it states span at least this long,
    burst_stated_span_hours: float = 24.0
    burst_min_events: int = 2  # acceptance and closing: the contract's own example
    # or an event registered this long after it happened (online and window channels),
    registration_lag_hours: float = 48.0
    # while self-built systems (channel import) may push a month's cases by this day of
    # the next month (seed 000: by the 5th).
    import_push_day: int = 5
    # retroactive_suspension, "back-dated to cover an overrun": a suspension registered more than
    # this long after the moment it states, whose case would be overdue had it begun when it was
    # registered, and is not as stated (up to this, a registration delay, not a back-dating).
    suspension_backdating_minutes: float = 60.0
    # discretion_outlier (alerts/peers.py): a fine outside what nearly all its peers impose,
    # the peers' 1st to 99th percentile widened by a factor (fines spread multiplicatively),
    outlier_low_quantile: float = 0.01
    outlier_high_quantile: float = 0.99
    outlier_margin: float = 1.25
    # after setting aside the peers that are far out themselves (Tukey's fences on log amounts:
    # this many interquartile ranges below the first quartile or above the third),
    outlier_fence: float = 1.5
    # and widened more when the peers are few: by exp(w * R / (n + 1)), R the log-width of their
    # range and n their number (a handful of peers shows less of what is usual),
    outlier_sample_widening: float = 4.0
    # judged against at least this many peers (the same item and violation, other cases),
    outlier_min_peers: int = 20
    # the latest this many decisions made before it (decision time, not arrival).
    outlier_window: int = 500
    # A peer group keeps its latest decisions, at most this many, and at most this many bytes of
    # stored JSON: a group's state must fit one changelog record (Kafka's 1 MB) whatever the
    # province's size or the length of its ids.
    outlier_group_size: int = 2000
    peer_group_max_bytes: int = 512 * 1024
