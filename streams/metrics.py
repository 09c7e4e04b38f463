"""Every metric Sunlight exports, declared in one place."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

REGISTRY = CollectorRegistry()

EVENTS_PROCESSED = Counter("sunlight_events_processed_total", "Case events applied to case state",
                           ["outcome"], registry=REGISTRY)  # new | duplicate
EVENTS_DEAD_LETTERED = Counter("sunlight_events_dead_lettered_total", "Messages sent to the DLQ",
                               ["reason"], registry=REGISTRY)
ALERTS_PUBLISHED = Counter("sunlight_alerts_published_total", "Alert versions published",
                           ["rule", "status"], registry=REGISTRY)
TICKS_SENT = Counter("sunlight_deadline_ticks_total", "Cases re-judged because something fell due",
                     registry=REGISTRY)
OFFSET_GAPS = Counter("sunlight_offset_gaps_total", "Offsets missing between two messages an agent received "
                      "(messages Faust dropped, read again; or a hole in the log)", ["topic"], registry=REGISTRY)
HOLE_READ_FAILURES = Counter("sunlight_offset_gap_read_failures_total", "Failed reads of messages an agent was "
                             "not delivered (tried again with the partition's next message)", ["topic"],
                             registry=REGISTRY)
CASES_UNWATCHED = Counter("sunlight_cases_unwatched_total", "Cases no longer judged because their item left "
                          "the catalog", registry=REGISTRY)
PUBLISH_FAILURES = Counter("sunlight_alert_publish_failures_total", "Written alert versions whose publishing to "
                           "the alerts topic failed (retried before their messages are acknowledged)",
                           registry=REGISTRY)
OPEN_DEADLINES = Gauge("sunlight_open_deadlines", "Cases in the deadline index", registry=REGISTRY)
SINK_ROWS = Counter("sunlight_sink_rows_total", "Rows written to ClickHouse", ["table"], registry=REGISTRY)
SINK_FAILURES = Counter("sunlight_sink_failures_total", "Failed ClickHouse batch writes", registry=REGISTRY)
SINK_FLUSH_SECONDS = Histogram("sunlight_sink_flush_seconds", "Time to write one batch", registry=REGISTRY)
SINK_PENDING_ROWS = Gauge("sunlight_sink_pending_rows", "Rows buffered, not yet written", registry=REGISTRY)
CATALOG_RELOADS = Counter("sunlight_catalog_reloads_total", "Catalog reloads", ["outcome"], registry=REGISTRY)
CALENDAR_MISSING_YEARS = Gauge("sunlight_calendar_missing_years", "Years counted without holiday data",
                               registry=REGISTRY)
TICKET_CHANGES = Counter("sunlight_ticket_changes_total", "Supervision ticket versions written", ["kind"],
                         registry=REGISTRY)
TICKET_ACTIONS = Counter("sunlight_ticket_actions_total", "Ticket actions applied or refused", ["kind", "outcome"],
                         registry=REGISTRY)
NOTICES = Counter("sunlight_notices_total", "Notices recorded, sent, failed", ["step", "status"],
                  registry=REGISTRY)
OPEN_TICKET_DEADLINES = Gauge("sunlight_open_ticket_deadlines", "Cases whose tickets wait for a moment",
                              registry=REGISTRY)
