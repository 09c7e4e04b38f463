"""case_events without monthly partitions.

0001 partitioned case_events by month of occurred_at. A batch of imported history spans
many months (the road-traffic sample: 2000-2013), and ClickHouse refuses an insert block that
touches more than 100 partitions, so such a batch could never be written. The table is
rebuilt ordered by (case_id, event_id) alone, its rows copied over.

The column list repeats 0001's on purpose: a migration is a snapshot of the schema at its
version and must not change when another migration does.
"""

_COLUMNS = """
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
"""

forwards = [
    f"CREATE TABLE case_events_0002 ({_COLUMNS}) ENGINE = ReplacingMergeTree ORDER BY (case_id, event_id)",
    "INSERT INTO case_events_0002 SELECT * FROM case_events",
    "DROP TABLE case_events",
    "RENAME TABLE case_events_0002 TO case_events",
]

backwards = [
    f"CREATE TABLE case_events_0001 ({_COLUMNS}) ENGINE = ReplacingMergeTree "
    "PARTITION BY toYYYYMM(occurred_at) ORDER BY (case_id, event_id)",
    "INSERT INTO case_events_0001 SELECT * FROM case_events SETTINGS max_partitions_per_insert_block = 0",
    "DROP TABLE case_events",
    "RENAME TABLE case_events_0001 TO case_events",
]
