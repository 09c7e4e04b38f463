"""The peer groups' verdicts a case holds.

* ``cases.verdicts``: the verdicts on the case's fining decisions that are outliers, as JSON
  (``CaseState.verdicts``; ``{}`` for none); empty for rows written before this column. A case
  read back from the store had them back only from its open outlier alerts. A case that waits for
  a refused event (``CaseState.refused``) raises no alert for a verdict it gets meanwhile, nor
  withdraws one a later verdict takes back: read back in a later command, it lost the first (a
  true outlier never raised once the corrected event came) and got the stale one back (a yellow
  card never withdrawn).

Safe to rerun after a crash: ``IF NOT EXISTS`` / ``IF EXISTS``.
"""

forwards = [
    "ALTER TABLE cases ADD COLUMN IF NOT EXISTS verdicts String DEFAULT ''",
]

backwards = [
    "ALTER TABLE cases DROP COLUMN IF EXISTS verdicts",
]
