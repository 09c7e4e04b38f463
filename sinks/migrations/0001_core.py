"""Case events, current case state and alerts.

Each table is a ReplacingMergeTree keyed so that writing the same rows again
changes nothing: events by (case_id, event_id), cases by case_id with the
state's revision as version, alerts by alert_id with the alert's version.
Readers use FINAL (or argMax) to see one row per key.
"""

forwards = [
    """
    CREATE TABLE IF NOT EXISTS case_events (
        case_id String,
        event_id String,
        item_code LowCardinality(String),
        type LowCardinality(String),
        occurred_at DateTime64(3, 'UTC'),
        recorded_at DateTime64(3, 'UTC'),
        node Nullable(String),
        officer_id Nullable(String),
        department LowCardinality(String),
        region LowCardinality(String),
        channel LowCardinality(String),
        attrs String,
        ingested_at DateTime64(3, 'UTC')
    ) ENGINE = ReplacingMergeTree
    PARTITION BY toYYYYMM(occurred_at)
    ORDER BY (case_id, event_id)
    """,
    """
    CREATE TABLE IF NOT EXISTS cases (
        case_id String,
        item_code LowCardinality(String),
        department LowCardinality(String),
        region LowCardinality(String),
        status LowCardinality(String),
        accepted_at Nullable(DateTime64(3, 'UTC')),
        ended_at Nullable(DateTime64(3, 'UTC')),
        deadline Nullable(DateTime64(3, 'UTC')),
        event_count UInt32,
        open_alerts UInt32,
        revision UInt64,
        updated_at DateTime64(3, 'UTC')
    ) ENGINE = ReplacingMergeTree(revision)
    ORDER BY case_id
    """,
    """
    CREATE TABLE IF NOT EXISTS alerts (
        alert_id String,
        rule LowCardinality(String),
        severity LowCardinality(String),
        case_id String,
        item_code LowCardinality(String),
        department LowCardinality(String),
        region Nullable(String),
        officer_id Nullable(String),
        node Nullable(String),
        raised_at DateTime64(3, 'UTC'),
        event_time DateTime64(3, 'UTC'),
        evidence String,
        status LowCardinality(String),
        version UInt64,
        title String
    ) ENGINE = ReplacingMergeTree(version)
    ORDER BY alert_id
    """,
]

backwards = [
    "DROP TABLE IF EXISTS alerts",
    "DROP TABLE IF EXISTS cases",
    "DROP TABLE IF EXISTS case_events",
]
