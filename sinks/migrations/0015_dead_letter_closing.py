"""Dead letters an operator closes: who, when and why.

* ``dead_letters.closed_at``, ``closed_by``, ``closed_reason``: a letter that no corrected event
  can replace (a tombstone, a record that names no event, a refusal of Sunlight's own that was
  dealt with by hand) is closed by an operator with `sunlight dlq close`, with the reason given,
  as a new version of the letter with ``status = 'closed'``. Before, such a letter stayed 待处理
  for good, and the wall's count of letters waiting never came back to 0. The three columns keep
  the record of who closed what, and why: closing hides a letter from the count, so it must be
  answerable. Empty (NULL) for every letter not closed.

Safe to rerun after a crash: ``IF NOT EXISTS`` / ``IF EXISTS``.
"""

forwards = [
    "ALTER TABLE dead_letters ADD COLUMN IF NOT EXISTS closed_at Nullable(DateTime64(3, 'UTC')), "
    "ADD COLUMN IF NOT EXISTS closed_by Nullable(String), ADD COLUMN IF NOT EXISTS closed_reason Nullable(String)",
]

backwards = [
    "ALTER TABLE dead_letters DROP COLUMN IF EXISTS closed_at, DROP COLUMN IF EXISTS closed_by, "
    "DROP COLUMN IF EXISTS closed_reason",
]
