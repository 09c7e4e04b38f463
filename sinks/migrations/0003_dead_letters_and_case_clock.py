"""Dead letters kept in the store; each case's clock; why an alert was withdrawn.

* ``dead_letters``: every message that could not be processed, whatever the broker (the
  embedded broker's DLQ topic dies with its process). Keyed by a stable letter id (the same
  bad message refused for the same reason is one letter), versioned so that a redrive can
  mark it. Scoped by department and region like ``alerts``, where the letter names them.
* ``cases.judged_at``: the clock of the case's last judgement (time never runs backwards for a
  case, also after a restart from the store).
* ``alerts.withdrawn_reason``: for a withdrawn alert, what showed that it never held.
* Business times to the microsecond (``DateTime64(6)``): a source states them so, and a case
  restored from the store must be the case that was judged (evidence quotes its times; decisions
  are ordered by them), not one rounded to the millisecond.
"""

forwards = [
    """
    CREATE TABLE IF NOT EXISTS dead_letters (
        letter_id String,
        reason LowCardinality(String),
        detail String,
        topic LowCardinality(String),
        partition Int32,
        offset Int64,
        key Nullable(String),
        case_id Nullable(String),
        event_id Nullable(String),
        department LowCardinality(String),
        region LowCardinality(String),
        payload String,
        payload_encoding LowCardinality(String),
        received_at DateTime64(3, 'UTC'),
        status LowCardinality(String),
        redriven_at Nullable(DateTime64(3, 'UTC')),
        version UInt64
    ) ENGINE = ReplacingMergeTree(version)
    ORDER BY letter_id
    """,
    "ALTER TABLE cases ADD COLUMN IF NOT EXISTS judged_at Nullable(DateTime64(6, 'UTC'))",
    "ALTER TABLE alerts ADD COLUMN IF NOT EXISTS withdrawn_reason Nullable(String)",
    "ALTER TABLE case_events MODIFY COLUMN occurred_at DateTime64(6, 'UTC'), "
    "MODIFY COLUMN recorded_at DateTime64(6, 'UTC') SETTINGS mutations_sync = 1",
    "ALTER TABLE alerts MODIFY COLUMN event_time DateTime64(6, 'UTC') SETTINGS mutations_sync = 1",
    "ALTER TABLE cases MODIFY COLUMN accepted_at Nullable(DateTime64(6, 'UTC')), "
    "MODIFY COLUMN ended_at Nullable(DateTime64(6, 'UTC')), MODIFY COLUMN deadline Nullable(DateTime64(6, 'UTC')) "
    "SETTINGS mutations_sync = 1",
]

backwards = [
    "ALTER TABLE cases MODIFY COLUMN accepted_at Nullable(DateTime64(3, 'UTC')), "
    "MODIFY COLUMN ended_at Nullable(DateTime64(3, 'UTC')), MODIFY COLUMN deadline Nullable(DateTime64(3, 'UTC')) "
    "SETTINGS mutations_sync = 1",
    "ALTER TABLE alerts MODIFY COLUMN event_time DateTime64(3, 'UTC') SETTINGS mutations_sync = 1",
    "ALTER TABLE case_events MODIFY COLUMN occurred_at DateTime64(3, 'UTC'), "
    "MODIFY COLUMN recorded_at DateTime64(3, 'UTC') SETTINGS mutations_sync = 1",
    "ALTER TABLE alerts DROP COLUMN IF EXISTS withdrawn_reason",
    "ALTER TABLE cases DROP COLUMN IF EXISTS judged_at",
    "DROP TABLE IF EXISTS dead_letters",
]
