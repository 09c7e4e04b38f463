"""Under which catalog each stored case was judged.

* ``cases.judged_under``: a digest of what a case's alerts depend on besides its events and the
  clock, when its state was judged: the catalog, the calendar (its overrides, its time zone, the
  holiday tables of the installed calendar package) and the thresholds, and the rules' own code
  (`streams.catalog_source.CatalogSource.basis`). A settled case judged under another one is
  loaded and judged again by the next process on the store (`sinks.queries.settled_cases`), since
  a changed catalog or release may judge it otherwise. Empty for rows written before.

Safe to rerun after a crash: ``IF NOT EXISTS`` / ``IF EXISTS``.
"""

forwards = [
    "ALTER TABLE cases ADD COLUMN IF NOT EXISTS judged_under LowCardinality(String) DEFAULT ''",
]

backwards = [
    "ALTER TABLE cases DROP COLUMN IF EXISTS judged_under",
]
