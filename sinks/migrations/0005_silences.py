"""Silences: who stopped tickets and notices for an item or a department, until when, and why.

Versioned (``ReplacingMergeTree(version)``): a silence expired early is a new version with its
``expired_at``. The pipeline reads them from here; they stop tickets and notices, never alerts.
"""

forwards = [
    """
    CREATE TABLE IF NOT EXISTS silences (
        silence_id String,
        item_code Nullable(String),
        department Nullable(String),
        until DateTime64(6, 'UTC'),
        reason String,
        created_by String,
        created_at DateTime64(3, 'UTC'),
        expired_at Nullable(DateTime64(6, 'UTC')),
        version UInt64
    ) ENGINE = ReplacingMergeTree(version)
    ORDER BY silence_id
    """,
]

backwards = [
    "DROP TABLE IF EXISTS silences",
]
