"""Supervision tickets and their notices.

* ``tickets``: every change of a ticket is a row of its own, keyed by ticket and version (a
  change written again after a crash is the same row): who acted, when (on the stream clock),
  what kind of change, the text, and the whole ticket as it stood after it (`state`: its
  stored form, from which a restart on a fresh broker restores it). Scoped by
  department and region like ``alerts``.
* ``notices``: the notice log. One row per notice (its id names the ticket and the ladder step),
  versioned: recorded before it is sent, then sent or failed, with the attempts and the error.
  Scoped like ``tickets``.
"""

forwards = [
    """
    CREATE TABLE IF NOT EXISTS tickets (
        ticket_id String,
        version UInt32,
        case_id String,
        rule LowCardinality(String),
        severity LowCardinality(String),
        item_code LowCardinality(String),
        department LowCardinality(String),
        region LowCardinality(String),
        status LowCardinality(String),
        resolution LowCardinality(String),
        overdue UInt8,
        escalation_level UInt8,
        manual UInt8,
        opened_at Nullable(DateTime64(6, 'UTC')),
        deadline Nullable(DateTime64(6, 'UTC')),
        level_2_at Nullable(DateTime64(6, 'UTC')),
        alert_ids Array(String),
        evidence String,
        changed_at DateTime64(6, 'UTC'),
        actor String,
        kind LowCardinality(String),
        text String,
        written_at DateTime64(3, 'UTC'),
        state String
    ) ENGINE = ReplacingMergeTree
    ORDER BY (ticket_id, version)
    """,
    """
    CREATE TABLE IF NOT EXISTS notices (
        notice_id String,
        ticket_id String,
        step LowCardinality(String),
        recipient_role LowCardinality(String),
        recipient_name String,
        recipient_email String,
        subject String,
        body String,
        department LowCardinality(String),
        region LowCardinality(String),
        due_at DateTime64(6, 'UTC'),
        status LowCardinality(String),
        attempts UInt32,
        last_error String,
        message_id String,
        version UInt64,
        updated_at DateTime64(3, 'UTC')
    ) ENGINE = ReplacingMergeTree(version)
    ORDER BY notice_id
    """,
]

backwards = [
    "DROP TABLE IF EXISTS notices",
    "DROP TABLE IF EXISTS tickets",
]
