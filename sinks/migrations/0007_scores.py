"""Monthly performance scores (绩效考核, `sunlight score`).

* ``scores``: one row per scored subject (a department, or a region) of a month and attachment
  (``department``: 市级部门, attachment 2; ``region``: 市(县)区, attachment 1), per computation.
  Each run of `sunlight score` writes the whole month as a new ``version`` (one more than the
  month's latest), so a recomputation is on record beside the scores it replaces; readers take
  the month's latest version. ``parts`` holds every part's inputs and points as JSON (what a
  person checks); ``part_keys`` / ``part_titles`` / ``part_points`` / ``part_max`` the same points as
  arrays, for dashboards. Scoped by department and region like ``alerts``: a department's row
  names its department and region; a region's row names the region (department empty).

Safe to rerun after a crash: ``IF NOT EXISTS`` / ``IF EXISTS``.
"""

forwards = [
    """
    CREATE TABLE IF NOT EXISTS scores (
        month String,
        attachment LowCardinality(String),
        subject String,
        name String,
        department LowCardinality(String),
        region LowCardinality(String),
        version UInt32,
        ranked UInt8,
        rank Nullable(UInt32),
        cases UInt32,
        total Float64,
        part_keys Array(String),
        part_titles Array(String),
        part_points Array(Float64),
        part_max Array(Float64),
        parts String,
        rulebook String,
        rulebook_sha256 String,
        inputs_sha256 String,
        computed_at DateTime64(3, 'UTC')
    ) ENGINE = ReplacingMergeTree
    ORDER BY (month, attachment, subject, version)
    """,
]

backwards = [
    "DROP TABLE IF EXISTS scores",
]
