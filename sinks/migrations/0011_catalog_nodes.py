"""The nodes (环节) of each catalog item in the store, so that a panel names a case's steps.

* ``catalog_nodes``: one row per (item code, node id): the node's name as the catalog gives it
  (受理, 审核, ...). Written with the rest of the catalog's copy (`sinks.catalog_rows`), versioned
  and kept like it (``in_catalog = 0`` once a node has left its item). Public like the catalog.

Safe to rerun after a crash: ``IF NOT EXISTS`` / ``IF EXISTS``.
"""

forwards = [
    """
    CREATE TABLE IF NOT EXISTS catalog_nodes (
        item_code String,
        node_id String,
        name String,
        in_catalog UInt8,
        version UInt64,
        written_at DateTime64(3, 'UTC')
    ) ENGINE = ReplacingMergeTree(version)
    ORDER BY (item_code, node_id)
    """,
]

backwards = [
    "DROP TABLE IF EXISTS catalog_nodes",
]
