"""When each stored case settled.

* ``cases.settled_since``: for a state that has settled (`alerts.retention.settled_since`:
  closed or withdrawn, nothing left due by the clock alone, no withdrawal waiting for the end of
  a replay), the event time it settled from; NULL while it has not, and for rows written before
  this column. A process that starts on an existing store seeds its table with the cases that have
  not settled only (`streams.runtime.restore_from_store`); a settled one is read back from the
  store if anything about it arrives, as a case the worker let go.

Safe to rerun after a crash: ``IF NOT EXISTS`` / ``IF EXISTS``.
"""

forwards = [
    "ALTER TABLE cases ADD COLUMN IF NOT EXISTS settled_since Nullable(DateTime64(6, 'UTC'))",
]

backwards = [
    "ALTER TABLE cases DROP COLUMN IF EXISTS settled_since",
]
