"""Whether an event named its department.

* ``case_events.department_named``: 1 when the event named its department, 0 when it named none
  and the row files it under its item's department (``department``); NULL for rows written
  before this column (read as named, as before). A case read back from the store gets its events
  as they came: an event that named no department comes back without one. Filled in, a case whose
  first event named none and a later one another department came back labelled with its item's
  department, and a second run on the store moved its alerts (and their tickets) there.

Safe to rerun after a crash: ``IF NOT EXISTS`` / ``IF EXISTS``.
"""

forwards = [
    "ALTER TABLE case_events ADD COLUMN IF NOT EXISTS department_named Nullable(UInt8)",
]

backwards = [
    "ALTER TABLE case_events DROP COLUMN IF EXISTS department_named",
]
