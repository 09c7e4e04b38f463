"""Three facts the dashboards and `sunlight score` read, kept in columns of their own instead of
parsed from JSON in every row (``dashboards.queries``, ``sinks.rows.TICKET_ROUND``):

* ``tickets.pending_alert_ids``: the cards a closed or withdrawn ticket holds for its next round
  (its stored form's ``pending``; empty for most tickets). Read from ``state``, every version's
  stored form (about 1.2 KB in a demo city) was read and sorted along to find each ticket's latest
  version: the wall's 待处置 panels took 400 to 800 ms at 10M events (bench/dashboard_queries.py).
* ``tickets.round``: the round a ticket version belongs to (its stored form's ``round``, 1 where it
  has none), which 督办完成率 counts by, on the wall and in the monthly scores; parsed from every
  version's stored form, it cost the wall's 本月督办完成率 about 60 ms at 10M events.
* ``alerts.warned_deadline``: the deadline a deadline_near card warned of (its evidence's
  ``deadline``; NULL for the other rules), which decides whether the red overdue card has
  overtaken it. Read from ``evidence``, every alert's evidence was read. Kept to the microsecond
  (the panels had read it to the millisecond; the detectors state deadlines in whole seconds).

Each is a DEFAULT expression over the row's own JSON, so the writers do not name them and cannot
disagree with the JSON: ClickHouse computes them as a row is written. For rows written before,
it computes them as it reads them until ``MATERIALIZE COLUMN`` (a mutation, in the background)
has stored them; the readers get the same values either way.

Safe to rerun after a crash: ``IF NOT EXISTS`` / ``IF EXISTS``; materializing again rewrites the
same values.
"""

forwards = [
    "ALTER TABLE tickets ADD COLUMN IF NOT EXISTS pending_alert_ids Array(String) "
    "DEFAULT JSONExtract(state, 'pending', 'Array(String)'), "
    "ADD COLUMN IF NOT EXISTS round UInt32 DEFAULT greatest(JSONExtractInt(state, 'round'), 1)",
    "ALTER TABLE tickets MATERIALIZE COLUMN pending_alert_ids, MATERIALIZE COLUMN round",
    "ALTER TABLE alerts ADD COLUMN IF NOT EXISTS warned_deadline Nullable(DateTime64(6, 'UTC')) "
    "DEFAULT if(rule = 'deadline_near', parseDateTime64BestEffortOrNull(JSONExtractString(evidence, 'deadline'), 6), "
    "NULL)",
    "ALTER TABLE alerts MATERIALIZE COLUMN warned_deadline",
]

backwards = [
    "ALTER TABLE alerts DROP COLUMN IF EXISTS warned_deadline",
    "ALTER TABLE tickets DROP COLUMN IF EXISTS pending_alert_ids, DROP COLUMN IF EXISTS round",
]
