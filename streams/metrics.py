"""Every metric Sunlight exports, declared in one place.

A worker serves them on ``http://HOST:$SUNLIGHT_METRICS_PORT/metrics`` (streams.health); the
names, labels and meanings are listed in docs/metrics.md. Counters are counted where things
happen; the gauges that describe the pipeline's state are set by `streams.health.Watch` on a
timer, never on the hot path.
"""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

from alerts.letters import REASON_TITLE
from alerts.model import SEVERITY, AlertStatus
from alerts.tickets import Step

REGISTRY = CollectorRegistry()

EVENTS_PROCESSED = Counter("sunlight_events_processed_total", "Case events applied to case state, by outcome (new, duplicate)",
                           ["outcome"], registry=REGISTRY)  # new | duplicate
EVENTS_REROUTED = Counter("sunlight_events_rerouted_total",
                          "Case events found in a partition not their case's (keyed by something else than the case "
                          "id, or by another partitioner), sent on to their case's partition", registry=REGISTRY)
EVENTS_CONFLICTING = Counter("sunlight_events_conflicting_total",
                             "Case events that came again under an event_id their case holds, with other content "
                             "(refused as conflicting_duplicate dead letters)", registry=REGISTRY)
EVENTS_DEAD_LETTERED = Counter("sunlight_events_dead_lettered_total", "Messages sent to the DLQ, by reason",
                               ["reason"], registry=REGISTRY)
# Every known reason and outcome from 0, as the notices below: Prometheus's increase() does not
# count a series' first sample, so a first burst of letters of a new reason (or the first events
# after a start) went unseen by SunlightDeadLettersGrowing (found by a black-box test).
for _reason in REASON_TITLE:
    EVENTS_DEAD_LETTERED.labels(_reason)
EVENTS_NEW, EVENTS_DUPLICATE = EVENTS_PROCESSED.labels("new"), EVENTS_PROCESSED.labels("duplicate")  # per case
ALERTS_PUBLISHED = Counter("sunlight_alerts_published_total", "Alert versions published, by rule and status",
                           ["rule", "status"], registry=REGISTRY)
for _rule in SEVERITY:  # from 0 as well: the first card of a rule is counted by increase() and rate()
    for _status in AlertStatus:
        ALERTS_PUBLISHED.labels(_rule.value, _status.value)
TICKS_SENT = Counter("sunlight_deadline_ticks_total", "Cases re-judged because something fell due",
                     registry=REGISTRY)
OFFSET_GAPS = Counter("sunlight_offset_gaps_total", "Messages an agent was not delivered, read directly (offsets "
                      "that hold no record, such as transaction markers, not counted)", ["topic"], registry=REGISTRY)
HOLE_READ_FAILURES = Counter("sunlight_offset_gap_read_failures_total", "Failed reads of messages an agent was "
                             "not delivered (tried again with the partition's next message)", ["topic"],
                             registry=REGISTRY)
CASES_UNWATCHED = Counter("sunlight_cases_unwatched_total", "Cases no longer judged because their item left "
                          "the catalog", registry=REGISTRY)
PUBLISH_FAILURES = Counter("sunlight_alert_publish_failures_total", "Written alert versions whose publishing to "
                           "the alerts topic failed (retried before their messages are acknowledged)",
                           registry=REGISTRY)
OPEN_DEADLINES = Gauge("sunlight_open_deadlines", "Cases in the deadline index", registry=REGISTRY)
SINK_ROWS = Counter("sunlight_sink_rows_total", "Rows written to ClickHouse, by table", ["table"], registry=REGISTRY)
SINK_FAILURES = Counter("sunlight_sink_failures_total", "Failed ClickHouse batch writes (the batch is kept and tried again)", registry=REGISTRY)
SINK_FLUSH_SECONDS = Histogram("sunlight_sink_flush_seconds", "Time to write one batch to ClickHouse (seconds)", registry=REGISTRY)
SINK_PENDING_ROWS = Gauge("sunlight_sink_pending_rows", "Rows buffered, not yet written", registry=REGISTRY)
CATALOG_RELOADS = Counter("sunlight_catalog_reloads_total", "Catalog reloads, by outcome (loaded, or rejected: the previous catalog stays)", ["outcome"], registry=REGISTRY)
for _outcome in ("loaded", "rejected"):  # from 0, as the docs say every labelled counter starts
    CATALOG_RELOADS.labels(_outcome)
CATALOG_REFUSED = Gauge("sunlight_catalog_refused", "1 while the catalog files as they are on disk were refused at their "
                        "last reload (the previous catalog stays in force), else 0", registry=REGISTRY)
CATALOG_IN_FORCE = Gauge("sunlight_catalog_in_force", "1 for the judging basis this worker judges under (a digest "
                         "of the catalog's items, departments, calendar and rules, as each case row records in "
                         "cases.judged_under); one series per worker", ["basis"], registry=REGISTRY)
CALENDAR_MISSING_YEARS = Gauge("sunlight_calendar_missing_years", "Years counted without holiday data",
                               registry=REGISTRY)
TICKET_CHANGES = Counter("sunlight_ticket_changes_total", "Supervision ticket versions written", ["kind"],
                         registry=REGISTRY)
TICKET_ACTIONS = Counter("sunlight_ticket_actions_total", "Ticket actions applied or refused", ["kind", "outcome"],
                         registry=REGISTRY)
NOTICES = Counter("sunlight_notices_total", "Notices by ladder step and status (recorded, sent, failed, held, unsent)",
                  ["step", "status"],
                  registry=REGISTRY)
# Every step and status from 0: a series born at its first failure shows no increase, and the
# SunlightNoticesFailing rule would miss the first notice that fails.
for _step in Step:
    for _status in ("recorded", "held", "sent", "failed", "unsent"):
        NOTICES.labels(_step.value, _status)
NOTICES_FAILED = Gauge("sunlight_notices_failed", "Notices whose latest outcome in the store is failed, of tickets "
                       "for which they are still news (the same count on every worker)", registry=REGISTRY)
NOTICES_RESENT = Counter("sunlight_notices_resent_total", "Failed notices a worker asked its notifier to deliver "
                         "again by itself (streams.notice_resend)", registry=REGISTRY)
OPEN_TICKET_DEADLINES = Gauge("sunlight_open_ticket_deadlines", "Cases whose tickets wait for a moment",
                              registry=REGISTRY)

# -- added with the /metrics endpoint (issue 12); see docs/metrics.md ------------------------------
ALERTS_RAISED = Counter("sunlight_alerts_raised_total", "Alerts newly raised (their first version), by rule and "
                        "severity", ["rule", "severity"], registry=REGISTRY)
for _rule, _severity in SEVERITY.items():
    ALERTS_RAISED.labels(_rule.value, _severity.value)
OPEN_CASES = Gauge("sunlight_open_cases", "Cases open or suspended in the partitions this worker holds",
                   registry=REGISTRY)
DUE_TIMER_BACKLOG = Gauge("sunlight_due_timer_backlog", "Deadline and ticket moments already due on the stream "
                          "clock and not yet fired, or fired and not yet taken by their agent", registry=REGISTRY)
CONSUMER_LAG = Gauge("sunlight_consumer_lag", "Messages of an input partition this worker holds not yet committed "
                     "(end offset minus committed offset)", ["topic", "partition"], registry=REGISTRY)
SINK_BATCH_ROWS = Histogram("sunlight_sink_batch_rows", "Rows per ClickHouse batch write", registry=REGISTRY,
                            buckets=(1, 10, 50, 100, 250, 500, 1000, 2500, 5000, 10000, 25000, 50000))
TICKETS = Gauge("sunlight_tickets", "Supervision tickets in the partitions this worker holds, by status "
                "(open, replied, returned, closed, withdrawn)", ["status"], registry=REGISTRY)
OFFICE_HOURS = Gauge("sunlight_office_hours", "1 during office hours by the working-day calendar (Chinese "
                     "holidays and make-up working days included) in the catalog's timezone, else 0",
                     registry=REGISTRY)
READY = Gauge("sunlight_ready", "1 when /readyz answers 200 (partitions assigned, tables recovered, store "
              "reachable), else 0", registry=REGISTRY)

# -- letting settled cases go (issue 10); see docs/metrics.md ----------------------------------------
CASES_LET_GO = Counter("sunlight_cases_let_go_total", "Settled cases taken out of the worker's table and its "
                       "changelog after SUNLIGHT_CASE_RETENTION_DAYS", registry=REGISTRY)
NOTICES_LET_GO = Counter("sunlight_notices_let_go_total", "Finished notices taken out of the notifier's table "
                         "and its changelog once their row is written (the store answers for them)",
                         registry=REGISTRY)
CASES_BROUGHT_BACK = Counter("sunlight_cases_brought_back_total", "Cases let go and read back from the store "
                             "because something about them arrived", registry=REGISTRY)
CASE_READ_FAILURES = Counter("sunlight_case_read_failures_total", "Failed reads of let-go cases from the store "
                             "(tried again; the unit waits)", registry=REGISTRY)
