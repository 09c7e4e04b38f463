"""The power catalog (职权目录) in the store, for dashboards to name and list what they show.

The catalog itself lives in a YAML file (`alerts.catalog`); the pipeline writes a copy of it
here when it starts and whenever it reloads the file (`sinks.catalog_rows`), so that a Grafana
variable can offer the departments, regions, items, rules and severities, and a panel can show
a department's Chinese name instead of its code.

* ``catalog_departments``: one row per department code: name, region.
* ``catalog_items``: one row per item code: name, department, category, promised and legal days,
  status.
* ``catalog_codes``: the other codes a person picks from, by kind (``rule``, ``severity``,
  ``category``), with their Chinese titles.

Each is a ReplacingMergeTree keyed by code and versioned by when the copy was written, so that
writing the same catalog again changes nothing a reader sees (``FINAL``), and a newer copy wins.
A code that has left the catalog keeps its row with ``in_catalog = 0``: alerts about it still
name it. Not scoped by department: the catalog is public (公示) and holds no case data.
"""

forwards = [
    """
    CREATE TABLE IF NOT EXISTS catalog_departments (
        code String,
        name String,
        region LowCardinality(String),
        in_catalog UInt8,
        version UInt64,
        written_at DateTime64(3, 'UTC')
    ) ENGINE = ReplacingMergeTree(version)
    ORDER BY code
    """,
    """
    CREATE TABLE IF NOT EXISTS catalog_items (
        code String,
        name String,
        department LowCardinality(String),
        category LowCardinality(String),
        promised_days UInt32,
        legal_days Nullable(UInt32),
        status LowCardinality(String),
        in_catalog UInt8,
        version UInt64,
        written_at DateTime64(3, 'UTC')
    ) ENGINE = ReplacingMergeTree(version)
    ORDER BY code
    """,
    """
    CREATE TABLE IF NOT EXISTS catalog_codes (
        kind LowCardinality(String),
        code String,
        title String,
        in_catalog UInt8,
        version UInt64,
        written_at DateTime64(3, 'UTC')
    ) ENGINE = ReplacingMergeTree(version)
    ORDER BY (kind, code)
    """,
]

backwards = [
    "DROP TABLE IF EXISTS catalog_codes",
    "DROP TABLE IF EXISTS catalog_items",
    "DROP TABLE IF EXISTS catalog_departments",
]
