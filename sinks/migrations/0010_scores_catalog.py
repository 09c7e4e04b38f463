"""Which catalog each month's scores were computed under.

* ``scores.catalog_sha256``: the SHA-256 of the catalog file `sunlight score` read. The scores
  count the catalog's items, their statuses and published fields, and its departments' regions
  and `self_built` flags, as the catalog stands when the month is scored: a month scored again
  after the catalog was edited can differ, and this tells which catalog gave which version.
  Empty for rows written before.

Safe to rerun after a crash: ``IF NOT EXISTS`` / ``IF EXISTS``.
"""

forwards = [
    "ALTER TABLE scores ADD COLUMN IF NOT EXISTS catalog_sha256 String DEFAULT ''",
]

backwards = [
    "ALTER TABLE scores DROP COLUMN IF EXISTS catalog_sha256",
]
