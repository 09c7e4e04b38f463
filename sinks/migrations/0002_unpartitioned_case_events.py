"""case_events without monthly partitions.

0001 partitioned case_events by month of occurred_at. A batch of imported history spans
many months (the road-traffic sample: 2000-2013), and ClickHouse refuses an insert block that
touches more than 100 partitions, so such a batch could never be written. The table is
rebuilt ordered by (case_id, event_id) alone, its rows copied over.

The column list repeats 0001's on purpose: a migration is a snapshot of the schema at its
version and must not change when another migration does. Its steps were made safe to run again
after a crash (see `sinks.migrations`); the tables they leave are the same as before.
"""

from sinks.migrations import Step

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

_KEY = "(case_id, event_id)"


def _rebuild(into: str, engine: str, copy_settings: str = "") -> list:
    """Create `into`, copy case_events over, drop case_events, rename `into` to it.

    Each step can run again after a crash: the copy skips rows already copied, and is skipped
    once case_events is gone (only a crash between the drop and the rename leaves that state).
    """
    return [
        f"CREATE TABLE IF NOT EXISTS {into} ({_COLUMNS}) ENGINE = {engine}",
        Step((f"INSERT INTO {into} SELECT * FROM case_events "
              f"WHERE {_KEY} NOT IN (SELECT {_KEY} FROM {into}){copy_settings}",),
             only_if="EXISTS TABLE case_events"),
        "DROP TABLE IF EXISTS case_events",
        f"RENAME TABLE IF EXISTS {into} TO case_events",
    ]


forwards = _rebuild("case_events_0002", f"ReplacingMergeTree ORDER BY {_KEY}")

backwards = _rebuild("case_events_0001", f"ReplacingMergeTree PARTITION BY toYYYYMM(occurred_at) ORDER BY {_KEY}",
                     " SETTINGS max_partitions_per_insert_block = 0")
