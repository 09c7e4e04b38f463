"""An alert's evidence in words, for the screens.

* ``alerts.evidence_text``: the evidence as the sentences `sunlight cases show`, the console and
  the notices give it (`alerts.describe.describe_evidence`); empty for rows written before this
  column. The wall screen's 预警证据 panel showed the evidence's raw JSON, with English keys, to
  the inspectors reading it; Grafana's SQL cannot put it in words, so the writer stores them.

Safe to rerun after a crash: ``IF NOT EXISTS`` / ``IF EXISTS``.
"""

forwards = [
    "ALTER TABLE alerts ADD COLUMN IF NOT EXISTS evidence_text String DEFAULT ''",
]

backwards = [
    "ALTER TABLE alerts DROP COLUMN IF EXISTS evidence_text",
]
