"""The peer groups' verdicts a case holds.

* ``cases.verdicts``: the verdicts on the case's fining decisions that are outliers, as JSON
  (``CaseState.verdicts``; ``{}`` for none); empty for rows written before this column. A case
  read back from the store had them back only from its open outlier alerts. A case that waits for
  a refused event (``CaseState.refused``) raises no alert for a verdict it gets meanwhile: read
  back in a later command, it lost the verdict, and its true outlier was never raised once the
  corrected event came.

Safe to rerun after a crash: ``IF NOT EXISTS`` / ``IF EXISTS``.
"""

forwards = [
    "ALTER TABLE cases ADD COLUMN IF NOT EXISTS verdicts String DEFAULT ''",
]

backwards = [
    "ALTER TABLE cases DROP COLUMN IF EXISTS verdicts",
]
