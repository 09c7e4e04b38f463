"""When a case reopened was closed before.

* ``cases.undone_ends``, ``cases.reopened_at``: each closing of the case that a return (退回)
  stated after it undid, and that return's moment, in the same order (``alerts.events.ends_undone``).
  A case's row is its state now: a case closed on 2 June and sent back on 8 June read as open on
  every day before, so a past day's wall listed it overdue on a day it was closed, and counted no
  closing on 2 June (found by a black-box test). Empty for rows written before this column, which
  read as before until their case is written again.
* ``case_reopenings``: the rows of ``cases`` that have any (a materialized view copies them as they
  are written): the few cases the dashboards read these arrays of (``dashboards.queries``). Read
  in the FINAL scan of every case, the arrays cost the wall's panels 15 to 35 ms at 10M events.
  A row there counts only while it is its case's latest revision (a case whose closings a return
  undid no longer, its events read otherwise since, has a later row in ``cases`` only). Scoped by
  department and region as ``cases`` is (``sinks.access``).

Safe to rerun after a crash: ``IF NOT EXISTS`` / ``IF EXISTS``.
"""

forwards = [
    "ALTER TABLE cases ADD COLUMN IF NOT EXISTS undone_ends Array(DateTime64(6, 'UTC')) DEFAULT [], "
    "ADD COLUMN IF NOT EXISTS reopened_at Array(DateTime64(6, 'UTC')) DEFAULT []",
    """
    CREATE TABLE IF NOT EXISTS case_reopenings (
        case_id String,
        department LowCardinality(String),
        region LowCardinality(String),
        revision UInt64,
        updated_at DateTime64(3, 'UTC'),
        undone_ends Array(DateTime64(6, 'UTC')),
        reopened_at Array(DateTime64(6, 'UTC'))
    ) ENGINE = ReplacingMergeTree(revision)
    ORDER BY case_id
    """,
    "CREATE MATERIALIZED VIEW IF NOT EXISTS case_reopenings_mv TO case_reopenings AS SELECT case_id, department, "
    "region, revision, updated_at, undone_ends, reopened_at FROM cases WHERE notEmpty(undone_ends)",
]

backwards = [
    "DROP VIEW IF EXISTS case_reopenings_mv",
    "DROP TABLE IF EXISTS case_reopenings",
    "ALTER TABLE cases DROP COLUMN IF EXISTS undone_ends, DROP COLUMN IF EXISTS reopened_at",
]
