"""Two facts the 待处置 panels read, kept in columns of their own instead of parsed from JSON in
every row (``dashboards.queries``):

* ``tickets.pending_alert_ids``: the cards a closed or withdrawn ticket holds for its next round
  (its stored form's ``pending``; empty for most tickets). Read from ``state``, every version's
  stored form (about 1.2 KB in a demo city) was read and sorted along to find each ticket's latest
  version: the wall's 待处置 panels took 300 to 800 ms at 10M events (bench/dashboard_queries.py).
* ``alerts.warned_deadline``: the deadline a deadline_near card warned of (its evidence's
  ``deadline``; NULL for the other rules), which decides whether the red overdue card has
  overtaken it. Read from ``evidence``, every alert's evidence was read.

Both are DEFAULT expressions over the row's own JSON, so the writers do not name them and cannot
disagree with the JSON: ClickHouse computes them as a row is written. For rows written before,
it computes them as it reads them until ``MATERIALIZE COLUMN`` (a mutation, in the background)
has stored them; the panels read the same values either way.

Safe to rerun after a crash: ``IF NOT EXISTS`` / ``IF EXISTS``; materializing again rewrites the
same values.
"""

forwards = [
    "ALTER TABLE tickets ADD COLUMN IF NOT EXISTS pending_alert_ids Array(String) "
    "DEFAULT JSONExtract(state, 'pending', 'Array(String)')",
    "ALTER TABLE tickets MATERIALIZE COLUMN pending_alert_ids",
    "ALTER TABLE alerts ADD COLUMN IF NOT EXISTS warned_deadline Nullable(DateTime64(6, 'UTC')) "
    "DEFAULT if(rule = 'deadline_near', parseDateTime64BestEffortOrNull(JSONExtractString(evidence, 'deadline'), 6), "
    "NULL)",
    "ALTER TABLE alerts MATERIALIZE COLUMN warned_deadline",
]

backwards = [
    "ALTER TABLE alerts DROP COLUMN IF EXISTS warned_deadline",
    "ALTER TABLE tickets DROP COLUMN IF EXISTS pending_alert_ids",
]
